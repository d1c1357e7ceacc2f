"""Where Numba caches gpu_targets' compiled kernels, and when that cache is stale.

Numba (``cache=True``) keys a cached function on the content of its own source file
only: a kernel in ``engines/cpu.py`` that calls a helper of ``engines/elementwise.py``
or ``calendar.py`` was loaded from the cache unchanged after that helper was edited
(stale machine code: it happened once, and ``make clean-cache`` was the workaround).

The locators below replace Numba's for the package's own files: their source stamp is
one hash of every module that holds or feeds jitted code (:data:`ENGINE_SOURCES`), so
editing any of them recompiles every kernel on the next call. The cache lives where
Numba would put it: ``NUMBA_CACHE_DIR`` when set, else the module's ``__pycache__``
where that is writable, else the user-wide cache directory Numba uses for read-only
installs (``~/.cache/numba`` on Linux). Installed when
gpu_targets is imported, before any kernel is defined.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from numba.core import caching

__all__ = ["ENGINE_SOURCES", "engine_source_stamp", "install"]

PACKAGE = Path(__file__).resolve().parent
#: Modules (relative to the package) whose content any cached kernel may depend on:
#: every module with jitted code, and those they take compile-time constants from.
ENGINE_SOURCES = ("engines/*.py", "calendar.py", "transactions.py", "torch.py", "buffers.py", "forksafe.py")


@functools.lru_cache(maxsize=None)
def engine_source_stamp(root: Path = PACKAGE, patterns: tuple = ENGINE_SOURCES) -> str:
    """SHA-256 over the names and contents of the engine sources (sorted), once per process."""
    digest = hashlib.sha256()
    for path in sorted({p for pattern in patterns for p in root.glob(pattern)}):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _in_package(py_file: str) -> bool:
    try:
        Path(py_file).resolve().relative_to(PACKAGE)
    except (ValueError, OSError):
        return False
    return True


class _EngineStamp:
    """Source stamp of every engine source instead of the function's own file."""

    def get_source_stamp(self):
        return engine_source_stamp()

    @classmethod
    def from_function(cls, py_func, py_file):
        if not _in_package(py_file):
            return None
        return super().from_function(py_func, py_file)


class UserProvidedLocator(_EngineStamp, caching.UserProvidedCacheLocator):
    """``NUMBA_CACHE_DIR``, when set (as Numba's own order has it)."""


class InPackageLocator(_EngineStamp, caching.InTreeCacheLocator):
    """The module's ``__pycache__``, when writable."""


class UserWideLocator(_EngineStamp, caching.UserWideCacheLocator):
    """The user-wide cache directory (a read-only install)."""


def install() -> None:
    """Put the locators first in Numba's list (idempotent)."""
    classes = caching.CacheImpl._locator_classes
    for cls in (UserWideLocator, InPackageLocator, UserProvidedLocator):  # the last one ends up first
        if cls not in classes:
            classes.insert(0, cls)
