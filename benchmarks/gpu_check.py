"""One command to prove the GPU pipeline: ``make gpu-check`` (this script).

Usage::

    make gpu-check                                 # in the project's venv
    make gpu-check PY=python3                      # on a GPU machine whose python3 has torch,
                                                   # CuPy and numba-cuda (no venv, no network)
    NUMBA_ENABLE_CUDASIM=1 make gpu-check          # the same steps, tiny, on a CPU (CI runs this)
    python benchmarks/gpu_check.py --report out.md --users 1000 10000

Steps (each timed; a failing step is reported and the others still run; exit code 1 if
any failed):

1. **environment**: device, driver and CUDA versions, package versions;
2. **gpu tests**: ``pytest -m gpu tests/test_cuda_sim.py`` (on a GPU the real device,
   under the simulator the simulator);
3. **cuda vs reference**: the cuda engine against the ``reference`` engine (the oracle)
   on random tables and random SPEC v2 configs of the property-test generators and on
   ``seed20`` and ``seed_v2`` synthetic users;
4. **torch device feed**: ``SequenceDataset(backend="cuda")`` batches through
   ``loader(num_workers=2)`` equal the ``cpu`` engine's, their targets on the device;
   ``to_torch`` of a device result shares its memory (``data_ptr``);
5. **benchmark**: :mod:`bench_cuda` for ``seed_daily_5411`` and ``seed20`` at 4,096
   transactions per user (users/s, GB/s against the measured copy bandwidth, with and
   without host-device transfer, next to ``cpu``).

The markdown report (``--report``, default ``gpu-check-report.md``) is rewritten after
every step, so a run cut short still leaves what it did. On an H100/H200 the default
sizes finish in about 5 minutes (most of it compiling the cpu engine for the comparison);
under the simulator ``--users``/``--tx-per-user`` default to tiny sizes (under 3 minutes
on a 2-core machine).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

PACKAGES = ["numpy", "numba", "numba-cuda", "cupy-cuda12x", "cupy-cuda13x", "torch", "pandas", "pyarrow", "rmm-cu12",
            "rmm-cu13", "cudf-cu12", "cudf-cu13", "dask", "distributed", "pydantic"]


class Report:
    """Markdown report written to ``path`` after every step."""

    def __init__(self, path: Path, title: str):
        self.path = path
        self.parts = [f"# {title}\n"]
        self.failed = []

    def add(self, text: str) -> None:
        self.parts.append(text.rstrip() + "\n")
        self.path.write_text("\n".join(self.parts))

    def step(self, name: str, fn) -> None:
        print(f"[gpu-check] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            body = fn()
            status = "passed"
        except Exception:  # noqa: BLE001 - reported, the other steps still run
            body = "```\n" + traceback.format_exc()[-4000:] + "```"
            status = "FAILED"
            self.failed.append(name)
        dt = time.perf_counter() - t0
        print(f"[gpu-check] {name}: {status} ({dt:.1f} s)", flush=True)
        self.add(f"## {name}: {status} ({dt:.1f} s)\n\n{body or ''}")


def _versions() -> str:
    from numba import config as numba_config
    from numba import cuda

    lines = [f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}", f"- python: {platform.python_version()}",
             f"- machine: {platform.machine()}, {platform.processor() or platform.platform()}"]
    if numba_config.ENABLE_CUDASIM:
        lines.append("- device: **Numba CUDA simulator** (NUMBA_ENABLE_CUDASIM=1): no GPU, figures mean nothing")
    else:  # gpu
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
        driver = cuda.cudadrv.driver.driver.get_version()
        runtime = cuda.runtime.get_version()
        lines.append(f"- device: {name} (compute capability {dev.compute_capability}), {len(cuda.gpus)} GPU(s)")
        lines.append(f"- CUDA driver API {driver}, runtime {runtime}")
    for pkg in PACKAGES:
        try:
            lines.append(f"- {pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return "\n".join(lines)


def _gpu_tests() -> str:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/test_cuda_sim.py"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {proc.returncode}:\n{tail}\n{proc.stderr[-2000:]}")
    return f"`{' '.join(cmd[2:])}`\n\n```\n{tail}\n```"


def _against_reference(n_cases: int, users: int, tx_per_user: int) -> str:
    import numpy as np
    from hypothesis import HealthCheck, given, settings

    import test_properties
    from conftest import assert_matches_reference
    from gpu_targets import load_config
    from gpu_targets.datasets import synthetic_transactions

    cases = []

    @settings(max_examples=n_cases, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=test_properties.cases())
    def random_tables(case):
        frame, config = case
        assert_matches_reference(frame, config, "cuda")
        cases.append(len(frame))

    v2 = []

    @settings(max_examples=n_cases, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=test_properties.v2_cases())
    def random_v2_configs(case):
        frame, config = case
        try:
            assert_matches_reference(frame, config, "cuda")
        except ValueError as err:  # a v2 period window across a DST fall-back: refused, as on cpu
            if "DST fall-back" not in str(err) or not test_properties._local_period_goes_back(frame, config):
                raise
        v2.append(len(frame))

    random_tables()
    random_v2_configs()
    frame = synthetic_transactions(users, tx_per_user, seed=1)
    for name in ("seed20", "seed_v2"):
        assert_matches_reference(frame, load_config(REPO / "configs" / f"{name}.yaml"), "cuda")
    return (f"{len(cases)} random tables of the property-test generator ({int(np.sum(cases))} rows), {len(v2)} "
            f"random SPEC v2 configs ({int(np.sum(v2))} rows), seed20 and seed_v2 on {users} x {tx_per_user} "
            "synthetic transactions: every target within SPEC.md's tolerance of `reference`.")


def _torch_feed(simulator: bool) -> str:
    import numpy as np
    import torch

    from gpu_targets import to_torch
    from gpu_targets.datasets import synthetic_transactions
    from gpu_targets.engines import cuda as cuda_engine
    from gpu_targets.torch import SequenceDataset
    from gpu_targets.transactions import extract

    device = "cpu" if simulator else "cuda"
    frame = synthetic_transactions(4 if simulator else 256, (3, 12) if simulator else (50, 600), seed=2)
    config = REPO / "configs" / "seed20.yaml"
    feed = SequenceDataset(frame, config, max_len=32, backend="cuda", device=device)
    ref = SequenceDataset(frame, config, max_len=32, backend="cpu")
    batches, worst = 0, 0.0
    for got, want in zip(feed.loader(batch_size=2 if simulator else 64, num_workers=2),
                         ref.loader(batch_size=2 if simulator else 64)):
        assert got["targets"].device.type == torch.device(device).type
        assert got["amount"].device.type == torch.device(device).type
        a, b = got["targets"].cpu().numpy().astype(np.float64), want["targets"].numpy().astype(np.float64)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        ok = ~np.isnan(a)
        diff = np.abs(a[ok] - b[ok]) / np.maximum(1.0, np.abs(b[ok]))
        worst = max(worst, float(diff.max(initial=0.0)))
        assert worst <= 1e-4, worst
        batches += 1
    # zero copy: a device result handed to torch shares its memory
    tx = extract(frame, feed.config)
    out = cuda_engine.compute_device(*(cuda_engine.xp.asarray(a) for a in (tx.user, tx.time, tx.amount, tx.mcc)),
                                     feed.config, time_factor=tx.time_factor)
    block = to_torch(out, stacked=True)
    iface = out.__cuda_array_interface__ if hasattr(out, "__cuda_array_interface__") else out.__array_interface__
    assert block.data_ptr() == iface["data"][0], "to_torch copied the device result"
    return (f"{batches} batches through `loader(num_workers=2)` on `{device}`: targets computed in the main "
            f"process, max relative difference to the cpu engine's {worst:.1e}; `to_torch(compute_device(...))` "
            f"shares memory (data_ptr {block.data_ptr():#x}).")


def _benchmark(users, tx_per_user, repeats, simulator: bool) -> str:
    from numba import cuda

    import bench_cuda
    from gpu_targets.engines import cuda as cuda_engine

    bw = bench_cuda.copy_bandwidth(cuda_engine.xp, cuda, simulator)
    rows = bench_cuda.run(users, tx_per_user, ["seed_daily_5411", "seed20"], repeats)
    for r in rows:
        if r["max_rel_diff_vs_cpu"] > 1e-4 or not r["same_nan_as_cpu"]:
            raise AssertionError(f"cuda differs from cpu on {r['config']}: {r}")
    head = f"device: {bench_cuda.device_name(cuda, simulator)}; device-to-device copy {bw:,.0f} GB/s (read + write)"
    return head + "\n\n" + bench_cuda.table(rows, bw)


def main(argv=None) -> int:
    from numba import config as numba_config

    simulator = bool(numba_config.ENABLE_CUDASIM)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", type=Path, default=REPO / "gpu-check-report.md", help="markdown report to write")
    p.add_argument("--users", type=int, nargs="+", default=[2] if simulator else [1000, 10000],
                   help="user counts of the benchmark")
    p.add_argument("--tx-per-user", type=int, default=8 if simulator else 4096)
    p.add_argument("--repeats", type=int, default=1 if simulator else 3)
    p.add_argument("--cases", type=int, default=5 if simulator else 40, help="random tables against reference")
    p.add_argument("--skip-tests", action="store_true", help="skip the pytest step")
    args = p.parse_args(argv)

    from numba import cuda

    if not simulator and not cuda.is_available():
        print("gpu-check: no usable CUDA device; run it with NUMBA_ENABLE_CUDASIM=1 to check it on a CPU")
        return 2
    report = Report(args.report, "gpu-check report" + (" (CUDA simulator)" if simulator else ""))
    report.step("environment", _versions)
    if not args.skip_tests:
        report.step("gpu tests", _gpu_tests)
    report.step("cuda vs reference", lambda: _against_reference(args.cases, 3 if simulator else 30,
                                                                16 if simulator else 300))
    report.step("torch device feed", lambda: _torch_feed(simulator))
    report.step("benchmark", lambda: _benchmark(args.users, args.tx_per_user, args.repeats, simulator))
    verdict = f"FAILED: {', '.join(report.failed)}" if report.failed else "all steps passed"
    report.add(f"**{verdict}**. Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`")
    print(args.report.read_text())
    print(f"[gpu-check] {verdict}; report: {args.report}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
