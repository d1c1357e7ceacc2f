"""The cuda engine's kernels: one thread block per user, threads striding over its rows.

Scan kernels (:func:`_scan`: a block-wide segmented inclusive scan of count,
double-double sums and min/max), period results (:func:`_period_result`,
:func:`_period_topk`), duration windows (:func:`_duration_moments` from prefix
differences, :func:`_duration_scan` for min/max/top-k) and the padding of the torch
feed (:func:`_pad_kernel`). Per-element logic is :mod:`.functions` (the CPU engine's
source compiled as device functions). Every kernel is ``cache=True``; every helper a
``device=True, inline="always"`` function. The host side that launches them is
:mod:`gpu_targets.engines.cuda`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config as _numba_config
from numba import cuda

from ..plan import FULL, MAX, MEAN, MIN, NEXT, STD, SUM, TOPK, TRAILING
from .functions import (
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

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)
#: Threads per block. Small under the simulator (threads are Python threads), which
#: also makes small test users span several chunks and exercise the scan's carry.
BLOCK = 8 if SIMULATOR else 128


@cuda.jit(device=True, inline="always")
def _user_span(offs):
    """Scan positions [s, e) of this block's user; (0, 0) for a block past the last user."""
    u = cuda.blockIdx.x
    if u >= offs.shape[0] - 1:
        return offs[0] * 0, offs[0] * 0
    return offs[u], offs[u + 1]


@cuda.jit(device=True, inline="always")
def _row_value(g, j, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf):
    """(in V, x) of the row at scan position j: whether it passes filter ``bit`` (amount
    not NaN) and its value (``|a|`` with ``absf``)."""
    i = g[j]
    a = amount[i]
    return (row_filter_bits(mcc[i], a, mcc_bits, sign_bits, nomcc_bits) & bit) != 0, abs(a) if absf else a


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
    s, e = _user_span(offs)
    q = s + 1 + cuda.threadIdx.x
    while q < e:
        if key[q] < key[q - 1]:
            flag[slot] = 0
        q += cuda.blockDim.x


@cuda.jit(device=True, inline="always")
def _put(cnt, s1h, s1l, s2h, s2l, mn, mx, j, c, ah, al, bh, bl, emn, emx):
    """Store a scan state (count, dd sum x, dd sum x^2, min, max) at index j of seven arrays."""
    cnt[j] = c
    s1h[j] = ah
    s1l[j] = al
    s2h[j] = bh
    s2l[j] = bl
    mn[j] = emn
    mx[j] = emx


@cuda.jit(device=True, inline="always")
def _get(cnt, s1h, s1l, s2h, s2l, mn, mx, j):
    """The scan state at index j of seven arrays."""
    return cnt[j], s1h[j], s1l[j], s2h[j], s2l[j], mn[j], mx[j]


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
            inv, x = _row_value(g, q, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf)
            if inv:
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
        _put(sc, sah, sal, sbh, sbl, smn, smx, tid, c, ah, al, bh, bl, emn, emx)
        sf[tid] = head
        cuda.syncthreads()
        d = 1
        while d < nt:
            oc, oah, oal, obh, obl, omn, omx, of = 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1
            if tid >= d:
                oc, oah, oal, obh, obl, omn, omx = _get(sc, sah, sal, sbh, sbl, smn, smx, tid - d)
                of = sf[tid - d]
            cuda.syncthreads()
            if tid >= d and head == 0:
                c, ah, al, bh, bl, emn, emx = _combine(oc, oah, oal, obh, obl, omn, omx,
                                                       c, ah, al, bh, bl, emn, emx)
                head = of
                _put(sc, sah, sal, sbh, sbl, smn, smx, tid, c, ah, al, bh, bl, emn, emx)
                sf[tid] = head
            cuda.syncthreads()
            d *= 2
        if q < e:
            _put(cnt, s1h, s1l, s2h, s2l, mn, mx, q, c, ah, al, bh, bl, emn, emx)
        last = min(nt, e - base) - 1
        kc, kah, kal, kbh, kbl, kmn, kmx = _get(sc, sah, sal, sbh, sbl, smn, smx, last)
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
    s, e = _user_span(offs)
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
    s, e = _user_span(offs)
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
            inv, x = _row_value(g, j, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf)
            if inv:
                kn = topk_insert(out[col : col + k, row], kn, k, x)
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
    s, e = _user_span(offs)
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
        inv, x = _row_value(g, j, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf)
        if inv:
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
        inv, x = _row_value(g, j, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf)
        if inv:
            s, c = compensated_add(s, c, x / scale)
    mean = (s + c) / n
    s, c = 0.0, 0.0
    for j in range(lo, hi):
        inv, x = _row_value(g, j, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf)
        if inv:
            dv = x / scale - mean
            s, c = compensated_add(s, c, dv * dv)
    return scale * math.sqrt((s + c) / (n - 1))


@cuda.jit(device=True, inline="always")
def _window_extreme(g, lo, hi, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf, agg, k, fill, out, col, row):
    """min/max (O(w)) or top-k (O(w k)) of the rows in V among scan positions [lo, hi),
    written to ``out[col(:col + k), row]``."""
    kn = 0
    ext = math.inf if agg == MIN else -math.inf
    for j in range(lo, hi):
        inv, x = _row_value(g, j, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf)
        if inv:
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


@cuda.jit(cache=True)
def _duration_scan(offs, g, time, tfac, d, mode, agg, k, fill, amount, mcc, mcc_bits, sign_bits, nomcc_bits,
                   bit, absf, out, col):
    """min/max (O(w)) and top-k (O(w k)) over duration windows: each thread scans its window."""
    s, e = _user_span(offs)
    q = s + cuda.threadIdx.x
    while q < e:
        lo, hi = _duration_bounds(time, g, tfac, s, e, q, d, mode)
        _window_extreme(g, lo, hi, amount, mcc, mcc_bits, sign_bits, nomcc_bits, bit, absf, agg, k, fill, out, col,
                        g[q])
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


def _grid(n: int) -> int:
    return max(1, min((n + BLOCK - 1) // BLOCK, 4096))
