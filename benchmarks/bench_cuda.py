"""Benchmark the ``cuda`` engine against the ``cpu`` engine on the same data.

Usage::

    python benchmarks/bench_cuda.py                       # 1k, 10k, 50k users x 4096 tx
    python benchmarks/bench_cuda.py --users 1000 --tx-per-user 4096 --repeats 5

What is measured
----------------
Data: :func:`gpu_targets.datasets.synthetic_transactions` (sorted by user and time) with
``--users`` users of ``--tx-per-user`` transactions; configs ``seed_daily_5411`` (one
target, integer days) and ``seed20`` (20 targets, every window kind and aggregation).

* ``cuda (device)``: :func:`gpu_targets.engines.cuda.compute_device` on arrays already
  on the device (no host-device transfer), synchronised before the clock stops;
* ``cuda (host)``: :func:`gpu_targets.engines.cuda.compute` from host
  :class:`~gpu_targets.transactions.Transactions`: host-to-device copy, kernels and the
  device-to-host copy of the result;
* ``cpu``: :func:`gpu_targets.engines.cpu.compute` on the same Transactions.

Each is run once untimed (JIT compilation), then ``--repeats`` times; the median is
reported as users/s, transactions/s and achieved GB/s = (bytes read + written) / time,
where bytes = n x (8 user + 8 time + 8 amount + 4 mcc) read once + n x 4 x n_columns
written (a lower bound of the traffic), against the device's device-to-device copy
bandwidth measured here (a 1 GiB copy, counted as read + write).

Without a CUDA device (or with ``NUMBA_ENABLE_CUDASIM=1``) the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--users", type=int, nargs="+", default=[1000, 10000, 50000], help="user counts to run")
    p.add_argument("--tx-per-user", type=int, default=4096, help="transactions per user")
    p.add_argument("--configs", nargs="+", default=["seed_daily_5411", "seed20"], help="configs/<name>.yaml")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    p.add_argument("--no-cpu", action="store_true", help="skip the cpu engine")
    return p.parse_args(argv)


def _median_time(fn, repeats):
    fn()  # warm-up: JIT compilation, allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _copy_bandwidth(cuda, np) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written per second)."""
    n = (1 << 30) // 8
    a = cuda.device_array(n, dtype=np.float64)
    b = cuda.device_array(n, dtype=np.float64)

    def copy():
        b.copy_to_device(a)
        cuda.synchronize()

    t = _median_time(copy, 5)
    return 2 * n * 8 / t / 1e9


def main(argv=None) -> int:
    args = _parse(argv)
    from numba import config as numba_config
    from numba import cuda

    if numba_config.ENABLE_CUDASIM or not cuda.is_available():
        print("bench_cuda: no CUDA device here (or NUMBA_ENABLE_CUDASIM=1): nothing to measure.")
        return 0
    import numpy as np

    from gpu_targets import load_config
    from gpu_targets.datasets import synthetic_transactions
    from gpu_targets.engines import cpu as cpu_engine
    from gpu_targets.engines import cuda as cuda_engine
    from gpu_targets.transactions import extract

    bw = _copy_bandwidth(cuda, np)
    dev = cuda.get_current_device()
    print(f"device: {dev.name.decode() if isinstance(dev.name, bytes) else dev.name}; "
          f"device-to-device copy: {bw:.0f} GB/s")
    print("| config | users | system | time s | users/s | tx/s | GB/s | % of copy bw |")
    print("|---|---|---|---|---|---|---|---|")
    for users in args.users:
        frame = synthetic_transactions(users, args.tx_per_user, seed=0)
        for name in args.configs:
            cfg = load_config(REPO / "configs" / f"{name}.yaml")
            if cfg.time_unit == "D":
                frame_c = synthetic_transactions(users, args.tx_per_user, seed=0, time_unit="D")
            else:
                frame_c = frame
            tx = extract(frame_c, cfg)
            n = len(tx)
            n_cols = len(cfg.output_columns)
            nbytes = n * (8 + 8 + 8 + 4) + n * 4 * n_cols
            d = [cuda.to_device(a) for a in (tx.user, tx.time, tx.amount, tx.mcc)]

            def on_device():
                cuda_engine.compute_device(*d, cfg, time_factor=tx.time_factor)
                cuda.synchronize()

            runs = [("cuda (device)", on_device), ("cuda (host)", lambda: cuda_engine.compute(tx, cfg))]
            if not args.no_cpu:
                runs.append(("cpu", lambda: cpu_engine.compute(tx, cfg)))
            ref = cpu_engine.compute(tx, cfg)
            got = cuda_engine.compute(tx, cfg)
            err = np.nanmax(np.abs(got.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref)))
            for label, fn in runs:
                t = _median_time(fn, args.repeats)
                gbs = nbytes / t / 1e9
                print(f"| {name} | {users} | {label} | {t:.3f} | {users / t:,.0f} | {n / t:,.0f} | {gbs:.1f} | "
                      f"{100 * gbs / bw:.1f} |")
            print(f"<!-- {name} {users}: max relative difference cuda vs cpu {err:.2e} -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
