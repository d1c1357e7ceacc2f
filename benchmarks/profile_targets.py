"""Where the cpu engine's time goes: the marginal cost of each target of a config.

For each target T of the config, times ``cpu.compute`` on the config's first target
alone and on (first target, T), and prints the difference in ns per transaction, on one
thread (set ``NUMBA_NUM_THREADS=1`` for per-core figures) with CPU time
(:func:`time.process_time`, minimum of ``--repeats``). Shared work (a period kind or a
compacted filter used by several targets) is counted in each target that needs it, so
the column does not add up to the whole config, which is printed last.

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/profile_targets.py --users 256 --config configs/seed20.yaml
"""

from __future__ import annotations

import argparse
import time

from gpu_targets.datasets import synthetic_transactions
from gpu_targets.engines import cpu
from gpu_targets.formats import to_roles
from gpu_targets.spec import load_config
from gpu_targets.transactions import extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=256)
    parser.add_argument("--tx-per-user", type=int, default=4096)
    parser.add_argument("--config", default="configs/seed20.yaml")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = load_config(args.config)
    time_unit = config.time_unit if config.time_unit else None
    frame = synthetic_transactions(args.users, args.tx_per_user, seed=0, time_unit=time_unit)
    roles, role_config = to_roles(frame, config)
    tx = extract(roles, role_config)
    n = len(tx)

    def ns_per_row(cfg) -> float:
        cpu.compute(tx, cfg)  # compile or load, and touch the memory
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.process_time()
            cpu.compute(tx, cfg)
            best = min(best, time.process_time() - t0)
        return best / n * 1e9

    first = config.targets[0]
    base = ns_per_row(config.model_copy(update={"targets": [first]}))
    print(f"{args.users} users x {args.tx_per_user} tx, {args.config}; CPU ns per transaction")
    print(f"{'first target alone (' + first.name + ')':45s} {base:7.2f}")
    for t in config.targets[1:]:
        both = ns_per_row(config.model_copy(update={"targets": [first, t]}))
        window = t.window.period or t.window.duration
        print(f"  + {t.name:26s} {t.agg:5s} {window:>5s} {t.window.mode:9s} {both - base:7.2f}")
    print(f"{'whole config':45s} {ns_per_row(config):7.2f}")


if __name__ == "__main__":
    main()
