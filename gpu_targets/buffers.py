"""A pool that recycles the host memory of the engines' output arrays.

Why
---
Targets are generated again and again in a training job (batch after batch, partition
after partition, epoch after epoch), and each result is dropped before the next one is
made. Fresh memory for each result is paid twice: the OS faults it in page by page and
zeroes it (``seed20`` on 2,048 x 4,096 rows writes 738 MB of float32), and on the
virtual machines this project runs on a guest page the host has not backed yet costs a
host fault too: ``benchmarks/output_memory.py --first-touch`` timed the seed20 engine
at 909 ms with its output faulted in by the kernel's stores against 366 ms faulted in
first and 316 ms from this pool (2,048 x 4,096 rows, 2 threads, development VM). The pool keeps the memory of dropped outputs and
hands it out again, already faulted in: the caching-allocator idea of PyTorch's CUDA
allocator and of RMM's pool memory resource, for host arrays.

How
---
:meth:`OutputPool.empty` returns an ``ndarray`` whose memory belongs to a block of the
pool. The array's root (the ``ndarray`` every view, slice, pandas column or
``torch.from_numpy`` tensor of it keeps alive) carries a :func:`weakref.finalize`;
when the last of them is gone the block goes back to the pool, never earlier. Idle
blocks are kept up to ``max_idle_bytes`` (least recently returned dropped first) and
reused for a request of between half their size and their size.

``GPU_TARGETS_OUTPUT_POOL`` sets ``max_idle_bytes`` for the process-wide
:data:`OUTPUT_POOL` (bytes, or with a suffix ``K``/``M``/``G``; ``0`` turns pooling off);
the default is 2 GiB or one eighth of the machine's memory, whichever is smaller.
``OUTPUT_POOL.clear()`` lets the idle memory go.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections import OrderedDict

import numpy as np
from numba import prange

from .forksafe import parallel_njit

__all__ = ["OutputPool", "OUTPUT_POOL", "parse_bytes", "fresh_output", "first_touch", "inverse_permutation", "unpermute_rows"]


def parse_bytes(text: str) -> int:
    """``"2G"`` -> 2147483648; plain digits are bytes; suffixes K, M, G, T (powers of 1024).

    Raises
    ------
    ValueError
        Not a non-negative integer with an optional suffix.
    """
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if t and t[-1] in "KMGT":
        scale = 1024 ** ("KMGT".index(t[-1]) + 1)
        t = t[:-1]
    if not t.isdigit():
        raise ValueError(f"expected a number of bytes such as 512M or 2G, got {text!r}")
    return int(t) * scale


def _default_max_idle() -> int:
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not POSIX
        ram = 16 << 30
    return min(2 << 30, ram // 8)


class OutputPool:
    """Recycles the memory of dropped output arrays (see the module docstring).

    Parameters
    ----------
    max_idle_bytes : int
        Idle memory kept for reuse; 0 turns the pool off (every array is new memory).

    Notes
    -----
    Thread safety: requests take a lock; a block coming back while that lock is held
    (a garbage collection inside a request, or another thread) is let go instead of
    waiting, so a finalizer never blocks.
    """

    def __init__(self, max_idle_bytes: int):
        if max_idle_bytes < 0:
            raise ValueError(f"max_idle_bytes must be >= 0, got {max_idle_bytes}")
        self.max_idle_bytes = int(max_idle_bytes)
        self._idle: OrderedDict[int, np.ndarray] = OrderedDict()  # id -> uint8 block, oldest first
        self._idle_bytes = 0
        self._lock = threading.Lock()
        self.reused = 0  # requests served from an idle block
        self.fresh = 0  # requests that took new memory

    @property
    def idle_bytes(self) -> int:
        """Bytes held by idle blocks."""
        return self._idle_bytes

    def empty(self, shape, dtype=np.float32) -> tuple[np.ndarray, bool]:
        """An uninitialised C-contiguous array, and whether its memory is new.

        Parameters
        ----------
        shape : int or tuple of int
        dtype : NumPy dtype

        Returns
        -------
        array : ndarray of ``dtype``, shape ``shape``
            Contents undefined (a reused block holds an earlier result).
        fresh : bool
            True when the memory was just allocated (its pages not yet faulted in).
        """
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        block = None
        if self.max_idle_bytes and nbytes:
            with self._lock:
                best = None
                for key, b in self._idle.items():  # smallest block that fits, not over twice the size
                    if nbytes <= b.nbytes <= 2 * nbytes and (best is None or b.nbytes < self._idle[best].nbytes):
                        best = key
                if best is not None:
                    block = self._idle.pop(best)
                    self._idle_bytes -= block.nbytes
        fresh = block is None
        if fresh:
            self.fresh += 1
            if not self.max_idle_bytes or nbytes == 0 or nbytes > self.max_idle_bytes:
                return np.empty(shape, dtype=dtype), True  # never pooled: plain memory
            block = np.empty(nbytes, dtype=np.uint8)
        else:
            self.reused += 1
        # the root: every view of the result (slices, reshapes, pandas columns, tensors)
        # has it as its ``base``, so it dies with the last of them, and only then does
        # the block go back
        root = np.frombuffer(memoryview(block)[:nbytes], dtype=dtype)
        weakref.finalize(root, self._give_back, block)
        return root.reshape(shape), fresh

    def _give_back(self, block: np.ndarray) -> None:
        if not self._lock.acquire(blocking=False):
            return  # busy: let this block go rather than wait inside a finalizer
        try:
            if block.nbytes > self.max_idle_bytes:
                return
            self._idle[id(block)] = block
            self._idle_bytes += block.nbytes
            while self._idle_bytes > self.max_idle_bytes:
                _, old = self._idle.popitem(last=False)
                self._idle_bytes -= old.nbytes
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def off(self):
        """Within the block every request takes new memory (benchmarks of fresh output)."""
        saved, self.max_idle_bytes = self.max_idle_bytes, 0
        try:
            yield self
        finally:
            self.max_idle_bytes = saved

    def clear(self) -> None:
        """Let every idle block go (arrays in use are not affected)."""
        with self._lock:
            self._idle.clear()
            self._idle_bytes = 0


def _pool_from_env() -> OutputPool:
    text = os.environ.get("GPU_TARGETS_OUTPUT_POOL")
    if text is None:
        return OutputPool(_default_max_idle())
    try:
        return OutputPool(parse_bytes(text))
    except ValueError as err:
        raise ValueError(f"GPU_TARGETS_OUTPUT_POOL: {err}") from None


#: The pool the cpu engine takes its output arrays from.
OUTPUT_POOL = _pool_from_env()


# --------------------------------------------------------------------------- engine outputs
# The cpu engine's output memory: a fresh array from the pool, faulted in ahead of the
# kernel, and the gather that puts rows computed in sorted order back in input order.


@parallel_njit
def inverse_permutation(order):
    """inv[order[k]] = k."""
    inv = np.empty(order.shape[0], dtype=np.int64)
    for k in prange(order.shape[0]):
        inv[order[k]] = k
    return inv


@parallel_njit
def unpermute_rows(rows, inv, dst):
    """dst[c, i] = rows[inv[i], c]: row-major targets in sorted order -> columns in input order.

    Per block of input rows: gather whole rows of targets (random reads, one or two cache
    lines each) into a tile that stays in cache, then write it out column by column
    (sequential writes, one stream at a time).
    """
    n, n_cols = rows.shape
    block = 1024
    for b in prange((n + block - 1) // block):
        i0 = b * block
        i1 = min(i0 + block, n)
        tile = np.empty((block, n_cols), dtype=np.float32)
        for i in range(i0, i1):
            k = inv[i]
            for c in range(n_cols):
                tile[i - i0, c] = rows[k, c]
        for c in range(n_cols):
            for i in range(i0, i1):
                dst[c, i] = tile[i - i0, c]


_PAGE_FLOATS = 1024  # float32 per 4 KiB page


@parallel_njit
def first_touch(flat):
    """Write one float32 per 4 KiB page of ``flat`` (values to be overwritten), in
    parallel and in address order.

    Fresh output memory is faulted in here, before the kernel, instead of by the
    kernel's first stores. NumPy asks for transparent huge pages on large arrays, so a
    fault zeroes 2 MiB, and a seed20 output (22 columns, each written 16 KB per user)
    faults every few users: each zeroing sweeps the size of this machine's L2 out from
    under the kernel's cache-resident user (our reading of the numbers, not traced).
    ``benchmarks/output_memory.py --first-touch`` (seed20, 2,048 x 4,096 rows, 2
    threads), three runs: faulted by the kernel 710 / 1,129 / 971 ms, faulted here first
    706 / 835 / 789 ms, a reused buffer 634 / 740 / 743 ms; seed_daily_5411 (one
    column): no difference.
    """
    for p in prange((flat.shape[0] + _PAGE_FLOATS - 1) // _PAGE_FLOATS):
        flat[p * _PAGE_FLOATS] = 0.0


def fresh_output(shape) -> np.ndarray:
    """A float32 array of ``shape`` from :data:`OUTPUT_POOL`: the
    memory of an earlier, dropped output when one fits, else new memory with its pages
    faulted in (:func:`first_touch`)."""
    buf, fresh = OUTPUT_POOL.empty(shape, np.float32)
    if fresh and PREFAULT and buf.size:
        first_touch(buf.reshape(-1))
    return buf


#: Fault fresh output memory in before the kernel writes it (``benchmarks/output_memory.py``
#: turns it off to time the alternative).
PREFAULT = True
