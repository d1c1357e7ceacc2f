"""The ``cpu`` engine: Numba ``@njit`` kernels, parallel over users.

Layout of the work
------------------
1. Group rows by user and order each user's rows by ``(time, input row)``
   (:func:`group_users`). Input already grouped and time-sorted is detected in one pass
   and not sorted; otherwise a stable counting sort by user code, then a stable sort of
   the times inside each user that needs it.
2. ``prange`` over users. A user's rows (a few KB to MB) are gathered once and stay in
   cache while *every* target of the config is computed from them: per row, one
   ``uint64`` bit set of the MCC/sign filters it passes and one period index per period
   kind used; per target one pass:

   * period windows (expanding / full / next): a segmented pass over runs of equal
     period index, O(n);
   * trailing / forward durations: two pointers, O(n); min/max with a monotonic deque,
     O(n); top-k with a Fenwick tree over value ranks, O(n log n + n k log n);
   * sums and standard deviations in double-double (see :mod:`.elementwise`),
     float64 results written as float32.
3. Results are scattered back to input row order.

Calendar periods need not be monotone in time under a DST time zone (a fall-back at
midnight repeats part of a day); such a user's rows are visited in a stable
period order instead, which gives the same windows as SPEC.md's definition.

Compilation is cached on disk (``cache=True``): a second process loads the machine code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit, prange

from ..calendar import local_wall_clock_ns, period_index
from ..spec import Config
from ..transactions import Transactions
from .elementwise import (
    at_least_as_good,
    dd_add,
    dd_add_dd,
    moments_result,
    row_filter_bits,
    two_prod,
)
from .plan import ANY, COUNT, EXPANDING, FULL, MAX, MIN, NEXT, STD, TOPK, TRAILING, Plan, compile_plan

__all__ = ["compute", "group_users"]

_NS_PER_DAY = 86_400_000_000_000

# --------------------------------------------------------------------------- grouping


@njit(cache=True)
def _grouped_and_sorted(user, time):
    for i in range(1, user.shape[0]):
        if user[i] < user[i - 1] or (user[i] == user[i - 1] and time[i] < time[i - 1]):
            return False
    return True


@njit(cache=True)
def _run_offsets(user):
    n = user.shape[0]
    count = 1
    for i in range(1, n):
        if user[i] != user[i - 1]:
            count += 1
    offsets = np.empty(count + 1, dtype=np.int64)
    offsets[0] = 0
    j = 1
    for i in range(1, n):
        if user[i] != user[i - 1]:
            offsets[j] = i
            j += 1
    offsets[count] = n
    return offsets


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
    if _grouped_and_sorted(tx.user, tx.time_ns):
        return None, _run_offsets(tx.user)
    if tx.user_is_code:
        codes, n_codes = tx.user, int(tx.user.max()) + 1
    else:
        codes, uniques = pd.factorize(tx.user, sort=False)
        codes, n_codes = codes.astype(np.int64, copy=False), len(uniques)
    if _grouped_and_sorted(codes, tx.time_ns):
        return None, _run_offsets(codes)
    order, offsets = _counting_sort(codes, n_codes)
    _sort_time_within_users(order, offsets, tx.time_ns)
    return order, offsets


# --------------------------------------------------------------------------- windows


@njit(cache=True, inline="always")
def _at(q, mono, ordp):
    return q if mono else ordp[q]


@njit(cache=True)
def _topk_insert(kbuf, kn, k, x):
    """Insert x into the descending buffer kbuf[:kn] of at most k values; new kn."""
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
def _period_target(p, ordp, mono, mode, agg, k, fill, vv, res, c, kbuf):
    """One target over a period window (expanding / full / next) for one user.

    ``vv[r]`` is row r's value (NaN: not in V), ``p[r]`` its period index; rows are
    visited in order ``q -> _at(q)`` (identity when periods are monotone).
    """
    m = p.shape[0]
    q = 0
    while q < m:
        g0 = q
        pv = p[_at(g0, mono, ordp)]
        q += 1
        while q < m and p[_at(q, mono, ordp)] == pv:
            q += 1
        g1 = q
        if mode == EXPANDING:
            h0, h1 = g0, g1
        elif mode == FULL:
            h0, h1 = g0, g1
        else:  # NEXT: the run right after, when it is period pv + 1
            h0 = g1
            h1 = g1
            while h1 < m and p[_at(h1, mono, ordp)] == pv + 1:
                h1 += 1
        cnt = 0
        s1h = 0.0
        s1l = 0.0
        s2h = 0.0
        s2l = 0.0
        ext = fill
        kn = 0
        for qq in range(h0, h1):
            x = vv[_at(qq, mono, ordp)]
            if x == x:
                if agg == TOPK:
                    kn = _topk_insert(kbuf, kn, k, x)
                elif agg == MIN or agg == MAX:
                    if cnt == 0 or (x < ext if agg == MIN else x > ext):
                        ext = x
                elif agg != COUNT and agg != ANY:
                    s1h, s1l = dd_add(s1h, s1l, x)
                    if agg == STD:
                        ph, pl = two_prod(x, x)
                        s2h, s2l = dd_add_dd(s2h, s2l, ph, pl)
                cnt += 1
            if mode == EXPANDING:
                r = _at(qq, mono, ordp)
                if agg == TOPK:
                    for j in range(k):
                        res[c + j, r] = kbuf[j] if j < kn else fill
                elif agg == MIN or agg == MAX:
                    res[c, r] = ext if cnt > 0 else fill
                else:
                    res[c, r] = moments_result(agg, cnt, s1h, s1l, s2h, s2l, fill)
        if mode != EXPANDING:
            for qq in range(g0, g1):
                r = _at(qq, mono, ordp)
                if agg == TOPK:
                    for j in range(k):
                        res[c + j, r] = kbuf[j] if j < kn else fill
                elif agg == MIN or agg == MAX:
                    res[c, r] = ext if cnt > 0 else fill
                else:
                    res[c, r] = moments_result(agg, cnt, s1h, s1l, s2h, s2l, fill)


@njit(cache=True)
def _duration_moments(t, d, mode, agg, fill, vv, res, c):
    """count/sum/mean/std/any over a trailing (t-d, t] or forward (t, t+d] window."""
    m = t.shape[0]
    cnt = 0
    s1h = 0.0
    s1l = 0.0
    s2h = 0.0
    s2l = 0.0
    need_sum = agg != COUNT and agg != ANY
    lo = 0
    hi = 0  # window = sorted positions [lo, hi)
    for i in range(m):
        if mode == TRAILING:
            new_hi = i + 1
        else:
            new_hi = hi
            while new_hi < m and t[new_hi] - t[i] <= d:
                new_hi += 1
        while hi < new_hi:
            x = vv[hi]
            if x == x:
                cnt += 1
                if need_sum:
                    s1h, s1l = dd_add(s1h, s1l, x)
                    if agg == STD:
                        ph, pl = two_prod(x, x)
                        s2h, s2l = dd_add_dd(s2h, s2l, ph, pl)
            hi += 1
        while lo < hi and ((mode == TRAILING and t[i] - t[lo] >= d) or (mode != TRAILING and t[lo] <= t[i])):
            x = vv[lo]
            if x == x:
                cnt -= 1
                if cnt == 0:
                    s1h = 0.0
                    s1l = 0.0
                    s2h = 0.0
                    s2l = 0.0
                elif need_sum:
                    s1h, s1l = dd_add(s1h, s1l, -x)
                    if agg == STD:
                        ph, pl = two_prod(x, x)
                        s2h, s2l = dd_add_dd(s2h, s2l, -ph, -pl)
            lo += 1
        res[c, i] = moments_result(agg, cnt, s1h, s1l, s2h, s2l, fill)


@njit(cache=True)
def _duration_extreme(t, d, mode, agg, fill, vv, res, c, dq):
    """min/max over a duration window with a monotonic deque of sorted positions."""
    m = t.shape[0]
    head = 0
    tail = 0
    lo = 0
    hi = 0
    for i in range(m):
        if mode == TRAILING:
            new_hi = i + 1
        else:
            new_hi = hi
            while new_hi < m and t[new_hi] - t[i] <= d:
                new_hi += 1
        while hi < new_hi:
            x = vv[hi]
            if x == x:
                while tail > head and at_least_as_good(agg, x, vv[dq[tail - 1]]):
                    tail -= 1
                dq[tail] = hi
                tail += 1
            hi += 1
        if mode == TRAILING:
            while lo < hi and t[i] - t[lo] >= d:
                lo += 1
        else:
            while lo < hi and t[lo] <= t[i]:
                lo += 1
        while head < tail and dq[head] < lo:
            head += 1
        res[c, i] = vv[dq[head]] if head < tail else fill


@njit(cache=True)
def _duration_topk(t, d, mode, k, fill, vv, res, c):
    """top-k over a duration window: Fenwick tree of counts over the user's value ranks."""
    m = t.shape[0]
    nv = 0
    for r in range(m):
        if vv[r] == vv[r]:
            nv += 1
    vals = np.empty(nv, dtype=np.float64)
    rows = np.empty(nv, dtype=np.int64)
    j = 0
    for r in range(m):
        if vv[r] == vv[r]:
            vals[j] = vv[r]
            rows[j] = r
            j += 1
    perm = np.argsort(vals)
    sorted_vals = vals[perm]
    rank = np.full(m, -1, dtype=np.int64)
    for j in range(nv):
        rank[rows[perm[j]]] = j + 1  # 1-based Fenwick index
    tree = np.zeros(nv + 1, dtype=np.int64)
    top = 1
    while top * 2 <= nv:
        top *= 2
    total = 0
    lo = 0
    hi = 0
    for i in range(m):
        if mode == TRAILING:
            new_hi = i + 1
        else:
            new_hi = hi
            while new_hi < m and t[new_hi] - t[i] <= d:
                new_hi += 1
        while hi < new_hi:
            x = rank[hi]
            if x > 0:
                total += 1
                while x <= nv:
                    tree[x] += 1
                    x += x & -x
            hi += 1
        while lo < hi and ((mode == TRAILING and t[i] - t[lo] >= d) or (mode != TRAILING and t[lo] <= t[i])):
            x = rank[lo]
            if x > 0:
                total -= 1
                while x <= nv:
                    tree[x] -= 1
                    x += x & -x
            lo += 1
        for j in range(k):
            want = total - j  # the want-th smallest value in the window (1-based)
            if want <= 0:
                res[c + j, i] = fill
                continue
            pos = 0
            step = top
            while step > 0:
                nxt = pos + step
                if nxt <= nv and tree[nxt] < want:
                    pos = nxt
                    want -= tree[nxt]
                step //= 2
            res[c + j, i] = sorted_vals[pos]


@njit(cache=True)
def _user_periods(lt, codes, pv, ordp, mono):
    """Period index of every row for each period kind used; order for non-monotone ones."""
    m = lt.shape[0]
    last_day = np.int64(0)
    for r in range(m):
        x = lt[r]
        day = x // _NS_PER_DAY
        for s in range(codes.shape[0]):
            code = codes[s]
            if code == 0 or r == 0 or day != last_day:
                pv[s, r] = period_index(x, code)
            else:
                pv[s, r] = pv[s, r - 1]
        last_day = day
    for s in range(codes.shape[0]):
        mono[s] = True
        for r in range(1, m):
            if pv[s, r] < pv[s, r - 1]:
                mono[s] = False
                break
        if not mono[s]:
            ordp[s, :] = np.argsort(pv[s], kind="mergesort")


@njit(cache=True, parallel=True)
def _kernel(
    offsets, order, has_order, time, local, amount, mcc,
    window, param, slot, agg, k, fbit, absval, fill, col, codes, mcc_bits, sign_bits, nomcc_bits,
    out, u0, u1,
):
    n_cols = out.shape[0]
    n_targets = window.shape[0]
    n_slots = codes.shape[0]
    kmax = 1
    for ti in range(n_targets):
        kmax = max(kmax, k[ti])
    for u in prange(u0, u1):
        s = offsets[u]
        m = offsets[u + 1] - s
        t = np.empty(m, dtype=np.int64)
        lt = np.empty(m, dtype=np.int64)
        bits = np.empty(m, dtype=np.uint64)
        a = np.empty(m, dtype=np.float64)
        for r in range(m):
            i = order[s + r] if has_order else s + r
            t[r] = time[i]
            lt[r] = local[i]
            a[r] = amount[i]
            bits[r] = row_filter_bits(mcc[i], a[r], mcc_bits, sign_bits, nomcc_bits)
        pv = np.empty((n_slots, m), dtype=np.int64)
        ordp = np.empty((n_slots, m), dtype=np.int64)
        mono = np.empty(n_slots, dtype=np.bool_)
        _user_periods(lt, codes, pv, ordp, mono)
        res = np.empty((n_cols, m), dtype=np.float32)
        vv = np.empty(m, dtype=np.float64)
        dq = np.empty(m, dtype=np.int64)
        kbuf = np.empty(kmax, dtype=np.float64)
        for ti in range(n_targets):
            bit = np.uint64(1) << np.uint64(fbit[ti])
            for r in range(m):
                if bits[r] & bit:
                    vv[r] = abs(a[r]) if absval[ti] else a[r]
                else:
                    vv[r] = np.nan
            w = window[ti]
            g = agg[ti]
            if w <= NEXT:
                sl = slot[ti]
                _period_target(pv[sl], ordp[sl], mono[sl], w, g, k[ti], fill[ti], vv, res, col[ti], kbuf)
            elif g == MIN or g == MAX:
                _duration_extreme(t, param[ti], w, g, fill[ti], vv, res, col[ti], dq)
            elif g == TOPK:
                _duration_topk(t, param[ti], w, k[ti], fill[ti], vv, res, col[ti])
            else:
                _duration_moments(t, param[ti], w, g, fill[ti], vv, res, col[ti])
        for cc in range(n_cols):
            for r in range(m):
                out[cc, order[s + r] if has_order else s + r] = res[cc, r]


def compute(tx: Transactions, config: Config, progress=None, *, rows_per_batch: int = 1 << 21) -> np.ndarray:
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

    Returns
    -------
    ndarray of float32, shape (n_target_columns, n)
        Row ``c`` is output column ``config.output_columns[c]``, in input row order.
    """
    plan: Plan = compile_plan(config)
    order, offsets = group_users(tx)
    has_order = order is not None
    if order is None:
        order = np.empty(0, dtype=np.int64)
    local = local_wall_clock_ns(tx.time_ns, config.timezone)
    out = np.empty((plan.n_columns, len(tx)), dtype=np.float32)
    n_users = offsets.shape[0] - 1
    u0 = 0
    while u0 < n_users:
        u1 = int(np.searchsorted(offsets, offsets[u0] + rows_per_batch, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_users)
        _kernel(
            offsets, order, has_order, tx.time_ns, local, tx.amount, tx.mcc,
            plan.window, plan.param, plan.period_slot, plan.agg, plan.k, plan.fbit, plan.absval,
            plan.fill, plan.col, plan.period_codes, plan.mcc_bits, plan.sign_bits, plan.nomcc_bits,
            out, u0, u1,
        )
        if progress is not None:
            progress(int(offsets[u1] - offsets[u0]))
        u0 = u1
    return out
