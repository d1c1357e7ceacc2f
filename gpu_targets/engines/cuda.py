"""The ``cuda`` engine: numba.cuda kernels, one thread block per user.

Layout of the work
------------------
1. Order rows by ``(user, time, input row)``. On the device with CuPy (a check kernel
   first: input already grouped and time-sorted is not sorted; else ``cupy.lexsort``);
   without CuPy (e.g. numba's simulator) the grouping runs on the host with
   :func:`gpu_targets.engines.cpu.group_users` and only the resulting ``order`` and
   user ``offsets`` go to the device. Kernels never move rows: they read the input
   arrays through ``g[q]``, the input row at scan position ``q`` (the identity on sorted
   input, so reads coalesce), and write results straight to input row order.
2. Users are processed in batches of whole users (``max_rows_per_batch``) that bound the
   per-row scratch memory; every kernel runs one thread block per user of the batch,
   its threads striding over the user's rows (row ``s + tid``, ``s + tid + blockDim``...).
3. Per target, in plan order (targets sharing a filter and window reuse the scan):

   * **period windows** (expanding / full / next; hour .. year, any time zone): the
     period index of each row (:func:`gpu_targets.calendar.period_index` on the local
     wall-clock time, resolved on the host with the tz database) is written per batch;
     a block-wide *segmented* inclusive scan (Hillis-Steele in shared memory, chunks of
     ``blockDim`` rows with a carry) gives every row its period-to-date count,
     double-double sums of x and x^2, min and max. ``expanding`` reads the row's own
     state, ``full`` the state at the last row of its period, ``next`` the state at the
     last row of the following period when that period is ``p + 1`` (both found by
     binary search of the sorted period indices). Top-k: each thread scans its window
     (O(w k)). Under a DST time zone the period indices need not be monotone in time:
     a check kernel finds such batches and their rows are visited in stable period
     order (host ``np.lexsort`` or ``cupy.lexsort``), which is SPEC.md's definition.
   * **duration windows** (trailing ``(t - D, t]`` up to the row itself, forward
     ``(t, t + D]``): a block-wide (unsegmented) scan gives prefix counts and
     double-double prefix sums over the user's rows in time order; each thread finds
     its window's bounds ``[lo, hi)`` by binary search in the user's sorted times, and
     a window's count/sum/std come from ``P[hi - 1] - P[lo - 1]``. min/max and top-k:
     each thread scans its window (O(w) and O(w k)).

Per-element logic (filter bits, period indices, compensated/double-double arithmetic,
sample std, aggregation results) comes from :mod:`.elementwise` and
:mod:`gpu_targets.calendar`, shared with the CPU engine. Arithmetic is float64, results
float32 (SPEC.md 2.2).

Tested with numba's CUDA simulator only (``NUMBA_ENABLE_CUDASIM=1``); see docs/cuda.md.
"""

from __future__ import annotations

import math

import numpy as np

try:
    from numba import config as _numba_config
    from numba import cuda
except ImportError as err:  # pragma: no cover - numba is a base dependency
    raise ImportError(f"numba.cuda is not installed ({err}); pip install 'gpu_targets[cu12]'") from None

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)
if not SIMULATOR and not cuda.is_available():
    raise ImportError(
        "no usable CUDA device (driver or GPU missing); set NUMBA_ENABLE_CUDASIM=1 to use the simulator, "
        "or install the GPU extra: pip install 'gpu_targets[cu12]'"
    )

from ..calendar import local_wall_clock_ns, period_index  # noqa: E402
from ..spec import Config  # noqa: E402
from ..transactions import Transactions  # noqa: E402
from .elementwise import dd_add_dd, moments_result, row_filter_bits, two_prod  # noqa: E402
from .plan import FULL, MAX, MIN, NEXT, TOPK, TRAILING, Plan, compile_plan  # noqa: E402

__all__ = ["compute", "compute_device", "SIMULATOR"]

#: Threads per block. Small under the simulator (threads are Python threads), which
#: also makes small test users span several chunks and exercise the scan's carry.
BLOCK = 8 if SIMULATOR else 128
_SIM_BATCH_ROWS = 1 << 16
# scratch bytes per row of a batch: scan state (8 x 8 B) + per period slot key and order
_SCRATCH_ROW_BYTES = 64
_SLOT_ROW_BYTES = 16

# --------------------------------------------------------------------------- device helpers


@cuda.jit(device=True)
def _combine(c1, a1h, a1l, b1h, b1l, mn1, mx1, c2, a2h, a2l, b2h, b2l, mn2, mx2):
    """(left) + (right) of two scan states: count, dd sum x, dd sum x^2, min, max."""
    ah, al = dd_add_dd(a1h, a1l, a2h, a2l)
    bh, bl = dd_add_dd(b1h, b1l, b2h, b2l)
    return c1 + c2, ah, al, bh, bl, min(mn1, mn2), max(mx1, mx2)


@cuda.jit(device=True)
def _upper_key(key, lo, hi, v):
    """First position in [lo, hi) with key > v (key non-decreasing there)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if key[mid] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(device=True)
def _lower_key(key, lo, hi, v):
    """First position in [lo, hi) with key >= v."""
    while lo < hi:
        mid = (lo + hi) // 2
        if key[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(device=True)
def _upper_time(time, g, tfac, lo, hi, v):
    """First scan position in [lo, hi) whose time (ns) is > v."""
    while lo < hi:
        mid = (lo + hi) // 2
        if time[g[mid]] * tfac <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit(device=True)
def _topk_insert(out, col, row, kn, k, x):
    """Insert x into the descending buffer out[col:col+kn, row] (at most k values).

    The buffer is the float32 output itself: rounding is monotone, so the k largest
    rounded values are the rounded k largest values.
    """
    if kn == k:
        if not x > out[col + k - 1, row]:
            return kn
        j = k - 1
    else:
        j = kn
        kn += 1
    while j > 0 and out[col + j - 1, row] < x:
        out[col + j, row] = out[col + j - 1, row]
        j -= 1
    out[col + j, row] = x
    return kn


# --------------------------------------------------------------------------- kernels


@cuda.jit
def _sorted_check(user, time, flag):
    """flag[0] = 0 when some row breaks (user, time) non-decreasing order (grid-stride)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    n = user.shape[0]
    while i < n:
        if i > 0 and (user[i] < user[i - 1] or (user[i] == user[i - 1] and time[i] < time[i - 1])):
            flag[0] = 0
        i += stride


@cuda.jit
def _cast(src, dst):
    """dst[i] = src[i] with dst's dtype (grid-stride)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < src.shape[0]:
        dst[i] = src[i]
        i += stride


@cuda.jit
def _period_keys(g, local, lfac, code, key):
    """key[q] = period index of the row at scan position q (grid-stride)."""
    q = cuda.grid(1)
    stride = cuda.gridsize(1)
    while q < key.shape[0]:
        key[q] = period_index(local[g[q]] * lfac, code)
        q += stride


@cuda.jit
def _monotone_check(offs, key, flag):
    """flag[0] = 0 when a user's period indices decrease somewhere (block per user)."""
    u = cuda.blockIdx.x
    if u >= offs.shape[0] - 1:
        return
    s = offs[u]
    e = offs[u + 1]
    q = s + 1 + cuda.threadIdx.x
    while q < e:
        if key[q] < key[q - 1]:
            flag[0] = 0
        q += cuda.blockDim.x


@cuda.jit
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


@cuda.jit(device=True)
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


@cuda.jit
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


@cuda.jit
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
                kn = _topk_insert(out, col, row, kn, k, abs(a) if absf else a)
        for j in range(kn, k):
            out[col + j, row] = fill
        q += cuda.blockDim.x


@cuda.jit(device=True)
def _duration_bounds(time, g, tfac, s, e, q, d, mode):
    """W(q) as scan positions [lo, hi): trailing (t - d, t] up to q, forward (t, t + d]."""
    t = time[g[q]] * tfac
    if mode == TRAILING:
        return _upper_time(time, g, tfac, s, q + 1, t - d), q + 1
    lo = _upper_time(time, g, tfac, q, e, t)
    return lo, _upper_time(time, g, tfac, lo, e, t + d)


@cuda.jit
def _duration_moments(offs, g, time, tfac, d, mode, agg, fill, cnt, s1h, s1l, s2h, s2l, out, col):
    """count/sum/mean/std/any over duration windows: differences of prefix states."""
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
        if hi > lo:
            n = cnt[hi - 1]
            ah = s1h[hi - 1]
            al = s1l[hi - 1]
            bh = s2h[hi - 1]
            bl = s2l[hi - 1]
            if lo > s:
                n -= cnt[lo - 1]
                ah, al = dd_add_dd(ah, al, -s1h[lo - 1], -s1l[lo - 1])
                bh, bl = dd_add_dd(bh, bl, -s2h[lo - 1], -s2l[lo - 1])
        out[col, g[q]] = moments_result(agg, n, ah, al, bh, bl, fill)
        q += cuda.blockDim.x


@cuda.jit
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
                    kn = _topk_insert(out, col, row, kn, k, x)
                else:
                    kn = 1
                    ext = min(ext, x) if agg == MIN else max(ext, x)
        if agg == TOPK:
            for j in range(kn, k):
                out[col + j, row] = fill
        else:
            out[col, row] = ext if kn > 0 else fill
        q += cuda.blockDim.x


# --------------------------------------------------------------------------- host side


def _grid(n: int) -> int:
    return max(1, min((n + BLOCK - 1) // BLOCK, 4096))


def _is_device_array(x) -> bool:
    """True for numba device arrays (real or simulated)."""
    try:
        from numba.cuda.cudadrv.devicearray import is_cuda_ndarray
    except ImportError:  # the simulator
        is_cuda_ndarray = cuda.devicearray.is_cuda_ndarray
    return bool(is_cuda_ndarray(x))


def _as_device(x, dtype, name: str):
    """A numba device array of ``dtype`` viewing (or, for another dtype, converting) x.

    Accepts numba device arrays, objects with ``__cuda_array_interface__`` (CuPy) and
    objects with ``__dlpack__`` (torch CUDA tensors; through CuPy when installed).
    """
    if not _is_device_array(x):
        if hasattr(x, "__cuda_array_interface__") and hasattr(cuda, "as_cuda_array"):
            x = cuda.as_cuda_array(x)
        elif hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__") and x.__dlpack_device__()[0] != 1:
            try:
                import cupy
            except ImportError:
                raise TypeError(
                    f"{name}: a __dlpack__ object without __cuda_array_interface__ needs CuPy "
                    "(pip install 'gpu_targets[cu12]')"
                ) from None
            x = cuda.as_cuda_array(cupy.from_dlpack(x))
        else:
            raise TypeError(
                f"{name}: expected a device array (__cuda_array_interface__ or a CUDA __dlpack__), "
                f"got {type(x).__name__} in host memory; use compute() for host data"
            )
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {x.shape}")
    if np.dtype(x.dtype) == np.dtype(dtype):
        return x
    y = cuda.device_array(x.shape[0], dtype=dtype)
    if x.shape[0]:
        _cast[_grid(x.shape[0]), BLOCK](x, y)
    return y


def _cupy():
    """CuPy when installed and usable with a real device (never under the simulator)."""
    if SIMULATOR:
        return None
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def _group_device(user, time):
    """(order, offsets): order int64 device [n], offsets int64 host [n_users + 1].

    On the device with CuPy (skipped when a check kernel finds the rows already grouped
    and time-sorted); otherwise on the host with :func:`.cpu.group_users`.
    """
    n = user.shape[0]
    flag = cuda.to_device(np.ones(1, dtype=np.int32))
    _sorted_check[_grid(n), BLOCK](user, time, flag)
    is_sorted = bool(flag.copy_to_host()[0])
    cp = _cupy()
    if cp is not None:
        u = cp.asarray(user)
        if is_sorted:
            order = cp.arange(n, dtype=cp.int64)
            us = u
        else:
            order = cp.lexsort(cp.stack([cp.arange(n, dtype=cp.int64), cp.asarray(time), u])).astype(cp.int64)
            us = u[order]
        starts = cp.flatnonzero(us[1:] != us[:-1]) + 1
        offsets = np.concatenate([[0], cp.asnumpy(starts), [n]]).astype(np.int64)
        return cuda.as_cuda_array(order), offsets
    if is_sorted:
        u = user.copy_to_host()
        starts = np.flatnonzero(u[1:] != u[:-1]) + 1
        offsets = np.concatenate([[0], starts, [n]]).astype(np.int64)
        return cuda.to_device(np.arange(n, dtype=np.int64)), offsets
    from .cpu import group_users  # host grouping when CuPy is absent

    tx = Transactions(user.copy_to_host(), time.copy_to_host(), np.empty(0), np.empty(0, dtype=np.int32))
    order, offsets = group_users(tx)
    if order is None:
        order = np.arange(n, dtype=np.int64)
    return cuda.to_device(np.ascontiguousarray(order, dtype=np.int64)), np.asarray(offsets, dtype=np.int64)


def _stable_period_order(key, offs_host):
    """Permutation of a batch's scan positions ordering each user's rows by period,
    stably (ties keep (time, row) order); CuPy on the device, else NumPy on the host."""
    cp = _cupy()
    nb = key.shape[0]
    sizes = np.diff(offs_host)
    if cp is not None:
        uidx = cp.repeat(cp.arange(sizes.shape[0]), cp.asarray(sizes))
        perm = cp.lexsort(cp.stack([cp.arange(nb), cp.asarray(key), uidx])).astype(cp.int64)
        return cuda.as_cuda_array(perm)
    uidx = np.repeat(np.arange(sizes.shape[0]), sizes)
    perm = np.lexsort((np.arange(nb), key.copy_to_host(), uidx)).astype(np.int64)
    return cuda.to_device(perm)


@cuda.jit
def _gather(src, idx, dst):
    """dst[q] = src[idx[q]] (grid-stride)."""
    q = cuda.grid(1)
    stride = cuda.gridsize(1)
    while q < dst.shape[0]:
        dst[q] = src[idx[q]]
        q += stride


def _default_batch_rows(n_slots: int) -> int:
    per_row = _SCRATCH_ROW_BYTES + _SLOT_ROW_BYTES * n_slots
    if SIMULATOR:
        return _SIM_BATCH_ROWS
    try:
        free, _ = cuda.current_context().get_memory_info()
    except Exception:  # noqa: BLE001 - any driver trouble: a safe constant
        return 1 << 22
    return max(1 << 16, int(free * 0.5) // per_row)


def _run(user, time, amount, mcc, plan: Plan, timezone: str, time_factor: int, max_rows_per_batch, progress,
         local_host=None):
    """Every target of ``plan`` on device arrays (input row order); float32 [n_cols, n] on the device."""
    n = time.shape[0]
    out = cuda.device_array((plan.n_columns, n), dtype=np.float32)
    if n == 0:
        return out
    order, offsets = _group_device(user, time)
    tfac = np.int64(time_factor)
    if plan.period_codes.shape[0] == 0:
        local, lfac = time, tfac
    elif timezone == "UTC":
        local, lfac = time, tfac
    else:
        if local_host is None:  # the tz database lives on the host
            local_host = local_wall_clock_ns(time.copy_to_host() * np.int64(time_factor), timezone)
        local, lfac = cuda.to_device(np.ascontiguousarray(local_host, dtype=np.int64)), np.int64(1)
    mcc_bits = cuda.to_device(plan.mcc_bits)
    sign_bits = cuda.to_device(plan.sign_bits)
    nomcc = np.uint64(plan.nomcc_bits)
    n_slots = plan.period_codes.shape[0]
    cap = int(max_rows_per_batch or _default_batch_rows(n_slots))
    n_users = offsets.shape[0] - 1
    biggest = int(np.max(np.diff(offsets)))
    rows = max(min(cap, n), biggest)
    cnt = cuda.device_array(rows, dtype=np.int64)
    s1h, s1l, s2h, s2l, mn, mx = (cuda.device_array(rows, dtype=np.float64) for _ in range(6))
    keys = [cuda.device_array(rows, dtype=np.int64) for _ in range(n_slots)]
    flag = cuda.device_array(1, dtype=np.int32)
    u0 = 0
    while u0 < n_users:
        u1 = int(np.searchsorted(offsets, offsets[u0] + cap, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_users)
        r0, r1 = int(offsets[u0]), int(offsets[u1])
        nb = r1 - r0
        offs_h = offsets[u0 : u1 + 1] - r0
        offs = cuda.to_device(offs_h)
        gb = order[r0:r1]
        nblk = u1 - u0
        # per period slot: scan order and period index of every scan position
        slot_g, slot_key = [], []
        for sl in range(n_slots):
            key = keys[sl][:nb]
            _period_keys[_grid(nb), BLOCK](gb, local, lfac, np.int64(plan.period_codes[sl]), key)
            flag.copy_to_device(np.ones(1, dtype=np.int32))
            _monotone_check[nblk, BLOCK](offs, key, flag)
            if flag.copy_to_host()[0]:
                slot_g.append(gb)
            else:  # DST: visit the batch's rows in stable period order
                perm = _stable_period_order(key, offs_h)
                gs = cuda.device_array(nb, dtype=np.int64)
                _gather[_grid(nb), BLOCK](gb, perm, gs)
                ks = cuda.device_array(nb, dtype=np.int64)
                _gather[_grid(nb), BLOCK](key, perm, ks)
                slot_g.append(gs)
                key = ks
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
                    _period_topk[nblk, BLOCK](offs, g, key, np.int64(w), k, fill, amount, mcc, mcc_bits, sign_bits,
                                              nomcc, bit, absf, out, col)
                    continue
                state = ("period", sl, int(plan.fbit[ti]), absf)
                if scanned != state:
                    _scan[nblk, BLOCK](offs, g, key, np.int64(1), amount, mcc, mcc_bits, sign_bits, nomcc, bit, absf,
                                       cnt, s1h, s1l, s2h, s2l, mn, mx)
                    scanned = state
                _period_result[nblk, BLOCK](offs, g, key, np.int64(w), np.int64(g_agg), fill,
                                            cnt, s1h, s1l, s2h, s2l, mn, mx, out, col)
            else:
                d = np.int64(plan.param[ti])
                if g_agg in (MIN, MAX, TOPK):
                    _duration_scan[nblk, BLOCK](offs, gb, time, tfac, d, np.int64(w), np.int64(g_agg), k, fill,
                                                amount, mcc, mcc_bits, sign_bits, nomcc, bit, absf, out, col)
                    continue
                state = ("duration", int(plan.fbit[ti]), absf)
                if scanned != state:
                    _scan[nblk, BLOCK](offs, gb, gb, np.int64(0), amount, mcc, mcc_bits, sign_bits, nomcc, bit, absf,
                                       cnt, s1h, s1l, s2h, s2l, mn, mx)
                    scanned = state
                _duration_moments[nblk, BLOCK](offs, gb, time, tfac, d, np.int64(w), np.int64(g_agg), fill,
                                               cnt, s1h, s1l, s2h, s2l, out, col)
        if progress is not None:
            cuda.synchronize()
            progress(nb)
        u0 = u1
    return out


def compute_device(user, time, amount, mcc, config: Config, *, time_factor: int = 1, max_rows_per_batch=None,
                   timezone_local=None):
    """All targets of ``config`` for transactions already on the device.

    Parameters
    ----------
    user : device array of integers, shape (n,)
        User ids (any integer dtype; string ids must be encoded first).
    time : device array of int64, shape (n,)
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
        free device memory (a constant under the simulator).
    timezone_local : ndarray of int64, optional
        Local wall-clock ns of every row, when already resolved on the host; otherwise a
        non-UTC ``config.timezone`` copies ``time`` to the host to resolve it.

    Arrays may be numba device arrays, CuPy arrays (``__cuda_array_interface__``) or
    torch CUDA tensors (``__dlpack__``). Rows are ordered by ``(user, time, row)`` on the
    device with CuPy, on the host otherwise (only the order goes back).

    Returns
    -------
    numba device array of float32, shape (n_target_columns, n)
        Row ``c`` is output column ``config.output_columns[c]``, in input row order.

    Raises
    ------
    TypeError
        An input is not a device array.
    ValueError
        Inputs of different lengths, or not 1-d.
    """
    plan = compile_plan(config)
    user = _as_device(user, np.int64, "user")
    time = _as_device(time, np.int64, "time")
    amount = _as_device(amount, np.float64, "amount")
    mcc = _as_device(mcc, np.int32, "mcc")
    lengths = {user.shape[0], time.shape[0], amount.shape[0], mcc.shape[0]}
    if len(lengths) != 1:
        raise ValueError(f"user, time, amount and mcc must have the same length, got {sorted(lengths)}")
    return _run(user, time, amount, mcc, plan, config.timezone, int(time_factor), max_rows_per_batch, None,
                timezone_local)


def compute(tx: Transactions, config: Config, progress=None, *, max_rows_per_batch=None) -> np.ndarray:
    """All targets of ``config`` for every transaction, with the CUDA kernels.

    Copies the four role arrays to the device (24 B/row), runs :func:`compute_device`'s
    kernels in batches of whole users and copies the result back.

    Parameters
    ----------
    tx : Transactions
        Role arrays in input row order (string users arrive as integer codes).
    config : Config
    progress : callable(int) or None
        Called with the number of rows finished after each batch of users.
    max_rows_per_batch : int, optional
        See :func:`compute_device`.

    Returns
    -------
    ndarray of float32, shape (n_target_columns, n)
        Row ``c`` is output column ``config.output_columns[c]``, in input row order.
    """
    plan = compile_plan(config)
    local_host = None
    if config.timezone != "UTC" and plan.period_codes.shape[0]:
        local_host = local_wall_clock_ns(tx.time_ns, config.timezone)
    dev = [cuda.to_device(np.ascontiguousarray(a)) for a in (tx.user, tx.time, tx.amount, tx.mcc)]
    out = _run(*dev, plan, config.timezone, int(tx.time_factor), max_rows_per_batch, progress, local_host)
    return out.copy_to_host()
