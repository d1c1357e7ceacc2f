"""Numba's disk cache of the kernels is keyed on every engine source (gpu_targets.kernel_cache)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numba
import pytest
from numba.core.caching import FunctionCache

import gpu_targets
from gpu_targets import kernel_cache, transactions
from gpu_targets.engines import cpu
from gpu_targets.engines.cpu import driver as cpu_driver, periods, runs

DAILY = {"targets": [{"name": "s", "agg": "sum", "window": {"period": "day", "mode": "expanding"}}]}


def test_package_kernels_use_the_engine_source_locator():
    for dispatcher in (runs._mono_runs, periods._period_moments_expanding, transactions._scan_chunks.parallel,
                       transactions._scan_chunks.serial):
        locator = dispatcher._cache._impl._locator
        assert isinstance(locator, (kernel_cache.UserProvidedLocator, kernel_cache.InPackageLocator,
                                    kernel_cache.UserWideLocator))
        assert locator.get_source_stamp()[0] == kernel_cache.engine_source_stamp()


def test_the_stamp_covers_the_helper_modules(tmp_path):
    root = tmp_path / "pkg"
    shutil.copytree(kernel_cache.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = kernel_cache.engine_source_stamp(root)
    helper = root / "engines" / "elementwise.py"
    helper.write_text(helper.read_text() + "\n# edited\n")
    assert kernel_cache.engine_source_stamp(root) != before
    (root / "cli.py").write_text("# not an engine source\n")
    helper.write_text(helper.read_text().replace("\n# edited\n", ""))
    assert kernel_cache.engine_source_stamp(root) == before


def test_editing_a_helper_module_makes_the_cached_kernel_stale(tmp_path, monkeypatch):
    """A kernel of the cpu engine is cached; after elementwise.py (whose
    ``row_filter_bits`` it calls) changes, its cache index no longer matches (Numba's own
    stamp, its own file's content alone, would still match). The kernel is one that
    ``generate`` calls from Python, so its index exists whether it was compiled here or
    came with a driver cached by another checkout."""
    from gpu_targets.datasets import synthetic_transactions

    frame = synthetic_transactions(5, 16, seed=0)
    gpu_targets.generate(frame, DAILY, backend="cpu")  # compiled or loaded: the index exists
    fresh = FunctionCache(cpu._dense_filters.py_func)
    assert fresh._cache_file._load_index(), "the kernel should be in the disk cache"

    root = tmp_path / "pkg"
    shutil.copytree(kernel_cache.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    helper = root / "engines" / "elementwise.py"
    helper.write_text(helper.read_text() + "\n# edited\n")
    edited = kernel_cache.engine_source_stamp(root)
    monkeypatch.setattr(kernel_cache, "engine_source_stamp", lambda *a: edited)
    assert FunctionCache(cpu._dense_filters.py_func)._cache_file._load_index() == {}


def test_a_driver_is_a_new_file_when_an_engine_source_changes(tmp_path, monkeypatch):
    """The generated driver lives outside the package, where Numba keys its cache on the
    file's own content: the engine-source stamp is written into that content (and so
    into the file's name), so edited sources never load an old driver's machine code."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_driver, "_LOADED", {})  # as in a new process
    shape = cpu_driver.driver_shape(cpu.compile_plan(gpu_targets.load_config(DAILY)), True)
    first = cpu_driver.load_driver(shape)
    assert cpu_driver.load_driver(shape) is first
    assert Path(first.__file__).parent == tmp_path / "gpu_targets_drivers"
    monkeypatch.setattr(kernel_cache, "engine_source_stamp", lambda *a: "another version of the sources")
    second = cpu_driver.load_driver(shape)
    assert second.__file__ != first.__file__
    assert "another version of the sources" in Path(second.__file__).read_text()


def test_install_is_idempotent():
    from numba.core import caching

    kernel_cache.install()
    kernel_cache.install()
    classes = caching.CacheImpl._locator_classes
    assert classes[:3] == [kernel_cache.UserProvidedLocator, kernel_cache.InPackageLocator,
                           kernel_cache.UserWideLocator]
    assert classes.count(kernel_cache.InPackageLocator) == 1


@pytest.mark.parametrize("path,inside", [("engines/cpu/periods.py", True), ("../setup.py", False)])
def test_only_the_package_files_are_claimed(path, inside):
    assert kernel_cache._in_package(str(kernel_cache.PACKAGE / path)) is inside


def test_a_cold_cache_is_announced_before_compiling(tmp_path, monkeypatch):
    """The CLI prints one line before the kernels compile and the API logs it at INFO;
    nothing when they are cached (the state is read from the cache index, not guessed)."""
    import logging

    from click.testing import CliRunner

    from gpu_targets.cli import main
    from gpu_targets.datasets import synthetic_transactions
    from gpu_targets.io import write_parquet

    write_parquet(synthetic_transactions(3, 8, seed=0), tmp_path / "tx.parquet")
    (tmp_path / "c.yaml").write_text("targets:\n  - {name: s, agg: sum, window: {period: day, mode: expanding}}\n")
    args = ["generate", str(tmp_path / "tx.parquet"), "-c", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "o.parquet")]
    warm = CliRunner().invoke(main, args)
    assert warm.exit_code == 0 and "compiling" not in warm.stderr
    assert not cpu.needs_compile(gpu_targets.load_config(tmp_path / "c.yaml"))
    monkeypatch.setattr(cpu, "needs_compile", lambda config, *args, **kwargs: True)  # as in a fresh environment
    cold = CliRunner().invoke(main, args)
    assert cold.exit_code == 0 and "compiling the cpu engine's kernels for this config once (about 10 s" in cold.stderr
    # input that fails its checks is not announced: the one line is the error
    (tmp_path / "bad.yaml").write_text("columns: {user: nobody}\n" + (tmp_path / "c.yaml").read_text())
    bad = CliRunner().invoke(main, args[:3] + [str(tmp_path / "bad.yaml")] + args[4:])
    assert bad.exit_code == 2 and bad.stderr.strip().splitlines()[0].startswith("error: "), bad.stderr
    assert "compiling" not in bad.stderr
    logger = logging.getLogger("gpu_targets")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        gpu_targets.generate(synthetic_transactions(3, 8, seed=0), tmp_path / "c.yaml", backend="cpu")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert any("compiling the cpu engine's kernels" in r.getMessage() for r in records)


def test_needs_compile_reads_the_index_of_the_current_sources(tmp_path, monkeypatch):
    from gpu_targets.datasets import synthetic_transactions

    cfg = gpu_targets.load_config(DAILY)
    gpu_targets.generate(synthetic_transactions(3, 8, seed=0), cfg, backend="cpu")
    assert not cpu.needs_compile(cfg)  # loaded in this process
    # as in a new process: the driver module imported afresh, the disk cache as it is
    monkeypatch.setattr(cpu_driver, "_LOADED", {})
    assert not cpu.needs_compile(cfg)  # the disk cache holds it
    monkeypatch.setattr(kernel_cache, "engine_source_stamp", lambda *a: "another version of the sources")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    assert cpu.needs_compile(cfg)


def test_needs_compile_knows_each_output_layout(tmp_path, monkeypatch):
    """Sorted input writes the output in place (C order), unsorted input a transposed
    buffer (F order): two compilations of one driver, each announced on its own."""
    from gpu_targets.datasets import synthetic_transactions

    cfg = gpu_targets.load_config(DAILY)
    monkeypatch.setattr(cpu_driver, "_LOADED", {})
    monkeypatch.setattr(kernel_cache, "engine_source_stamp", lambda *a: "sources of this test")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    numba.core.config.reload_config()  # as a process started with it set (Numba reloads on compiling)
    assert cpu.needs_compile(cfg, "C") and cpu.needs_compile(cfg, "F")
    gpu_targets.generate(synthetic_transactions(3, 8, seed=0), cfg, backend="cpu")  # sorted: C
    assert not cpu.needs_compile(cfg, "C")
    assert cpu.needs_compile(cfg, "F")
    monkeypatch.setattr(cpu_driver, "_LOADED", {})  # a new process: only the disk cache
    assert not cpu.needs_compile(cfg, "C")
    assert cpu.needs_compile(cfg, "F")


def test_a_driver_compiles_only_the_kernels_its_config_uses():
    """One daily sum: the period moments kernel and nothing of the duration windows,
    top-k or the local-time (DST) code; seed20 names each of its seven kernels once."""
    daily = cpu_driver.driver_source(cpu_driver.driver_shape(cpu.compile_plan(gpu_targets.load_config(DAILY)), True))
    calls = daily[daily.index("def users_targets"):]  # what the driver calls, not what it imports
    assert "_period_moments_expanding(" in calls
    for absent in ("_sliding_", "_compact", "_topk", "_local_runs(", "argsort", "_period_moments_runs"):
        assert absent not in calls, absent
    seed20 = gpu_targets.load_config(Path(__file__).resolve().parents[1] / "configs" / "seed20.yaml")
    utc, ids, _ = cpu_driver.driver_shape(cpu.compile_plan(seed20), seed20.timezone == "UTC")
    names = [(cpu_driver.PERIOD_KERNELS + cpu_driver.SLIDING_KERNELS)[i] for i in ids]
    assert len(names) == 7 and "_sliding_topk" not in names
    assert cpu.compile_seconds(seed20) > cpu.compile_seconds(gpu_targets.load_config(DAILY))


def test_the_stamp_follows_an_edit_in_the_same_process(tmp_path):
    """A notebook that edits a helper and reloads gets the new stamp (the memo is keyed
    on the files' modification times and sizes)."""
    import os

    root = tmp_path / "pkg"
    shutil.copytree(kernel_cache.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = kernel_cache.engine_source_stamp(root)
    helper = root / "calendar.py"
    helper.write_text(helper.read_text() + "\n# edited\n")
    os.utime(helper, ns=(helper.stat().st_atime_ns, helper.stat().st_mtime_ns + 10**9))
    assert kernel_cache.engine_source_stamp(root) != before
    assert kernel_cache.engine_source_stamp(tmp_path / "empty") == ""  # no sources: the own-file stamp decides


def test_the_cuda_kernels_are_keyed_on_every_engine_source():
    """numba-cuda locates its cache with a list of its own; engines/cuda/__init__.py installs the
    same stamp there before defining a kernel."""
    dispatcher = pytest.importorskip("numba.cuda.dispatcher")
    pytest.importorskip("numba.cuda.core.caching")
    import types

    path = kernel_cache.PACKAGE / "engines" / "cuda" / "kernels.py"
    code = compile(path.read_text(), str(path), "exec")
    kernel_code = next(c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == "_scan")
    kernel_cache.install_cuda()
    locator = dispatcher.CUDACacheImpl(types.FunctionType(kernel_code, {}, "_scan"))._locator
    assert locator.get_source_stamp()[0] == kernel_cache.engine_source_stamp()


def test_a_driver_file_with_other_content_is_replaced_before_import(tmp_path, monkeypatch):
    """A corrupt or planted file under a driver's name is never imported: the text is
    compared and the file rewritten (atomically) when it differs."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_driver, "_LOADED", {})
    shape = cpu_driver.driver_shape(cpu.compile_plan(gpu_targets.load_config(DAILY)), True)
    path = Path(cpu_driver.load_driver(shape).__file__)
    monkeypatch.setattr(cpu_driver, "_LOADED", {})
    path.write_text("raise SystemExit('planted code ran')\n")
    module = cpu_driver.load_driver(shape)
    assert "planted" not in path.read_text() and hasattr(module, "users_targets")


def test_a_failing_range_of_users_waits_for_the_others(monkeypatch):
    """No range may still write into the output after compute returns or raises."""
    import threading
    import time

    import numba
    import numpy as np

    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    finished = []
    lock = threading.Lock()

    def fn(u0, u1, offsets, flag):
        if u0 == 0:
            raise ValueError("range 0 failed")
        time.sleep(0.05)
        with lock:
            finished.append(u0)

    offsets = np.arange(0, 81, 10, dtype=np.int64)  # 8 users of 10 rows
    with pytest.raises(ValueError, match="range 0 failed"):
        cpu._in_threads(fn, offsets, 0, 8, (None,))
    assert sorted(finished) == list(range(1, 8))  # every other range ran to its end first
