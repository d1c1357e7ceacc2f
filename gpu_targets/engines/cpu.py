"""The ``cpu`` engine: Numba ``@njit`` kernels, parallel over users.

Layout of the work
------------------
1. Group rows by user and order each user's rows by ``(time, input row)``
   (:func:`group_users`). Input already grouped and time-sorted is detected in one
   parallel pass and not sorted (user offsets then come from a galloping search);
   otherwise a stable counting sort by user code, then a stable sort of the times
   inside each user that needs it.
2. ``prange`` over users. A user's rows (views of the input when it is sorted) stay in
   cache while *every* target of the config is computed from them: per row, one
   ``uint64`` bit set of the MCC/sign filters it passes and one period index per period
   kind used (the day computed once); then per target:

   * period windows: one flat expanding pass that resets on a new period, O(n); ``full``
     adds a backward pass spreading each period's last value, ``next`` a backward pass
     taking the following period's (std and top-k walk the runs instead);
   * trailing / forward durations: the rows of V (the target's filter) are compacted
     once per filter and W(i) becomes a range [lo[i], hi[i]) of them, from branch-free
     merges, once per (filter, duration, mode); then compensated prefix sums for
     count/sum/mean/any, double-double prefix sums for std, a sparse table for min/max
     (O(n log w)) and a Fenwick tree over value ranks for top-k (O(n k log n));
   * float64 arithmetic, float32 results.
3. On unsorted input the results are scattered back to input row order.

Calendar periods need not be monotone in time under a DST time zone (a fall-back at
midnight repeats part of a day); such a user's rows are visited in a stable period order
instead, which gives the same windows as SPEC.md's definition.

Compilation is cached on disk (``cache=True``): a second process loads the machine code.
Every array reaches the kernels read-only, so each kernel has one signature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit, prange

from ..calendar import local_wall_clock_ns, period_of_day
from ..spec import Config
from ..transactions import Transactions
from .elementwise import (
    dd_add,
    dd_add_dd,
    moments_result,
    compensated_add,
    row_filter_bits,
    sample_std,
    two_prod,
)
from .plan import ANY, COUNT, EXPANDING, FULL, MAX, MIN, NEXT, STD, SUM, TOPK, TRAILING, Plan, compile_plan

__all__ = ["compute", "group_users"]

_NS_PER_DAY = 86_400_000_000_000
_NS_PER_HOUR = 3_600_000_000_000
_INT64_MAX = np.iinfo(np.int64).max

# --------------------------------------------------------------------------- grouping


_CHUNKS = 64  # row chunks of the parallel scans below


@njit(cache=True, parallel=True)
def _grouped_and_sorted(user, time):
    """True when users come in non-decreasing runs with non-decreasing times inside."""
    n = user.shape[0]
    ok = np.ones(_CHUNKS, dtype=np.bool_)
    for c in prange(_CHUNKS):
        for i in range(max(1, c * n // _CHUNKS), (c + 1) * n // _CHUNKS):
            if user[i] < user[i - 1] or (user[i] == user[i - 1] and time[i] < time[i - 1]):
                ok[c] = False
                break
    return ok.all()


@njit(cache=True)
def _run_offsets(user):
    """Start of each run of equal ids in a non-decreasing array, and n at the end.

    Galloping search from run to run: O(n_users log(run length)) probes instead of a
    pass over every row (the rows were just read by :func:`_grouped_and_sorted`).
    """
    n = user.shape[0]
    starts = [0]
    i = 0
    while i < n:
        u = user[i]
        step = 1
        hi = i + 1
        while hi < n and user[hi] == u:  # gallop to a row past the run
            hi = i + step
            step *= 2
            if hi >= n:
                hi = n
                break
        lo = max(i + 1, i + step // 4)  # user[lo - 1] == u
        # binary search for the first row in [lo, hi) whose id differs
        while lo < hi:
            mid = (lo + hi) // 2
            if user[mid] == u:
                lo = mid + 1
            else:
                hi = mid
        i = lo
        starts.append(i)
    return np.array(starts, dtype=np.int64)


@njit(cache=True)
def _counting_sort(codes, n_codes):
    offsets = np.zeros(n_codes + 1, dtype=np.int64)
    for c in codes:
        offsets[c + 1] += 1
    for u in range(n_codes):
        offsets[u + 1] += offsets[u]
    fill = offsets[:-1].copy()
    order = np.empty(codes.shape[0], dtype=np.int64)
    for i in range(codes.shape[0]):
        c = codes[i]
        order[fill[c]] = i
        fill[c] += 1
    return order, offsets


@njit(cache=True, parallel=True)
def _sort_time_within_users(order, offsets, time):
    for u in prange(offsets.shape[0] - 1):
        s, e = offsets[u], offsets[u + 1]
        ok = True
        for i in range(s + 1, e):
            if time[order[i]] < time[order[i - 1]]:
                ok = False
                break
        if not ok:
            rows = order[s:e].copy()
            t = np.empty(e - s, dtype=np.int64)
            for i in range(e - s):
                t[i] = time[rows[i]]
            perm = np.argsort(t, kind="mergesort")  # stable: ties keep input row order
            for i in range(e - s):
                order[s + i] = rows[perm[i]]


def _ro(a: np.ndarray) -> np.ndarray:
    """A read-only view: every array handed to a kernel has the same Numba type whatever
    pandas gave us (writable or not), so each kernel compiles once."""
    v = a.view()
    v.flags.writeable = False
    return v


def group_users(tx: Transactions):
    """Order rows by ``(user, time, input row)``.

    Parameters
    ----------
    tx : Transactions

    Returns
    -------
    order : ndarray of int64, shape (n,), or None
        Input row of each sorted position; ``None`` when the input is already grouped by
        user with non-decreasing times (no sort was done).
    offsets : ndarray of int64, shape (n_users + 1,)
        User ``u`` occupies sorted positions ``offsets[u]:offsets[u+1]``.
    """
    user, time = _ro(tx.user), _ro(tx.time)
    if _grouped_and_sorted(user, time):
        return None, _run_offsets(user)
    if tx.user_is_code:
        codes, n_codes = tx.user, int(tx.user.max()) + 1
    else:
        codes, uniques = pd.factorize(tx.user, sort=False)
        codes, n_codes = codes.astype(np.int64, copy=False), len(uniques)
    codes = _ro(codes)
    if _grouped_and_sorted(codes, time):
        return None, _run_offsets(codes)
    order, offsets = _counting_sort(codes, n_codes)
    _sort_time_within_users(order, offsets, time)
    return order, offsets


# --------------------------------------------------------------------------- windows
# Each function computes one target for one user over the user's rows in (time, row)
# order: ``bits[r] & bit`` says whether row r is in V (mcc/sign filter, amount not
# NaN), ``a[r]`` is its amount (``absf``: use |a|), results go to ``dst[r]``.


@njit(cache=True, inline="always")
def _value(a, r, absf):
    x = a[r]
    return abs(x) if absf else x


@njit(cache=True, inline="always")
def _run_end(p, g0):
    """End of the run of equal period index starting at g0."""
    m = p.shape[0]
    g1 = g0 + 1
    while g1 < m and p[g1] == p[g0]:
        g1 += 1
    return g1


@njit(cache=True, inline="always")
def _source_run(p, g0, g1, mode):
    """Rows aggregated for the run [g0, g1): itself (full) or the next period's run."""
    if mode != NEXT:
        return g0, g1
    h1 = g1
    while h1 < p.shape[0] and p[h1] == p[g0] + 1:
        h1 += 1
    return g1, h1


@njit(cache=True)
def _expanding_moments(p, bits, bit, a, absf, agg, fill, dst):
    """count/sum/mean/any over expanding periods: one flat pass, reset on a new period.

    Sums are compensated (TwoSum errors, as Neumaier), so large cancelling amounts (1e12, 0.1, -1e12) still
    give 0.1; one loop per aggregation so that each compiles to a tight loop.
    """
    m = p.shape[0]
    cur = p[0]
    cnt = 0
    s1 = 0.0
    c1 = 0.0
    if agg == SUM:
        for r in range(m):
            if p[r] != cur:
                cur = p[r]
                s1 = 0.0
                c1 = 0.0
            if bits[r] & bit:
                s1, c1 = compensated_add(s1, c1, abs(a[r]) if absf else a[r])
            dst[r] = s1 + c1
    elif agg == COUNT or agg == ANY:
        for r in range(m):
            if p[r] != cur:
                cur = p[r]
                cnt = 0
            if bits[r] & bit:
                cnt += 1
            dst[r] = cnt if agg == COUNT else min(cnt, 1)
    else:  # MEAN
        for r in range(m):
            if p[r] != cur:
                cur = p[r]
                s1 = 0.0
                c1 = 0.0
                cnt = 0
            if bits[r] & bit:
                s1, c1 = compensated_add(s1, c1, abs(a[r]) if absf else a[r])
                cnt += 1
            dst[r] = (s1 + c1) / cnt if cnt > 0 else fill


@njit(cache=True)
def _period_moments(p, bits, bit, a, absf, mode, agg, fill, dst):
    """count/sum/mean/std/any over period windows: one segmented pass per run.

    Only std reaches this run-by-run walk (double-double sums, see
    :func:`.elementwise.sample_std`); the other aggregations take the flat passes.
    """
    m = p.shape[0]
    if m == 0:
        return
    if mode == EXPANDING and agg != STD:
        _expanding_moments(p, bits, bit, a, absf, agg, fill, dst)
        return
    std = agg == STD
    g0 = 0
    while g0 < m:
        g1 = _run_end(p, g0)
        h0, h1 = _source_run(p, g0, g1, mode) if mode != EXPANDING else (g0, g1)
        cnt = 0
        s1 = 0.0
        s1l = 0.0
        s2h = 0.0
        s2l = 0.0
        for r in range(h0, h1):
            if bits[r] & bit:
                x = _value(a, r, absf)
                cnt += 1
                if std:
                    s1, s1l = dd_add(s1, s1l, x)
                    ph, pl = two_prod(x, x)
                    s2h, s2l = dd_add_dd(s2h, s2l, ph, pl)
                else:
                    s1 += x
            if mode == EXPANDING:
                dst[r] = moments_result(agg, cnt, s1, s1l, s2h, s2l, fill)
        if mode != EXPANDING:
            v = moments_result(agg, cnt, s1, s1l, s2h, s2l, fill)
            for r in range(g0, g1):
                dst[r] = v
        g0 = g1


@njit(cache=True)
def _expanding_extreme(p, bits, bit, a, absf, is_min, fill, dst):
    """min/max over expanding periods: one flat, branch-free pass (rows outside V count
    as +inf for min, -inf for max; amounts are finite or NaN)."""
    m = p.shape[0]
    init = np.inf if is_min else -np.inf
    cur = p[0]
    ext = init
    for r in range(m):
        if p[r] != cur:
            cur = p[r]
            ext = init
        x = abs(a[r]) if absf else a[r]
        v = x if bits[r] & bit else init
        ext = min(ext, v) if is_min else max(ext, v)
        dst[r] = ext if ext != init else fill


@njit(cache=True)
def _spread_full(p, dst):
    """Expanding values -> full-period values: each run takes the value at its end."""
    m = p.shape[0]
    v = dst[m - 1]
    for r in range(m - 2, -1, -1):
        if p[r] != p[r + 1]:
            v = dst[r]
        dst[r] = v


@njit(cache=True)
def _shift_next(p, dst, empty):
    """Expanding values -> next-period values: a run takes the full value of the run
    right after it when that run is period p + 1, else the empty-window value."""
    m = p.shape[0]
    run_full = dst[m - 1]  # full value of the run being walked (set at its end)
    v = empty
    for r in range(m - 1, -1, -1):
        if r < m - 1 and p[r] != p[r + 1]:
            nxt_full = run_full  # the run above becomes "next"
            run_full = dst[r]
            v = nxt_full if p[r + 1] == p[r] + 1 else empty
        dst[r] = v


@njit(cache=True)
def _topk_insert(kbuf, kn, k, x):
    """Insert x into the descending buffer kbuf[:kn] holding at most k values; new kn."""
    if kn == k:
        if not x > kbuf[k - 1]:
            return kn
        j = k - 1
    else:
        j = kn
        kn += 1
    while j > 0 and kbuf[j - 1] < x:
        kbuf[j] = kbuf[j - 1]
        j -= 1
    kbuf[j] = x
    return kn


@njit(cache=True)
def _period_topk(p, bits, bit, a, absf, mode, k, fill, kres, kbuf):
    """top-k over period windows with a bounded descending buffer (O(k) per insert)."""
    m = p.shape[0]
    g0 = 0
    while g0 < m:
        g1 = _run_end(p, g0)
        h0, h1 = _source_run(p, g0, g1, mode) if mode != EXPANDING else (g0, g1)
        kn = 0
        for j in range(k):
            kbuf[j] = fill  # unfilled places read as fill
        for r in range(h0, h1):
            if bits[r] & bit:
                kn = _topk_insert(kbuf, kn, k, _value(a, r, absf))
            if mode == EXPANDING:
                for j in range(k):
                    kres[j, r] = kbuf[j]
        if mode != EXPANDING:
            for j in range(k):
                v = kbuf[j]
                for r in range(g0, g1):
                    kres[j, r] = v
        g0 = g1


# Duration windows work on V only: the rows passing the target's filter, compacted in
# (time, row) order. W(i) is then a range [lo[i], hi[i]) of that list, with both bounds
# non-decreasing in i; they come from branchless merges, so the cost does not depend on
# how the window's size fluctuates (no mispredicted loop exits).


@njit(cache=True)
def _compact(t, bits, bit, a, vt, vv, upto):
    """V in order: times vt[:nv] (vt[nv] = int64 max, a sentinel), raw amounts vv[:nv];
    upto[r] = number of V rows at positions <= r. Branchless; returns nv."""
    nv = 0
    for r in range(t.shape[0]):
        vt[nv] = t[r]
        vv[nv] = a[r]
        nv += 1 if bits[r] & bit else 0
        upto[r] = nv
    vt[nv] = _INT64_MAX
    return nv


@njit(cache=True)
def _count_upto(vt, nv, t, shift, out):
    """out[i] = number of j with vt[j] <= t[i] + shift; vt sorted with a sentinel.

    Sparse V (nv < m / 4): a scan that advances over V only, whose loop exit is almost
    always "no advance" and predicts well. Dense V: a branch-free merge of the two
    sorted sequences (a data-dependent loop exit would mispredict on most rows). Both
    O(m + nv).
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
    i = 0
    j = 0
    while i < m:
        adv = 1 if vt[j] <= t[i] + shift else 0
        out[i] = j
        j += adv
        i += 1 - adv


@njit(cache=True)
def _window_bounds(t, d, mode, vt, nv, upto, lo, hi):
    """[lo[i], hi[i]) = W(i) in V: trailing (t_i - d, t_i] up to row i, forward (t_i, t_i + d].

    Returns the (lo, hi) arrays to use: for trailing windows hi is ``upto`` itself; for
    forward windows lo[i] is ``upto`` at the last row tied with row i.
    """
    m = t.shape[0]
    _count_upto(vt, nv, t, -d if mode == TRAILING else d, lo if mode == TRAILING else hi)
    if mode == TRAILING:
        return lo, upto
    cur = upto[m - 1]
    for r in range(m - 1, -1, -1):
        if r < m - 1 and t[r] != t[r + 1]:
            cur = upto[r]
        lo[r] = cur
    return lo, hi


@njit(cache=True)
def _sliding_moments(vv, nv, absf, lo, hi, agg, fill, dst):
    """count/sum/mean/any from compensated prefix sums: sum(W) = P[hi] - P[lo]."""
    m = lo.shape[0]
    if agg == COUNT or agg == ANY:
        for i in range(m):
            n = hi[i] - lo[i]
            dst[i] = n if agg == COUNT else min(n, 1)
        return
    ps = np.empty(nv + 1, dtype=np.float64)
    pc = np.empty(nv + 1, dtype=np.float64)
    s = 0.0
    c = 0.0
    ps[0] = 0.0
    pc[0] = 0.0
    for j in range(nv):
        s, c = compensated_add(s, c, abs(vv[j]) if absf else vv[j])
        ps[j + 1] = s
        pc[j + 1] = c
    for i in range(m):
        a, b = lo[i], hi[i]
        total = (ps[b] - ps[a]) + (pc[b] - pc[a])
        if agg == SUM:
            dst[i] = total
        else:
            dst[i] = total / (b - a) if b > a else fill


@njit(cache=True)
def _sliding_std(vv, nv, absf, lo, hi, fill, dst):
    """Sample std (ddof=1) from double-double prefix sums of x and x^2 (exact to ~1e-30)."""
    s1h = np.empty(nv + 1, dtype=np.float64)
    s1l = np.empty(nv + 1, dtype=np.float64)
    s2h = np.empty(nv + 1, dtype=np.float64)
    s2l = np.empty(nv + 1, dtype=np.float64)
    s1h[0] = 0.0
    s1l[0] = 0.0
    s2h[0] = 0.0
    s2l[0] = 0.0
    for j in range(nv):
        x = abs(vv[j]) if absf else vv[j]
        s1h[j + 1], s1l[j + 1] = dd_add(s1h[j], s1l[j], x)
        ph, pl = two_prod(x, x)
        s2h[j + 1], s2l[j + 1] = dd_add_dd(s2h[j], s2l[j], ph, pl)
    last_a = -1
    last_b = -1
    v = fill
    for i in range(lo.shape[0]):
        a, b = lo[i], hi[i]
        if a != last_a or b != last_b:  # same window as the row before: same value
            n = b - a
            if n >= 2:
                w1h, w1l = dd_add_dd(s1h[b], s1l[b], -s1h[a], -s1l[a])
                w2h, w2l = dd_add_dd(s2h[b], s2l[b], -s2h[a], -s2l[a])
                v = sample_std(n, w1h, w1l, w2h, w2l)
            else:
                v = fill
            last_a, last_b = a, b
        dst[i] = v


@njit(cache=True)
def _sliding_extreme(vv, nv, absf, lo, hi, is_min, fill, dst):
    """min/max over [lo[i], hi[i]) with a sparse table: O(nv log w) to build, where w is
    the longest window, and a branch-free O(1) query per row (max of two overlapping
    power-of-two blocks).

    Chosen over a monotonic deque: on dense filters the deque's pop loops mispredict on
    almost every row, while these queries are branch-free (seed20's spend_max_next_7d
    got faster; see benchmarks/profile_targets.py for the current cost).
    """
    m = lo.shape[0]
    wmax = 1
    for i in range(m):
        wmax = max(wmax, hi[i] - lo[i])
    levels = 1
    while (1 << levels) <= wmax:
        levels += 1
    st = np.empty((levels, nv + 1), dtype=np.float64)
    for j in range(nv):
        st[0, j] = abs(vv[j]) if absf else vv[j]
    for lev in range(1, levels):
        half = 1 << (lev - 1)
        prev = st[lev - 1]
        cur = st[lev]
        for j in range(nv - (1 << lev) + 1):
            x = prev[j]
            y = prev[j + half]
            cur[j] = min(x, y) if is_min else max(x, y)
    log2 = np.empty(wmax + 1, dtype=np.int64)
    log2[0] = 0
    for n in range(1, wmax + 1):
        log2[n] = log2[n - 1] + (1 if (1 << (log2[n - 1] + 1)) <= n else 0)
    for i in range(m):
        a, b = lo[i], hi[i]
        n = b - a
        lev = log2[n]
        row = st[lev]
        x = row[a]
        y = row[max(b - (1 << lev), a)]
        v = min(x, y) if is_min else max(x, y)
        dst[i] = v if n > 0 else fill


@njit(cache=True)
def _sliding_topk(vv, nv, absf, lo, hi, k, fill, kres):
    """top-k over [lo[i], hi[i]): Fenwick tree of counts over the ranks of V's values.

    O(nv log nv) to rank, O(log nv) per insert/remove, O(k log nv) per row to read the
    k largest as order statistics.
    """
    vals = np.abs(vv[:nv]) if absf else vv[:nv].copy()
    perm = np.argsort(vals)
    sorted_vals = vals[perm]
    rank = np.empty(nv, dtype=np.int64)  # 1-based Fenwick index of each V position
    for j in range(nv):
        rank[perm[j]] = j + 1
    tree = np.zeros(nv + 1, dtype=np.int64)
    top = 1
    while top * 2 <= nv:
        top *= 2
    a = 0
    b = 0
    for i in range(lo.shape[0]):
        while b < hi[i]:
            x = rank[b]
            while x <= nv:
                tree[x] += 1
                x += x & -x
            b += 1
        while a < lo[i]:
            x = rank[a]
            while x <= nv:
                tree[x] -= 1
                x += x & -x
            a += 1
        total = b - a
        for j in range(k):
            want = total - j  # the want-th smallest value in W(i), 1-based
            if want <= 0:
                kres[j, i] = fill
                continue
            pos = 0
            step = top
            while step > 0:
                nxt = pos + step
                if nxt <= nv and tree[nxt] < want:
                    pos = nxt
                    want -= tree[nxt]
                step //= 2
            kres[j, i] = sorted_vals[pos]


@njit(cache=True)
def _duration_target(vv, nv, lo, hi, absf, agg, k, fill, dst, kdst):
    """A trailing/forward target for one user from V (compacted) and W(i) = [lo, hi)."""
    if agg == TOPK:
        _sliding_topk(vv, nv, absf, lo, hi, k, fill, kdst)
    elif agg == MIN or agg == MAX:
        _sliding_extreme(vv, nv, absf, lo, hi, agg == MIN, fill, dst)
    elif agg == STD:
        _sliding_std(vv, nv, absf, lo, hi, fill, dst)
    else:
        _sliding_moments(vv, nv, absf, lo, hi, agg, fill, dst)


@njit(cache=True)
def _period_target(p, bits, bit, a, absf, mode, agg, k, fill, dst, kres, kbuf):
    """Dispatch a period-window target (rows in run order, p non-decreasing).

    count/sum/mean/any/min/max: one flat expanding pass, then for ``full`` a backward
    pass spreading each run's last value and for ``next`` a backward pass taking the
    following run's; std and top-k walk the runs.
    """
    if p.shape[0] == 0:
        return
    if agg == TOPK:
        _period_topk(p, bits, bit, a, absf, mode, k, fill, kres, kbuf)
        return
    if agg == STD:
        _period_moments(p, bits, bit, a, absf, mode, agg, fill, dst)
        return
    if agg == MIN or agg == MAX:
        _expanding_extreme(p, bits, bit, a, absf, agg == MIN, fill, dst)
    else:
        _expanding_moments(p, bits, bit, a, absf, agg, fill, dst)
    if mode == FULL:
        _spread_full(p, dst)
    elif mode == NEXT:
        _shift_next(p, dst, moments_result(agg, 0, 0.0, 0.0, 0.0, 0.0, fill))


@njit(cache=True)
def _user_periods(lraw, lfac, codes, pv, mono):
    """Period index of every row for each period kind used; flags non-monotone ones.

    The local day is computed once per row (into the ``day`` slot when there is one);
    longer periods are derived from it only when the day changes (rows are in time
    order, so runs of equal days are long). Monotonicity is checked in the same loops.
    """
    m = lraw.shape[0]
    n_codes = codes.shape[0]
    day = np.empty(0, dtype=np.int64)
    for s in range(n_codes):
        if codes[s] == 1:
            day = pv[s]
    if day.shape[0] != m:
        day = np.empty(m, dtype=np.int64)
    day_ok = True
    prev = np.iinfo(np.int64).min
    for r in range(m):
        d = (lraw[r] * lfac) // _NS_PER_DAY
        day_ok &= d >= prev
        prev = d
        day[r] = d
    for s in range(n_codes):
        code = codes[s]
        row = pv[s]
        ok = True
        if code == 0:
            prev = np.iinfo(np.int64).min
            for r in range(m):
                h = (lraw[r] * lfac) // _NS_PER_HOUR
                ok &= h >= prev
                prev = h
                row[r] = h
        elif code == 1:
            ok = day_ok
        else:
            v = np.int64(0)
            prev = np.iinfo(np.int64).min
            for r in range(m):
                if r == 0 or day[r] != day[r - 1]:
                    v = period_of_day(day[r], code)
                    ok &= v >= prev
                    prev = v
                row[r] = v
        mono[s] = ok


@njit(cache=True)
def _user_targets(
    s, m, order, has_order, time, tfac, local, lfac, local_is_utc, amount, mcc,
    window, param, slot, agg, k, fbit, absval, fill, col, codes, mcc_bits, sign_bits, nomcc_bits, kmax, need_ns,
    window_key, out,
):
    """Every target for the user at sorted positions [s, s + m)."""
    n_cols = out.shape[0]
    # the user's rows in (time, row) order: views of the input when it is sorted,
    # else gathered once; either way they stay in cache for every target
    if has_order:
        rows = order[s : s + m]
        traw = np.empty(m, dtype=np.int64)
        lraw = traw if local_is_utc else np.empty(m, dtype=np.int64)
        a = np.empty(m, dtype=np.float64)
        mc = np.empty(m, dtype=np.int32)
        for r in range(m):
            i = rows[r]
            traw[r] = time[i]
            if not local_is_utc:
                lraw[r] = local[i]
            a[r] = amount[i]
            mc[r] = mcc[i]
    else:
        traw = time[s : s + m]
        lraw = traw if local_is_utc else local[s : s + m]
        a = amount[s : s + m]
        mc = mcc[s : s + m]
    bits = np.empty(m, dtype=np.uint64)
    for r in range(m):
        bits[r] = row_filter_bits(mc[r], a[r], mcc_bits, sign_bits, nomcc_bits)
    if need_ns and tfac != 1:
        t = np.empty(m, dtype=np.int64)
        for r in range(m):
            t[r] = traw[r] * tfac
    else:
        t = traw
    pv = np.empty((codes.shape[0], m), dtype=np.int64)
    mono = np.empty(codes.shape[0], dtype=np.bool_)
    _user_periods(lraw, lfac, codes, pv, mono)
    # unsorted input: results land in res, then are scattered to input order
    res = np.empty((n_cols if has_order else 0, m), dtype=np.float32)
    kres = np.empty((kmax, m), dtype=np.float32)  # non-monotone periods only
    kbuf = np.empty(kmax, dtype=np.float64)
    # scratch of the duration windows
    n_dur = m if need_ns else 0
    vt = np.empty(n_dur + 1, dtype=np.int64)
    vv = np.empty(n_dur, dtype=np.float64)
    upto = np.empty(n_dur, dtype=np.int64)
    lo = np.empty(n_dur, dtype=np.int64)
    hi = np.empty(n_dur, dtype=np.int64)
    last_filter = -1
    last_window = -1
    nv = 0
    wlo = lo
    whi = hi
    for ti in range(window.shape[0]):
        c = col[ti]
        g = agg[ti]
        w = window[ti]
        bit = np.uint64(1) << np.uint64(fbit[ti])
        # destination rows: the output itself on sorted input, else the user's res rows
        kdst = res[c : c + k[ti]] if has_order else out[c : c + k[ti], s : s + m]
        dst = kdst[0]
        if w <= NEXT and mono[slot[ti]]:
            _period_target(pv[slot[ti]], bits, bit, a, absval[ti], w, g, k[ti], fill[ti], dst, kdst, kbuf)
        elif w <= NEXT:
            # periods not monotone in time (DST fall-back across a boundary): visit the
            # rows in stable period order, which keeps (time, row) order inside a period
            ordp = np.argsort(pv[slot[ti]], kind="mergesort")
            _period_target(
                pv[slot[ti]][ordp], bits[ordp], bit, a[ordp], absval[ti], w, g, k[ti], fill[ti], kres[0], kres, kbuf
            )
            for j in range(k[ti]):
                for q in range(m):
                    kdst[j, ordp[q]] = kres[j, q]
        else:
            # targets run in plan order, which puts equal filters and windows side by
            # side: V and W(i) are computed once for all of them
            if fbit[ti] != last_filter:
                nv = _compact(t, bits, bit, a, vt, vv, upto)
                last_filter = fbit[ti]
                last_window = -1
            if window_key[ti] != last_window:
                wlo, whi = _window_bounds(t, param[ti], w, vt, nv, upto, lo, hi)
                last_window = window_key[ti]
            _duration_target(vv, nv, wlo, whi, absval[ti], g, k[ti], fill[ti], dst, kdst)
    if has_order:
        for cc in range(n_cols):
            for r in range(m):
                out[cc, order[s + r]] = res[cc, r]


@njit(cache=True, parallel=True)
def _kernel(
    offsets, order, has_order, time, tfac, local, lfac, local_is_utc, amount, mcc,
    window, param, slot, agg, k, fbit, absval, fill, col, codes, mcc_bits, sign_bits, nomcc_bits, window_key,
    out, u0, u1,
):
    """prange over users u0..u1: each user's targets, computed from cache-resident rows."""
    kmax = 1
    need_ns = False
    for ti in range(window.shape[0]):
        kmax = max(kmax, k[ti])
        need_ns = need_ns or window[ti] > NEXT
    for u in prange(u0, u1):
        _user_targets(
            offsets[u], offsets[u + 1] - offsets[u], order, has_order, time, tfac, local, lfac, local_is_utc,
            amount, mcc, window, param, slot, agg, k, fbit, absval, fill, col, codes, mcc_bits, sign_bits,
            nomcc_bits, kmax, need_ns, window_key, out,
        )


def compute(
    tx: Transactions, config: Config, progress=None, *, rows_per_batch: int = 1 << 21, out: np.ndarray = None
) -> np.ndarray:
    """All targets of ``config`` for every transaction, with the Numba kernels.

    Parameters
    ----------
    tx : Transactions
        Role arrays in input row order.
    config : Config
    progress : callable(int) or None
        Called with the number of rows finished after each batch of users.
    rows_per_batch : int
        Users are processed in batches of about this many rows (progress granularity).
    out : ndarray of float32, shape (n_target_columns, n), optional
        Where to write, any strides: e.g. ``buf.T`` of a row-major ``(n, n_columns)``
        buffer, which the PyTorch feed copies user by user into its batch tensors.

    Returns
    -------
    ndarray of float32, shape (n_target_columns, n)
        Row ``c`` is output column ``config.output_columns[c]``, in input row order
        (``out`` when given).
    """
    plan: Plan = compile_plan(config)
    order, offsets = group_users(tx)
    has_order = order is not None
    if order is None:
        order = np.empty(0, dtype=np.int64)
    local_is_utc = config.timezone == "UTC"
    time, amount, mcc = _ro(tx.time), _ro(tx.amount), _ro(tx.mcc)
    # durations in the input's own ticks when they divide exactly: no ns conversion pass
    tfac, param = np.int64(tx.time_factor), plan.param
    durations = plan.window > NEXT
    if tfac != 1 and np.all(param[durations] % tfac == 0):
        param = np.where(durations, param // tfac, param)
        tfac = np.int64(1)
    local = time if local_is_utc else _ro(local_wall_clock_ns(tx.time_ns, config.timezone))
    lfac = np.int64(tx.time_factor if local_is_utc else 1)
    if out is None:
        out = np.empty((plan.n_columns, len(tx)), dtype=np.float32)
    elif out.shape != (plan.n_columns, len(tx)) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(plan.n_columns, len(tx))}, got {out.dtype} {out.shape}")
    n_users = offsets.shape[0] - 1
    u0 = 0
    while u0 < n_users:
        u1 = int(np.searchsorted(offsets, offsets[u0] + rows_per_batch, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_users)
        _kernel(
            offsets, order, has_order, time, tfac, local, lfac, local_is_utc,
            amount, mcc,
            plan.window, param, plan.period_slot, plan.agg, plan.k, plan.fbit, plan.absval,
            plan.fill, plan.col, plan.period_codes, plan.mcc_bits, plan.sign_bits, plan.nomcc_bits,
            plan.window_key, out, u0, u1,
        )
        if progress is not None:
            progress(int(offsets[u1] - offsets[u0]))
        u0 = u1
    return out
