"""Time each target of a config alone with the cpu engine: where a config's time goes.

Each target runs as a config of its own (``config.with_targets([name])``; derived
targets are left out) on the same synthetic data, after a warm-up on one user that
compiles or loads its driver; the table gives the minimum of ``--repeats`` calls and
users/s, then the whole config for comparison.

Usage::

    .venv/bin/python benchmarks/per_target.py                               # seed_v2, 256 users x 4,096 tx
    .venv/bin/python benchmarks/per_target.py --config configs/seed20.yaml --users 512
    .venv/bin/python benchmarks/per_target.py --engine   # the engine alone: cpu.compute on extracted rows

Without ``--engine`` each figure is a whole ``generate`` call (DataFrame in and out,
where:/value: columns read, derived targets); with it, only
:func:`gpu_targets.engines.cpu.compute` on transactions extracted beforehand.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gpu_targets
from gpu_targets.datasets import synthetic_transactions
from gpu_targets.spec import Target, load_config

ROOT = Path(__file__).resolve().parents[1]


def _best(frame, config, repeats: int, engine_only: bool = False) -> float:
    from gpu_targets.engines import cpu
    from gpu_targets.transactions import extract

    gpu_targets.generate(frame.iloc[:4096], config, backend="cpu")  # compile or load
    tx = extract(frame, config) if engine_only else None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        if engine_only:
            cpu.compute(tx, config)
        else:
            gpu_targets.generate(frame, config, backend="cpu")
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "seed_v2.yaml")
    p.add_argument("--users", type=int, default=256)
    p.add_argument("--tx-per-user", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--engine", action="store_true", help="time cpu.compute alone (rows extracted beforehand)")
    args = p.parse_args(argv)
    config = load_config(args.config)
    frame = synthetic_transactions(args.users, args.tx_per_user, seed=0)
    what = "cpu.compute alone" if args.engine else "generate, DataFrame in and out"
    print(f"{args.config.name}: {args.users} users x {args.tx_per_user} tx, sorted, cpu engine ({what}), "
          f"min of {args.repeats}")
    total = 0.0
    for t in config.targets:
        if not isinstance(t, Target):
            continue
        s = _best(frame, config.with_targets([t.name]), args.repeats, args.engine)
        total += s
        print(f"  {t.name:28s} {s * 1e3:9.1f} ms  {args.users / s:12,.0f} users/s", flush=True)
    s = _best(frame, config, args.repeats, args.engine)
    print(f"  {'(sum of the targets alone)':28s} {total * 1e3:9.1f} ms")
    print(f"  {'(the whole config)':28s} {s * 1e3:9.1f} ms  {args.users / s:12,.0f} users/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
