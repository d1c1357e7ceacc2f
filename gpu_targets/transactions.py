"""The transactions table as the engines see it: four typed role arrays (SPEC.md 1).

:func:`extract` checks a DataFrame against a :class:`~gpu_targets.spec.Config` and turns
its role columns into plain NumPy arrays:

=========  ======================  ===========================================================
role       array                   meaning
=========  ======================  ===========================================================
user       ``int64 [n]``           the user id (integers as given, strings as codes)
time       ``int64 [n]``           ticks since 1970-01-01 UTC; ``time * time_factor`` = ns
amount     ``float64 [n]``         NaN = null: contributes to no window
mcc        ``int32 [n]``           -1 = null (or outside 0..9999): matches no ``mcc`` filter
=========  ======================  ===========================================================

Bad input raises :class:`DataError` with one line naming the column (and the first
offending rows). Input adapters for real schemas (``sdsj2016``, ``tabformer``) live in
:mod:`gpu_targets.formats` and run before this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from numba import njit, prange

from .forksafe import parallel_njit
from .spec import Config

__all__ = ["DataError", "Transactions", "extract"]

_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "D": 86_400_000_000_000}
_INT64_MAX = np.iinfo(np.int64).max
_NAT = np.iinfo(np.int64).min


class DataError(ValueError):
    """Input data that cannot be used: a missing column, wrong dtype, nulls, no rows."""


@dataclass(frozen=True)
class Transactions:
    """Role arrays of a transactions table, in input row order.

    Attributes
    ----------
    user : ndarray of int64, shape (n,)
    time : ndarray of int64, shape (n,)
        UTC time in ticks of ``time_factor`` nanoseconds since the epoch (the input's
        own unit, so no conversion pass is needed); see :attr:`time_ns`.
    amount : ndarray of float64, shape (n,)
    mcc : ndarray of int32, shape (n,)
    kept_rows : ndarray of int64 or None
        Positions of the input rows kept after ``on_invalid: drop`` (None: all kept).
    user_is_code : bool
        True when ``user`` holds codes of non-integer ids (first-appearance order).
    time_factor : int
        Nanoseconds per tick of ``time`` (1 for datetime64[ns], 86400e9 for days).
    ordered : bool
        True when the rows are known to come grouped by user in increasing ``user``
        order with non-decreasing times (found by the same pass that checks the times;
        False means "not known", and the engines look again).
    time_bounds : (int, int) or None
        Smallest and largest non-null tick of the input's time column (found by the same
        pass; before ``on_invalid: drop``, so they bound the kept rows' times).
    columns : :class:`gpu_targets.where.ColumnInputs` or None
        [v2] The ``where:`` masks and ``value:`` arrays of the config's targets, in the
        same rows (None when no target has either).
    """

    user: np.ndarray
    time: np.ndarray
    amount: np.ndarray
    mcc: np.ndarray
    kept_rows: Optional[np.ndarray] = None
    user_is_code: bool = False
    time_factor: int = 1
    ordered: bool = False
    time_bounds: Optional[tuple] = None
    columns: Optional[object] = None

    def __len__(self) -> int:
        return len(self.time)

    @property
    def time_ns(self) -> np.ndarray:
        """UTC nanoseconds since the epoch, int64 [n] (a new array unless ticks are ns)."""
        return self.time if self.time_factor == 1 else self.time * np.int64(self.time_factor)


def _first_rows(mask: np.ndarray, limit: int = 5) -> str:
    rows = np.flatnonzero(mask)[:limit]
    return ", ".join(str(int(r)) for r in rows)


def _null_mask(s: pd.Series) -> np.ndarray:
    return np.asarray(s.isna().to_numpy(), dtype=bool)


def _user_array(s: pd.Series, name: str) -> tuple[np.ndarray, bool]:
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt):
        raise DataError(f"column {name!r} (user) has dtype {dt}; expected integers or strings")
    if pd.api.types.is_integer_dtype(dt):
        if not _may_hold_nulls(s):  # NumPy integers: no null to fill, no pass over them
            return s.to_numpy().astype(np.int64, copy=False), False
        return s.to_numpy(dtype=np.int64, na_value=0), False
    if pd.api.types.is_float_dtype(dt):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(v)
        if not np.array_equal(v[ok], np.round(v[ok])):
            raise DataError(f"column {name!r} (user) holds non-integer numbers; expected integers or strings")
        return np.where(ok, v, 0).astype(np.int64), False
    if pd.api.types.is_string_dtype(dt) or dt == object or isinstance(dt, pd.CategoricalDtype):
        codes, _ = pd.factorize(s, sort=False, use_na_sentinel=True)
        return codes.astype(np.int64, copy=False), True
    raise DataError(f"column {name!r} (user) has dtype {dt}; expected integers or strings")


_CHUNKS = 64


@njit(cache=True, inline="always")
def _tick_stats(x, nat, n_nat, lo, hi):
    """(number of NaT, min, max) updated with tick ``x``; NaT is int64 min: it never
    raises the max, and is kept out of the min."""
    isnat = x == nat
    return n_nat + np.int64(isnat), min(lo, _INT64_MAX if isnat else x), max(hi, x)


@njit(cache=True)
def _scan_chunk(user, time, nat, c0, c1, out):
    """Rows [c0, c1) (c0 >= 1) of :func:`_scan_user_time`: ``out`` = (min, max, number of
    NaT, out of order) of the chunk, each row compared with the row before it.

    The loop runs over views indexed from 0, row ``i`` beside row ``i - 1`` of a view
    shifted by one: an index that may be negative needs Python's wraparound check on
    every load, which keeps LLVM from vectorizing the loop.
    """
    x_, u_ = time[c0:c1], user[c0:c1]
    xp, up = time[c0 - 1 : c1 - 1], user[c0 - 1 : c1 - 1]
    lo = _INT64_MAX
    hi = np.iinfo(np.int64).min
    n_nat = 0
    bad = 0
    for i in range(x_.shape[0]):
        x = x_[i]
        u = u_[i]
        n_nat, lo, hi = _tick_stats(x, nat, n_nat, lo, hi)
        # out of order: a smaller user id, or the same user with an earlier time
        bad |= np.int64(u < up[i]) | (np.int64(u == up[i]) & np.int64(x < xp[i]))
    out[0], out[1], out[2], out[3] = lo, hi, n_nat, bad


@parallel_njit
def _scan_chunks(user, time, nat):
    """:func:`_scan_chunk` over ``_CHUNKS`` chunks from row 1 on, in parallel: int64
    [_CHUNKS, 4]. The parallel body is one call: Numba's parfor passes cost seconds of
    compilation on a loop body, not on a call (4.3 s -> 0.8 s measured)."""
    n = time.shape[0]
    res = np.empty((_CHUNKS, 4), dtype=np.int64)
    for c in prange(_CHUNKS):
        _scan_chunk(user, time, nat, max(1, c * n // _CHUNKS), max(1, (c + 1) * n // _CHUNKS), res[c])
    return res


def _scan_user_time(user: np.ndarray, time: np.ndarray, nat) -> tuple:
    """One parallel pass over the user and time columns.

    Returns (min, max, number of NaT) of the int64 ticks, NaT excluded, and whether the
    rows come grouped by user in non-decreasing user order with non-decreasing times
    inside each user (then the engines need no sort).
    """
    res = _scan_chunks(user, time, nat)
    lo, hi, n_nat = res[:, 0].min(), res[:, 1].max(), int(res[:, 2].sum())
    if len(time):  # row 0, which the chunks (from row 1) leave out
        x = int(time[0])
        if x == nat:
            n_nat += 1
        else:
            lo = min(lo, x)
        hi = max(hi, x)
    return lo, hi, n_nat, not res[:, 3].any()


def _time_array(s: pd.Series, name: str, time_unit: Optional[str]) -> tuple[np.ndarray, int]:
    """(int64 ticks, ns per tick); nulls are INT64_MIN."""
    dt = s.dtype
    if isinstance(dt, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        dt = s.dtype
    if pd.api.types.is_datetime64_dtype(dt):
        v = s.to_numpy()
        unit = np.datetime_data(v.dtype)[0]
        if unit not in _UNIT_NS:
            v, unit = v.astype("datetime64[ns]"), "ns"
        return v.view(np.int64), _UNIT_NS[unit]
    if pd.api.types.is_integer_dtype(dt) and not pd.api.types.is_bool_dtype(dt):
        if time_unit is None:
            raise DataError(
                f"column {name!r} (time) holds integers: set time_unit (s, ms, us, ns or D) in the config"
            )
        v = s.to_numpy().astype(np.int64, copy=False) if not _may_hold_nulls(s) else s.to_numpy(dtype=np.int64, na_value=_NAT)
        return v, _UNIT_NS[time_unit]
    if pd.api.types.is_float_dtype(dt) and time_unit is not None:
        # integers read as floats because a cell is empty (CSV, pandas): NaN is a null time
        f = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = ~np.isnan(f)
        bad = ok & ((f != np.floor(f)) | (np.abs(f) >= 2.0**63))
        if bad.any():
            raise DataError(f"column {name!r} (time) holds numbers that are not integers (first rows: "
                            f"{_first_rows(bad)}); with time_unit, times are integer ticks")
        v = np.where(ok, f, 0.0).astype(np.int64)
        v[~ok] = _NAT
        return v, _UNIT_NS[time_unit]
    if pd.api.types.is_string_dtype(dt) or dt == object:
        try:
            parsed = pd.to_datetime(s, utc=True, format="ISO8601")
        except (ValueError, TypeError, OverflowError):
            raise _bad_values(s, name, "time", "ISO-8601 times (2024-01-31 or 2024-01-31T12:00:00+01:00)",
                              lambda x: pd.to_datetime(x, utc=True, format="ISO8601", errors="coerce")) from None
        return parsed.dt.tz_localize(None).to_numpy().astype("datetime64[ns]").view(np.int64), 1
    raise DataError(
        f"column {name!r} (time) has dtype {dt}; expected datetime64, ISO-8601 strings or integers with time_unit"
    )


#: The times every engine computes with: 1678-01-01 to 2261-12-31 UTC (inside
#: datetime64[ns], whose ends are 1677-09-21 and 2262-04-11, with room for time-zone
#: offsets and calendar arithmetic).
TIME_MIN_NS = int(np.datetime64("1678-01-01", "ns").astype(np.int64))
TIME_MAX_NS = int(np.datetime64("2262-01-01", "ns").astype(np.int64)) - 1


def check_time_span(lo_ns, hi_ns, column: str) -> None:
    """DataError unless the first and last time (UTC ns; None: beyond int64 ns) lie in
    1678-01-01 .. 2261-12-31, naming the column and the offending time."""
    for edge, t, bad in (("first", lo_ns, lo_ns is None or lo_ns < TIME_MIN_NS),
                         ("last", hi_ns, hi_ns is None or hi_ns > TIME_MAX_NS)):
        if bad:
            when = "" if t is None else f" {np.datetime64(t, 'ns')}"
            raise DataError(f"column {column!r} (time): the {edge} time{when} lies outside 1678-01-01 .. 2261-12-31, "
                            "the range the engines compute in (int64 nanoseconds)")


def _check_ticks(user: np.ndarray, v: np.ndarray, factor: int, name: str) -> tuple[int, bool, Optional[tuple]]:
    """Check that ticks * factor fits int64 ns; (number of nulls, grouped and sorted,
    (min, max) of the non-null ticks or None)."""
    if len(v) == 0:
        return 0, True, None
    lo, hi, n_nat, ordered = _scan_user_time(_readonly(user), _readonly(v), _NAT)
    bounds = None
    if n_nat < len(v):
        lim = _INT64_MAX // factor
        check_time_span(int(lo) * factor if lo >= -lim else None, int(hi) * factor if hi <= lim else None, name)
        bounds = (int(lo), int(hi))
    return int(n_nat), bool(ordered) and n_nat == 0, bounds


def _readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view: one compiled signature whatever pandas handed over."""
    v = a.view()
    v.flags.writeable = False
    return v


def _bad_values(s: pd.Series, name: str, role: str, expected: str, parse) -> DataError:
    """The error for a string column some of whose values do not parse: names the first
    bad rows (0-based positions in the input; a CSV file's line is the row + 2) and values."""
    parsed = parse(s)
    bad = np.asarray(parsed.isna().to_numpy(), dtype=bool) & ~_null_mask(s)
    rows = np.flatnonzero(bad)[:3]
    if not rows.size:  # every value parses one by one: the column as a whole is the problem
        return DataError(f"column {name!r} ({role}) holds strings; expected {expected}")
    shown = ", ".join(f"row {int(r)}: {_short_value(s.iloc[int(r)])}" for r in rows)
    return DataError(f"column {name!r} ({role}) has {int(bad.sum())} values that are not {expected} "
                     f"(first: {shown}; rows are 0-based, a CSV file's line is row + 2)")


def _all_numbers(s: pd.Series) -> bool:
    """True when every non-null value of an object column is a number (``Decimal``,
    ``int``, ``float``; not ``bool``, not a string)."""
    import numbers

    values = s.dropna()
    return all(isinstance(v, numbers.Number) and not isinstance(v, bool) for v in values)


def _short_value(x) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _amount_array(s: pd.Series, name: str) -> np.ndarray:
    dt = s.dtype
    if dt == object and _all_numbers(s):  # decimals (Parquet decimal128 read as Decimal objects), ints
        return pd.to_numeric(s).to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_string_dtype(dt) or dt == object:
        raise _bad_values(s, name, "amount", "numbers", lambda x: pd.to_numeric(x, errors="coerce"))
    if pd.api.types.is_bool_dtype(dt) or not pd.api.types.is_numeric_dtype(dt):
        raise DataError(f"column {name!r} (amount) has dtype {dt}; expected integers or floats")
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _mcc_array(s: pd.Series, name: str) -> np.ndarray:
    dt = s.dtype
    if pd.api.types.is_bool_dtype(dt) or not pd.api.types.is_numeric_dtype(dt):
        raise DataError(f"column {name!r} (mcc) has dtype {dt}; expected integer MCC codes")
    if pd.api.types.is_integer_dtype(dt) and not (_may_hold_nulls(s) and s.hasnans):
        v = s.to_numpy()
    else:
        f = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(f)
        if not np.array_equal(f[ok], np.round(f[ok])):
            raise DataError(f"column {name!r} (mcc) holds non-integer numbers; expected integer MCC codes")
        v = np.where(ok, f, -1)
    if v.dtype == np.int32:
        return v  # values outside 0..9999 match no filter in the kernels: no pass needed
    return np.where((v < 0) | (v > 9999), -1, v).astype(np.int32)


def extract(frame: pd.DataFrame, config: Config) -> Transactions:
    """Check a frame's role columns and return them as engine arrays.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per transaction, with the columns named in ``config.columns``.
    config : Config
        Gives the column names, ``time_unit`` (integer times) and ``on_invalid``.

    Returns
    -------
    Transactions

    Raises
    ------
    DataError
        A role column is missing or has a wrong dtype; the table is empty; a null user
        or time with ``on_invalid: error`` (naming the column, the count and the first
        rows); a target column name already used by an input column.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame of transactions, got {type(frame).__name__}")
    cols = config.columns
    missing = [c for c in (cols.user, cols.time, cols.amount, cols.mcc) if c not in frame.columns]
    if missing:
        from .formats import missing_column  # formats imports this module

        role = {cols.user: "user", cols.time: "time", cols.amount: "amount", cols.mcc: "mcc"}[missing[0]]
        raise missing_column(missing[0], frame.columns, role)
    clash = [c for c in config.output_columns if c in frame.columns]
    if clash:
        raise DataError(f"target column {clash[0]!r} already exists in the input; rename the target")
    if len(frame) == 0:
        raise DataError("the input has no rows")

    user_s, time_s = frame[cols.user], frame[cols.time]
    user, user_is_code = _user_array(user_s, cols.user)
    time, time_factor = _time_array(time_s, cols.time, config.time_unit)
    n_null_time, ordered, bounds = _check_ticks(user, time, time_factor, cols.time)
    amount = _amount_array(frame[cols.amount], cols.amount)
    mcc = _mcc_array(frame[cols.mcc], cols.mcc)

    bad_user = _null_mask(user_s) if _may_hold_nulls(user_s) and user_s.hasnans else None
    bad_time = (time == _NAT) if n_null_time else None
    kept = None
    if bad_user is not None or bad_time is not None:
        if config.on_invalid == "error":
            for mask, c in ((bad_user, cols.user), (bad_time, cols.time)):
                if mask is not None:
                    raise DataError(
                        f"column {c!r} has {int(mask.sum())} null values (first rows: {_first_rows(mask)}); "
                        "set on_invalid: drop to drop them"
                    )
        bad = np.zeros(len(frame), dtype=bool)
        for mask in (bad_user, bad_time):
            if mask is not None:
                bad |= mask
        kept = np.flatnonzero(~bad)
        if kept.size == 0:
            raise DataError("every row has a null user or time; nothing is left after on_invalid: drop")
        user, time, amount, mcc = user[kept], time[kept], amount[kept], mcc[kept]
    columns = None
    if any(t.where is not None or t.value is not None for t in config.aggregated):
        from .where import read_column_inputs

        columns = read_column_inputs(frame, config)
        if kept is not None:
            columns = columns.take(kept)
    return Transactions(
        np.ascontiguousarray(user),
        np.ascontiguousarray(time),
        np.ascontiguousarray(amount),
        np.ascontiguousarray(mcc),
        kept,
        user_is_code,
        time_factor,
        ordered,
        bounds,
        columns,
    )


def _may_hold_nulls(s: pd.Series) -> bool:
    """False for plain NumPy integer columns, which cannot hold nulls (saves a pass)."""
    return not (isinstance(s.dtype, np.dtype) and s.dtype.kind in "iu")
