"""What the first touch of fresh output memory costs the ``cpu`` engine.

Times :func:`gpu_targets.engines.cpu.compute` on the same transactions twice: allocating
its output (fresh pages the OS must zero, as every ``generate`` call does) and writing
into a reused ``out=`` buffer. CPU time (:func:`time.process_time`), minimum of
``--repeats``, in ns per transaction; set ``NUMBA_NUM_THREADS=1`` for per-core figures.

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/output_memory.py --users 128 --config configs/seed20.yaml
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gpu_targets.datasets import synthetic_transactions
from gpu_targets.engines import cpu
from gpu_targets.formats import to_roles
from gpu_targets.spec import load_config
from gpu_targets.transactions import extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=128)
    parser.add_argument("--tx-per-user", type=int, default=4096)
    parser.add_argument("--config", default="configs/seed20.yaml")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    config = load_config(args.config)
    frame = synthetic_transactions(args.users, args.tx_per_user, seed=0, time_unit=config.time_unit or None)
    tx = extract(*to_roles(frame, config))
    out = np.empty((len(config.output_columns), len(tx)), dtype=np.float32)

    def ns_per_row(**kwargs) -> float:
        cpu.compute(tx, config, **kwargs)  # compile or load
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.process_time()
            cpu.compute(tx, config, **kwargs)
            best = min(best, time.process_time() - t0)
        return best / len(tx) * 1e9

    fresh, reused = ns_per_row(), ns_per_row(out=out)
    print(f"{args.users} users x {args.tx_per_user} tx, {args.config}; CPU ns per transaction")
    print(f"fresh output {fresh:7.2f}\nreused out=  {reused:7.2f}\nfirst touch  {fresh - reused:7.2f}")


if __name__ == "__main__":
    main()
