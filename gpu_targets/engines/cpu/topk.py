"""top-k: over period runs (a bounded descending buffer; k <= 4 in registers) and
over sliding duration windows (a Fenwick tree over value ranks)."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..plan import EXPANDING
from ..elementwise import topk_insert
from .periods import _fill_runs, _value


@njit(cache=True)
def _period_topk(starts, nr, bits, bit, a, absf, mode, k, fill, kres, krun, kbuf):
    """top-k with a bounded descending buffer (O(k) per insert): expanding writes k
    values per row into ``kres``, full/next leave k values per run in ``krun``."""
    for q in range(nr):
        kn = 0
        for j in range(k):
            kbuf[j] = fill  # unfilled places read as fill
        for r in range(starts[q], starts[q + 1]):
            if bits[r] & bit:
                kn = topk_insert(kbuf, kn, k, _value(a, r, absf))
            if mode == EXPANDING:
                for j in range(k):
                    kres[j, r] = kbuf[j]
        for j in range(k):
            krun[j, q] = kbuf[j]


_NEG_INF = -np.inf


@njit(cache=True, inline="always")
def _exchange(t, x):
    """(max, min) of a place's value and the value coming down: one compare-exchange."""
    return max(t, x), min(t, x)


@njit(cache=True, inline="always")
def _store_top4(dst, i, t0, t1, t2, t3, kn, k, fill):
    """``dst[j, i]`` for the k <= 4 places: the j-th largest, or ``fill`` past the
    ``kn`` values there are."""
    dst[0, i] = t0 if kn > 0 else fill
    if k > 1:
        dst[1, i] = t1 if kn > 1 else fill
    if k > 2:
        dst[2, i] = t2 if kn > 2 else fill
    if k > 3:
        dst[3, i] = t3 if kn > 3 else fill


@njit(cache=True, inline="always")
def _topk4_loop(starts, nr, bits, bit, a, absf, expanding, k, fill, kres, krun):
    """:func:`_period_topk` for k <= 4 without branches on the data: the k largest so far
    sit in registers (t0 >= t1 >= t2 >= t3, -inf where empty) and every row goes through
    one compare-exchange per place, rows outside V as -inf (which moves nothing); ``kn``
    counts V's rows, so an empty place reads as ``fill`` (and a real -inf as -inf).
    ``absf`` and ``expanding`` are literals at the call sites."""
    for q in range(nr):
        r0, r1 = starts[q], starts[q + 1]
        bq, aq = bits[r0:r1], a[r0:r1]
        t0 = t1 = t2 = t3 = _NEG_INF
        kn = 0
        for r in range(bq.shape[0]):
            inv = (bq[r] & bit) != 0
            v = abs(aq[r]) if absf else aq[r]
            x = v if inv else _NEG_INF
            kn = min(kn + np.int64(inv), k)
            t0, x = _exchange(t0, x)
            t1, x = _exchange(t1, x)
            t2, x = _exchange(t2, x)
            t3 = max(t3, x)
            if expanding:
                _store_top4(kres, r0 + r, t0, t1, t2, t3, kn, k, fill)
        _store_top4(krun, q, t0, t1, t2, t3, kn, k, fill)


@njit(cache=True)
def _period_topk4(starts, nr, bits, bit, a, absf, mode, k, fill, kres, krun):
    """top-k for k <= 4 over period runs (see :func:`_topk4_loop`)."""
    if mode == EXPANDING:
        if absf:
            _topk4_loop(starts, nr, bits, bit, a, True, True, k, fill, kres, krun)
        else:
            _topk4_loop(starts, nr, bits, bit, a, False, True, k, fill, kres, krun)
    elif absf:
        _topk4_loop(starts, nr, bits, bit, a, True, False, k, fill, kres, krun)
    else:
        _topk4_loop(starts, nr, bits, bit, a, False, False, k, fill, kres, krun)


# One period-window target over the runs of its period kind, per aggregation family:
# the per-config driver (:mod:`.driver`) calls the family of each target, so a
# config compiles only the families it uses. One signature for all of them.


@njit(cache=True)
def _period_topk4_target(starts, vals, nr, isnew, bits, f, a, absf, mode, agg, k, fill, dense, dst, kres, runv, krun, kbuf):
    """top-k, k <= 4 (:func:`_period_topk4`); full/next fill each run's k values."""
    if nr == 0:
        return
    _period_topk4(starts, nr, bits, np.uint64(1) << np.uint64(f), a, absf, mode, k, fill, kres, krun)
    if mode != EXPANDING:
        for j in range(k):
            _fill_runs(starts, vals, nr, krun[j], mode, fill, kres[j])


@njit(cache=True)
def _period_topkn_target(starts, vals, nr, isnew, bits, f, a, absf, mode, agg, k, fill, dense, dst, kres, runv, krun, kbuf):
    """top-k, k > 4 (:func:`_period_topk`); full/next fill each run's k values."""
    if nr == 0:
        return
    _period_topk(starts, nr, bits, np.uint64(1) << np.uint64(f), a, absf, mode, k, fill, kres, krun, kbuf)
    if mode != EXPANDING:
        for j in range(k):
            _fill_runs(starts, vals, nr, krun[j], mode, fill, kres[j])


@njit(cache=True, inline="always")
def fenwick_add(tree, nv, x, delta):
    """Add ``delta`` at 1-based index ``x`` of a Fenwick tree of counts over ``nv`` ranks."""
    while x <= nv:
        tree[x] += delta
        x += x & -x


@njit(cache=True)
def fenwick_ranks(vals, nv):
    """For order statistics of sliding ranges of ``vals[:nv]``: the values sorted, each
    value's 1-based rank (Fenwick index; ties get distinct ranks), an empty tree of
    counts and the largest power of two <= nv (:func:`fenwick_kth`'s first step)."""
    perm = np.argsort(vals[:nv])
    sorted_vals = vals[:nv][perm]
    rank = np.empty(nv, dtype=np.int64)
    for j in range(nv):
        rank[perm[j]] = j + 1
    tree = np.zeros(nv + 1, dtype=np.int64)
    top = 1
    while top * 2 <= nv:
        top *= 2
    return sorted_vals, rank, tree, top


@njit(cache=True, inline="always")
def fenwick_slide(tree, nv, rank, a, b, lo, hi):
    """Move the counted range [a, b) of V positions to [lo, hi) (both ends never move
    back); returns (lo, hi)."""
    while b < hi:
        fenwick_add(tree, nv, rank[b], 1)
        b += 1
    while a < lo:
        fenwick_add(tree, nv, rank[a], -1)
        a += 1
    return a, b


@njit(cache=True, inline="always")
def fenwick_kth(tree, top, nv, want):
    """0-based rank of the ``want``-th smallest counted value (1-based ``want``; ``top``:
    the largest power of two <= nv), by descending the tree: O(log nv)."""
    pos = 0
    step = top
    while step > 0:
        nxt = pos + step
        if nxt <= nv and tree[nxt] < want:
            pos = nxt
            want -= tree[nxt]
        step //= 2
    return pos


@njit(cache=True)
def _sliding_topk(vv, nv, absf, lo, hi, k, fill, kres):
    """top-k over [lo[i], hi[i]): Fenwick tree of counts over the ranks of V's values.

    O(nv log nv) to rank, O(log nv) per insert/remove, O(k log nv) per row to read the
    k largest as order statistics.
    """
    vals = np.abs(vv[:nv]) if absf else vv[:nv].copy()
    sorted_vals, rank, tree, top = fenwick_ranks(vals, nv)
    a = 0
    b = 0
    for i in range(lo.shape[0]):
        a, b = fenwick_slide(tree, nv, rank, a, b, lo[i], hi[i])
        total = b - a
        for j in range(k):
            want = total - j  # the want-th smallest value in W(i), 1-based
            if want <= 0:
                kres[j, i] = fill
                continue
            kres[j, i] = sorted_vals[fenwick_kth(tree, top, nv, want)]
