"""Parallel Numba functions that stay usable in forked children (DataLoader workers).

Numba's default threading layer on Linux is GNU OpenMP, which cannot run a parallel
region in a process forked from one that already started its thread pool: the child
prints ``Terminating: fork() called from a process already using GNU OpenMP`` and dies.
PyTorch's ``DataLoader(num_workers=N)`` forks, so a process that ran ``generate()``
before building its loader lost every worker. The fork-safe layers do not fit: the
``workqueue`` layer aborts the process on concurrent calls from two threads (Dask's
threaded scheduler, a thread pool), and the ``tbb`` wheel's library is not found by
Numba in a virtual environment (numba/numba#6108).

So each parallel function here is compiled twice, lazily: with ``parallel=True``, and
without a thread pool (``prange`` runs as ``range``) for a process forked while Numba's
GNU OpenMP pool was running (recorded by an ``os.register_at_fork`` hook installed when
gpu_targets is imported; it also covers a pool the program started itself before
importing gpu_targets). Such a child is a worker of a pool that already provides the
parallelism (a DataLoader or ``multiprocessing`` worker), so one thread per child is also
what it should use. Children forked before the pool started, and spawned or forkserver
children, use the thread pool. Not covered: a child that imports gpu_targets for the
first time after its parent (which never imported it) had started the OpenMP pool.

The serial twin is a copy of the function under another qualified name, so Numba's disk
cache (keyed on the name, the signature and the bytecode, not on ``parallel``) keeps the
two apart. A forked worker compiles (first run on a machine) or loads the twins of the
kernels it uses.
"""
from __future__ import annotations

import os
from types import FunctionType
from typing import Callable

from numba import njit

__all__ = ["runs_serial", "parallel_njit"]

_serial = False  # this process was forked while a fork-unsafe Numba thread pool ran


def runs_serial() -> bool:
    """True in a process forked (without exec) while Numba's GNU OpenMP pool was running:
    the parallel kernels run their serial twins there."""
    return _serial


def _pool_is_fork_unsafe() -> bool:
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", False):
        return False
    try:
        return parallel.threading_layer() == "omp"  # tbb and workqueue survive a fork
    except ValueError:
        return False


def _after_fork_in_child() -> None:
    global _serial
    _serial = _serial or _pool_is_fork_unsafe()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _ParallelFunction:
    """Calls the ``parallel=True`` compilation, or the serial twin in a forked child."""

    def __init__(self, fn: FunctionType, **options):
        self.py_func = fn
        self.parallel = njit(cache=True, parallel=True, **options)(fn)
        twin = FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"  # its own disk-cache entry
        twin.__doc__ = fn.__doc__
        self.serial = njit(cache=True, **options)(twin)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__module__ = fn.__module__

    def __call__(self, *args):
        return (self.serial if _serial else self.parallel)(*args)

    def __repr__(self) -> str:
        return f"<parallel_njit {self.__module__}.{self.__qualname__}>"


def parallel_njit(fn: Callable = None, **options):
    """``numba.njit(cache=True, parallel=True)`` with a serial twin for forked children.

    Use for functions called from Python (not from other jitted functions). ``options``
    go to both compilations (``fastmath=...``).
    """
    if fn is None:
        return lambda f: _ParallelFunction(f, **options)
    return _ParallelFunction(fn, **options)
