"""Time the cpu engine's order-statistic kernels (median/quantile of sliding ranges) alone.

``gpu_targets.engines.cpu.ranges`` called directly (no driver, no ``generate``) on
``--users`` synthetic users' amounts, every user in every call (a loop over one user lets
the branch predictor learn its values and flatters the branchy cursor): ns per row of a
median over the last w rows for several w, by the sorted window
(``_range_quantile_sorted``, the engine's choice up to ``SORTED_WINDOW_MAX`` values) and
by the ranks' bit set with its cursor (``_range_quantile``; wider ranges), with the
ranks' sort included and without it (given, as when another median or quantile over the
same V sorted it first), which gives the crossovers; then a median over 30 days, the ranks' radix
argsort against ``np.argsort`` (compiled with Numba), and a 2-row median over a long
history (the cursor crossing thousands of empty ranks). The kernels alternate in every
round; the minimum over ``--repeats`` rounds after a warm-up; one thread.

Usage::

    .venv/bin/python benchmarks/order_stats.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit
from numba.typed import List

from gpu_targets.datasets import synthetic_transactions
from gpu_targets.engines.cpu.ranges import (SORTED_WINDOW_MAX, _radix_argsort, _range_quantile,
                                            _range_quantile_sorted, _range_width, _v_ranks)
from gpu_targets.engines.plan import MEDIAN


@njit(cache=True)
def _medians(values, bounds, mode, ranks, dst):
    """The median of each user's ranges (``bounds``: (vlo, vhi) per user) by the sorted
    window (``mode`` 0), the bit set with the ranks computed here (1) or given (2:
    ``ranks``, as when another order statistic over the same V computed them)."""
    for u in range(len(values)):
        vv = values[u]
        vlo, vhi = bounds[u]
        m = vv.shape[0]
        idx = np.arange(m)
        if mode == 0:
            _range_quantile_sorted(vv, idx, idx, m, vlo, vhi, idx, 1e-9, MEDIAN, 0.5, 1, np.nan, dst, dst[None, :],
                                   _range_width(vlo, vhi))
            continue
        rank, sorted_vals = ranks[u]
        if mode == 1:
            _v_ranks(vv, m, rank, sorted_vals)
        _range_quantile(vv, idx, idx, m, vlo, vhi, idx, 1e-9, MEDIAN, 0.5, 1, np.nan, dst, dst[None, :], rank,
                        sorted_vals)


@njit(cache=True)
def _numpy_argsort(vv):
    return np.argsort(vv)


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _side_by_side(values, bounds, ranks, repeats: int) -> list[float]:
    """Seconds per call of each mode of :func:`_medians`, alternating, minimum of each."""
    dst = np.empty(max(len(v) for v in values))
    for mode in (1, 0, 2):
        _medians(values, bounds, mode, ranks, dst)
    best = [np.inf] * 3
    for _ in range(repeats):
        for mode in range(3):
            t0 = time.perf_counter()
            _medians(values, bounds, mode, ranks, dst)
            best[mode] = min(best[mode], time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=64, help="synthetic users")
    p.add_argument("--tx", type=int, default=4096, help="transactions per user")
    p.add_argument("--long", type=int, default=400_000, help="values of the long history (2-row median)")
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    frame = synthetic_transactions(args.users, args.tx, seed=0)
    users = [g for _, g in frame.groupby("user_id", sort=True)]
    values = List([g["amount"].to_numpy(np.float64).copy() for g in users])
    times = [g["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64) for g in users]
    rows_total = sum(len(v) for v in values)
    print(f"{args.users} synthetic users x {args.tx} amounts; ns per row, min of {args.repeats} rounds, one thread; "
          f"the engine keeps a sorted window up to {SORTED_WINDOW_MAX} values")
    print(f"  {'median over':24s} {'sorted window':>14s} {'bit set + ranks':>16s} {'bit set, ranks given':>21s}")
    ranks = List([(np.empty(len(v), dtype=np.int64), np.empty(len(v))) for v in values])
    cases = [(f"the last {w} rows", [(np.maximum(np.arange(len(v)) - (w - 1), 0), np.arange(len(v)) + 1) for v in values])
             for w in (5, 10, 20, 30, 50, 64, 100, 200)]
    cases.append(("30 days", [(np.searchsorted(t, t - 30 * 86_400 * 10**9, side="right").astype(np.int64),
                               np.arange(len(t)) + 1) for t in times]))
    for name, bounds in cases:
        widest = max(int((hi - lo).max()) for lo, hi in bounds)
        s_sorted, s_bits, s_given = (x / rows_total * 1e9 for x in _side_by_side(values, List(bounds), ranks, args.repeats))
        print(f"  {name:24s} {s_sorted:14.1f} {s_bits:16.1f} {s_given:21.1f}   (widest {widest} values)")
    vv = values[0]
    m = vv.shape[0]
    for name, fn in (("radix argsort (the ranks)", lambda: _radix_argsort(vv, m)),
                     ("np.argsort in Numba", lambda: _numpy_argsort(vv))):
        print(f"  {name:34s} {_best(fn, args.repeats) * 1e6:7.1f} us per {m} values")
    rng = np.random.default_rng(0)
    big = rng.normal(0, 1, args.long)
    big[::2] = np.abs(big[::2]) + 10  # consecutive values far apart in rank
    idx = np.arange(args.long, dtype=np.int64)
    dst = np.empty(args.long)
    big_ranks = List([(np.empty(args.long, dtype=np.int64), np.empty(args.long))])
    s = _best(lambda: _medians(List([big]), List([(np.maximum(idx - 1, 0), idx + 1)]), 1, big_ranks, dst),
              max(args.repeats // 5, 1))
    print(f"  {'2-row median by the bit set, ' + format(args.long, ',') + ' values':34s} {s:7.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
