"""The reference engine: SPEC.md written as plainly as possible, to be read, not to be fast.

It is the oracle every other engine is tested against, and the "Python + NumPy" baseline
of the benchmarks. For every transaction i and every target it builds the window W(i)
as a boolean mask straight from the table of SPEC.md 2.1, filters V(i) as in 2.2 and
aggregates with exact summation (:func:`math.fsum`). Cost: O(n^2) per user and target.

Calendar periods are taken from pandas' datetime fields (year, month, ...) of the local
wall-clock time, independently of :mod:`gpu_targets.calendar`'s integer arithmetic, so
the two implementations check each other.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..calendar import local_wall_clock_ns
from ..spec import Config, Target
from ..transactions import Transactions
from ..where import filter_key, require_column_inputs, value_key
from .derive import apply_derived

__all__ = ["compute"]


def _period_of(local_ns: np.ndarray, period: str) -> np.ndarray:
    """Period indices from pandas datetime fields (SPEC.md 2.1)."""
    t = pd.Series(pd.to_datetime(local_ns, unit="ns"))
    year, month = t.dt.year.to_numpy(np.int64), t.dt.month.to_numpy(np.int64)
    if period == "hour":
        return np.floor_divide(local_ns, 3_600_000_000_000)
    day = np.floor_divide(local_ns, 86_400_000_000_000)
    if period == "day":
        return day
    if period == "week":
        # day 0 (1970-01-01) is a Thursday; Monday-based weeks
        monday = day - t.dt.day_of_week.to_numpy(np.int64)
        return np.floor_divide(monday + 3, 7)
    if period == "month":
        return (year - 1970) * 12 + (month - 1)
    if period == "quarter":
        return (year - 1970) * 4 + (month - 1) // 3
    return year - 1970


def _window(target: Target, i: int, t: np.ndarray, pos: np.ndarray, periods: dict) -> np.ndarray:
    """Boolean mask of W(i) over one user's rows (SPEC.md 2.1)."""
    w = target.window
    if w.kind == "period":
        p, n = periods[w.period], w.n_periods
        if w.mode == "expanding":
            return (p > p[i] - n) & (p <= p[i]) & (pos <= pos[i])
        if w.mode == "full":
            return (p > p[i] - n) & (p <= p[i])
        if w.mode == "next":
            return (p > p[i]) & (p <= p[i] + n)
        return (p >= p[i] - n) & (p < p[i])  # previous
    if w.kind == "duration":
        d, g = w.duration_ns, w.offset_ns
        if w.mode == "trailing":
            inside = (t > t[i] - g - d) & (t <= t[i] - g)
            return inside & (pos <= pos[i]) if g == 0 else inside
        return (t > t[i] + g) & (t <= t[i] + g + d)  # forward
    n, k = w.rows, w.offset_rows
    if w.mode == "trailing":
        return (pos > pos[i] - k - n) & (pos <= pos[i] - k)
    return (pos > pos[i] + k) & (pos <= pos[i] + k + n)  # forward


def _passes_filters(target: Target, amount: np.ndarray, mcc: np.ndarray, columns) -> np.ndarray:
    """Rows that pass the target's mcc, sign and where filters (SPEC.md 2.2, 2.3)."""
    ok = np.ones(len(amount), dtype=bool)
    if target.mcc is not None:
        ok &= np.isin(mcc, np.asarray(target.mcc)) & (mcc >= 0)
    if target.sign == "negative":
        ok &= amount < 0
    elif target.sign == "positive":
        ok &= amount > 0
    if target.where is not None:
        ok &= columns.masks[filter_key(target)]
    return ok


def _values(target: Target, tx: Transactions) -> np.ndarray:
    """x_j of every row (SPEC.md 2.2): the value column or the amount, |x| with ``abs``
    (nunique of a value column: the codes of the absolute values, made on reading)."""
    if target.value is None:
        x = tx.amount
    else:
        x = tx.columns.values[value_key(target)]
        if target.agg == "nunique":
            return x
    return np.abs(x) if target.abs else x


def _exact_sum(values: np.ndarray) -> float:
    """The float64 rounding of the exact sum: IEEE for infinities (inf + -inf is NaN),
    +-inf when the exact sum is beyond the float64 range (``math.fsum`` would raise)."""
    pos, neg = bool(np.isposinf(values).any()), bool(np.isneginf(values).any())
    if pos or neg:
        return math.nan if pos and neg else (math.inf if pos else -math.inf)
    try:
        return math.fsum(values)
    except OverflowError:  # exact sum = 4 * fsum(x / 4) (scaling by 1/4 is exact); +-inf beyond float64
        return math.fsum(values * 0.25) * 4.0


def _exact_mean(values: np.ndarray) -> float:
    total = _exact_sum(values)
    if math.isinf(total) and np.isfinite(values).all():  # the sum overflows, the mean need not
        return math.fsum(values * 0.25) / len(values) * 4.0
    return total / len(values)


def _sample_std(values: np.ndarray) -> float:
    """Two-pass sample std (ddof = 1) of values scaled by their largest magnitude (no
    overflow of the squares); NaN with an infinity (IEEE)."""
    scale = float(np.max(np.abs(values)))
    if not math.isfinite(scale):
        return math.nan
    if scale == 0.0:
        return 0.0
    v = values / scale
    mean = math.fsum(v) / len(v)
    return scale * math.sqrt(math.fsum((v - mean) ** 2) / (len(v) - 1))


def _quantile(y: np.ndarray, q: float, median: bool) -> float:
    """SPEC.md 2.2 over sorted ``y``: a median is the middle value, or the mean of the two
    middle ones; quantile q is y_lo + (h - lo)(y_lo+1 - y_lo) with h = (n - 1) q, lo =
    floor(h) (numpy's default, DuckDB's ``quantile_cont``), evaluated as written."""
    h = (len(y) - 1) * q
    lo = int(math.floor(h))
    if h == lo:
        return float(y[lo])
    a, b = float(y[lo]), float(y[lo + 1])
    if median:
        m = (a + b) / 2
        return m if math.isfinite(m) or not (math.isfinite(a) and math.isfinite(b)) else a / 2 + b / 2
    return a + (h - lo) * (b - a)


def _aggregate(target: Target, values: np.ndarray, times: np.ndarray, t_i: int, own: np.ndarray) -> list[float]:
    """The aggregation table of SPEC.md 2.2 over V(i) (``values`` in pos order, their
    times ``times`` in ns; ``own``: which of them is row i itself), in float64."""
    n, fill = len(values), target.fill
    agg = target.agg
    if agg == "count":
        return [float(n)]
    if agg == "nunique":
        return [float(len(set((values + 0.0).tolist())))]  # + 0.0: -0.0 is 0.0
    if agg == "time_to_next":
        return [(times[0] - t_i) / 1e9] if n else [fill]
    if agg == "time_since_last":
        earlier = times[~own]
        return [(t_i - earlier[-1]) / 1e9] if len(earlier) else [fill]
    if agg == "sum":
        return [_exact_sum(values)]
    if agg == "any":
        return [1.0 if n else 0.0]
    if agg == "topk":
        top = sorted(values.tolist(), reverse=True)[: target.k]
        return top + [fill] * (target.k - len(top))
    if n == 0:
        return [fill]
    if agg == "mean":
        return [_exact_mean(values)]
    if agg == "first":
        return [float(values[0])]
    if agg == "last":
        return [float(values[-1])]
    if agg in ("median", "quantile"):
        return [_quantile(np.sort(values), 0.5 if agg == "median" else target.q, agg == "median")]
    if agg == "min":
        return [float(values.min())]
    if agg == "max":
        return [float(values.max())]
    # std, ddof = 1, two-pass
    if n < 2:
        return [fill]
    return [_sample_std(values)]


def compute(tx: Transactions, config: Config, progress=None, *, out: np.ndarray = None) -> np.ndarray:
    """All targets of ``config`` for every transaction, by the definition.

    Parameters
    ----------
    tx : Transactions
        Role arrays in input row order.
    config : Config
    progress : callable(int) or None
        Called with the number of rows finished after each user.
    out : ndarray of float32, shape (n_target_columns, n), optional
        Where to write (any strides).

    Returns
    -------
    ndarray of float32, shape (n_target_columns, n)
        Row ``c`` is output column ``config.output_columns[c]``, in input row order
        (``out`` when given).

    Raises
    ------
    ValueError
        ``out`` of another dtype or shape.
    """
    n = len(tx)
    shape = (len(config.output_columns), n)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out has dtype {out.dtype} and shape {out.shape}; expected float32 {shape}")
    time_ns = tx.time_ns
    local = local_wall_clock_ns(time_ns, config.timezone)
    targets = config.aggregated
    require_column_inputs(tx, config)
    used_periods = {t.window.period for t in targets if t.window.period is not None}
    all_periods = {p: _period_of(local, p) for p in used_periods}
    filters = [_passes_filters(t, tx.amount, tx.mcc, tx.columns) for t in targets]
    values = [_values(t, tx) for t in targets]
    index = {c: j for j, c in enumerate(config.output_columns)}

    for rows in pd.Series(np.arange(n)).groupby(tx.user, sort=False).indices.values():
        rows = np.asarray(rows)  # input positions of one user's transactions
        rows = rows[np.lexsort((rows, time_ns[rows]))]  # ordered by (time, input row)
        t = time_ns[rows]
        pos = np.arange(len(rows))  # pos(i): rank in that order (SPEC.md 1)
        periods = {p: v[rows] for p, v in all_periods.items()}
        for target, ok, v in zip(targets, filters, values):
            col = index[target.output_columns[0]]
            width = len(target.output_columns)
            v_u = v[rows]
            in_v = ok[rows] & ~np.isnan(v_u)  # V: passes the filters, value not null
            for i in range(len(rows)):
                w = _window(target, i, t, pos, periods) & in_v
                with np.errstate(over="ignore"):  # beyond float32's range: +-inf, as the output dtype says
                    out[col : col + width, rows[i]] = _aggregate(target, v_u[w], t[w], t[i], pos[w] == i)
        if progress is not None:
            progress(len(rows))
    apply_derived(config, out)
    return out
