"""Filters on any column (``where:``) and the aggregated column (``value:``), SPEC v2.

Both are read from the input once, before any engine runs, into plain arrays the
engines share: per distinct ``where:`` list a boolean mask (``True``: the row passes
every condition; a null fails every condition, SQL's three-valued logic), per distinct
value column a float64 array (NaN: null). A value column of strings (or any other
non-numeric type) is factorised (pandas' hash factorisation: exact for integers above
2^53, ``-0.0`` equal to ``0.0``) and may feed ``count``, ``any`` and ``nunique`` only;
``nunique`` always takes the codes of the (absolute, with ``abs: true``) values.

Every problem names the target and the column and raises
:class:`~gpu_targets.transactions.DataError` (exit code 2 in the CLI), before any kernel
runs.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from .spec import STRING_VALUE_AGGREGATIONS, Config, Target, Where

__all__ = ["ColumnInputs", "column_arrays", "filter_key", "value_key", "read_column_inputs", "require_column_inputs"]


def filter_key(target: Target) -> Optional[tuple]:
    """The identity of the target's ``where:`` list (None without one)."""
    return None if target.where is None else tuple(w.key for w in target.where)


def value_key(target: Target) -> Optional[tuple]:
    """The identity of the array a target aggregates: None for the amount role column,
    else ``(column, "codes", abs)`` for ``nunique`` (distinct values of the possibly
    absolute values) or ``(column, "values", False)``."""
    if target.value is None:
        return None
    if target.agg == "nunique":
        return (target.value, "codes", bool(target.abs))
    return (target.value, "values", False)


class ColumnInputs:
    """What the targets read besides the role columns, in the rows the engines see.

    Attributes
    ----------
    masks : dict
        :func:`filter_key` -> bool [n]: rows passing every ``where:`` condition.
    values : dict
        :func:`value_key` -> float64 [n]: the value column (NaN: null), or its codes.
    """

    def __init__(self, masks: dict, values: dict):
        self.masks, self.values = masks, values

    def take(self, rows) -> "ColumnInputs":
        """The same for a subset of rows (an index array, or a slice: views)."""
        return ColumnInputs({k: v[rows] for k, v in self.masks.items()}, {k: v[rows] for k, v in self.values.items()})

    @staticmethod
    def concat(parts: list) -> "ColumnInputs":
        """The rows of several (the users of a batch), one after the other."""
        first = parts[0]
        return ColumnInputs({k: np.concatenate([p.masks[k] for p in parts]) for k in first.masks},
                            {k: np.concatenate([p.values[k] for p in parts]) for k in first.values})


def _column(frame: pd.DataFrame, name: str, target: Target, key: str):
    from .transactions import DataError

    if name not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:12])) + (", ..." if len(frame.columns) > 12 else "")
        raise DataError(f"target {target.name!r}: {key} column {name!r} is not in the input (columns: {shown})")
    return frame[name]


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)


def _as_float(s: pd.Series) -> np.ndarray:
    """float64 values, NaN for nulls (booleans as 0/1)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype("Float64") if s.hasnans else s.astype(np.float64)
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


#: Rows per chunk of the NumPy comparisons: a chunk's temporaries stay in cache (whole
#: columns of 8 M rows allocated and faulted in 8 MB per comparison).
_CHUNK = 1 << 16


def where_mask(frame: pd.DataFrame, entries: list[Where], target: Target) -> np.ndarray:
    """Rows passing every condition of ``entries`` (bool [n]); a null fails every one.

    Raises
    ------
    DataError
        A column is missing, or an order operator (gt, ge, lt, le) meets a non-numeric column.
    """
    from .transactions import DataError

    n = len(frame)
    tests = []  # functions of a slice of rows -> bool array of those rows (True: passes)
    for w in entries:
        s = _column(frame, w.column, target, "where")
        plain = _plain_numbers(s)
        if plain is None:
            tests.append(_whole(s.notna().to_numpy(dtype=bool)))
        elif plain.dtype.kind == "f":
            tests.append(lambda rows, x=plain: ~np.isnan(x[rows]))  # a NumPy integer column has no nulls
        for op, v in w.conditions:
            if op in ("gt", "ge", "lt", "le"):
                if not _is_numeric(s):
                    raise DataError(f"target {target.name!r}: where {op} compares numbers, and column "
                                    f"{w.column!r} holds {s.dtype}")
                compare = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal}[op]
                if plain is not None:  # NaN compares False
                    tests.append(lambda rows, x=plain, f=compare, v=v: f(x[rows], v))
                else:
                    x = _as_float(s) if pd.api.types.is_bool_dtype(s.dtype) else _float64_if_narrow(s)  # bools as 0/1
                    with np.errstate(invalid="ignore"):
                        tests.append(_whole(_truth(compare(x, v))))
            else:  # in, not_in, eq, ne: a value of another kind (a number against strings) is never equal
                values = list(v) if op in ("in", "not_in") else [v]
                negate = op in ("not_in", "ne")
                if plain is not None and _few_numbers(values):
                    tests.append(lambda rows, x=plain, vs=values, neg=negate: _equal_any(x[rows], vs, neg))
                else:
                    cond = _truth(_is_in(s, values))
                    tests.append(_whole(~cond if negate else cond))
    ok = np.ones(n, dtype=bool)
    for s0 in range(0, n, _CHUNK):
        rows = slice(s0, s0 + _CHUNK)
        part = ok[rows]
        for test in tests:
            part &= test(rows)  # nulls fail through the column's presence test
    return ok


def _whole(mask: np.ndarray):
    """A test of a mask computed for every row at once."""
    return lambda rows: mask[rows]


def _plain_numbers(s: pd.Series) -> Optional[np.ndarray]:
    """A NumPy integer or float column's values (float32/float16 widened to float64; NaN
    is its null), compared with NumPy directly; None for any other column."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
        x = s.to_numpy()
        return x.astype(np.float64) if x.dtype.kind == "f" and x.dtype.itemsize < 8 else x
    return None


def _few_numbers(values: list) -> bool:
    """A short list of numbers (not booleans): equality passes beat numpy's sorting isin."""
    return len(values) <= 8 and all(isinstance(v, (int, float, np.integer, np.floating))
                                    and not isinstance(v, (bool, np.bool_)) for v in values)


def _equal_any(x: np.ndarray, values: list, negate: bool) -> np.ndarray:
    """x equal to any of ``values`` (integers compared exactly), or to none with ``negate``."""
    ok = np.zeros(len(x), dtype=bool)
    for v in values:
        ok |= x == v
    return ~ok if negate else ok


def _float64_if_narrow(s: pd.Series) -> pd.Series:
    """A float32/float16 column (NumPy or nullable) as float64: every comparison of a
    where: condition is in float64, as SPEC 2.2 computes (a float32 0.1 is not 0.1)."""
    if pd.api.types.is_float_dtype(s.dtype) and np.dtype(getattr(s.dtype, "numpy_dtype", s.dtype)).itemsize < 8:
        return s.astype(np.float64 if isinstance(s.dtype, np.dtype) else "Float64")
    return s


def _is_in(s: pd.Series, values: list):
    """``s.isin(values)``, in float64 for narrow floats (pandas has no float16 isin).
    A plain NumPy column and a few numbers never come here: :func:`where_mask` compares
    those number by number (:func:`_equal_any`)."""
    return _float64_if_narrow(s).isin(values)


def _truth(cond) -> np.ndarray:
    """bool [n] of a comparison's result (pandas' nullable booleans: NA is False)."""
    if isinstance(cond, pd.Series):
        return cond.to_numpy(dtype=bool, na_value=False)
    return np.asarray(cond, dtype=bool)


def value_array(frame: pd.DataFrame, target: Target) -> np.ndarray:
    """The float64 [n] array ``target`` aggregates (:func:`value_key`).

    Raises
    ------
    DataError
        The column is missing, or holds non-numeric values for an aggregation other than
        count, any and nunique.
    """
    from .transactions import DataError

    kind = value_key(target)[1]
    s = _column(frame, target.value, target, "value")
    numeric = _is_numeric(s)
    if not numeric and target.agg not in STRING_VALUE_AGGREGATIONS:
        raise DataError(f"target {target.name!r}: value column {target.value!r} holds {s.dtype}; "
                        f"{target.agg} needs numbers (a non-numeric column may feed "
                        f"{', '.join(STRING_VALUE_AGGREGATIONS)})")
    if numeric and kind == "values":
        return _as_float(s)
    if pd.api.types.is_integer_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        # integers that float64 holds exactly are their own codes for nunique (no hash
        # factorisation); larger ones are factorised below
        x = _as_float(s)
        if target.abs:
            x = np.abs(x)
        if not (np.abs(x) >= 2.0**53).any():  # NaN (null) compares False
            return x
    if numeric and target.abs:
        s = pd.Series(np.abs(_as_float(s)) if not pd.api.types.is_integer_dtype(s.dtype) else s.abs())
    codes, _ = pd.factorize(s, use_na_sentinel=True)
    out = codes.astype(np.float64)
    out[codes < 0] = np.nan
    return out


def read_column_inputs(frame: pd.DataFrame, config: Config) -> ColumnInputs:
    """The masks and value arrays every ``where:`` and ``value:`` of ``config`` needs, read
    once per distinct list or column."""
    masks, values = {}, {}
    for t in config.aggregated:
        fk, vk = filter_key(t), value_key(t)
        if fk is not None and fk not in masks:
            masks[fk] = where_mask(frame, list(t.where), t)
        if vk is not None and vk not in values:
            values[vk] = value_array(frame, t)
    return ColumnInputs(masks, values)


def require_column_inputs(tx, config: Config) -> Optional[ColumnInputs]:
    """``tx.columns``, checked: an engine whose config reads ``where:``/``value:`` columns
    needs transactions made with them (:func:`gpu_targets.transactions.extract`).

    Raises
    ------
    DataError
        A target reads such columns and ``tx`` has none (naming the target).
    """
    if tx.columns is None:
        _require_none_read(config)
    return tx.columns


_EXTRACT_HINT = ("which these transactions were made without (gpu_targets.transactions.extract reads them from the "
                 "input frame)")


def _require_none_read(config: Config, hint: str = _EXTRACT_HINT) -> None:
    for t in config.aggregated:
        if t.where is not None or t.value is not None:
            from .transactions import DataError

            raise DataError(f"target {t.name!r} reads where:/value: columns, {hint}")


def column_arrays(columns: Optional[ColumnInputs], n: int, config: Config, plan,
                  hint: str = _EXTRACT_HINT) -> tuple[np.ndarray, np.ndarray]:
    """The ``where:``/``value:`` inputs of a compiled plan for ``n`` rows as two host
    arrays: float64 ``[V, n]`` values (row j: ``plan.value_keys[j]``; NaN null) and uint8
    ``[W, n]`` masks (row j: ``plan.mask_keys[j]``; 1 = the row passes). Empty when the
    plan reads none.

    Raises
    ------
    DataError
        ``columns`` is None and a target reads such columns (naming the target; ``hint``
        says where they come from).
    """
    if columns is None:
        _require_none_read(config, hint)
    values = np.empty((len(plan.value_keys), n), dtype=np.float64)
    for j, key in enumerate(plan.value_keys):
        values[j] = columns.values[key]
    masks = np.empty((len(plan.mask_keys), n), dtype=np.uint8)
    for j, key in enumerate(plan.mask_keys):
        masks[j] = columns.masks[key]
    return values, masks
