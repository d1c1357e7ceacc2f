"""The parallel kernels in forked children and under concurrent threads (gpu_targets.forksafe)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import gpu_targets
from gpu_targets.datasets import synthetic_transactions
from gpu_targets.forksafe import runs_serial

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"targets": [
    {"name": "day_sum", "agg": "sum", "window": {"period": "day", "mode": "expanding"}},
    {"name": "max_7d", "agg": "max", "window": {"duration": "7d", "mode": "trailing"}},
]}


def _targets_in_child(frame):
    return runs_serial(), gpu_targets.generate(frame, CONFIG, backend="cpu")[["day_sum", "max_7d"]].to_numpy()


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_forked_child_after_the_parent_ran_the_pool_gets_the_same_targets():
    frame = synthetic_transactions(n_users=30, tx_per_user=64, seed=3)
    parent = gpu_targets.generate(frame, CONFIG, backend="cpu")[["day_sum", "max_7d"]].to_numpy()
    assert not runs_serial()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        # a timeout: a child killed by GNU OpenMP would leave apply() waiting for ever
        forked, child = pool.apply_async(_targets_in_child, (frame,)).get(timeout=600)
    import numba

    assert forked == (numba.threading_layer() == "omp")  # GNU OpenMP: the serial twins
    np.testing.assert_array_equal(child, parent)


def test_concurrent_threads_after_importing_the_torch_feed():
    """Importing gpu_targets.torch used to switch Numba to the workqueue layer, which
    kills the process on concurrent calls (Dask's threaded scheduler)."""
    pytest.importorskip("torch")
    script = textwrap.dedent("""
        import gpu_targets.torch  # noqa: F401
        from concurrent.futures import ThreadPoolExecutor
        import gpu_targets
        from gpu_targets.datasets import synthetic_transactions
        cfg = {"targets": [{"name": "s", "agg": "sum", "window": {"duration": "7d", "mode": "trailing"}}]}
        frames = [synthetic_transactions(n_users=200, tx_per_user=256, seed=s) for s in range(8)]
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda f: gpu_targets.generate(f, cfg, backend="cpu"), frames))
        print("threads OK", sum(len(o) for o in outs))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "threads OK" in proc.stdout


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_child_forked_before_the_pool_started_keeps_the_pool():
    """Only a fork while the OpenMP pool runs makes a child serial; this runs in a fresh
    process (the test process has long started its pool)."""
    script = textwrap.dedent("""
        import multiprocessing, gpu_targets
        from gpu_targets.forksafe import runs_serial
        from gpu_targets.datasets import synthetic_transactions
        cfg = {"targets": [{"name": "s", "agg": "sum", "window": {"duration": "7d", "mode": "trailing"}}]}
        frame = synthetic_transactions(n_users=20, tx_per_user=32, seed=0)

        def child(_):
            return runs_serial(), gpu_targets.generate(frame, cfg, backend="cpu")["s"].sum()

        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(1) as pool:  # before any parallel kernel ran here
            before = pool.apply_async(child, (0,)).get(timeout=600)
        total = gpu_targets.generate(frame, cfg, backend="cpu")["s"].sum()
        with ctx.Pool(1) as pool:  # after: the pool runs in this process
            after = pool.apply_async(child, (0,)).get(timeout=600)
        import numba
        print("RESULT", before[0], after[0] == (numba.threading_layer() == "omp"), before[1] == total == after[1])
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT False True True" in proc.stdout, proc.stdout + proc.stderr[-2000:]
