"""Parallel Numba functions that stay usable in forked children (DataLoader workers).

Numba's default threading layer on Linux is GNU OpenMP, which cannot run a parallel
region in a process forked from one that already started its thread pool: the child
prints ``Terminating: fork() called from a process already using GNU OpenMP`` and dies.
PyTorch's ``DataLoader(num_workers=N)`` forks, so a process that ran ``generate()``
before building its loader lost every worker. The fork-safe layers do not fit: the
``workqueue`` layer aborts the process on concurrent calls from two threads (Dask's
threaded scheduler, a thread pool), and the ``tbb`` wheel's library is not found by
Numba in a virtual environment (numba/numba#6108).

So each parallel function here is compiled twice, lazily: with ``parallel=True`` for the
process that imported this module, and without a thread pool (``prange`` runs as
``range``) for any process forked from it. A forked child is a worker of a pool that
already provides the parallelism (a DataLoader or ``multiprocessing`` worker), so one
thread per child is also what it should use. Spawned and forkserver children import the
package afresh and use the thread pool.

The serial twin is a copy of the function under another qualified name, so Numba's disk
cache (keyed on the name, the signature and the bytecode, not on ``parallel``) keeps the
two apart.
"""
from __future__ import annotations

import os
from types import FunctionType
from typing import Callable

from numba import njit

__all__ = ["in_forked_child", "parallel_njit"]

_HOME_PID = os.getpid()  # the process that imported the package; a forked child differs


def in_forked_child() -> bool:
    """True in a process forked (without exec) from the one that imported gpu_targets."""
    return os.getpid() != _HOME_PID


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
        return (self.serial if in_forked_child() else self.parallel)(*args)

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
