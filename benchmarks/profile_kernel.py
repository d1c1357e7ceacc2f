"""Cycles per transaction of each target *inside* the cpu engine's per-user driver.

Builds an instrumented copy of the config's generated driver
(:mod:`gpu_targets.engines.cpu.driver`; the time-stamp counter, ``llvm.readcyclecounter``,
read around each target and around the shared steps: the per-user preparation, V's
compaction, the window bounds, the sparse segments), runs it on one thread, and prints
TSC cycles per transaction, the minimum over ``--rounds``. With ``--baseline REV`` the
package at git revision REV is copied under another name (``gpu_targets_rev``), its
driver instrumented the same way, and the two run interleaved in one process, so that
the machine's drift hits both alike (on the shared development VM the speed of the same
code moves by up to 30% between minutes). REV must have ``engines/cpu/driver.py``
(2026-12-03 on).

Why not a plain timer per target: an isolated loop over one user's rows, repeated, lets
the branch predictor learn that user's filter pattern and flatters branchy code; here
every round runs ``--users`` different users (64 x 4096 rows by default) through the
real kernel. The TSC ticks at the CPU's nominal frequency (2.245 GHz on the development
machine), not at its current clock.

Usage::

    NUMBA_NUM_THREADS=1 python benchmarks/profile_kernel.py                       # this tree
    NUMBA_NUM_THREADS=1 python benchmarks/profile_kernel.py --baseline 1a560c2    # vs a revision
    NUMBA_NUM_THREADS=1 python benchmarks/profile_kernel.py --config configs/seed_daily_5411.yaml

The instrumentation finds the lines to wrap by their text; it fails loudly (``cannot
instrument``) when the driver's code has moved away from them.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DRIVER = "the generated driver (gpu_targets/engines/cpu/driver.py)"
SLOTS = {"prep": 63, "compaction": 60, "bounds": 61, "segments": 62}

TSC = '''
from llvmlite import ir as _ir
from numba.core import cgutils as _cg, types as _ty
from numba.extending import intrinsic as _intrinsic


@_intrinsic
def _rdtsc(typingctx):
    def codegen(context, builder, signature, args):
        fn = _cg.get_or_insert_function(builder.module, _ir.FunctionType(_ir.IntType(64), []), "llvm.readcyclecounter")
        return builder.call(fn, [])

    return _ty.int64(), codegen


_CYC = np.zeros(64, dtype=np.int64)
'''


def _wrap(src: str, call: str, slot: int, required: bool) -> str:
    """Put TSC reads around the one line that starts with ``call``."""
    found = list(re.finditer(r"^( +)(" + re.escape(call) + r".*)$", src, re.M))
    if len(found) != 1:
        if required:
            raise SystemExit(f"cannot instrument: {call!r} found {len(found)} times in {DRIVER}")
        return src
    m = found[0]
    ind = m.group(1)
    new = f"{ind}_t{slot} = _rdtsc()\n{m.group(0)}\n{ind}cyc[{slot}] += _rdtsc() - _t{slot}"
    return src[: m.start()] + new + src[m.end():]


def instrument(src: str) -> str:
    """The driver's source with per-target and per-step cycle counters (into ``_CYC``);
    its ``users_targets`` keeps the engine's signature."""
    src = src.replace("cache=True", "cache=False")
    src = src.replace("import numpy as np\n", "import numpy as np\n" + TSC, 1)
    steps = [
        ("def users_targets(u0,", "def users_targets_cyc(cyc, u0,"),
        ("        m = offsets[u + 1] - s\n", "        m = offsets[u + 1] - s\n        _tp = _rdtsc()\n"),
        ("        for ti in range(plan.window.shape[0]):\n            c = plan.col[ti]",
         "        cyc[63] += _rdtsc() - _tp\n        for ti in range(plan.window.shape[0]):\n            _tt = _rdtsc()\n"
         "            c = plan.col[ti]"),
    ]
    for old, new in steps:
        if src.count(old) != 1:
            raise SystemExit(f"cannot instrument: {old.splitlines()[0]!r} not found once in {DRIVER}")
        src = src.replace(old, new)
    # every target ends where its loop starts over: count at each `continue` and at the
    # end of the loop body (the end of the module) when duration targets end it
    src = re.sub(r"^(\s+)continue$", r"\1cyc[ti] += _rdtsc() - _tt\n\1continue", src, flags=re.M)
    src = src.rstrip("\n")
    if src.splitlines()[-1].lstrip().startswith("_sliding_"):
        src += "\n            cyc[ti] += _rdtsc() - _tt"
    src = _wrap(src, "nv = _compact(", SLOTS["compaction"], False)
    src = _wrap(src, "nv = _compact_sparse(", SLOTS["compaction"], False)
    src = _wrap(src, "wlo, whi = _window_bounds(", SLOTS["bounds"], False)
    src = _wrap(src, "nseg = _sparse_segments(", SLOTS["segments"], False)
    return src + "\n\n\ndef users_targets(*args):\n    users_targets_cyc(_CYC, *args)\n"


def load(package: str, config, name: str, directory: Path):
    """The instrumented driver of ``config`` from ``package`` (``gpu_targets`` or a copy),
    and that package's ``engines.cpu`` with its driver lookup pointed at it."""
    cpu = importlib.import_module(f"{package}.engines.cpu")
    drv = importlib.import_module(f"{package}.engines.cpu.driver")
    try:  # packages of 2026-12-03 17:00-19:00 made range-path plans (SPEC v2) only with ranges=True
        plan = cpu.compile_plan(config, ranges=True)
    except TypeError:
        plan = cpu.compile_plan(config)
    shape = drv.driver_shape(plan, config.timezone == "UTC")
    path = directory / f"{name}.py"
    path.write_text(instrument(drv.driver_source(shape)), encoding="utf-8")
    sys.path.insert(0, str(directory))
    mod = importlib.import_module(name)
    cpu._driver = lambda config, plan=None: mod
    return cpu, mod


def _copy_revision(rev: str, directory: Path) -> str:
    """The package at git revision ``rev``, importable as ``gpu_targets_rev``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "gpu_targets"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)
    if not (directory / "gpu_targets" / "engines" / "cpu" / "driver.py").exists():
        raise SystemExit(f"{rev} has no engines/cpu/driver.py: compare with a revision from 2026-12-03 on")
    shutil.move(directory / "gpu_targets", directory / "gpu_targets_rev")
    sys.path.insert(0, str(directory))
    return "gpu_targets_rev"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/seed20.yaml")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--tx-per-user", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="kernel runs per round")
    p.add_argument("--baseline", metavar="REV", help="also profile the package at this git revision, interleaved")
    p.add_argument("--shuffle", action="store_true", help="unsorted input")
    args = p.parse_args()

    import numba

    from gpu_targets.datasets import synthetic_transactions
    from gpu_targets.engines.plan import compile_plan
    from gpu_targets.formats import to_roles
    from gpu_targets.spec import load_config
    from gpu_targets.transactions import extract

    tmp = Path(tempfile.mkdtemp(prefix="profile_kernel-"))
    packages = {"tree": "gpu_targets"}
    if args.baseline:
        packages = {args.baseline: _copy_revision(args.baseline, tmp), **packages}

    config = load_config(args.config)
    # each package reads the config with its own spec classes (isinstance checks, e.g. of
    # derived targets, fail on another package's objects)
    configs = {label: importlib.import_module(f"{pkg}.spec").load_config(args.config) for label, pkg in packages.items()}
    mods = {label: load(pkg, configs[label], f"_driver_profiled_{i}", tmp)
            for i, (label, pkg) in enumerate(packages.items())}
    frame = synthetic_transactions(args.users, args.tx_per_user, seed=0, time_unit=config.time_unit,
                                   shuffle=args.shuffle)
    roles, role_config = to_roles(frame, config)
    tx = extract(roles, role_config)
    n = len(tx)
    results = {label: cpu.compute(tx, configs[label]) for label, (cpu, _) in mods.items()}  # compiles
    first = next(iter(results.values()))
    for label, res in results.items():
        tol = 1e-5 * np.maximum(1, np.abs(first))
        if not np.all((np.abs(res - first) <= tol) | (np.isnan(res) & np.isnan(first))):
            print(f"WARNING: {label} differs from {next(iter(results))}")
    out = np.empty_like(first)
    best = {label: np.full(64, np.inf) for label in mods}
    wall = dict.fromkeys(mods, np.inf)
    for _ in range(args.rounds):
        for label, (cpu, mod) in mods.items():
            mod._CYC[:] = 0
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                cpu.compute(tx, configs[label], out=out)
            wall[label] = min(wall[label], (time.perf_counter() - t0) / args.repeats / n * 1e9)
            best[label] = np.minimum(best[label], mod._CYC / (args.repeats * n))

    plan = compile_plan(config)
    names = {config.output_columns.index(t.output_columns[0]): t.name for t in config.targets}
    labels = list(mods)
    print(f"{args.users} users x {args.tx_per_user} tx, {args.config}, {'unsorted' if args.shuffle else 'sorted'}; "
          f"TSC cycles per transaction, min of {args.rounds} rounds; numba threads {numba.get_num_threads()}")
    print(f"{'':34s}" + "".join(f"{lab:>12s}" for lab in labels))
    rows = [("per-user preparation (bits, runs)", SLOTS["prep"])]
    rows += [(f"  {names[plan.col[ti]]}", ti) for ti in range(len(plan.window))]
    for title, slot in rows:
        print(f"{title:34s}" + "".join(f"{best[lab][slot]:12.2f}" for lab in labels))
    for step in ("compaction", "bounds", "segments"):
        print(f"{'  of which ' + step:34s}" + "".join(f"{best[lab][SLOTS[step]]:12.2f}" for lab in labels))
    total = {lab: best[lab][: len(plan.window)].sum() + best[lab][SLOTS["prep"]] for lab in labels}
    print(f"{'kernel total':34s}" + "".join(f"{total[lab]:12.2f}" for lab in labels))
    print(f"{'wall ns per transaction (compute)':34s}" + "".join(f"{wall[lab]:12.1f}" for lab in labels))


if __name__ == "__main__":
    main()
