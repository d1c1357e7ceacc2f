"""What the first touch of fresh output memory costs the ``cpu`` engine.

Times :func:`gpu_targets.engines.cpu.compute` on the same transactions twice: allocating
its output (fresh pages the OS must zero, as every ``generate`` call does) and writing
into a reused ``out=`` buffer. CPU time (:func:`time.process_time`), minimum of
``--repeats``, in ns per transaction; set ``NUMBA_NUM_THREADS=1`` for per-core figures.

``--stores`` measures the floor under that: a Numba loop that only writes every
target cell of a ``(n_columns, n)`` float32 output, user block by user block as the
kernel does, into fresh and into reused memory (wall time, median of ``--repeats``,
interleaved; the numba threads as configured): what the output alone costs whatever the
kernel computes.

``--first-touch`` times the whole engine (wall time, the numba threads as configured,
median of ``--repeats``, interleaved) four ways: fresh output faulted in by the
kernel's own stores (``buffers.PREFAULT = False``, output pool off), fresh output faulted
in first by :func:`gpu_targets.buffers.first_touch` (pool off: what ``compute``
does when the pool has no block), output from the warm pool
(:data:`gpu_targets.buffers.OUTPUT_POOL`, the previous result dropped: what ``compute``
does in a loop), and a reused ``out=`` buffer.

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/output_memory.py --users 128 --config configs/seed20.yaml
    python benchmarks/output_memory.py --stores --users 2048 --config configs/seed20.yaml
    python benchmarks/output_memory.py --first-touch --users 2048 --config configs/seed20.yaml
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from gpu_targets import buffers
from gpu_targets.buffers import OUTPUT_POOL
from gpu_targets.datasets import synthetic_transactions
from gpu_targets.engines import cpu
from gpu_targets.formats import to_roles
from gpu_targets.spec import load_config
from gpu_targets.transactions import extract


@numba.njit(parallel=True)
def _write_blocks(out, m):
    """out[c, r] = a value for every cell, per block of m rows (one user) and column."""
    for u in numba.prange(out.shape[1] // m):
        for c in range(out.shape[0]):
            for r in range(u * m, (u + 1) * m):
                out[c, r] = r * 0.5


def stores(n_columns: int, users: int, m: int, repeats: int) -> None:
    """Print the wall time of writing the output alone, fresh and reused."""
    n = users * m
    reused = np.empty((n_columns, n), dtype=np.float32)
    _write_blocks(reused, m)  # compile, and touch every page once
    times = {"fresh": [], "reused": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        _write_blocks(np.empty((n_columns, n), dtype=np.float32), m)
        times["fresh"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _write_blocks(reused, m)
        times["reused"].append(time.perf_counter() - t0)
    print(f"writing {n_columns} float32 columns x {n:,} rows ({n_columns * n * 4 / 2**20:,.0f} MiB), "
          f"{numba.get_num_threads()} threads; wall time, median of {repeats}")
    for name, ts in times.items():
        med = float(np.median(ts))
        print(f"{name:7s} {med * 1e3:8.1f} ms  {med / n * 1e9:6.2f} ns per transaction")


def first_touch(tx, config, repeats: int) -> None:
    """Print the engine's wall time with fresh output (faulted by the kernel / first)
    and with a reused buffer."""
    reused = cpu.compute(tx, config)  # compile or load; every page touched

    def kernel_faults():
        buffers.PREFAULT = False
        try:
            with OUTPUT_POOL.off():
                return cpu.compute(tx, config)
        finally:
            buffers.PREFAULT = True

    def faulted_first():
        with OUTPUT_POOL.off():
            return cpu.compute(tx, config)

    cases = {
        "fresh, faulted by the kernel": kernel_faults,
        "fresh, faulted first": faulted_first,
        "output pool": lambda: cpu.compute(tx, config),
        "reused out=": lambda: cpu.compute(tx, config, out=reused),
    }
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            t0 = time.perf_counter()
            result = run()
            times[name].append(time.perf_counter() - t0)
            del result
    print(f"{len(tx):,} transactions, {len(config.output_columns)} target columns, {numba.get_num_threads()} threads; "
          f"cpu.compute wall time, median of {repeats}")
    for name, ts in times.items():
        print(f"{name:30s} {float(np.median(ts)) * 1e3:8.1f} ms  (min {min(ts) * 1e3:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=128)
    parser.add_argument("--tx-per-user", type=int, default=4096)
    parser.add_argument("--config", default="configs/seed20.yaml")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--stores", action="store_true", help="time writing the output alone (see above)")
    parser.add_argument("--first-touch", action="store_true", help="time the engine with fresh output faulted in two ways")
    args = parser.parse_args()

    config = load_config(args.config)
    if args.stores:
        stores(len(config.output_columns), args.users, args.tx_per_user, args.repeats)
        return
    frame = synthetic_transactions(args.users, args.tx_per_user, seed=0, time_unit=config.time_unit or None)
    tx = extract(*to_roles(frame, config))
    if args.first_touch:
        first_touch(tx, config, args.repeats)
        return
    out = np.empty((len(config.output_columns), len(tx)), dtype=np.float32)

    def ns_per_row(**kwargs) -> float:
        cpu.compute(tx, config, **kwargs)  # compile or load
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.process_time()
            cpu.compute(tx, config, **kwargs)
            best = min(best, time.process_time() - t0)
        return best / len(tx) * 1e9

    with OUTPUT_POOL.off():
        fresh = ns_per_row()
    reused = ns_per_row(out=out)
    print(f"{args.users} users x {args.tx_per_user} tx, {args.config}; CPU ns per transaction")
    print(f"fresh output {fresh:7.2f}\nreused out=  {reused:7.2f}\nfirst touch  {fresh - reused:7.2f}")


if __name__ == "__main__":
    main()
