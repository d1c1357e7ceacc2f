"""Time the cpu engine's order-statistic kernel (median/quantile of sliding ranges) alone.

``gpu_targets.engines.cpu.ranges._range_quantile`` on one synthetic user's amounts, called
directly (no driver, no ``generate``): ns per row for a median over the last 50 rows and
over 30 days, a 2-row median over a long history (the cursor crossing thousands of empty
ranks), and the ranks' radix argsort against ``np.argsort`` (compiled with Numba). Minimum
of ``--repeats`` calls after a warm-up; one thread.

Usage::

    .venv/bin/python benchmarks/order_stats.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numba import njit

from gpu_targets.datasets import synthetic_transactions
from gpu_targets.engines.cpu.ranges import _radix_argsort, _range_quantile, _v_ranks
from gpu_targets.engines.plan import MEDIAN


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _median_seconds(vv, vlo, vhi, repeats: int) -> float:
    m = vv.shape[0]
    idx = np.arange(m, dtype=np.int64)
    dst = np.empty(m, dtype=np.float64)
    rank, sorted_vals = np.empty(m, dtype=np.int64), np.empty(m)

    def call():
        _v_ranks(vv, m, rank, sorted_vals)
        _range_quantile(vv, idx, idx, m, vlo, vhi, idx, 1e-9, MEDIAN, 0.5, 1, np.nan, dst, dst[None, :], rank, sorted_vals)

    return _best(call, repeats)


@njit(cache=True)
def _numpy_argsort(vv):
    return np.argsort(vv)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tx", type=int, default=4096, help="transactions of the synthetic user")
    p.add_argument("--long", type=int, default=400_000, help="values of the long history (2-row median)")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    frame = synthetic_transactions(1, args.tx, seed=0)
    vv = frame["amount"].to_numpy(np.float64).copy()
    t = frame["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    m = vv.shape[0]
    rows = np.arange(m, dtype=np.int64)
    last50 = (np.maximum(rows - 49, 0), rows + 1)
    days30 = (np.searchsorted(t, t - 30 * 86_400 * 10**9, side="right").astype(np.int64), rows + 1)
    print(f"one synthetic user, {m} amounts; min of {args.repeats} calls, one thread")
    for name, (lo, hi) in (("median of the last 50 rows", last50), ("median over 30 days", days30)):
        s = _median_seconds(vv, lo, hi, args.repeats)
        print(f"  {name:34s} {s / m * 1e9:7.1f} ns/row  (widest window {int((hi - lo).max())} values)")
    for name, fn in (("radix argsort (the ranks)", lambda: _radix_argsort(vv, m)),
                     ("np.argsort in Numba", lambda: _numpy_argsort(vv))):
        print(f"  {name:34s} {_best(fn, args.repeats) * 1e6:7.1f} us")
    rng = np.random.default_rng(0)
    big = rng.normal(0, 1, args.long)
    big[::2] = np.abs(big[::2]) + 10  # consecutive values far apart in rank
    idx = np.arange(args.long, dtype=np.int64)
    s = _median_seconds(big, np.maximum(idx - 1, 0), idx + 1, max(args.repeats // 10, 1))
    print(f"  {'2-row median, ' + format(args.long, ',') + ' values':34s} {s:7.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
