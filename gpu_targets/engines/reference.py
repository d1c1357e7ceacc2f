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
    if w.period is not None:
        p = periods[w.period]
        if w.mode == "expanding":
            return (p == p[i]) & (pos <= pos[i])
        if w.mode == "full":
            return p == p[i]
        return p == p[i] + 1  # next
    d = w.duration_ns
    if w.mode == "trailing":
        return (t > t[i] - d) & (t <= t[i]) & (pos <= pos[i])
    return (t > t[i]) & (t <= t[i] + d)  # forward


def _passes_filters(target: Target, amount: np.ndarray, mcc: np.ndarray) -> np.ndarray:
    """Rows whose amount is not null and passes the target's mcc and sign filters (2.2)."""
    ok = ~np.isnan(amount)
    if target.mcc is not None:
        ok &= np.isin(mcc, np.asarray(target.mcc)) & (mcc >= 0)
    if target.sign == "negative":
        ok &= amount < 0
    elif target.sign == "positive":
        ok &= amount > 0
    return ok


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


def _aggregate(target: Target, values: np.ndarray) -> list[float]:
    """The aggregation table of SPEC.md 2.2 over V(i), in float64."""
    n, fill = len(values), target.fill
    agg = target.agg
    if agg == "count":
        return [float(n)]
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
    used_periods = {t.window.period for t in config.targets if t.window.period is not None}
    all_periods = {p: _period_of(local, p) for p in used_periods}
    filters = [_passes_filters(t, tx.amount, tx.mcc) for t in config.targets]
    values = [np.abs(tx.amount) if t.abs else tx.amount for t in config.targets]

    for rows in pd.Series(np.arange(n)).groupby(tx.user, sort=False).indices.values():
        rows = np.asarray(rows)  # input positions of one user's transactions
        rows = rows[np.lexsort((rows, time_ns[rows]))]  # ordered by (time, input row)
        t = time_ns[rows]
        pos = np.arange(len(rows))  # pos(i): rank in that order (SPEC.md 1)
        periods = {p: v[rows] for p, v in all_periods.items()}
        col = 0
        for target, ok, v in zip(config.targets, filters, values):
            width = len(target.output_columns)
            ok_u, v_u = ok[rows], v[rows]
            for i in range(len(rows)):
                w = _window(target, i, t, pos, periods)
                with np.errstate(over="ignore"):  # beyond float32's range: +-inf, as the output dtype says
                    out[col : col + width, rows[i]] = _aggregate(target, v_u[w & ok_u])
            col += width
        if progress is not None:
            progress(len(rows))
    return out
