"""The ``cuda`` engine: numba.cuda kernels, one thread block per user.

Host glue and array namespace
-----------------------------
Every array the engine allocates, sorts, gathers or searches lives in one array
namespace ``xp``: **CuPy** on a GPU, **NumPy** under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, where NumPy arrays are the simulated device memory). The
glue (sort by ``(user, time, row)``, user offsets, the time-zone offsets, period order
under DST, batching, output) is written once against ``xp``, so the simulator tests in
CPU CI execute the same lines a GPU executes. Kernels take ``xp`` arrays directly
(``__cuda_array_interface__`` on a GPU). The few lines only a GPU takes (choosing CuPy,
the caller's stream, free device memory, RMM) are marked ``# gpu`` and listed in
docs/cuda.md.

Memory: everything is allocated through CuPy (its pool, or RMM's pool when RMM is
installed: :func:`use_rmm`), never through Numba's own allocator, so the memory is
visible to RMM, cuDF and CuPy alike.

Device and stream: :func:`compute_device` runs on the device that holds its inputs and
on the caller's stream (torch's current stream for torch tensors, else CuPy's current
stream), so its result is ordered with whatever consumes it.

Layout of the work
------------------
1. Order rows by ``(user, time, input row)`` (two stable argsorts; skipped when the
   rows are already grouped and time-sorted, or declared so with ``user_offsets``). Kernels never move rows: they read the input
   arrays through ``g[q]``, the input row at scan position ``q`` (the identity on sorted
   input, so reads coalesce), and write results straight to input row order.
2. Users are processed in batches of whole users (``max_rows_per_batch``) that bound the
   per-row scratch memory; every kernel runs one thread block per user of the batch,
   its threads striding over the user's rows (row ``s + tid``, ``s + tid + blockDim``...).
3. Per target, in plan order (targets sharing a filter and window reuse the scan):

   * **period windows** (expanding / full / next; hour .. year, any time zone): the
     period index of each row (:func:`gpu_targets.calendar.period_index` on the local
     wall-clock time: UTC plus the zone's offset, looked up on the device in a small
     table built on the host by :func:`gpu_targets.calendar.utc_offset_table`) is
     written per batch; a block-wide *segmented* inclusive scan (Hillis-Steele in shared
     memory, chunks of ``blockDim`` rows with a carry) gives every row its
     period-to-date count, double-double sums of x and x^2, min and max. ``expanding``
     reads the row's own state, ``full`` the state at the last row of its period,
     ``next`` the state at the last row of the following period when that period is
     ``p + 1`` (both found by binary search of the sorted period indices). Top-k: each
     thread scans its window (O(w k)). Under a DST time zone the period indices need
     not be monotone in time: a check kernel finds such batches and their rows are
     visited in stable period order (two stable argsorts), which is SPEC.md's definition.
   * **duration windows** (trailing ``(t - D, t]`` up to the row itself, forward
     ``(t, t + D]``): a block-wide (unsegmented) scan gives prefix counts and
     double-double prefix sums over the user's rows in time order; each thread finds
     its window's bounds ``[lo, hi)`` by binary search in the user's sorted times, and
     a window's count/sum/std come from ``P[hi - 1] - P[lo - 1]``. min/max and top-k:
     each thread scans its window (O(w) and O(w k)).

Per-element logic (filter bits, period indices, double-double arithmetic, sample std,
aggregation results) is the CPU engine's source compiled as CUDA device functions
(:mod:`.cuda_functions`). Arithmetic is float64, results float32 (SPEC.md 2.2). Kernels
are compiled once per process and cached on disk (``cache=True``).
"""

from __future__ import annotations

import contextlib
import logging
import math

import numpy as np

try:
    from numba import config as _numba_config
    from numba import cuda
except ImportError as err:  # pragma: no cover - numba is a base dependency
    raise ImportError(f"numba.cuda is not installed ({err}); pip install 'gpu_targets[cu12]'") from None

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)
if SIMULATOR:
    xp = np
else:  # gpu
    if not cuda.is_available():
        raise ImportError(
            "the cuda engine found no usable CUDA device (no NVIDIA GPU or driver); use --backend cpu "
            "(backend='cpu') here, or NUMBA_ENABLE_CUDASIM=1 for Numba's CUDA simulator (slow, for tests)"
        )
    try:
        import cupy as xp
    except ImportError:
        raise ImportError("the cuda engine needs CuPy on a GPU: pip install 'gpu_targets[cu12]' "
                          "(or [cu13])") from None

from ..kernel_cache import install_cuda  # noqa: E402

install_cuda()  # before any kernel: numba-cuda's disk cache keyed on every engine source

from ..calendar import utc_offset_table  # noqa: E402
from ..spec import Config  # noqa: E402
from ..transactions import Transactions  # noqa: E402
from .cuda_functions import (  # noqa: E402
    compensated_add,
    direct_sum_add,
    dd_add_dd,
    finish_direct_sum,
    moments_result,
    period_index,
    row_filter_bits,
    std_is_trusted,
    sum_is_trusted,
    topk_insert,
    two_prod,
)
from .plan import FULL, MAX, MEAN, MIN, NEXT, STD, SUM, TOPK, TRAILING, Plan, compile_plan  # noqa: E402

__all__ = ["compute", "compute_device", "pad_targets", "use_rmm", "xp", "SIMULATOR"]

log = logging.getLogger("gpu_targets")

#: Threads per block. Small under the simulator (threads are Python threads), which
#: also makes small test users span several chunks and exercise the scan's carry.
BLOCK = 8 if SIMULATOR else 128
_SIM_BATCH_ROWS = 1 << 16
# scratch bytes per row of a batch: scan state (8 x 8 B) + per period slot key and order
_SCRATCH_ROW_BYTES = 64
_SLOT_ROW_BYTES = 16
# host copy of an xp array: cupy.asnumpy (CuPy >= 1.0); NumPy arrays are already there
_asnumpy = getattr(xp, "asnumpy", np.asarray)

# --------------------------------------------------------------------------- device helpers


@cuda.jit(device=True, inline="always")
def _combine(c1, a1h, a1l, b1h, b1l, mn1, mx1, c2, a2h, a2l, b2h, b2l, mn2, mx2):
    """(left) + (right) of two scan states: count, dd sum x, dd sum x^2, min, max."""
    ah, al = dd_add_dd(a1h, a1l, a2h, a2l)
    bh, bl = dd_add_dd(b1h, b1l, b2h, b2l)
    return c1 + c2, ah, al, bh, bl, min(mn1, mn2), max(mx1, mx2)


@cuda.jit(device=True, inline="always")
def _upper_key(key, lo, hi, v):
    """First position in [lo, hi) with key > v (key non-decreasing there)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if key[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(device=True, inline="always")
def _lower_key(key, lo, hi, v):
    """First position in [lo, hi) with key >= v."""
    while lo < hi:
        mid = (lo + hi) // 2
        if key[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(device=True, inline="always")
def _upper_time(time, g, tfac, lo, hi, v):
    """First scan position in [lo, hi) whose time (ns) is > v."""
    while lo < hi:
        mid = (lo + hi) // 2
        if time[g[mid]] * tfac <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(cache=True)
def _period_keys(g, local, lfac, code, key):
    """key[q] = period index of the row at scan position q (grid-stride)."""
    q = cuda.grid(1)
    stride = cuda.gridsize(1)
    while q < key.shape[0]:
        key[q] = period_index(local[g[q]] * lfac, code)
        q += stride


@cuda.jit(cache=True)
def _monotone_check(offs, key, flag, slot):
    """flag[slot] = 0 when a user's period indices decrease somewhere (block per user)."""
    u = cuda.blockIdx.x
    if u >= offs.shape[0] - 1:
        return
    s = offs[u]
    e = offs[u + 1]
    q = s + 1 + cuda.threadIdx.x
    while q < e:
        if key[q] < key[q - 1]:
            flag[slot] = 0
        q += cuda.blockDim.x


@cuda.jit(cache=True)
def _scan(offs, g, key, segmented, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf,
          cnt, s1h, s1l, s2h, s2l, mn, mx):
    """Block-wide inclusive scan of each user's rows in scan order (block per user).

    Element of row q: (1, x, x^2, x, x) when the row is in V (filter bit set, amount
    not NaN; x = |a| with ``absf``), else the identity (0, 0, 0, +inf, -inf). With
    ``segmented`` the scan restarts where ``key`` changes (a new period). Chunks of
    blockDim rows: Hillis-Steele in shared memory, the chunk's last state carried into
    the next chunk. Every thread of a block runs the same number of loop iterations,
    so each ``syncthreads`` is reached by all of them.
    """
    sc = cuda.shared.array(BLOCK, dtype=np.int64)
    sah = cuda.shared.array(BLOCK, dtype=np.float64)
    sal = cuda.shared.array(BLOCK, dtype=np.float64)
    sbh = cuda.shared.array(BLOCK, dtype=np.float64)
    sbl = cuda.shared.array(BLOCK, dtype=np.float64)
    smn = cuda.shared.array(BLOCK, dtype=np.float64)
    smx = cuda.shared.array(BLOCK, dtype=np.float64)
    sf = cuda.shared.array(BLOCK, dtype=np.int32)
    u = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    s = 0
    e = 0
    if u < offs.shape[0] - 1:  # uniform over the block
        s = offs[u]
        e = offs[u + 1]
    kc, kah, kal, kbh, kbl, kmn, kmx = 0, 0.0, 0.0, 0.0, 0.0, math.inf, -math.inf  # carry
    base = s
    while base < e:
        q = base + tid
        c, ah, al, bh, bl, emn, emx = 0, 0.0, 0.0, 0.0, 0.0, math.inf, -math.inf
        head = 1
        if q < e:
            i = g[q]
            a = amount[i]
            if row_filter_bits(mcc[i], a, mcc_bits, sign_bits, nomcc_bits) & bit:
                x = abs(a) if absf else a
                c = 1
                ah = x
                bh, bl = two_prod(x, x)
                emn = x
                emx = x
            head = 0
            if q == s:
                head = 1
            elif segmented != 0 and key[q] != key[q - 1]:
                head = 1
            if tid == 0:
                if head == 0:
                    c, ah, al, bh, bl, emn, emx = _combine(kc, kah, kal, kbh, kbl, kmn, kmx,
                                                           c, ah, al, bh, bl, emn, emx)
                head = 1
        sc[tid] = c
        sah[tid] = ah
        sal[tid] = al
        sbh[tid] = bh
        sbl[tid] = bl
        smn[tid] = emn
        smx[tid] = emx
        sf[tid] = head
        cuda.syncthreads()
        d = 1
        while d < nt:
            oc, oah, oal, obh, obl, omn, omx, of = 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1
            if tid >= d:
                oc = sc[tid - d]
                oah = sah[tid - d]
                oal = sal[tid - d]
                obh = sbh[tid - d]
                obl = sbl[tid - d]
                omn = smn[tid - d]
                omx = smx[tid - d]
                of = sf[tid - d]
            cuda.syncthreads()
            if tid >= d and head == 0:
                c, ah, al, bh, bl, emn, emx = _combine(oc, oah, oal, obh, obl, omn, omx,
                                                       c, ah, al, bh, bl, emn, emx)
                head = of
                sc[tid] = c
                sah[tid] = ah
                sal[tid] = al
                sbh[tid] = bh
                sbl[tid] = bl
                smn[tid] = emn
                smx[tid] = emx
                sf[tid] = head
            cuda.syncthreads()
            d *= 2
        if q < e:
            cnt[q] = c
            s1h[q] = ah
            s1l[q] = al
            s2h[q] = bh
            s2l[q] = bl
            mn[q] = emn
            mx[q] = emx
        last = min(nt, e - base) - 1
        kc = sc[last]
        kah = sah[last]
        kal = sal[last]
        kbh = sbh[last]
        kbl = sbl[last]
        kmn = smn[last]
        kmx = smx[last]
        cuda.syncthreads()  # everyone has read the carry before the next chunk overwrites it
        base += nt


@cuda.jit(device=True, inline="always")
def _state_value(src, agg, fill, cnt, s1h, s1l, s2h, s2l, mn, mx):
    """A target's value from the scan state at position src (-1: empty window)."""
    if src < 0:
        if agg == MIN or agg == MAX:
            return fill
        return moments_result(agg, 0, 0.0, 0.0, 0.0, 0.0, fill)
    n = cnt[src]
    if agg == MIN:
        return mn[src] if n > 0 else fill
    if agg == MAX:
        return mx[src] if n > 0 else fill
    return moments_result(agg, n, s1h[src], s1l[src], s2h[src], s2l[src], fill)


@cuda.jit(cache=True)
def _period_result(offs, g, key, mode, agg, fill, cnt, s1h, s1l, s2h, s2l, mn, mx, out, col):
    """Period-window values from the segmented scan (block per user, rows strided).

    expanding: the row's own state; full: the state at the last row of its period;
    next: the state at the last row of period p + 1 when it follows, else empty.
    """
    u = cuda.blockIdx.x
    if u >= offs.shape[0] - 1:
        return
    s = offs[u]
    e = offs[u + 1]
    q = s + cuda.threadIdx.x
    while q < e:
        src = q
        if mode == FULL:
            src = _upper_key(key, q, e, key[q]) - 1
        elif mode == NEXT:
            r1 = _upper_key(key, q, e, key[q])
            if r1 < e and key[r1] == key[q] + 1:
                src = _upper_key(key, r1, e, key[r1]) - 1
            else:
                src = -1
        out[col, g[q]] = _state_value(src, agg, fill, cnt, s1h, s1l, s2h, s2l, mn, mx)
        q += cuda.blockDim.x


@cuda.jit(cache=True)
def _period_topk(offs, g, key, mode, k, fill, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf, out, col):
    """Top-k over period windows: each thread scans its row's window, O(w k)."""
    u = cuda.blockIdx.x
    if u >= offs.shape[0] - 1:
        return
    s = offs[u]
    e = offs[u + 1]
    q = s + cuda.threadIdx.x
    while q < e:
        p = key[q]
        w0 = _lower_key(key, s, q, p)
        w1 = q + 1
        if mode == FULL:
            w1 = _upper_key(key, q, e, p)
        elif mode == NEXT:
            w0 = _upper_key(key, q, e, p)
            w1 = w0
            if w0 < e and key[w0] == p + 1:
                w1 = _upper_key(key, w0, e, p + 1)
        row = g[q]
        kn = 0
        for j in range(w0, w1):
            i = g[j]
            a = amount[i]
            if row_filter_bits(mcc[i], a, mcc_bits, sign_bits, nomcc_bits) & bit:
                kn = topk_insert(out[col : col + k, row], kn, k, abs(a) if absf else a)
        for j in range(kn, k):
            out[col + j, row] = fill
        q += cuda.blockDim.x


@cuda.jit(device=True, inline="always")
def _duration_bounds(time, g, tfac, s, e, q, d, mode):
    """W(q) as scan positions [lo, hi): trailing (t - d, t] up to q, forward (t, t + d]."""
    t = time[g[q]] * tfac
    if mode == TRAILING:
        return _upper_time(time, g, tfac, s, q + 1, t - d), q + 1
    lo = _upper_time(time, g, tfac, q, e, t)
    return lo, _upper_time(time, g, tfac, lo, e, t + d)


@cuda.jit(cache=True)
def _duration_moments(offs, g, time, tfac, d, mode, agg, fill, cnt, s1h, s1l, s2h, s2l, amount, mcc, mcc_bits,
                      sign_bits, nomcc_bits, bit, absf, out, col):
    """count/sum/mean/std/any over duration windows: differences of prefix states, or,
    when a difference is not trustworthy (a huge or non-finite amount in the prefixes),
    the window recomputed from its rows (:func:`_window_direct`)."""
    u = cuda.blockIdx.x
    if u >= offs.shape[0] - 1:
        return
    s = offs[u]
    e = offs[u + 1]
    q = s + cuda.threadIdx.x
    while q < e:
        lo, hi = _duration_bounds(time, g, tfac, s, e, q, d, mode)
        n = 0
        ah, al, bh, bl = 0.0, 0.0, 0.0, 0.0
        pa1, pa2, pb1, pb2 = 0.0, 0.0, 0.0, 0.0
        if hi > lo:
            n = cnt[hi - 1]
            ah = s1h[hi - 1]
            al = s1l[hi - 1]
            bh = s2h[hi - 1]
            bl = s2l[hi - 1]
            pb1, pb2 = ah, bh
            if lo > s:
                n -= cnt[lo - 1]
                pa1, pa2 = s1h[lo - 1], s2h[lo - 1]
                ah, al = dd_add_dd(ah, al, -s1h[lo - 1], -s1l[lo - 1])
                bh, bl = dd_add_dd(bh, bl, -s2h[lo - 1], -s2l[lo - 1])
        v = moments_result(agg, n, ah, al, bh, bl, fill)
        if agg == SUM or agg == MEAN:
            if n > 0 and not sum_is_trusted(ah + al, pa1, pb1):
                v = _window_direct(g, lo, hi, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf, False)
                if agg == MEAN:
                    v = v / n
        elif agg == STD:
            if n >= 2 and not std_is_trusted(n, v, ah + al, pa1, pb1, pa2, pb2):
                v = _window_direct(g, lo, hi, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf, True)
        out[col, g[q]] = v
        q += cuda.blockDim.x


@cuda.jit(device=True, inline="always")
def _window_direct(g, lo, hi, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf, want_std):
    """Sum (or sample std) of the window's rows in V straight from the amounts: as the
    cpu engine's ``_direct_sum``/``_direct_std`` (IEEE infinities, overflow on the way
    avoided by a 1/4-scaled pass, std by two passes scaled by the largest magnitude)."""
    s, c, qs, qc = 0.0, 0.0, 0.0, 0.0
    n_pos, n_neg, n = 0, 0, 0
    scale = 0.0
    for j in range(lo, hi):
        i = g[j]
        a = amount[i]
        if row_filter_bits(mcc[i], a, mcc_bits, sign_bits, nomcc_bits) & bit:
            x = abs(a) if absf else a
            n += 1
            scale = max(scale, abs(x))
            s, c, qs, qc, n_pos, n_neg = direct_sum_add(s, c, qs, qc, n_pos, n_neg, x)
    if not want_std:
        return finish_direct_sum(s, c, qs, qc, n_pos, n_neg)
    if n_pos + n_neg > 0:
        return math.nan
    if scale == 0.0:
        return 0.0
    s, c = 0.0, 0.0
    for j in range(lo, hi):
        i = g[j]
        a = amount[i]
        if row_filter_bits(mcc[i], a, mcc_bits, sign_bits, nomcc_bits) & bit:
            s, c = compensated_add(s, c, (abs(a) if absf else a) / scale)
    mean = (s + c) / n
    s, c = 0.0, 0.0
    for j in range(lo, hi):
        i = g[j]
        a = amount[i]
        if row_filter_bits(mcc[i], a, mcc_bits, sign_bits, nomcc_bits) & bit:
            dv = (abs(a) if absf else a) / scale - mean
            s, c = compensated_add(s, c, dv * dv)
    return scale * math.sqrt((s + c) / (n - 1))


@cuda.jit(cache=True)
def _duration_scan(offs, g, time, tfac, d, mode, agg, k, fill, amount, mcc, mcc_bits, sign_bits, nomcc_bits,
                   bit, absf, out, col):
    """min/max (O(w)) and top-k (O(w k)) over duration windows: each thread scans its window."""
    u = cuda.blockIdx.x
    if u >= offs.shape[0] - 1:
        return
    s = offs[u]
    e = offs[u + 1]
    q = s + cuda.threadIdx.x
    while q < e:
        lo, hi = _duration_bounds(time, g, tfac, s, e, q, d, mode)
        row = g[q]
        kn = 0
        ext = math.inf if agg == MIN else -math.inf
        for j in range(lo, hi):
            i = g[j]
            a = amount[i]
            if row_filter_bits(mcc[i], a, mcc_bits, sign_bits, nomcc_bits) & bit:
                x = abs(a) if absf else a
                if agg == TOPK:
                    kn = topk_insert(out[col : col + k, row], kn, k, x)
                else:
                    kn = 1
                    ext = min(ext, x) if agg == MIN else max(ext, x)
        if agg == TOPK:
            for j in range(kn, k):
                out[col + j, row] = fill
        else:
            out[col, row] = ext if kn > 0 else fill
        q += cuda.blockDim.x


@cuda.jit(cache=True)
def _pad_kernel(values, offsets, starts, dst):
    """dst[b, j, :] = values[:, starts[b] + j] for j < offsets[b + 1] - starts[b], else 0.

    Block per user ``b``; its threads stride over the ``T x C`` cells of ``dst[b]``.
    """
    b = cuda.blockIdx.x
    if b >= dst.shape[0]:
        return
    s0 = starts[b]
    n = offsets[b + 1] - s0
    n_cols = dst.shape[2]
    i = cuda.threadIdx.x
    while i < dst.shape[1] * n_cols:
        j = i // n_cols
        c = i - j * n_cols
        dst[b, j, c] = values[c, s0 + j] if j < n else 0.0
        i += cuda.blockDim.x


# --------------------------------------------------------------------------- host side


def _grid(n: int) -> int:
    return max(1, min((n + BLOCK - 1) // BLOCK, 4096))


def use_rmm(pool_size=None) -> bool:
    """Allocate CuPy's and Numba's device memory from RMM, as dask-cuda does.

    With ``pool_size`` (bytes, or a string such as ``"40GB"``) RMM is first re-initialised
    with a pool of that size. CuPy's allocator becomes ``rmm_cupy_allocator`` and Numba's
    memory manager RMM's EMM plugin (for contexts made after this call), so the engine's
    scratch memory, cuDF's columns and anything Numba allocates come from one pool that
    every library sees. Returns False (and changes nothing) without RMM.

    When the engine loads on a GPU it calls this (without ``pool_size``) only if RMM is
    installed *and* already configured with something other than plain ``cudaMalloc``
    (a pool set by ``rmm.reinitialize`` or dask-cuda's ``--rmm-pool-size``): routing
    CuPy through an unpooled RMM would make every allocation a ``cudaMalloc``/``cudaFree``.
    Otherwise the engine allocates through CuPy's own pool.
    """
    if SIMULATOR:
        return False
    try:  # gpu (this function below this line)
        import rmm
        from rmm.allocators.cupy import rmm_cupy_allocator
        from rmm.allocators.numba import RMMNumbaManager
    except ImportError:
        return False
    if pool_size is not None:
        rmm.reinitialize(pool_allocator=True, initial_pool_size=pool_size)
    xp.cuda.set_allocator(rmm_cupy_allocator)
    cuda.set_memory_manager(RMMNumbaManager)
    return True


def _rmm_pool_configured() -> bool:
    """True when RMM is installed and its current resource is not plain cudaMalloc."""
    if SIMULATOR:
        return False
    try:  # gpu
        import rmm.mr
    except ImportError:
        return False
    return not isinstance(rmm.mr.get_current_device_resource(), rmm.mr.CudaMemoryResource)  # gpu


if _rmm_pool_configured():  # gpu
    use_rmm()


def _free_device_bytes():
    """Device memory the allocator in use can still hand out (None under the simulator).

    The driver's free memory plus what CuPy's default pool holds unused (0 when RMM or
    another allocator is in use; RMM's own pool counts as used by the driver).
    """
    if SIMULATOR:
        return None
    free, _ = xp.cuda.runtime.memGetInfo()  # gpu
    return int(free) + int(xp.get_default_memory_pool().free_bytes())  # gpu


def _dlpack_device(x):
    """``(device type, id)`` of an array: 1 = host, 2 = CUDA (DLPack's codes)."""
    if hasattr(x, "__dlpack_device__"):
        kind, dev = x.__dlpack_device__()
        return int(kind), int(dev)
    if hasattr(x, "__cuda_array_interface__"):  # gpu: a numba device array (no DLPack)
        return 2, int(cuda.get_current_device().id)
    return 0, 0


#: The DLPack device type of ``xp``'s arrays: CUDA (2) for CuPy, host (1) for NumPy.
_XP_DEVICE = 1 if SIMULATOR else 2


def _as_xp(x, dtype, name: str):
    """``x`` as a 1-d ``xp`` array of ``dtype`` (a view, or a converted copy on the device).

    Accepts ``xp`` arrays, objects with ``__cuda_array_interface__`` (numba device
    arrays, cuDF/torch CUDA buffers) and ``__dlpack__`` objects on ``xp``'s device (torch
    CUDA tensors; under the simulator also NumPy/torch CPU arrays and simulated device
    arrays, which are its device memory).
    """
    if not isinstance(x, xp.ndarray):
        if hasattr(x, "__dlpack__") and _dlpack_device(x)[0] == _XP_DEVICE:
            x = xp.from_dlpack(x)
        elif hasattr(x, "__cuda_array_interface__"):  # gpu
            x = xp.asarray(x)
        else:
            raise TypeError(
                f"{name}: expected a device array (__cuda_array_interface__ or a CUDA __dlpack__), "
                f"got {type(x).__name__} in host memory; use compute() for host data"
            )
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {x.shape}")
    # CuPy arrays are always writable (CuPy's flags have no ``writeable``); the simulator
    # copies every kernel argument back after a launch, which a read-only array refuses
    if not getattr(x.flags, "writeable", True):
        return xp.array(x, dtype=dtype)
    return xp.asarray(x, dtype=dtype)


def _as_xp_2d(x):
    """A 2-d device array (``xp`` array, or a ``__dlpack__`` object on ``xp``'s device) as ``xp``."""
    return x if isinstance(x, xp.ndarray) else xp.from_dlpack(x)


def _caller_stream(inputs, device: int):
    """``(xp stream context, numba stream)`` of the caller: torch's current stream when an
    input is a torch tensor, else CuPy's current stream; the default stream under the
    simulator (which has no external streams)."""
    if SIMULATOR:
        return contextlib.nullcontext(), cuda.default_stream()
    ptr = None  # gpu (this function below this line)
    for x in inputs:
        if type(x).__module__.startswith("torch"):
            import torch

            ptr = torch.cuda.current_stream(device).cuda_stream
            break
    if ptr is None:
        ptr = xp.cuda.get_current_stream().ptr
    if ptr == 0:  # the legacy default stream (CuPy's Stream.null, torch's stream 0)
        return xp.cuda.Stream.null, cuda.legacy_default_stream()
    return xp.cuda.ExternalStream(ptr), cuda.external_stream(ptr)


@contextlib.contextmanager
def _on_device_of(inputs):
    """Run on the device holding ``inputs`` (same for all) and on the caller's stream.

    Yields the numba stream every kernel is launched on. Raises ValueError when the
    inputs lie on different devices.
    """
    devices = {_dlpack_device(x)[1] for x in inputs}
    if len(devices) != 1:
        raise ValueError(f"inputs lie on different devices {sorted(devices)}; move them to one")
    (device,) = devices
    device_context = contextlib.nullcontext() if SIMULATOR else xp.cuda.Device(device)
    with cuda.gpus[device], device_context:
        stream_context, stream = _caller_stream(inputs, device)
        with stream_context:
            yield stream


def _stable_argsort_by(primary, secondary):
    """Permutation ordering rows by (primary, secondary, position): two stable radix
    argsorts (CuPy's sort is always stable; NumPy's needs ``kind="stable"``), cheaper on
    a GPU than ``lexsort``'s comparison sort of a stacked key."""
    order = xp.argsort(secondary, kind="stable")
    return order[xp.argsort(primary[order], kind="stable")].astype(xp.int64)


def _group(user, time):
    """(order, offsets) on the device: int64 [n] scan order by (user, time, row) and int64
    [n_users + 1] user offsets; ``order`` is ``arange(n)`` for rows already grouped and
    time-sorted (checked on the device, no sort then)."""
    n = user.shape[0]
    order = xp.arange(n, dtype=xp.int64)
    in_order = n < 2 or bool(xp.all((user[1:] > user[:-1]) | ((user[1:] == user[:-1]) & (time[1:] >= time[:-1]))))
    us = user
    if not in_order:
        order = _stable_argsort_by(user, time)
        us = user[order]
    starts = xp.flatnonzero(us[1:] != us[:-1]) + 1
    offsets = xp.concatenate([xp.zeros(1, dtype=xp.int64), starts.astype(xp.int64),
                              xp.full(1, n, dtype=xp.int64)])
    return order, offsets


def _local_time(time, tfac, timezone: str):
    """Local wall-clock ns of every row, on the device: the zone's offset table (built on
    the host from the data's time range) looked up by binary search."""
    t = time * tfac
    lo, hi = (int(v) for v in _asnumpy(xp.stack([t.min(), t.max()])))  # one device-to-host copy
    start, offset = utc_offset_table(timezone, lo, hi)
    if start.shape[0] == 1:
        return t + int(offset[0])
    j = xp.searchsorted(xp.asarray(start), t, side="right") - 1
    return t + xp.asarray(offset)[j]


def _stable_period_order(key, offs):
    """Permutation of a batch's scan positions ordering each user's rows by period,
    stably (ties keep (time, row) order). ``offs``: the batch's user offsets (device)."""
    pos = xp.arange(key.shape[0], dtype=xp.int64)
    # user of each position from the offsets (cupy.repeat with an array of repeats needs CuPy >= 14.1)
    uidx = xp.searchsorted(offs, pos, side="right") - 1
    return _stable_argsort_by(uidx, key)


def _default_batch_rows(n_slots: int) -> int:
    per_row = _SCRATCH_ROW_BYTES + _SLOT_ROW_BYTES * n_slots
    free = _free_device_bytes()
    if free is None:
        return _SIM_BATCH_ROWS
    return max(1 << 16, int(free * 0.5) // per_row)  # gpu


def _run(user, time, amount, mcc, plan: Plan, timezone: str, time_factor: int, max_rows_per_batch, progress,
         stream, out=None, user_offsets=None):
    """Every target of ``plan`` on ``xp`` arrays (input row order); float32 [n_cols, n] ``xp`` array.

    ``user_offsets`` (host int64 [n_users + 1]): the rows are known to be grouped by user
    and time-sorted, so neither the check nor the sort runs (no device-to-host sync).
    """
    n = time.shape[0]
    if out is None:
        out = xp.empty((plan.n_columns, n), dtype=xp.float32)
    if n == 0:
        return out
    if user_offsets is None:
        order, offsets = _group(user, time)
        offsets_h = _asnumpy(offsets)
    else:
        offsets_h = np.asarray(user_offsets, dtype=np.int64)
        order, offsets = xp.arange(n, dtype=xp.int64), xp.asarray(offsets_h)
    tfac = np.int64(time_factor)
    if plan.period_codes.shape[0] == 0 or timezone == "UTC":
        local, lfac = time, tfac
    else:
        local, lfac = _local_time(time, tfac, timezone), np.int64(1)
    mcc_bits = xp.asarray(plan.mcc_bits)
    sign_bits = xp.asarray(plan.sign_bits)
    nomcc = np.uint64(plan.nomcc_bits)
    n_slots = plan.period_codes.shape[0]
    cap = int(max_rows_per_batch or _default_batch_rows(n_slots))
    n_users = offsets_h.shape[0] - 1
    biggest = int(np.max(np.diff(offsets_h)))
    rows = max(min(cap, n), biggest)
    cnt = xp.empty(rows, dtype=xp.int64)
    s1h, s1l, s2h, s2l, mn, mx = (xp.empty(rows, dtype=xp.float64) for _ in range(6))
    keys = [xp.empty(rows, dtype=xp.int64) for _ in range(n_slots)]
    flags = xp.ones(max(n_slots, 1), dtype=xp.int32)
    u0 = 0
    while u0 < n_users:
        u1 = int(np.searchsorted(offsets_h, offsets_h[u0] + cap, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_users)
        r0, r1 = int(offsets_h[u0]), int(offsets_h[u1])
        nb = r1 - r0
        offs = offsets[u0 : u1 + 1] - r0
        gb = order[r0:r1]
        nblk = u1 - u0
        # per period slot: scan order and period index of every scan position; the
        # monotonicity flags of all slots come back to the host in one copy
        slot_g, slot_key = [], []
        if n_slots:
            flags.fill(1)
        for sl in range(n_slots):
            _period_keys[_grid(nb), BLOCK, stream](gb, local, lfac, np.int64(plan.period_codes[sl]), keys[sl][:nb])
            _monotone_check[nblk, BLOCK, stream](offs, keys[sl][:nb], flags, np.int64(sl))
        monotone = _asnumpy(flags) if n_slots else ()
        for sl in range(n_slots):
            key = keys[sl][:nb]
            if monotone[sl]:
                slot_g.append(gb)
            else:  # DST: visit the batch's rows in stable period order
                perm = _stable_period_order(key, offs)
                slot_g.append(gb[perm])
                key = key[perm]
            slot_key.append(key)
        scanned = None
        for ti in range(plan.window.shape[0]):
            w = int(plan.window[ti])
            g_agg = int(plan.agg[ti])
            col = np.int64(plan.col[ti])
            bit = np.uint64(1) << np.uint64(plan.fbit[ti])
            absf = bool(plan.absval[ti])
            fill = np.float64(plan.fill[ti])
            k = np.int64(plan.k[ti])
            if w <= NEXT:
                sl = int(plan.period_slot[ti])
                g, key = slot_g[sl], slot_key[sl]
                if g_agg == TOPK:
                    _period_topk[nblk, BLOCK, stream](offs, g, key, np.int64(w), k, fill, amount, mcc, mcc_bits,
                                                      sign_bits, nomcc, bit, absf, out, col)
                    continue
                state = ("period", sl, int(plan.fbit[ti]), absf)
                if scanned != state:
                    _scan[nblk, BLOCK, stream](offs, g, key, np.int64(1), amount, mcc, mcc_bits, sign_bits, nomcc, bit,
                                               absf, cnt, s1h, s1l, s2h, s2l, mn, mx)
                    scanned = state
                _period_result[nblk, BLOCK, stream](offs, g, key, np.int64(w), np.int64(g_agg), fill,
                                                    cnt, s1h, s1l, s2h, s2l, mn, mx, out, col)
            else:
                d = np.int64(plan.param[ti])
                if g_agg in (MIN, MAX, TOPK):
                    _duration_scan[nblk, BLOCK, stream](offs, gb, time, tfac, d, np.int64(w), np.int64(g_agg), k,
                                                        fill, amount, mcc, mcc_bits, sign_bits, nomcc, bit, absf,
                                                        out, col)
                    continue
                state = ("duration", int(plan.fbit[ti]), absf)
                if scanned != state:
                    _scan[nblk, BLOCK, stream](offs, gb, gb, np.int64(0), amount, mcc, mcc_bits, sign_bits, nomcc,
                                               bit, absf, cnt, s1h, s1l, s2h, s2l, mn, mx)
                    scanned = state
                _duration_moments[nblk, BLOCK, stream](offs, gb, time, tfac, d, np.int64(w), np.int64(g_agg), fill,
                                                       cnt, s1h, s1l, s2h, s2l, amount, mcc, mcc_bits, sign_bits,
                                                       nomcc, bit, absf, out, col)
        if progress is not None:
            stream.synchronize()
            progress(nb)
        u0 = u1
    return out


def compute_device(user, time, amount, mcc, config: Config, *, time_factor: int = 1, max_rows_per_batch=None,
                   user_offsets=None):
    """All targets of ``config`` for transactions already on the device.

    Parameters
    ----------
    user : device array of integers, shape (n,)
        User ids (any integer dtype; string ids must be encoded first, e.g. with
        ``factorize``).
    time : device array of integers, shape (n,)
        UTC time in ticks of ``time_factor`` ns since 1970-01-01.
    amount : device array of float, shape (n,)
        NaN = null (contributes to no window).
    mcc : device array of integers, shape (n,)
        -1 (or outside 0..9999) = null: matches no ``mcc`` filter.
    config : Config
    time_factor : int
        Nanoseconds per tick of ``time``.
    max_rows_per_batch : int, optional
        Users are processed in batches of whole users of about this many rows (bounds
        the scratch memory, ~64 B/row + 16 B/row per period kind). Default: half the
        device memory the allocator can still hand out (a constant under the simulator).
    user_offsets : ndarray of int64, shape (n_users + 1,), optional
        Host offsets of the users when the rows are already grouped by user (any user
        order) and time-sorted within each user, as a training batch is: the engine then
        neither checks nor sorts (no device-to-host synchronisation for it). Wrong
        offsets give wrong targets.

    Arrays may be CuPy arrays, numba device arrays, anything with
    ``__cuda_array_interface__`` or torch CUDA tensors (``__dlpack__``); under the
    simulator, NumPy arrays. They must lie on one device: the kernels run there
    (``cuda.gpus[i]``), on the caller's stream (torch's current stream when an input is
    a torch tensor, else CuPy's), so the result is ordered with its consumer.
    Non-UTC time zones: a table of the zone's UTC offsets over the data's time range is
    built on the host (two scalars read back) and applied on the device.

    Returns
    -------
    ``xp`` array of float32, shape (n_target_columns, n)
        A CuPy array on the inputs' device (NumPy under the simulator). Row ``c`` is
        output column ``config.output_columns[c]``, in input row order.

    Raises
    ------
    TypeError
        An input is not a device array.
    ValueError
        Inputs of different lengths, not 1-d, or on different devices.
    """
    plan = compile_plan(config)
    inputs = (user, time, amount, mcc)
    with _on_device_of(inputs) as stream:
        arrays = [_as_xp(x, dt, name) for x, dt, name in
                  zip(inputs, (np.int64, np.int64, np.float64, np.int32), ("user", "time", "amount", "mcc"))]
        lengths = {a.shape[0] for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"user, time, amount and mcc must have the same length, got {sorted(lengths)}")
        return _run(*arrays, plan, config.timezone, int(time_factor), max_rows_per_batch, None, stream,
                    user_offsets=user_offsets)


def compute(tx: Transactions, config: Config, progress=None, *, out=None, max_rows_per_batch=None) -> np.ndarray:
    """All targets of ``config`` for every transaction, with the CUDA kernels.

    Copies the four role arrays to the current device (28 B/row), runs
    :func:`compute_device`'s kernels in batches of whole users and copies the result back.

    Parameters
    ----------
    tx : Transactions
        Role arrays in input row order (string users arrive as integer codes).
    config : Config
    progress : callable(int) or None
        Called with the number of rows finished after each batch of users.
    out : ndarray of float32, shape (n_target_columns, n), optional
        Host array to write the result into (any strides: e.g. the transpose of a
        row-major ``[n, C]`` array).
    max_rows_per_batch : int, optional
        See :func:`compute_device`.

    Returns
    -------
    ndarray of float32, shape (n_target_columns, n)
        Row ``c`` is output column ``config.output_columns[c]``, in input row order
        (``out`` when given).
    """
    plan = compile_plan(config)
    arrays = [xp.array(a) for a in (tx.user, tx.time, tx.amount, tx.mcc)]  # a device copy (host copy: simulator)
    with _on_device_of(arrays) as stream:
        values = _run(*arrays, plan, config.timezone, int(tx.time_factor), max_rows_per_batch, progress, stream)
        host = _asnumpy(values)
    if out is None:
        return host
    out[...] = host
    return out


def pad_targets(values, offsets, lengths, out) -> None:
    """Scatter targets of whole users into a padded ``[B, T, C]`` block, on the device.

    Parameters
    ----------
    values : ``xp`` array of float32, shape (C, n)
        Targets of ``B`` users whose rows are consecutive (``offsets``), as
        :func:`compute_device` returns them for rows grouped by user.
    offsets : device array of int64, shape (B + 1,)
        Row offsets of the users in ``values``.
    lengths : device array of int64, shape (B,)
        Rows kept per user: the *last* ``lengths[b]`` rows of user ``b`` (``max_len``
        truncation keeps the most recent transactions).
    out : device array of float32, shape (B, T, C), ``T >= max(lengths)``
        Written in place (a torch CUDA tensor's memory through DLPack, say): row ``j`` of
        user ``b`` for ``j < lengths[b]``, zero beyond (padding).
    """
    if out.shape[0] == 0:
        return
    # device and stream from the caller's own objects (torch's current stream for torch
    # tensors), and every conversion inside, so all of it is ordered on that stream
    with _on_device_of((values, offsets, lengths, out)) as stream:
        dst = out if isinstance(out, xp.ndarray) else xp.from_dlpack(out)  # writable view (no grad)
        offsets = _as_xp(offsets, np.int64, "offsets")
        starts = offsets[1:] - _as_xp(lengths, np.int64, "lengths")
        _pad_kernel[dst.shape[0], BLOCK, stream](_as_xp_2d(values), offsets, starts, dst)
