"""What sharing a window's work between targets buys the cpu engine (issue 15, item 5).

Targets run in plan order, which puts duration targets with equal filters, and then
equal (duration, mode), side by side; the generated driver (``engines/cpu/driver.py``)
compacts V once per filter and computes W(i) once per window. This script times the
same driver with that sharing switched off (every target compacts V and computes W(i)
itself: the two ``if`` tests of the driver's duration block replaced by ``if True``),
each round one fresh process per variant, variants alternating, and prints users/s
(median over rounds) for seed20 and for its duration targets alone.

Usage::

    .venv/bin/python benchmarks/fusion.py                   # 2,048 users x 4,096 tx, 4 rounds
    .venv/bin/python benchmarks/fusion.py --users 512 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, sys, time
import numpy as np
import gpu_targets
from gpu_targets.engines.cpu import driver_templates
from gpu_targets.datasets import synthetic_transactions
from gpu_targets.spec import load_config
shared, users, repeats = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
if not shared:  # every target compacts V and computes W(i) on its own
    for old in ("if plan.fbit[ti] != last_filter:", "if plan.window_key[ti] != last_window:"):
        assert old in driver_templates._DURATION
        driver_templates._DURATION = driver_templates._DURATION.replace(old, "if True:")
seed20 = load_config(sys.argv[4])
durations = seed20.with_targets([t.name for t in seed20.targets if t.window.duration is not None])
frame = synthetic_transactions(users, 4096, seed=0)
out = {}
for name, cfg in (("seed20", seed20), ("seed20 duration targets", durations)):
    gpu_targets.generate(frame.iloc[: 4096 * 4], cfg, backend="cpu")  # compile or load
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        result = gpu_targets.generate(frame, cfg, backend="cpu")
        times.append(time.perf_counter() - t)
        del result
    out[name] = users / float(np.median(times))
print(json.dumps(out))
"""


def _run(shared: bool, args) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, "1" if shared else "0", str(args.users), str(args.repeats),
                           str(ROOT / "configs" / "seed20.yaml")], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per process (median)")
    args = p.parse_args(argv)
    results: dict = {True: [], False: []}
    for r in range(args.rounds):
        for shared in ((True, False) if r % 2 == 0 else (False, True)):
            results[shared].append(_run(shared, args))
            print(f"round {r} {'shared  ' if shared else 'unshared'} "
                  + "  ".join(f"{k} {v:,.0f}" for k, v in results[shared][-1].items()), flush=True)
    print(f"\n{args.users} users x 4096 tx, sorted, users/s (median of {args.rounds} rounds)")
    print(f"{'config':28s} {'unshared':>10s} {'shared':>10s} {'ratio':>7s}")
    for name in results[True][0]:
        a = statistics.median(x[name] for x in results[False])
        b = statistics.median(x[name] for x in results[True])
        print(f"{name:28s} {a:10,.0f} {b:10,.0f} {b / a:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
