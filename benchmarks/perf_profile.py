"""Where the cpu engine's time goes, by compiled function: Linux ``perf`` over Numba code.

``perf record`` cannot name the functions Numba compiles (they live in anonymous JIT
memory). This script compiles a config's driver and kernels into a fresh Numba cache
directory (so each library keeps its object code), writes ``/tmp/perf-<pid>.map`` with
the address and size of every function in those objects (``nm -S``, placed by the
address Numba gives the library's entry point), runs ``cpu.compute`` over synthetic users
in a loop while ``perf record -p <pid>`` samples it, and prints ``perf report``'s table of
functions.

Usage::

    .venv/bin/python benchmarks/perf_profile.py                      # seed_v2, 512 users x 4,096 tx
    .venv/bin/python benchmarks/perf_profile.py --config configs/seed20.yaml --seconds 3

Needs ``perf``, ``nm`` and ``c++filt`` on the PATH. Compilation into the fresh cache takes
a minute or two. Unlike a loop over one user, the samples come from many different users,
so the branch predictor cannot learn one user's pattern (a microbenchmark repeating one
user hid the mispredicted bound scans this found).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _symbols(obj: bytes, tmp: Path) -> list[tuple[int, int, str, str]]:
    """(offset, size, symbol, demangled name) of the functions defined in an object file."""
    path = tmp / "lib.o"
    path.write_bytes(obj)
    out = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True, text=True, check=True).stdout
    syms = [(int(p[0], 16), int(p[1], 16), p[3]) for p in (line.split() for line in out.splitlines())
            if len(p) == 4 and p[2] in "tT"]
    names = subprocess.run(["c++filt"], input="\n".join(s[2] for s in syms), capture_output=True,
                           text=True).stdout.split("\n")
    return [(o, z, raw, names[i].split("(")[0] if i < len(names) and names[i] else raw)
            for i, (o, z, raw) in enumerate(syms)]


def _write_map(tmp: Path) -> int:
    """Write the perf map of every compiled function of gpu_targets' engines and drivers;
    returns the number of functions."""
    lines = []
    seen = set()
    for name, module in list(sys.modules.items()):
        if not (name.startswith("gpu_targets.engines") or "_driver_" in name):
            continue
        for fn in list(vars(module).values()):
            if not (hasattr(fn, "overloads") and hasattr(fn, "py_func")) or id(fn) in seen:
                continue
            seen.add(id(fn))
            for cres in fn.overloads.values():
                try:
                    obj = cres.library._get_compiled_object()
                except RuntimeError:  # loaded from a cache: no object code kept
                    continue
                syms = _symbols(obj, tmp)
                entry = cres.fndesc.llvm_func_name
                address = cres.library.get_pointer_to_function(entry)
                at = [o for o, _, raw, _ in syms if raw == entry]
                if not at or not address:
                    continue
                base = address - at[0]  # the library's code is placed as one block
                lines.extend(f"{base + o:x} {size:x} {shown}\n" for o, size, _, shown in syms)
    Path(f"/tmp/perf-{os.getpid()}.map").write_text("".join(lines))
    return len(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "seed_v2.yaml")
    p.add_argument("--users", type=int, default=512)
    p.add_argument("--tx-per-user", type=int, default=4096)
    p.add_argument("--seconds", type=float, default=2.0, help="how long perf samples")
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_targets_perf-"))
    os.environ["NUMBA_CACHE_DIR"] = str(tmp / "numba")  # before numba loads: compile, keeping object code

    import gpu_targets
    from gpu_targets.datasets import synthetic_transactions
    from gpu_targets.engines import cpu
    from gpu_targets.spec import load_config
    from gpu_targets.transactions import extract

    config = load_config(args.config)
    frame = synthetic_transactions(args.users, args.tx_per_user, seed=0)
    t0 = time.perf_counter()
    gpu_targets.generate(frame.iloc[: args.tx_per_user], config, backend="cpu")
    tx = extract(frame, config)
    cpu.compute(tx, config)
    print(f"compiled in {time.perf_counter() - t0:.0f} s; {_write_map(tmp)} functions mapped", file=sys.stderr)
    data = tmp / "perf.data"
    stop = threading.Event()
    calls = []

    def work():
        while not stop.is_set():
            t = time.perf_counter()
            cpu.compute(tx, config)
            calls.append(time.perf_counter() - t)

    worker = threading.Thread(target=work)
    worker.start()
    subprocess.run(["perf", "record", "-q", "-F", "4000", "-p", str(os.getpid()), "-o", str(data), "--", "sleep",
                    str(args.seconds)], check=True)
    stop.set()
    worker.join()
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "symbol", "--stdio"],
                            capture_output=True, text=True).stdout
    rows = [line for line in report.splitlines() if line.strip() and not line.startswith("#")]
    print(f"{args.config.name}: {args.users} users x {args.tx_per_user} tx, cpu.compute in a loop "
          f"({len(calls)} calls, median {sorted(calls)[len(calls) // 2] * 1e3:.0f} ms), perf samples by function:")
    for line in rows[: args.top]:
        share, _, name = line.strip().partition(" ")
        name = name.split("]", 1)[-1].split("[abi")[0].replace("gpu_targets::engines::", "")
        print(f"  {share:>7}  {name.rstrip(' -')[-80:]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
