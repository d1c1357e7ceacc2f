"""Input adapters: real transaction schemas mapped onto the four roles of SPEC.md 1.

==============  ===================================================================
format          mapping
==============  ===================================================================
``generic``     the columns named in ``config.columns`` (default)
``sdsj2016``    Sberbank SDSJ 2016: ``customer_id`` -> user; ``tr_datetime``
                ``"<day> HH:MM:SS"`` -> time (seconds may be 60, so parsed by
                arithmetic: ``day*86400 + h*3600 + m*60 + s`` seconds, day 0 taken as
                1970-01-01, since the real start date was hidden); ``amount``;
                ``mcc_code`` -> mcc
``tabformer``   IBM TabFormer: ``User`` -> user; ``Year``/``Month``/``Day``/``Time``
                (``"HH:MM"``) -> time (naive = UTC); ``Amount`` ``"$12.34"`` -> amount;
                ``MCC`` -> mcc
==============  ===================================================================

The output of :func:`gpu_targets.generate` keeps the original columns: the adapters
build the role columns on the side.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .spec import ADDED_COLUMNS, Columns, Config
from .transactions import DataError

__all__ = ["to_roles", "source_columns", "guess_format", "missing_column", "user_column", "FORMATS"]

FORMATS = ("generic", "sdsj2016", "tabformer")


#: The columns that identify each adapter's schema (a generic config on such an input
#: is told which ``--format`` fits).
_FORMAT_COLUMNS = {
    "sdsj2016": ("customer_id", "tr_datetime", "mcc_code", "amount"),
    "tabformer": ("User", "Year", "Month", "Day", "Time", "Amount", "MCC"),
}


def user_column(config: Config):
    """The input column(s) naming the user: the adapter's own (``customer_id`` for
    ``sdsj2016``, ``User`` for ``tabformer``), else ``config.columns.user`` (a list for a
    composite user)."""
    return _FORMAT_COLUMNS[config.format][0] if config.format in _FORMAT_COLUMNS else config.columns.user


def guess_format(columns) -> "str | None":
    """The adapter (``sdsj2016``, ``tabformer``) whose columns ``columns`` all hold, if any."""
    have = set(map(str, columns))
    return next((fmt for fmt, need in _FORMAT_COLUMNS.items() if have.issuperset(need)), None)


def missing_column(name: str, columns, role: str = "", fmt: str = "generic") -> DataError:
    """The error for a missing column: names it, lists the input's first columns and,
    when they match a known format the config does not use, says ``--format <it>``."""
    columns = list(map(str, columns))
    have = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
    what = f" ({role})" if role else (f", which format {fmt} needs" if fmt != "generic" else "")
    text = f"input has no column {name!r}{what}; its columns: {have}"
    guess = guess_format(columns)
    if guess is not None and guess != fmt:
        text += f". These are the {guess} columns: use --format {guess} (format: {guess} in the config)"
    return DataError(text)


def _require(frame: pd.DataFrame, names: list[str], fmt: str) -> None:
    for c in names:
        if c not in frame.columns:
            raise missing_column(c, frame.columns, fmt=fmt)


#: The column the ``sdsj2016`` adapter adds to the output: ``tr_datetime`` parsed, as
#: ``datetime64[ms]`` (what Parquet keeps), from ``format_options.start_date`` (default
#: 1970-01-01).
SDSJ_TIME = ADDED_COLUMNS["sdsj2016"][0]  # "tr_timestamp"


def added_fields(config: Config) -> list:
    """``(name, Arrow type)`` of the columns an adapter adds to the output, after the
    input's columns and before the targets (``sdsj2016``: :data:`SDSJ_TIME`)."""
    import pyarrow as pa

    return [(SDSJ_TIME, pa.timestamp("ms"))] if config.format == "sdsj2016" else []


def added_columns(roles: pd.DataFrame, config: Config) -> dict:
    """The added columns' values (one per row of ``roles``, the adapter's role frame)."""
    if config.format != "sdsj2016":
        return {}
    seconds = roles["tr_datetime"]
    if seconds.hasnans:
        return {SDSJ_TIME: pd.to_datetime(seconds, unit="s").astype("datetime64[ms]")}
    ms = seconds.to_numpy(np.int64).astype("datetime64[s]").astype("datetime64[ms]")
    return {SDSJ_TIME: pd.Series(ms, index=roles.index)}


def _sdsj2016(frame: pd.DataFrame, start_date=None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc

    _require(frame, ["customer_id", "tr_datetime", "mcc_code", "amount"], "sdsj2016")
    raw = pa.array(frame["tr_datetime"].astype("string"), type=pa.string())
    # hours 0..23, minutes 0..59, seconds 0..60 (the data has a leap-second-like :60)
    parts = pc.extract_regex(
        raw, r"^\s*(?P<d>[0-9]+) (?P<h>[01]?[0-9]|2[0-3]):(?P<m>[0-5][0-9]):(?P<s>[0-5][0-9]|60)\s*$")
    bad = pc.and_(pc.is_null(parts), pc.is_valid(raw)).to_numpy(zero_copy_only=False)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise DataError(f"column 'tr_datetime' is not '<day> HH:MM:SS' (hours 0-23, minutes 0-59, seconds 0-60) "
                        f"in {int(bad.sum())} rows (first rows: {rows})")
    d, h, m, sec = (pc.cast(pc.struct_field(parts, k), pa.int64()) for k in "dhms")
    seconds = pc.add(pc.add(pc.multiply(d, 86400), pc.multiply(h, 3600)), pc.add(pc.multiply(m, 60), sec))
    if start_date is not None:  # day 0 is that date (the real one was hidden)
        import datetime as dt

        seconds = pc.add(seconds, (start_date - dt.date(1970, 1, 1)).days * 86400)
    if seconds.null_count:
        time = pd.Series(seconds.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), index=frame.index)
    else:
        time = pd.Series(seconds.to_numpy(), index=frame.index)
    return pd.DataFrame(
        {"customer_id": frame["customer_id"], "tr_datetime": time, "amount": frame["amount"], "mcc_code": frame["mcc_code"]}
    )


def _tabformer(frame: pd.DataFrame) -> pd.DataFrame:
    _require(frame, ["User", "Year", "Month", "Day", "Time", "Amount", "MCC"], "tabformer")
    try:
        date = pd.to_datetime(dict(year=frame["Year"], month=frame["Month"], day=frame["Day"]))
        clock = pd.to_timedelta(frame["Time"].astype("string") + ":00")
    except (ValueError, TypeError) as err:
        raise DataError(f"columns Year/Month/Day/Time do not form a date and time: {err}") from None
    amount_text = frame["Amount"].astype("string").str.replace("$", "", regex=False).str.strip()
    amount = pd.to_numeric(amount_text, errors="coerce")
    bad = amount.isna() & frame["Amount"].notna()
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())[:5].tolist()
        raise DataError(f"column 'Amount' is not like '$12.34' in {int(bad.sum())} rows (first rows: {rows})")
    return pd.DataFrame({"User": frame["User"], "Time": date + clock, "Amount": amount, "MCC": frame["MCC"]})


def source_columns(config: Config) -> list[str]:
    """The input columns the role columns are built from (the rest are only carried)."""
    if config.format in _FORMAT_COLUMNS:
        return list(_FORMAT_COLUMNS[config.format])
    c = config.columns
    return [*c.user_columns, c.time, c.amount, c.mcc]


#: The column holding a composite user's code while the engines run (never written out).
COMPOSITE_USER = "__gpu_targets_user__"


def composite_user_codes(frame: pd.DataFrame, names: list[str]) -> pd.Series:
    """One int64 code per distinct tuple of ``frame[names]``, in the tuples' sort order;
    ``<NA>`` (nullable Int64) where any part is null (a null user, SPEC 1)."""
    codes = frame.groupby(names, sort=True, dropna=True, observed=True).ngroup()
    if codes.isna().any():
        return codes.astype("Int64")
    return codes.astype(np.int64)


def _with_composite_user(frame: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, Config]:
    """The role columns with the user tuple as one code column, and a config naming it."""
    cols = config.columns
    for c in cols.user_columns:
        if c not in frame.columns:
            raise missing_column(c, frame.columns, "user")
    clash = [c for c in config.output_columns if c in frame.columns]
    if clash:
        raise DataError(f"target column {clash[0]!r} already exists in the input; rename the target")
    if config.on_invalid == "error":  # name the user's own column, not the code column
        for c in cols.user_columns:
            null = np.asarray(frame[c].isna().to_numpy(), dtype=bool)
            if null.any():
                rows = ", ".join(str(int(r)) for r in np.flatnonzero(null)[:5])
                raise DataError(f"column {c!r} (part of the user) has {int(null.sum())} null values (first rows: "
                                f"{rows}); set on_invalid: drop to drop them")
    roles = pd.DataFrame({c: frame[c] for c in (cols.time, cols.amount, cols.mcc) if c in frame.columns},
                         index=frame.index)
    roles[COMPOSITE_USER] = composite_user_codes(frame, cols.user_columns)
    _carry_target_columns(frame, roles, config)
    return roles, config.model_copy(update={"columns": cols.model_copy(update={"user": COMPOSITE_USER})})


def to_roles(frame: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, Config]:
    """The frame holding the role columns, and the config that names them.

    Parameters
    ----------
    frame : pandas.DataFrame
        The transactions as read.
    config : Config
        ``config.format`` chooses the adapter.

    Returns
    -------
    (pandas.DataFrame, Config)
        For ``generic`` the input itself and ``config`` (with a composite user, a frame of
        the time, amount and mcc columns plus one code per user tuple, and a config
        naming it); otherwise a new frame with the
        four role columns under the format's own column names (the time column already
        converted) and ``config`` naming them (``time_unit: s`` for ``sdsj2016``).

    Raises
    ------
    DataError
        A column the format needs is missing or malformed; a target name clashes with
        an input column.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame of transactions, got {type(frame).__name__}")
    if config.format == "generic":
        if isinstance(config.columns.user, list):
            return _with_composite_user(frame, config)
        return frame, config
    clash = [c for c in config.output_columns if c in frame.columns]
    if clash:
        raise DataError(f"target column {clash[0]!r} already exists in the input; rename the target")
    added = [name for name, _ in added_fields(config) if name in frame.columns]
    if added:
        raise DataError(f"the input already has a column {added[0]!r}, which format {config.format} adds "
                        "(is it an earlier output?)")
    if len(frame) == 0:
        raise DataError("the input has no rows")
    # the role frame keeps the original column names, so errors name what the user has
    if config.format == "sdsj2016":
        columns = Columns(user="customer_id", time="tr_datetime", amount="amount", mcc="mcc_code")
        roles = _sdsj2016(frame, config.format_options.start_date)
        _carry_target_columns(frame, roles, config)
        return roles, config.model_copy(update={"columns": columns, "time_unit": "s"})
    columns = Columns(user="User", time="Time", amount="Amount", mcc="MCC")
    roles = _tabformer(frame)
    _carry_target_columns(frame, roles, config)
    return roles, config.model_copy(update={"columns": columns})


def target_columns(config: Config) -> list[str]:
    """[v2] The input columns the targets' ``where:`` and ``value:`` read, in config order."""
    names: dict = {}
    for t in config.aggregated:
        for w in t.where or ():
            names[w.column] = None
        if t.value is not None:
            names[t.value] = None
    return list(names)


def _carry_target_columns(frame: pd.DataFrame, roles: pd.DataFrame, config: Config) -> None:
    """Put the input columns ``where:``/``value:`` read into the role frame (as they are),
    unless the adapter already made a column of that name (a role column)."""
    for c in target_columns(config):
        if c in frame.columns and c not in roles.columns:
            roles[c] = frame[c].array  # positional, dtype kept (nullable integers, strings)
