"""SPEC v2 targets on the cpu engine: every window as a range of rows, every
aggregation over a sliding range of V.

For a user's rows in (time, row) order, each v2 window (``periods: N`` and ``previous``
periods, durations with an ``offset``, ``rows`` windows) holds a contiguous range
``[lo[r], hi[r])`` of rows whose bounds never decrease with r, since period indices and
times never decrease along the rows (:func:`_period_bounds` per run of a period,
:func:`_row_bounds` by counts of times or index arithmetic: O(m)). V, the
rows passing the target's filters whose value is not null, is compacted once for the
targets that share it (:func:`_compact_v`; the plan puts them side by side, and those
with the same window also share its bounds), and a row range maps to a range of V by
counting (``cv``). Then:

* count / sum / mean / any / std / min / max / top-k: the duration windows' kernels of
  :mod:`.sliding` and :mod:`.topk` over those ranges;
* first / last / time_to_next / time_since_last: read at the ends of the range
  (:func:`_range_order`);
* nunique: counts per distinct value while the range slides (:func:`_range_nunique`);
* median / quantile: over ranges of at most SORTED_WINDOW_MAX values, the range's
  values kept sorted, updated eight at a time with vector instructions
  (:func:`_range_quantile_sorted`); over wider ones a bit set over the ranks of V's
  values with a cursor on the wanted order statistic, moved by find-next-set-bit
  (:func:`_range_quantile`).

Each entry point computes one target for one user; the generated driver calls only
those its config uses. A user whose local period index goes back in time (a DST
fall-back at a period boundary) has no contiguous period ranges: the driver raises
for a v2 period window there (the reference engine computes it).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

from ..plan import EXPANDING, FIRST, FULL, LAST, MAX, MEDIAN, MIN, NEXT, STD, TIME_TO_NEXT, TOPK, TRAILING, WK_DURATION
from ..elementwise import quantile_of
from .bounds import _count_upto
from .intrinsics import _count_le8, _sorted_shift8
from .sliding import _sliding_extreme, _sliding_moments, _sliding_std
from .topk import _sliding_topk


@njit(cache=True)
def _row_bounds(wkind, mode, t, n, g, lo, hi):
    """W(r) = [lo[r], hi[r]) of a duration or rows window over one user's m rows (SPEC.md
    2.1), bounds non-decreasing (period windows: :func:`_period_bounds`).

    ``wkind``/``mode``: the window; ``t`` int64 [m + _SENTINELS] times (non-decreasing,
    then int64 max); ``n``: the duration D or N rows; ``g``: the offset G (time units of
    ``t``) or K rows.

    A duration bound moves on most rows by a varying step: it is a count of times up to a
    threshold, found as for version 1 windows (:func:`.bounds._count_upto`: vector
    compares of 8 times, four lanes of rows side by side, no mispredicted loop exits).
    """
    m = lo.shape[0]
    if wkind == WK_DURATION:
        rows_t = t[:m]
        if mode == TRAILING:  # t_i - G - D < t_j <= t_i - G
            _count_upto(t, m, rows_t, -(g + n), lo)
            if g == 0:
                for r in range(m):
                    hi[r] = r + 1
            else:
                _count_upto(t, m, rows_t, -g, hi)
        else:  # FORWARD: t_i + G < t_j <= t_i + G + D
            _count_upto(t, m, rows_t, g, lo)
            _count_upto(t, m, rows_t, g + n, hi)
        return
    for r in range(m):  # rows
        if mode == TRAILING:
            a = min(max(r - g - n + 1, 0), m)
            b = min(max(r - g + 1, 0), m)
        else:
            a = min(r + g + 1, m)
            b = min(r + g + n + 1, m)
        lo[r] = a
        hi[r] = max(a, b)


@njit(cache=True)
def _period_bounds(starts, nr, vals, mode, n, lo, hi):
    """W(r) = [lo[r], hi[r]) of a period window (SPEC.md 2.1) from the runs of its period
    kind: rows starts[q]..starts[q + 1] in period vals[q] (increasing; starts[nr] = m).
    The bounds move only where a run starts, so they are found once per run (two
    pointers over the runs) and written over its rows: no per-row scan whose exit a
    branch predictor would miss at every period change.

    ``mode``: expanding / full (periods P - N < P(t_j) <= P, expanding up to the row),
    next (P < P(t_j) <= P + N), previous (P - N <= P(t_j) < P); ``n``: N periods.
    """
    qa = 0
    qb = 0
    for q in range(nr):
        pq = vals[q]
        if mode == EXPANDING or mode == FULL:
            lo_thr = pq - n
            hi_thr = pq
        elif mode == NEXT:
            lo_thr = pq
            hi_thr = pq + n
        else:  # PREVIOUS
            lo_thr = pq - n - 1
            hi_thr = pq - 1
        while qa < nr and vals[qa] <= lo_thr:
            qa += 1
        while qb < nr and vals[qb] <= hi_thr:
            qb += 1
        a = starts[qa]
        b = starts[qb]
        if mode == EXPANDING:
            for r in range(starts[q], starts[q + 1]):
                lo[r] = a
                hi[r] = max(a, r + 1)
        else:
            for r in range(starts[q], starts[q + 1]):
                lo[r] = a
                hi[r] = max(a, b)


@njit(cache=True)
def _user_values(values, vc, a, user_rows, has_order, s, out):
    """The user's values of the target (m rows in (time, row) order): the amounts ``a``
    when ``vc`` < 0, else row ``vc`` of the value arrays (a view of sorted input, else
    gathered into ``out``)."""
    m = a.shape[0]
    if vc < 0:
        return a
    if not has_order:
        return values[vc, s : s + m]
    for r in range(m):
        out[r] = values[vc, user_rows[r]]
    return out


@njit(cache=True)
def _membership(mc, a, x, mcc_bits, sign_bits, nomcc_bits, f, masks, wm, user_rows, has_order, s, inv):
    """inv[r]: row r is in V, i.e. passes the target's mcc/sign filter (filter ``f`` of the
    range path's tables, ``[words, ...]``: word f >> 6, bit f & 63; the sign of the amount,
    NaN neither sign), its where mask (``wm`` >= 0) and has a value (x not NaN). Unlike the
    version 1 filter bits, a null amount does not exclude a row whose value is another
    column. Branch-free (``&``, not ``and``): a filter passing rows at random would
    mispredict a branch on many of them."""
    bit = np.uint64(1) << np.uint64(f & 63)
    w = f >> 6
    if (nomcc_bits[w] & sign_bits[w, 0] & sign_bits[w, 1] & sign_bits[w, 2] & bit) != 0:
        # no MCC list and any sign: the filter passes every row (no table lookups)
        for r in range(x.shape[0]):
            ok = x[r] == x[r]
            if wm >= 0:
                ok &= masks[wm, user_rows[r] if has_order else s + r] != 0
            inv[r] = ok
        return
    nmcc = mcc_bits.shape[1]
    for r in range(x.shape[0]):
        c = mc[r]
        inside = (c >= 0) & (c < nmcc)
        b = mcc_bits[w, c if inside else 0] if inside else nomcc_bits[w]
        side = np.int64(a[r] > 0) - np.int64(a[r] < 0) + 1
        ok = ((b & sign_bits[w, side] & bit) != 0) & (x[r] == x[r])
        if wm >= 0:
            ok &= masks[wm, user_rows[r] if has_order else s + r] != 0
        inv[r] = ok


@njit(cache=True)
def _compact_v(inv, x, absf, t, vv, vt, vr, cv):
    """V of one target: values vv[:nv] (|x| with ``absf``), times vt, rows vr, and
    cv[r] = number of V rows before row r (cv[m] = nv). Returns nv. Branch-free: every
    row is written at position nv, which only the rows in V advance."""
    nv = 0
    for r in range(inv.shape[0]):
        cv[r] = nv
        vv[nv] = abs(x[r]) if absf else x[r]
        vt[nv] = t[r]
        vr[nv] = r
        nv += inv[r]
    cv[inv.shape[0]] = nv
    return nv


@njit(cache=True)
def _v_ranges(cv, lo, hi, vlo, vhi):
    """Row ranges -> ranges of V."""
    for r in range(lo.shape[0]):
        vlo[r] = cv[lo[r]]
        vhi[r] = cv[hi[r]]


@njit(cache=True)
def _range_moments(vv, vt, vr, nv, vlo, vhi, t, sec, agg, q, k, fill, dst, kdst):
    """count / sum / mean / any / std / min / max / top-k over the ranges."""
    if agg == STD:
        _sliding_std(vv, nv, False, vlo, vhi, fill, dst)
    elif agg == MIN or agg == MAX:
        _sliding_extreme(vv, nv, False, vlo, vhi, agg == MIN, fill, dst)
    elif agg == TOPK:
        _sliding_topk(vv, nv, False, vlo, vhi, k, fill, kdst)
    else:
        _sliding_moments(vv, nv, False, vlo, vhi, agg, fill, dst)


@njit(cache=True)
def _range_order(vv, vt, vr, nv, vlo, vhi, t, sec, agg, q, k, fill, dst, kdst):
    """first / last (the range's ends), time_to_next (seconds to its first row),
    time_since_last (seconds since its last row other than the row itself)."""
    for r in range(vlo.shape[0]):
        a, b = vlo[r], vhi[r]
        if agg == FIRST:
            dst[r] = vv[a] if b > a else fill
        elif agg == LAST:
            dst[r] = vv[b - 1] if b > a else fill
        elif agg == TIME_TO_NEXT:
            dst[r] = (vt[a] - t[r]) * sec if b > a else fill
        else:  # TIME_SINCE_LAST
            j = b - 1
            if j >= a and vr[j] == r:
                j -= 1
            dst[r] = (t[r] - vt[j]) * sec if j >= a else fill


@njit(cache=True)
def _value_ids(vv, nv):
    """Dense ids of V's values (equal values, -0.0 and 0.0 included, share one) and the
    number of ids. Small non-negative integers (the codes of a ``value:`` column, MCCs)
    are their own ids: no sort; other values are ranked by sorting, O(nv log nv)."""
    ids = np.empty(nv, dtype=np.int64)
    if nv == 0:
        return ids, 0
    cap = max(4 * nv, 1 << 14)
    small = True
    top = 0
    for j in range(nv):
        v = vv[j]
        if not (v >= 0.0 and v < cap and v == math.floor(v)):
            small = False
            break
        top = max(top, int(v))
    if small:
        for j in range(nv):
            ids[j] = int(vv[j])
        return ids, top + 1
    order = np.argsort(vv[:nv])
    d = 0
    prev = vv[order[0]]
    for j in range(nv):
        v = vv[order[j]]
        if v != prev:
            d += 1
            prev = v
        ids[order[j]] = d
    return ids, d + 1


@njit(cache=True)
def _range_nunique(vv, vt, vr, nv, vlo, vhi, t, sec, agg, q, k, fill, dst, kdst):
    """Distinct values in each range: counts per value id, updated as the range slides
    (both ends non-decreasing): O(nv log nv + m)."""
    ids, nd = _value_ids(vv, nv)
    counts = np.zeros(max(nd, 1), dtype=np.int64)
    distinct = 0
    a = 0
    b = 0
    for r in range(vlo.shape[0]):
        while b < vhi[r]:
            distinct += 1 if counts[ids[b]] == 0 else 0
            counts[ids[b]] += 1
            b += 1
        while a < vlo[r]:
            counts[ids[a]] -= 1
            distinct -= 1 if counts[ids[a]] == 0 else 0
            a += 1
        dst[r] = distinct


_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True)
def _sort_group(bits, order, i, j):
    """Sort ``order[i:j]`` (indices into the float64 bit patterns ``bits``, in index
    order) stably by the order-preserving key: an insertion sort for a few, a merge sort
    (O(g log g), stable) for a long group of g."""
    sign = np.uint64(1) << np.uint64(63)
    full = np.empty(j - i, dtype=np.uint64)
    for g in range(j - i):
        x = bits[order[i + g]]
        full[g] = ~x if x & sign else x | sign
    if j - i > 16:  # a bottom-up merge sort (not np.argsort's: seconds more compilation)
        n = j - i
        idx = order[i:j].copy()
        full2 = np.empty(n, dtype=np.uint64)
        idx2 = np.empty(n, dtype=np.int64)
        width = 1
        while width < n:
            for lo in range(0, n, 2 * width):
                mid = min(lo + width, n)
                hi = min(lo + 2 * width, n)
                a = lo
                b = mid
                for o in range(lo, hi):
                    take_b = a >= mid or (b < hi and full[b] < full[a])  # ties from the left: stable
                    src = b if take_b else a
                    full2[o] = full[src]
                    idx2[o] = idx[src]
                    b += 1 if take_b else 0
                    a += 0 if take_b else 1
            full, full2 = full2, full
            idx, idx2 = idx2, idx
            width *= 2
        order[i:j] = idx
        return
    for g in range(1, j - i):
        f = full[g]
        o = order[i + g]
        h = g
        while h > 0 and full[h - 1] > f:
            full[h] = full[h - 1]
            order[i + h] = order[i + h - 1]
            h -= 1
        full[h] = f
        order[i + h] = o


@njit(cache=True)
def _radix_argsort(vv, nv):
    """A stable argsort of float64 ``vv[:nv]`` (no NaN; -0.0 before 0.0), by an
    order-preserving uint64 key (sign bit flipped for positives, every bit for
    negatives). One array is sorted: each key with its low ``ib`` bits replaced by the
    value's index (``ib`` = bits of ``nv - 1``), by an LSD radix sort of ``D``-bit digits
    over the key's upper bits (one pass builds every digit's histogram; a digit all keys
    share is skipped). Keys equal in their upper bits keep index order; those whose
    dropped low bits differ (values a few ulps apart) are put in order afterwards, group
    by group, on their full keys (:func:`_sort_group`: O(g log g) for a group of g).
    Timed against ``np.argsort`` by ``benchmarks/order_stats.py``."""
    ib = 1
    while (1 << ib) < nv:
        ib += 1
    d = min(max(ib - 2, 8), 11)  # digit bits: wider histograms pay off on longer V
    npass = (64 - ib + d - 1) // d
    nb = 1 << d
    ibu = np.uint64(ib)
    low = (np.uint64(1) << ibu) - np.uint64(1)
    dmask = np.uint64(nb - 1)
    sign = np.uint64(1) << np.uint64(63)
    bits = vv[:nv].view(np.uint64)
    keys = np.empty(nv, dtype=np.uint64)
    hist = np.zeros((npass, nb), dtype=np.int64)
    for i in range(nv):
        b = bits[i]
        key = ((~b if b & sign else b | sign) & ~low) | np.uint64(i)
        keys[i] = key
        for p in range(npass):
            hist[p, (key >> np.uint64(ib + d * p)) & dmask] += 1
    keys2 = np.empty(nv, dtype=np.uint64)
    for p in range(npass):
        h = hist[p]
        shared = False
        total = 0
        for j in range(nb):
            c = h[j]
            shared |= c == nv
            h[j] = total
            total += c
        if shared:
            continue
        shift = np.uint64(ib + d * p)
        for i in range(nv):
            key = keys[i]
            j = (key >> shift) & dmask
            at = h[j]
            h[j] = at + 1
            keys2[at] = key
        keys, keys2 = keys2, keys
    order = np.empty(nv, dtype=np.int64)
    tie = False
    for i in range(nv):
        order[i] = np.int64(keys[i] & low)
    for i in range(1, nv):
        tie |= (keys[i] >> ibu) == (keys[i - 1] >> ibu)
    if tie:  # equal upper bits: put each such group in full-key order (stable)
        i = 0
        while i < nv:
            j = i + 1
            while j < nv and (keys[j] >> ibu) == (keys[i] >> ibu):
                j += 1
            if j - i > 1:
                _sort_group(bits, order, i, j)
            i = j
    return order


@njit(cache=True, inline="always")
def _next_set(words, summary, p):
    """The smallest set bit >= p of the bit set ``words`` (one must exist). ``summary`` has
    bit w set whenever ``words[w]`` may be non-empty (set on every insertion, cleared
    here when found stale), so runs of empty words are skipped 64 at a time."""
    w = p >> 6
    bits = words[w] & (_ALL << np.uint64(p & 63))
    while bits == 0:
        w += 1
        sw = w >> 6
        sbits = summary[sw] & (_ALL << np.uint64(w & 63))
        while sbits == 0:
            sw += 1
            sbits = summary[sw]
        w = (sw << 6) + int(trailing_zeros(sbits))
        bits = words[w]
        if bits == 0:  # emptied since its summary bit was set
            summary[sw] &= ~(np.uint64(1) << np.uint64(w & 63))
    return (w << 6) + int(trailing_zeros(bits))


@njit(cache=True, inline="always")
def _prev_set(words, summary, p):
    """The largest set bit <= p of the bit set ``words`` (one must exist)."""
    w = p >> 6
    bits = words[w] & (_ALL >> np.uint64(63 - (p & 63)))
    while bits == 0:
        w -= 1
        sw = w >> 6
        sbits = summary[sw] & (_ALL >> np.uint64(63 - (w & 63)))
        while sbits == 0:
            sw -= 1
            sbits = summary[sw]
        w = (sw << 6) + 63 - int(leading_zeros(sbits))
        bits = words[w]
        if bits == 0:
            summary[sw] &= ~(np.uint64(1) << np.uint64(w & 63))
    return (w << 6) + 63 - int(leading_zeros(bits))


@njit(cache=True)
def _v_ranks(vv, nv, rank, sorted_vals):
    """rank[j] = the rank of vv[j] among V's values (ties ranked apart, in V order) and
    sorted_vals[:nv] = V's values sorted: computed once per V for every median and
    quantile target sharing it (the driver calls it before the first)."""
    perm = _radix_argsort(vv, nv)
    for j in range(nv):
        sorted_vals[j] = vv[perm[j]]
        rank[perm[j]] = j


@njit(cache=True)
def _range_quantile(vv, vt, vr, nv, vlo, vhi, t, sec, agg, q, k, fill, dst, kdst, rank, sorted_vals):
    """median / quantile q (SPEC.md 2.2; linear interpolation, h = (n - 1) q) of each
    range: a bit set of the ranks present in the range (``rank``, ``sorted_vals``: of
    :func:`_v_ranks`, computed once per V) and a cursor kept on the low-th smallest present rank,
    moved to the next or previous set bit as values come and go (the wanted rank moves
    by at most one per value); a second level of bits marks the non-empty words, so a
    step skips 4,096 empty ranks per word read (a narrow window over a long history:
    O(m * nv / 4096) word reads at worst, a few per step on a user's thousands of rows).
    The next present rank above the cursor (the order statistic low + 1, which
    interpolation reads on most rows) is kept while values come and go, so a row
    searches only when the cursor moves up or that rank leaves.
    ``benchmarks/order_stats.py`` times it (docs/benchmarks.md)."""
    m = vlo.shape[0]
    median = agg == MEDIAN
    qq = 0.5 if median else q
    # a bit set over the ranks of V's values (ties get distinct ranks) and a cursor on the
    # window's low-th smallest value; a value in or out moves the wanted rank and the
    # cursor by at most one present rank (a find-next-set-bit)
    words = np.zeros((nv >> 6) + 1, dtype=np.uint64)
    summary = np.zeros((words.shape[0] >> 6) + 1, dtype=np.uint64)  # bit w: words[w] may be != 0
    one = np.uint64(1)
    c = -1  # the cursor: a rank; below = present ranks < c
    c1 = -1  # the smallest present rank > c, or -1 when not known
    below = 0
    n = 0
    a = 0
    b = 0
    for r in range(m):
        if r > 0 and vlo[r] == vlo[r - 1] and vhi[r] == vhi[r - 1]:
            dst[r] = dst[r - 1]  # the same range (a full period's rows, ties in time)
            continue
        while b < vhi[r]:
            k = rank[b]
            words[k >> 6] |= one << np.uint64(k & 63)
            summary[k >> 12] |= one << np.uint64((k >> 6) & 63)
            n += 1
            below += 1 if k < c else 0
            c1 = k if c < k < c1 else c1
            b += 1
        while a < vlo[r]:
            k = rank[a]
            words[k >> 6] &= ~(one << np.uint64(k & 63))  # its summary bit is cleared lazily
            n -= 1
            below -= 1 if k < c else 0
            c1 = -1 if k == c1 else c1
            a += 1
        if n == 0:
            dst[r] = fill
            continue
        h = (n - 1) * qq
        low = int(math.floor(h))
        if c < 0:
            c = _next_set(words, summary, 0)
            c1 = -1
        while below > low:
            present = (words[c >> 6] >> np.uint64(c & 63)) & one
            c1 = c if present != 0 else c1
            c = _prev_set(words, summary, c - 1)
            below -= 1
        while True:
            present = (words[c >> 6] >> np.uint64(c & 63)) & one
            if present != 0 and below == low:
                break
            below += 1 if present != 0 else 0
            c = c1 if c1 >= 0 else _next_set(words, summary, c + 1)
            c1 = -1
        y0 = sorted_vals[c]
        if h == low:
            y1 = y0
        else:
            if c1 < 0:
                c1 = _next_set(words, summary, c + 1)
            y1 = sorted_vals[c1]
        dst[r] = quantile_of(y0, y1, h, low, median)


#: Widest range (values of V) whose median / quantile keeps a sorted window
#: (:func:`_range_quantile_sorted`, O(width) vector work per step) rather than the
#: ranks' bit set (:func:`_range_quantile`, a sort of V first), and the same once V's
#: ranks are there (another order statistic over V sorted it): crossovers near 100 and
#: 40 values measured with ``benchmarks/order_stats.py`` (docs/benchmarks.md).
SORTED_WINDOW_MAX = 64
SORTED_WINDOW_RANKED_MAX = 32
_FLIP = np.int64(0x7FFFFFFFFFFFFFFF)  # float64 bits <-> an int64 key of the same order


@njit(cache=True)
def _range_width(vlo, vhi):
    """The most values any range [vlo[r], vhi[r]) holds (0 when there are no rows)."""
    w = 0
    for r in range(vlo.shape[0]):
        w = max(w, vhi[r] - vlo[r])
    return w


@njit(cache=True)
def _range_quantile_sorted(vv, vt, vr, nv, vlo, vhi, t, sec, agg, q, k, fill, dst, kdst, width):
    """median / quantile q of each range, as :func:`_range_quantile`, for ranges of at
    most ``width`` values (:func:`_range_width`; meant for width <= SORTED_WINDOW_MAX):
    the range's values kept sorted as int64 keys of the same order as the floats
    (-0.0 before 0.0, as the ranks' radix sort), so an order statistic is read at its
    index. A value leaving and one entering are one step: count the keys below each
    (:func:`.intrinsics._count_le8`), then rewrite the window in place eight keys at a
    time, the keys between the two places shifted by one (:func:`.intrinsics._sorted_shift8`);
    a value alone entering (leaving) is a step with the largest key leaving (entering),
    which pads the window. No branch depends on the values and V needs no sort: O(width / 8)
    vector operations per step, against the cursor's searches (a branch each) and the
    sort of V; timed by ``NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/profile_kernel.py
    --config configs/v2_median_50.yaml`` (docs/benchmarks.md)."""
    m = vlo.shape[0]
    median = agg == MEDIAN
    qq = 0.5 if median else q
    top = _FLIP  # the largest int64, above every key (no NaN in V)
    wp = ((width + 7) >> 3) << 3  # positions, whole groups of eight
    buf = np.full(wp + 16, top, dtype=np.int64)  # [min x 8][wp keys][max x 8]
    buf[:8] = -top - 1
    bits = vv.view(np.int64)
    raw = np.empty(1, dtype=np.int64)
    as_float = raw.view(np.float64)
    a = 0  # the window holds V[a:b]
    b = 0
    for r in range(m):
        if r > 0 and vlo[r] == vlo[r - 1] and vhi[r] == vhi[r - 1]:
            dst[r] = dst[r - 1]  # the same range (a full period's rows, ties in time)
            continue
        lo = vlo[r]
        hi = vhi[r]
        if lo >= b:  # no value stays: empty the window
            for e in range(wp):
                buf[8 + e] = top
            a = lo
            b = lo
        while a < lo or b < hi:  # a step: one value out and one in, or the largest key for either
            gone = top
            if a < lo:
                x = bits[a]
                gone = x ^ ((x >> 63) & _FLIP)
                a += 1
            come = top
            if b < hi:
                x = bits[b]
                come = x ^ ((x >> 63) & _FLIP)
                b += 1
            below_gone = 0  # the position of the value out, and where the value in goes
            below_come = 0
            for g in range(8, wp + 8, 8):
                below_gone += _count_le8(buf, g, gone - 1)
                below_come += _count_le8(buf, g, come - 1)
            right = come > gone  # keys between the two positions move down one, else up one
            pos = below_come - 1 if right else below_come
            first = min(below_gone, pos)
            last = max(below_gone, pos)
            carry = buf[7]
            for g in range(0, wp, 8):
                carry = _sorted_shift8(buf, 8 + g, g, first, last, pos, right, come, carry)
        n = b - a
        if n == 0:
            dst[r] = fill
            continue
        h = (n - 1) * qq
        low = int(math.floor(h))
        key = buf[8 + low]
        raw[0] = key ^ ((key >> 63) & _FLIP)
        y0 = as_float[0]
        y1 = y0
        if h != low:
            key = buf[9 + low]
            raw[0] = key ^ ((key >> 63) & _FLIP)
            y1 = as_float[0]
        dst[r] = quantile_of(y0, y1, h, low, median)
