"""First-call latency of the cpu engine: ``generate`` on 1,000 rows from an empty cache.

Each measurement is a fresh Python process (``import gpu_targets`` included) with its own
empty Numba cache directory (``NUMBA_CACHE_DIR``, which gpu_targets' cache locator
honours), so the developer's cache is neither used nor touched:

1. first process, empty cache: compiles what the config needs;
2. second process, same cache: loads the machine code;
3. third process, same cache, the time column as integer seconds instead of datetime64.

Usage::

    .venv/bin/python benchmarks/cold_start.py                  # seed_daily_5411 and seed20
    .venv/bin/python benchmarks/cold_start.py --configs seed20

Prints one table (seconds of wall time per process, and the part spent in the first
``generate`` call). Issue 15's goals on the 2-core machine: one daily target < 10 s,
seed20 < 30 s, a second process < 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import gpu_targets
from gpu_targets.datasets import synthetic_transactions
t_import = time.perf_counter() - t0
frame = synthetic_transactions(4, 250, seed=0)  # 1,000 rows
if sys.argv[2] == "int":
    frame["timestamp"] = frame["timestamp"].astype("int64") // 10**9
    extra = {"time_unit": "s"}
else:
    extra = {}
cfg = {**gpu_targets.load_config(sys.argv[1]).model_dump(), **extra}
t1 = time.perf_counter()
gpu_targets.generate(frame, cfg, backend="cpu")
print(json.dumps({"import": t_import, "generate": time.perf_counter() - t1}))
"""


def _run(config: Path, cache: Path, time_kind: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(config), time_kind], env=env, capture_output=True,
                          text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return {"wall": wall, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["seed_daily_5411", "seed20"])
    args = p.parse_args()
    print(f"{'config':<16} {'process':<34} {'wall s':>7} {'import s':>9} {'generate s':>11}")
    for name in args.configs:
        config = REPO / "configs" / f"{name}.yaml"
        with tempfile.TemporaryDirectory(prefix="cold_start-") as cache:
            for label, kind in [("1: empty cache (compiles)", "datetime"), ("2: second process (loads)", "datetime"),
                                ("3: integer times (same cache)", "int")]:
                r = _run(config, Path(cache), kind)
                print(f"{name:<16} {label:<34} {r['wall']:>7.1f} {r['import']:>9.1f} {r['generate']:>11.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
