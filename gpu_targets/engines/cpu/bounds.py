"""Duration windows, first step: V (the rows passing the target's filter) compacted in
(time, row) order, and W(i) as a range [lo[i], hi[i]) of V with both bounds
non-decreasing in i, from branchless merges (the cost does not depend on how the
window's size fluctuates); for sparse V, segments of rows with the same W(i)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..plan import TRAILING
from .intrinsics import _count_le8
from .runs import _INT64_MAX


# Duration windows work on V only: the rows passing the target's filter, compacted in
# (time, row) order. W(i) is then a range [lo[i], hi[i]) of that list, with both bounds
# non-decreasing in i; they come from branchless merges, so the cost does not depend on
# how the window's size fluctuates (no mispredicted loop exits).


_SENTINELS = 16  # int64-max times after the last V row, read by the vector compares


@njit(cache=True)
def _compact(t, bits, bit, a, vt, vv, vr, upto):
    """V in order: times vt[:nv] (then ``_SENTINELS`` int64 max), raw amounts vv[:nv],
    rows vr[:nv]; upto[r] = number of V rows at positions <= r. Branchless; returns nv."""
    nv = 0
    for r in range(t.shape[0]):
        vt[nv] = t[r]
        vv[nv] = a[r]
        vr[nv] = r
        nv += 1 if bits[r] & bit else 0
        upto[r] = nv
    for j in range(_SENTINELS):
        vt[nv + j] = _INT64_MAX
    return nv


@njit(cache=True)
def _compact_sparse(t, bits, bit, a, vt, vv, vr):
    """As :func:`_compact` without ``upto``, for filters that pass few rows: a branch
    that is rarely taken costs less than three stores on every row. Returns nv."""
    nv = 0
    for r in range(t.shape[0]):
        if bits[r] & bit:
            vt[nv] = t[r]
            vv[nv] = a[r]
            vr[nv] = r
            nv += 1
    for j in range(_SENTINELS):
        vt[nv + j] = _INT64_MAX
    return nv


@njit(cache=True)
def _upto_from_rows(vr, nv, upto):
    """upto[r] = number of V rows at positions <= r, from their rows vr[:nv]."""
    j = 0
    for r in range(upto.shape[0]):
        while j < nv and vr[j] <= r:
            j += 1
        upto[r] = j


@njit(cache=True, inline="always")
def _first_rows_at(t, vt, nv, shift, pos):
    """pos[j] = first row i with t[i] >= vt[j] + shift (vt sorted, nv small): galloping
    from the previous answer, O(nv log(m / nv)) probes."""
    m = t.shape[0]
    p = 0
    for j in range(nv):
        x = vt[j] + shift
        if p < m and t[p] < x:
            step = 1
            lo = p  # t[lo] < x
            hi = p + 1
            while hi < m and t[hi] < x:
                lo = hi
                step *= 2
                hi = lo + step
            hi = min(hi, m)
            while hi - lo > 1:  # t[lo] < x <= t[hi] (or hi == m)
                mid = (lo + hi) >> 1
                if t[mid] < x:
                    lo = mid
                else:
                    hi = mid
            p = hi
        pos[j] = p


@njit(cache=True)
def _sparse_segments(t, vt, vr, nv, d, mode, seg_row, seg_lo, seg_hi):
    """The rows where W(i)'s bounds in V change, for sparse V: O(m + nv), no per-row bounds.

    Segment q covers rows seg_row[q]:seg_row[q + 1] (seg_row[nseg] = m), all with
    W(i) = [seg_lo[q], seg_hi[q]) in V. Trailing (t_i - d, t_i] up to row i: V element j
    enters at its own row vr[j] and leaves at the first row with t >= vt[j] + d. Forward
    (t_i, t_i + d]: j enters at the first row with t >= vt[j] - d and leaves at the first
    row with t >= vt[j] (the first row tied with it). At most 2 nv + 1 segments; returns
    nseg.
    """
    m = t.shape[0]
    enter = np.empty(nv, dtype=np.int64)
    leave = np.empty(nv, dtype=np.int64)
    if mode == TRAILING:
        for j in range(nv):
            enter[j] = vr[j]
        _first_rows_at(t, vt, nv, d, leave)
    else:
        _first_rows_at(t, vt, nv, -d, enter)
        _first_rows_at(t, vt, nv, 0, leave)
    a = 0  # elements entered
    b = 0  # elements left
    nseg = 0
    r = 0
    while True:
        while a < nv and enter[a] <= r:
            a += 1
        while b < nv and leave[b] <= r:
            b += 1
        seg_row[nseg] = r
        seg_lo[nseg] = b
        seg_hi[nseg] = a
        nseg += 1
        nxt = m
        if a < nv:
            nxt = min(nxt, enter[a])
        if b < nv:
            nxt = min(nxt, leave[b])
        if nxt >= m:
            break
        r = nxt
    seg_row[nseg] = m
    return nseg


@njit(cache=True)
def _fill_segments(seg_row, nseg, vals, dst):
    """dst[r] = vals[q] for the rows r of segment q."""
    for q in range(nseg):
        v = vals[q]
        for r in range(seg_row[q], seg_row[q + 1]):
            dst[r] = v


@njit(cache=True, inline="always")
def _advance(vt, j, thr):
    """Number of vt <= thr, from a count j known to be <= it: 8 candidates per vector
    compare; more than 16 (a burst of tied times) falls back to a scan."""
    c = _count_le8(vt, j, thr)
    if c == 8:
        j += 8
        c = _count_le8(vt, j, thr)
        if c == 8:
            j += 8
            while vt[j] <= thr:
                j += 1
            return j
    return j + c


@njit(cache=True, inline="always")
def _first_above(vt, nv, thr):
    """Number of vt[:nv] <= thr (binary search)."""
    lo = 0
    hi = nv
    while lo < hi:
        mid = (lo + hi) >> 1
        if vt[mid] <= thr:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _count_upto(vt, nv, t, shift, out):
    """out[i] = number of j with vt[j] <= t[i] + shift; vt sorted, with sentinels.

    Each row's count continues the previous row's. Sparse V (nv < m / 4): a scan that
    advances one V row at a time, whose loop almost never runs (a branch that predicts
    well). Dense V: the count moves at random, by 0 on most rows and by bursts at tied
    times, so it is found with vector compares; that is a chain of dependent loads, so
    the rows are split into four lanes (each started by a binary search) walked in one
    loop, four chains side by side. O(m + nv).
    """
    m = t.shape[0]
    if 4 * nv < m:
        j = 0
        for i in range(m):
            thr = t[i] + shift
            while vt[j] <= thr:
                j += 1
            out[i] = j
        return
    w = m // 4
    b1, b2, b3 = w, 2 * w, 3 * w
    j0 = np.int64(0)
    j1 = _first_above(vt, nv, t[b1] + shift) if w > 0 else 0
    j2 = _first_above(vt, nv, t[b2] + shift) if w > 0 else 0
    j3 = _first_above(vt, nv, t[b3] + shift) if w > 0 else 0
    for q in range(w):
        j0 = _advance(vt, j0, t[q] + shift)
        j1 = _advance(vt, j1, t[b1 + q] + shift)
        j2 = _advance(vt, j2, t[b2 + q] + shift)
        j3 = _advance(vt, j3, t[b3 + q] + shift)
        out[q] = j0
        out[b1 + q] = j1
        out[b2 + q] = j2
        out[b3 + q] = j3
    for i in range(4 * w, m):
        j3 = _advance(vt, j3, t[i] + shift)
        out[i] = j3


@njit(cache=True)
def _window_bounds(t, d, mode, vt, nv, upto, lo, hi):
    """[lo[i], hi[i]) = W(i) in V: trailing (t_i - d, t_i] up to row i, forward (t_i, t_i + d].

    Returns the (lo, hi) arrays to use: for trailing windows hi is ``upto`` itself; for
    forward windows lo[i] is ``upto`` at the last row tied with row i (a backward pass
    that blends with integer masks: ties are frequent and random, so no branch).
    """
    m = t.shape[0]
    _count_upto(vt, nv, t, -d if mode == TRAILING else d, lo if mode == TRAILING else hi)
    if mode == TRAILING:
        return lo, upto
    cur = upto[m - 1]
    lo[m - 1] = cur
    for r in range(m - 2, -1, -1):
        take = -np.int64(t[r] != t[r + 1])  # -1: row r ends its tie group
        cur = (upto[r] & take) | (cur & ~take)
        lo[r] = cur
    return lo, hi
