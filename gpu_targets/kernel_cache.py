"""Where Numba caches gpu_targets' compiled kernels, and when that cache is stale.

Numba (``cache=True``) keys a cached function on the content of its own source file
only: a kernel in ``engines/cpu/periods.py`` that calls a helper of ``engines/elementwise.py``
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

import contextlib
import contextvars
import functools
import hashlib
import logging
from pathlib import Path
from typing import Callable

from numba.core import caching

__all__ = ["ENGINE_SOURCES", "announce", "announce_compile", "engine_source_stamp", "install", "install_cuda"]

PACKAGE = Path(__file__).resolve().parent
#: Modules (relative to the package) whose content any cached kernel may depend on:
#: every module with jitted code, and those they take compile-time constants from.
ENGINE_SOURCES = ("engines/*.py", "engines/cpu/*.py", "engines/cuda/*.py", "calendar.py", "transactions.py", "torch.py", "torch_batch.py", "buffers.py", "forksafe.py")


def engine_source_stamp(root: Path = PACKAGE, patterns: tuple = ENGINE_SOURCES) -> str:
    """SHA-256 over the names and contents of the engine sources (sorted); recomputed
    when a file's modification time or size changes (an edit then ``importlib.reload``
    in a notebook gets the new stamp). Empty string when no source file is there (a
    frozen or sourceless install: the function's own stamp then decides)."""
    files = sorted({p for pattern in patterns for p in root.glob(pattern)})
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _hash_files(Path(root), key)


@functools.lru_cache(maxsize=None)
def _hash_files(root: Path, key: tuple) -> str:
    if not key:
        return ""
    digest = hashlib.sha256()
    for name, _, _ in key:
        path = Path(name)
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
    """Source stamp: every engine source, and the function's own file (Numba's stamp),
    so a module outside :data:`ENGINE_SOURCES` is still keyed on its own content."""

    def get_source_stamp(self):
        return engine_source_stamp(), super().get_source_stamp()

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
    _insert(caching.CacheImpl._locator_classes, (UserWideLocator, InPackageLocator, UserProvidedLocator))


def _insert(classes: list, ours: tuple) -> None:
    for cls in ours:  # the last one ends up first
        if cls not in classes:
            classes.insert(0, cls)


_CUDA_LOCATORS: tuple = ()


def install_cuda() -> None:
    """The same for numba-cuda's ``cache=True`` kernels, which numba-cuda locates with a
    list of its own (``numba.cuda.core.caching``, numba-cuda >= 0.20): its kernels inline
    device functions built from ``elementwise.py`` and ``calendar.py``. Called by
    ``engines/cuda/__init__.py`` before it defines a kernel (importing gpu_targets alone never
    imports numba.cuda). A numba-cuda without that module keeps its own locators."""
    global _CUDA_LOCATORS
    try:
        from numba.cuda.core import caching as cuda_caching

        classes = cuda_caching.CacheImpl._locator_classes
        bases = (cuda_caching._UserWideCacheLocator, cuda_caching._InTreeCacheLocator,
                 cuda_caching._UserProvidedCacheLocator)
    except (ImportError, AttributeError):  # an older numba-cuda: its own keying stays
        return
    if not _CUDA_LOCATORS:
        _CUDA_LOCATORS = tuple(type(f"Cuda{base.__name__.lstrip('_')}", (_EngineStamp, base), {}) for base in bases)
    _insert(classes, _CUDA_LOCATORS)


# --------------------------------------------------------------------------- the compile line
#: Called with the message when an engine is about to compile (the CLI prints it).
_ANNOUNCE_COMPILE: contextvars.ContextVar = contextvars.ContextVar("gpu_targets_announce_compile", default=None)


@contextlib.contextmanager
def announce_compile(callback: Callable[[str], None]):
    """Within the block (this thread or task), ``callback(message)`` is called when an
    engine is about to compile the kernels a config needs, besides the INFO log line
    (:func:`announce`). Engines announce from :func:`compute`, after the input has passed
    its checks, so a bad input still gets one error line."""
    token = _ANNOUNCE_COMPILE.set(callback)
    try:
        yield
    finally:
        _ANNOUNCE_COMPILE.reset(token)


def announce(message: str) -> None:
    """Log ``message`` at INFO on the ``gpu_targets`` logger and pass it to the callback of
    :func:`announce_compile` when one is set."""
    logging.getLogger("gpu_targets").info(message)
    callback = _ANNOUNCE_COMPILE.get()
    if callback is not None:
        callback(message)
