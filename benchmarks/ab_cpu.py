"""Side-by-side speed of the cpu engine: this tree against a git revision, alternating.

On the shared 2-core development VM the same code's speed drifts by up to 1.6x within an
hour, so a comparison is only worth something when both trees run in the same minutes:
each round starts one fresh process per tree (the order alternates between rounds),
each process times ``gpu_targets.generate(frame, config, backend="cpu")`` on the same
synthetic data (``--repeats`` calls after a warm-up on 4 users, median), and the table
gives the median over rounds and the ratio tree / baseline.

Usage::

    .venv/bin/python benchmarks/ab_cpu.py --baseline d527b16                # sorted, 2,048 users
    .venv/bin/python benchmarks/ab_cpu.py --baseline HEAD~3 --shuffle --rounds 6

The baseline is checked out with ``git worktree add`` into a temporary directory (removed
afterwards) and imported from there (``PYTHONPATH``), with this tree's virtual
environment. Its kernels compile on its first run (or load from its own cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import gc, json, sys, time
import numpy as np
import gpu_targets
from gpu_targets.datasets import synthetic_transactions
tree, users, shuffle, repeats = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
frame = synthetic_transactions(users, 4096, seed=0, shuffle=shuffle)
out = {}
for name in sys.argv[5:]:
    path = f"{tree}/configs/{name}.yaml"
    gpu_targets.generate(frame.iloc[: 4096 * 4], path, backend="cpu")  # compile or load
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        result = gpu_targets.generate(frame, path, backend="cpu")
        times.append(time.perf_counter() - t)
        del result
    out[name] = users / float(np.median(times))
print(json.dumps(out))
"""


def _run(tree: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(args.users), "1" if args.shuffle else "0",
                           str(args.repeats), *args.configs], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, metavar="REV", help="git revision to compare with")
    p.add_argument("--users", type=int, default=2048)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5, help="timed calls per process (median)")
    p.add_argument("--shuffle", action="store_true", help="unsorted input")
    p.add_argument("--configs", nargs="+", default=["seed20", "seed_daily_5411"])
    args = p.parse_args()

    base_dir = Path(tempfile.mkdtemp(prefix="ab_cpu-")) / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base_dir), args.baseline], check=True)
    trees = [("baseline", base_dir), ("tree", ROOT)]
    results = {name: {c: [] for c in args.configs} for name, _ in trees}
    try:
        for r in range(args.rounds):
            for name, tree in trees if r % 2 == 0 else trees[::-1]:
                speeds = _run(tree, args)
                for c, v in speeds.items():
                    results[name][c].append(v)
                print(f"round {r} {name:8s} " + "  ".join(f"{c} {v:,.0f}" for c, v in speeds.items()), flush=True)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_dir)], check=False)
    print(f"\n{args.users} users x 4096 tx, {'unsorted' if args.shuffle else 'sorted'}, users/s (median of "
          f"{args.rounds} rounds), baseline {args.baseline}")
    print(f"{'config':18s}{'baseline':>12s}{'tree':>12s}{'ratio':>8s}")
    for c in args.configs:
        b, t = statistics.median(results["baseline"][c]), statistics.median(results["tree"][c])
        print(f"{c:18s}{b:12,.0f}{t:12,.0f}{t / b:8.3f}")


if __name__ == "__main__":
    main()
