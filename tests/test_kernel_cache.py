"""Numba's disk cache of the kernels is keyed on every engine source (gpu_targets.kernel_cache)."""

from __future__ import annotations

import shutil

import pytest
from numba.core.caching import FunctionCache

import gpu_targets
from gpu_targets import kernel_cache
from gpu_targets.engines import cpu


def test_package_kernels_use_the_engine_source_locator():
    for dispatcher in (cpu._user_targets, cpu._kernel.parallel, cpu._kernel.serial):
        locator = dispatcher._cache._impl._locator
        assert isinstance(locator, (kernel_cache.InPackageLocator, kernel_cache.UserWideLocator))
        assert locator.get_source_stamp() == kernel_cache.engine_source_stamp()


def test_the_stamp_covers_the_helper_modules(tmp_path):
    root = tmp_path / "pkg"
    shutil.copytree(kernel_cache.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = kernel_cache.engine_source_stamp.__wrapped__(root)
    helper = root / "engines" / "elementwise.py"
    helper.write_text(helper.read_text() + "\n# edited\n")
    assert kernel_cache.engine_source_stamp.__wrapped__(root) != before
    (root / "cli.py").write_text("# not an engine source\n")
    helper.write_text(helper.read_text().replace("\n# edited\n", ""))
    assert kernel_cache.engine_source_stamp.__wrapped__(root) == before


def test_editing_a_helper_module_makes_the_cached_kernel_stale(tmp_path, monkeypatch):
    """The kernel of cpu.py is cached; after elementwise.py changes, its cache index no
    longer matches (Numba's own stamp, cpu.py's content alone, would still match)."""
    from gpu_targets.datasets import synthetic_transactions

    frame = synthetic_transactions(5, 16, seed=0)
    gpu_targets.generate(frame, {"targets": [{"name": "s", "agg": "sum", "window": {"period": "day",
                                                                                      "mode": "expanding"}}]},
                         backend="cpu")  # compiled or loaded: the index exists
    fresh = FunctionCache(cpu._user_targets.py_func)
    assert fresh._cache_file._load_index(), "the kernel should be in the disk cache"

    root = tmp_path / "pkg"
    shutil.copytree(kernel_cache.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    helper = root / "engines" / "elementwise.py"
    helper.write_text(helper.read_text() + "\n# edited\n")
    edited = kernel_cache.engine_source_stamp.__wrapped__(root)
    monkeypatch.setattr(kernel_cache, "engine_source_stamp", lambda *a: edited)
    assert FunctionCache(cpu._user_targets.py_func)._cache_file._load_index() == {}


def test_install_is_idempotent():
    from numba.core import caching

    kernel_cache.install()
    kernel_cache.install()
    classes = caching.CacheImpl._locator_classes
    assert classes[0] is kernel_cache.InPackageLocator and classes.count(kernel_cache.InPackageLocator) == 1


@pytest.mark.parametrize("path,inside", [("engines/cpu.py", True), ("../setup.py", False)])
def test_only_the_package_files_are_claimed(path, inside):
    assert kernel_cache._in_package(str(kernel_cache.PACKAGE / path)) is inside
