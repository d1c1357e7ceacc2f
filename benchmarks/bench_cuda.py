"""Benchmark the ``cuda`` engine against the ``cpu`` engine on the same data.

Usage::

    python benchmarks/bench_cuda.py                       # 1k and 10k users x 4096 tx
    python benchmarks/bench_cuda.py --users 1000 --tx-per-user 4096 --repeats 5
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_cuda.py --users 2 --tx-per-user 32 --repeats 1
                                                          # the same lines under the simulator

What is measured
----------------
Data: :func:`gpu_targets.datasets.synthetic_transactions` (sorted by user and time) with
``--users`` users of ``--tx-per-user`` transactions; configs ``seed_daily_5411`` (one
target, integer days) and ``seed20`` (20 targets, every window kind and aggregation).

* ``cuda (device)``: :func:`gpu_targets.engines.cuda.compute_device` on arrays already
  on the device (no host-device transfer), the device synchronised before the clock stops;
* ``cuda (host)``: :func:`gpu_targets.engines.cuda.compute` from host
  :class:`~gpu_targets.transactions.Transactions`: host-to-device copy, kernels and the
  device-to-host copy of the result;
* ``cpu``: :func:`gpu_targets.engines.cpu.compute` on the same Transactions.

Each is run once untimed (JIT compilation or loading from the disk cache, allocator
warm-up), then ``--repeats`` times; the median is reported as users/s, transactions/s
and achieved GB/s = (bytes read + written) / time, where bytes = n x (8 user + 8 time + 8
amount + 4 mcc) read once + n x 4 x n_columns written (a lower bound of the traffic),
against the device-to-device copy bandwidth measured here (a 1 GiB copy, counted as
read + write; 8 MiB under the simulator). The largest relative difference between the
cuda and cpu results is reported per workload.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same lines run on NumPy
arrays: the figures mean nothing there, the run only proves the script works.
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
    p.add_argument("--users", type=int, nargs="+", default=[1000, 10000], help="user counts to run")
    p.add_argument("--tx-per-user", type=int, default=4096, help="transactions per user")
    p.add_argument("--configs", nargs="+", default=["seed_daily_5411", "seed20"], help="configs/<name>.yaml")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    p.add_argument("--no-cpu", action="store_true", help="skip the cpu engine")
    return p.parse_args(argv)


def _median_time(fn, repeats):
    fn()  # warm-up: JIT compilation or cache load, allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(xp, cuda, simulator: bool) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written per second)."""
    n = ((8 if simulator else 1024) << 20) // 8
    a = xp.ones(n, dtype=xp.float64)
    b = xp.empty(n, dtype=xp.float64)

    def copy():
        b[...] = a
        cuda.synchronize()

    t = _median_time(copy, 5)
    return 2 * n * 8 / t / 1e9


def device_name(cuda, simulator: bool) -> str:
    if simulator:
        return "Numba CUDA simulator (NumPy arrays)"
    name = cuda.get_current_device().name  # gpu
    return name.decode() if isinstance(name, bytes) else str(name)


def run(users_list, tx_per_user, configs, repeats, with_cpu=True, log=print) -> list[dict]:
    """Measure every (users, config, system); returns one dict per row of the table."""
    import numpy as np
    from numba import cuda

    from gpu_targets import load_config
    from gpu_targets.datasets import synthetic_transactions
    from gpu_targets.engines import cpu as cpu_engine
    from gpu_targets.engines import cuda as cuda_engine
    from gpu_targets.transactions import extract

    xp = cuda_engine.xp
    rows = []
    for users in users_list:
        for name in configs:
            cfg = load_config(REPO / "configs" / f"{name}.yaml")
            unit = "D" if cfg.time_unit == "D" else None
            frame = synthetic_transactions(users, tx_per_user, seed=0, **({"time_unit": unit} if unit else {}))
            tx = extract(frame, cfg)
            n = len(tx)
            n_cols = len(cfg.output_columns)
            nbytes = n * (8 + 8 + 8 + 4) + n * 4 * n_cols
            d = [xp.asarray(a) for a in (tx.user, tx.time, tx.amount, tx.mcc)]

            def on_device():
                cuda_engine.compute_device(*d, cfg, time_factor=tx.time_factor)
                cuda.synchronize()

            runs = [("cuda (device)", on_device), ("cuda (host)", lambda: cuda_engine.compute(tx, cfg))]
            if with_cpu:
                runs.append(("cpu", lambda: cpu_engine.compute(tx, cfg)))
            ref = cpu_engine.compute(tx, cfg).astype(np.float64)
            got = cuda_engine.compute(tx, cfg).astype(np.float64)
            both = np.isfinite(ref) & np.isfinite(got)
            err = float(np.max(np.abs(got - ref)[both] / np.maximum(1.0, np.abs(ref[both])), initial=0.0))
            # NaN where cpu has NaN, and the same infinities
            same_nan = bool(np.array_equal(np.where(both, 0.0, ref), np.where(both, 0.0, got), equal_nan=True))
            for label, fn in runs:
                t = _median_time(fn, repeats)
                row = {"config": name, "users": users, "tx_per_user": tx_per_user, "system": label, "seconds": t,
                       "users_per_s": users / t, "tx_per_s": n / t, "gb_per_s": nbytes / t / 1e9,
                       "max_rel_diff_vs_cpu": err, "same_nan_as_cpu": same_nan}
                rows.append(row)
                log(f"  {name} {users} users: {label} {t:.3f} s, {users / t:,.0f} users/s")
    return rows


def table(rows, bandwidth: float) -> str:
    lines = ["| config | users x tx | system | time s | users/s | tx/s | GB/s | % of copy bw | max rel. diff vs cpu |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['users']:,} x {r['tx_per_user']:,} | {r['system']} | {r['seconds']:.3f} | "
            f"{r['users_per_s']:,.0f} | {r['tx_per_s']:,.0f} | {r['gb_per_s']:.1f} | "
            f"{100 * r['gb_per_s'] / bandwidth:.1f} | {r['max_rel_diff_vs_cpu']:.1e}"
            f"{'' if r['same_nan_as_cpu'] else ' (NaN/inf differ)'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parse(argv)
    from numba import config as numba_config
    from numba import cuda

    simulator = bool(numba_config.ENABLE_CUDASIM)
    if not simulator and not cuda.is_available():
        print("bench_cuda: no CUDA device here; NUMBA_ENABLE_CUDASIM=1 runs the same lines on the simulator.")
        return 0
    from gpu_targets.engines import cuda as cuda_engine

    bw = copy_bandwidth(cuda_engine.xp, cuda, simulator)
    print(f"device: {device_name(cuda, simulator)}; device-to-device copy: {bw:.0f} GB/s")
    rows = run(args.users, args.tx_per_user, args.configs, args.repeats, with_cpu=not args.no_cpu)
    print(table(rows, bw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
