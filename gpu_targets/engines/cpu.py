"""The ``cpu`` engine: Numba ``@njit`` kernels, parallel over users.

Layout of the work
------------------
1. Group rows by user and order each user's rows by ``(time, input row)``
   (:func:`group_users`). Input already grouped and time-sorted is recognised by the
   scan that validates the time column (``Transactions.ordered``) and is not sorted;
   user offsets then come from a galloping search. Otherwise a stable counting sort by
   user code (integer ids in a narrow range are their own codes), then a stable sort of
   the times inside each user that needs it.
2. ``prange`` over users. A user's rows (views of the input when it is sorted) stay in
   cache while *every* target of the config is computed from them:

   * one pass gives each row's ``uint64`` bit set of the MCC/sign filters it passes and
     the runs of local days; hours come from their own pass, weeks .. years are merged
     from the day runs (O(days), no per-row calendar arithmetic);
   * period windows walk the rows once per target with a reset at each run:
     expanding values are written row by row, full/next windows keep one value per run
     and fill. Dense filters (more than 5% of rows) take branch-free loops (rows
     outside V add +0.0 through a bit mask), sparse ones keep a branch that predicts
     well;
   * trailing / forward durations: the rows of V (the target's filter) are compacted
     once per filter and W(i) becomes a range [lo[i], hi[i]) of them, once per
     (filter, duration, mode): a forward scan for sparse V, 8-wide vector compares in
     four interleaved lanes for dense V. Then compensated prefix sums for
     count/sum/mean/any, double-double prefix sums for std, a two-stack queue (van Herk
     / Gil-Werman) for min/max and a Fenwick tree over value ranks for top-k;
   * float64 arithmetic, float32 results.
3. On unsorted input the kernel writes in sorted order, row-major, and a tiled gather
   puts the rows back in input order. Outputs come from
   :data:`gpu_targets.buffers.OUTPUT_POOL` (the memory of dropped outputs, already
   faulted in); new memory is faulted in by a parallel first-touch pass before the
   kernel (:func:`_first_touch`), not by its stores.

Calendar periods need not be monotone in time under a DST time zone (a fall-back at
midnight repeats part of a day); such a user's rows are visited in a stable period order
instead, which gives the same windows as SPEC.md's definition.

How each loop was chosen, and the per-target cost in cycles, is in
``docs/benchmarks.md`` ("Where the time goes"). Compilation is cached on disk
(``cache=True``): a second process loads the machine code. Every array reaches the
kernels read-only, so each kernel has one signature.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
from llvmlite import ir
from numba.core import cgutils
from numba import njit, prange, types
from numba.extending import intrinsic

from ..buffers import OUTPUT_POOL
from ..forksafe import parallel_njit
from ..calendar import local_wall_clock_ns, period_index, period_of_day
from ..spec import Config
from ..transactions import Transactions
from .grouping import group_users, is_non_decreasing as _is_non_decreasing
from .grouping import readonly as _ro
from .elementwise import (
    PREFIX_ERROR,
    compensated_add,
    direct_sum_add,
    dd_add,
    dd_add_dd,
    finish_direct_sum,
    moments_result,
    row_filter_bits,
    sample_std,
    std_is_trusted,
    sum_is_trusted,
    two_prod,
)
from .cpu_driver import driver_shape, load_driver, target_kernels
from .plan import ANY, COUNT, EXPANDING, FULL, MAX, MEAN, MIN, NEXT, STD, SUM, TOPK, TRAILING, Plan, compile_plan

__all__ = ["compute", "group_users"]

_NS_PER_DAY = 86_400_000_000_000
_NS_PER_HOUR = 3_600_000_000_000
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min

# --------------------------------------------------------------------------- periods
# A user's rows are in (time, row) order, so each calendar period kind splits them into
# runs of equal period index: ``starts[q]:starts[q+1]`` is run q (``starts[nr] = m``) and
# ``vals[q]`` its index. Day runs come from one pass that compares each row's local time
# with the next midnight (a division only when the day changes); weeks, months, quarters
# and years are merged from the day runs, so they cost O(days), not O(rows).


@njit(cache=True, inline="always")
def _period_and_next(x, den):
    """(floor(x / den), the first tick of the next period), saturated at int64 max."""
    d = x // den
    return d, (d + 1) * den if d < _INT64_MAX // den - 1 else _INT64_MAX


@njit(cache=True)
def _tick_runs(lraw, num, den, starts, vals):
    """Runs of equal ``floor(lraw * num / den)`` over non-decreasing ``lraw``; returns nr.

    Exactly one of ``num``, ``den`` is 1 (a period is a whole number of ticks, or a tick
    a whole number of periods, for every supported unit).
    """
    m = lraw.shape[0]
    starts[0] = 0
    if m == 0:
        return 0
    nr = 1
    if den == 1:
        prev = lraw[0]
        vals[0] = prev * num
        for r in range(1, m):
            x = lraw[r]
            if x != prev:
                starts[nr] = r
                vals[nr] = x * num
                nr += 1
                prev = x
    else:
        d, nb = _period_and_next(lraw[0], den)
        vals[0] = d
        for r in range(1, m):
            x = lraw[r]
            if x >= nb:
                d, nb = _period_and_next(x, den)
                starts[nr] = r
                vals[nr] = d
                nr += 1
    starts[nr] = m
    return nr


@njit(cache=True)
def _value_runs(p, starts, vals):
    """Runs of equal value of a non-decreasing int64 array; returns nr."""
    m = p.shape[0]
    starts[0] = 0
    if m == 0:
        return 0
    nr = 1
    vals[0] = p[0]
    for r in range(1, m):
        if p[r] != p[r - 1]:
            starts[nr] = r
            vals[nr] = p[r]
            nr += 1
    starts[nr] = m
    return nr


@njit(cache=True)
def _coarsen_runs(dstarts, dvals, nd, code, starts, vals):
    """Runs of a day-based period (week .. year) merged from the day runs; returns nr."""
    starts[0] = 0
    if nd == 0:
        return 0
    cur = period_of_day(dvals[0], code)
    vals[0] = cur
    nr = 1
    for q in range(1, nd):
        v = period_of_day(dvals[q], code)
        if v != cur:
            starts[nr] = dstarts[q]
            vals[nr] = v
            nr += 1
            cur = v
    starts[nr] = dstarts[nd]
    return nr


# --------------------------------------------------------------------------- period windows
# Each function computes one target for one user over the runs of its period kind:
# ``bits[r] & bit`` says whether row r is in V (mcc/sign filter, amount not NaN),
# ``a[r]`` is its amount (``absf``: use |a|), results go to ``dst[r]``. Expanding windows
# write every row; full and next windows compute one value per run (``runv``) and fill.


@njit(cache=True, inline="always")
def _value(a, r, absf):
    x = a[r]
    return abs(x) if absf else x


# The loops below walk a user's rows with ``r`` from 0 (so that no index needs Python's
# negative-index wraparound) and reset at each run start (``r == nxt``, a well
# predicted branch). They take their switches (``absf``, ``is_min``) as arguments that
# the callers pass as literals: inlined at each call site, each copy is a loop with no
# branch on a loop-invariant flag (inside the large per-user function LLVM does not
# unswitch such loops itself).


@njit(cache=True, inline="always")
def _expanding_sum(starts, m, bits, bit, a, absf, dst):
    q = 0
    nxt = starts[1]
    s1 = 0.0
    c1 = 0.0
    for r in range(m):
        if r == nxt:
            q += 1
            nxt = starts[q + 1]
            s1 = 0.0
            c1 = 0.0
        if bits[r] & bit:
            s1, c1 = compensated_add(s1, c1, abs(a[r]) if absf else a[r])
        dst[r] = s1 + c1


@njit(cache=True, inline="always")
def _expanding_count(starts, m, bits, bit, any_, dst):
    q = 0
    nxt = starts[1]
    cnt = 0
    for r in range(m):
        if r == nxt:
            q += 1
            nxt = starts[q + 1]
            cnt = 0
        if bits[r] & bit:
            cnt += 1
        dst[r] = min(cnt, 1) if any_ else cnt


@njit(cache=True, inline="always")
def _expanding_mean(starts, m, bits, bit, a, absf, fill, dst):
    q = 0
    nxt = starts[1]
    s1 = 0.0
    c1 = 0.0
    cnt = 0
    for r in range(m):
        if r == nxt:
            q += 1
            nxt = starts[q + 1]
            s1 = 0.0
            c1 = 0.0
            cnt = 0
        if bits[r] & bit:
            s1, c1 = compensated_add(s1, c1, abs(a[r]) if absf else a[r])
            cnt += 1
        dst[r] = (s1 + c1) / cnt if cnt > 0 else fill


@njit(cache=True)
def _expanding_moments(starts, m, bits, bit, a, absf, agg, fill, dst):
    """count/sum/mean/any, expanding: a running total reset at each run.

    Sums are compensated (TwoSum errors, as Neumaier), so large cancelling amounts
    (1e12, 0.1, -1e12) still give 0.1.
    """
    if agg == SUM:
        if absf:
            _expanding_sum(starts, m, bits, bit, a, True, dst)
        else:
            _expanding_sum(starts, m, bits, bit, a, False, dst)
    elif agg == COUNT:
        _expanding_count(starts, m, bits, bit, False, dst)
    elif agg == ANY:
        _expanding_count(starts, m, bits, bit, True, dst)
    elif absf:
        _expanding_mean(starts, m, bits, bit, a, True, fill, dst)
    else:
        _expanding_mean(starts, m, bits, bit, a, False, fill, dst)


@njit(cache=True, inline="always")
def _expanding_extreme_loop(starts, m, bits, bit, a, absf, is_min, fill, dst):
    init = np.inf if is_min else -np.inf
    q = 0
    nxt = starts[1]
    ext = init
    cnt = 0
    for r in range(m):
        if r == nxt:
            q += 1
            nxt = starts[q + 1]
            ext = init
            cnt = 0
        x = abs(a[r]) if absf else a[r]
        inv = bits[r] & bit
        v = x if inv else init
        cnt += 1 if inv else 0
        ext = min(ext, v) if is_min else max(ext, v)
        dst[r] = ext if cnt > 0 else fill


@njit(cache=True)
def _expanding_extreme(starts, m, bits, bit, a, absf, is_min, fill, dst):
    """min/max, expanding: branch-free (rows outside V count as +inf for min, -inf for
    max; a run whose V is still empty gives fill)."""
    if is_min:
        if absf:
            _expanding_extreme_loop(starts, m, bits, bit, a, True, True, fill, dst)
        else:
            _expanding_extreme_loop(starts, m, bits, bit, a, False, True, fill, dst)
    elif absf:
        _expanding_extreme_loop(starts, m, bits, bit, a, True, False, fill, dst)
    else:
        _expanding_extreme_loop(starts, m, bits, bit, a, False, False, fill, dst)


@njit(cache=True, inline="always")
def _run_sum_loop(starts, m, bits, bit, a, absf, want_count, runs, runc):
    """Per run: compensated sum of V and, if asked, its count."""
    q = 0
    nxt = starts[1]
    s1 = 0.0
    c1 = 0.0
    cnt = 0
    for r in range(m):
        if r == nxt:
            runs[q] = s1 + c1
            if want_count:
                runc[q] = cnt
            q += 1
            nxt = starts[q + 1]
            s1 = 0.0
            c1 = 0.0
            cnt = 0
        if bits[r] & bit:
            s1, c1 = compensated_add(s1, c1, abs(a[r]) if absf else a[r])
            if want_count:
                cnt += 1
    runs[q] = s1 + c1
    if want_count:
        runc[q] = cnt


@njit(cache=True, inline="always")
def _run_count_loop(starts, m, bits, bit, runc):
    q = 0
    nxt = starts[1]
    cnt = 0
    for r in range(m):
        if r == nxt:
            runc[q] = cnt
            q += 1
            nxt = starts[q + 1]
            cnt = 0
        if bits[r] & bit:
            cnt += 1
    runc[q] = cnt


@njit(cache=True)
def _run_moments(starts, nr, m, bits, bit, a, absf, agg, fill, runv):
    """count/sum/mean/any of each whole run, into runv[:nr]."""
    if agg == COUNT or agg == ANY:
        runc = np.empty(nr, dtype=np.int64)
        _run_count_loop(starts, m, bits, bit, runc)
        for q in range(nr):
            runv[q] = runc[q] if agg == COUNT else min(runc[q], 1)
        return
    mean = agg == MEAN
    runc = np.empty(nr if mean else 0, dtype=np.int64)
    if absf:
        if mean:
            _run_sum_loop(starts, m, bits, bit, a, True, True, runv, runc)
        else:
            _run_sum_loop(starts, m, bits, bit, a, True, False, runv, runc)
    elif mean:
        _run_sum_loop(starts, m, bits, bit, a, False, True, runv, runc)
    else:
        _run_sum_loop(starts, m, bits, bit, a, False, False, runv, runc)
    if mean:
        for q in range(nr):
            runv[q] = runv[q] / runc[q] if runc[q] > 0 else fill


@njit(cache=True, inline="always")
def _run_extreme_loop(starts, m, bits, bit, a, absf, is_min, fill, runv):
    init = np.inf if is_min else -np.inf
    q = 0
    nxt = starts[1]
    ext = init
    cnt = 0
    for r in range(m):
        if r == nxt:
            runv[q] = ext if cnt > 0 else fill
            q += 1
            nxt = starts[q + 1]
            ext = init
            cnt = 0
        x = abs(a[r]) if absf else a[r]
        inv = bits[r] & bit
        cnt += 1 if inv else 0
        v = x if inv else init
        ext = min(ext, v) if is_min else max(ext, v)
    runv[q] = ext if cnt > 0 else fill


@njit(cache=True)
def _run_extreme(starts, m, bits, bit, a, absf, is_min, fill, runv):
    """min/max of each whole run, into runv[:nr]."""
    if is_min:
        if absf:
            _run_extreme_loop(starts, m, bits, bit, a, True, True, fill, runv)
        else:
            _run_extreme_loop(starts, m, bits, bit, a, False, True, fill, runv)
    elif absf:
        _run_extreme_loop(starts, m, bits, bit, a, True, False, fill, runv)
    else:
        _run_extreme_loop(starts, m, bits, bit, a, False, False, fill, runv)


# Branch-free row loops, for filters that pass many rows (``dense``). A filter that
# passes ~30% of rows at random makes a per-row ``if`` mispredict on a third of the
# rows, which costs more than the arithmetic it skips; so rows outside V add +0.0 (their amount ANDed with a zero mask), and a run
# start clears the running state by the same trick (``isnew`` is 1 on the first row
# of each run). ``absmask`` clears the sign bit for ``abs: true`` (else it is -1).
# Loops index from 0 so that no index needs Python's negative-index wraparound.


@intrinsic
def _fand(typingctx, x, mask):
    """float64 ``x`` with its bits ANDed with the int64 ``mask`` (-1 keeps x, 0 gives +0.0)."""
    if not (isinstance(x, types.Float) and isinstance(mask, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        xi = builder.bitcast(context.cast(builder, args[0], signature.args[0], types.float64), i64)
        mi = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.bitcast(builder.and_(xi, mi), ir.DoubleType())

    return types.float64(x, mask), codegen


_ABS_MASK = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(cache=True, inline="always")
def _in_v(bits, r, f):
    """1 when row r passes filter bit f, else 0 (int64)."""
    return np.int64((bits[r] >> np.uint64(f)) & np.uint64(1))


@njit(cache=True, inline="always")
def _masked_sum_step(isnew, bits, f, a, absmask, dst, r, s1, c1):
    """One row of the expanding compensated sum: restart on a run's first row, add the
    amount masked to +0.0 outside V, store."""
    keep = np.int64(isnew[r]) - 1
    s1 = _fand(s1, keep)
    c1 = _fand(c1, keep)
    s1, c1 = compensated_add(s1, c1, _fand(_fand(a[r], absmask), -_in_v(bits, r, f)))
    dst[r] = s1 + c1
    return s1, c1


@njit(cache=True, inline="always")
def _lane_bounds(starts, nr):
    """Four lanes of rows cut at run starts: [p0, p1), [p1, p2), [p2, p3), [p3, m) and
    the number of rows all four have (the first row of each lane starts a run)."""
    p0 = starts[0]
    p1 = starts[nr // 4]
    p2 = starts[nr // 2]
    p3 = starts[(3 * nr) // 4]
    p4 = starts[nr]
    return p0, p1, p2, p3, p4, min(p1 - p0, p2 - p1, p3 - p2, p4 - p3)


# A running total restarts at each run, so runs are independent: the expanding sum
# walks four lanes of runs side by side, four dependency chains at once (one chain of
# compensated additions costs its latency per row; 6.2 -> 5.6 TSC cycles per row on
# seed20's dense expanding sums, benchmarks/profile_kernel.py).


@njit(cache=True)
def _masked_sum(starts, nr, isnew, bits, f, a, absmask, dst):
    """Running compensated sum of V, restarted at each run (expanding sum).

    Each lane works on views of its own rows indexed from 0: ``p0 + q`` into the
    user's arrays would need the negative-index wraparound check on every load and store.
    """
    p0, p1, p2, p3, p4, w = _lane_bounds(starts, nr)
    n0, b0, a0, d0 = isnew[p0:p1], bits[p0:p1], a[p0:p1], dst[p0:p1]
    n1, b1, a1, d1 = isnew[p1:p2], bits[p1:p2], a[p1:p2], dst[p1:p2]
    n2, b2, a2, d2 = isnew[p2:p3], bits[p2:p3], a[p2:p3], dst[p2:p3]
    n3, b3, a3, d3 = isnew[p3:p4], bits[p3:p4], a[p3:p4], dst[p3:p4]
    s0 = c0 = s1 = c1 = s2 = c2 = s3 = c3 = 0.0
    for q in range(w):
        s0, c0 = _masked_sum_step(n0, b0, f, a0, absmask, d0, q, s0, c0)
        s1, c1 = _masked_sum_step(n1, b1, f, a1, absmask, d1, q, s1, c1)
        s2, c2 = _masked_sum_step(n2, b2, f, a2, absmask, d2, q, s2, c2)
        s3, c3 = _masked_sum_step(n3, b3, f, a3, absmask, d3, q, s3, c3)
    # each lane's rows past the common length, from its own running sum
    for r0, lane_end, s_, c_ in ((p0 + w, p1, s0, c0), (p1 + w, p2, s1, c1), (p2 + w, p3, s2, c2), (p3 + w, p4, s3, c3)):
        nv, bv, av, dv = isnew[r0:lane_end], bits[r0:lane_end], a[r0:lane_end], dst[r0:lane_end]
        for r in range(nv.shape[0]):
            s_, c_ = _masked_sum_step(nv, bv, f, av, absmask, dv, r, s_, c_)


@njit(cache=True)
def _masked_count(isnew, bits, f, any_, dst):
    """Running count of V (or 0/1 for any), restarted at each run: one chain of integer
    additions (1 cycle each), so no lanes."""
    n = np.int64(0)
    for r in range(isnew.shape[0]):
        n = (n & (np.int64(isnew[r]) - 1)) + _in_v(bits, r, f)
        dst[r] = min(n, 1) if any_ else n


@njit(cache=True)
def _expanding_target(starts, nr, isnew, bits, f, a, absmask, agg, fill, dst):
    """count/sum/any over the expanding window of each row's period, branch-free."""
    if agg == SUM:
        _masked_sum(starts, nr, isnew, bits, f, a, absmask, dst)
    else:
        _masked_count(isnew, bits, f, agg == ANY, dst)


@njit(cache=True)
def _period_std(starts, nr, bits, bit, a, absf, mode, fill, dst, runv):
    """Sample std (ddof = 1) with double-double moments (see :func:`.elementwise.sample_std`):
    expanding writes every row, full/next leave one value per run in ``runv``."""
    for q in range(nr):
        cnt = 0
        s1 = 0.0
        s1l = 0.0
        s2h = 0.0
        s2l = 0.0
        for r in range(starts[q], starts[q + 1]):
            if bits[r] & bit:
                x = _value(a, r, absf)
                cnt += 1
                s1, s1l = dd_add(s1, s1l, x)
                ph, pl = two_prod(x, x)
                s2h, s2l = dd_add_dd(s2h, s2l, ph, pl)
            if mode == EXPANDING:
                dst[r] = moments_result(STD, cnt, s1, s1l, s2h, s2l, fill)
        runv[q] = moments_result(STD, cnt, s1, s1l, s2h, s2l, fill)


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
def _period_topk(starts, nr, bits, bit, a, absf, mode, k, fill, kres, krun, kbuf):
    """top-k with a bounded descending buffer (O(k) per insert): expanding writes k
    values per row into ``kres``, full/next leave k values per run in ``krun``."""
    for q in range(nr):
        kn = 0
        for j in range(k):
            kbuf[j] = fill  # unfilled places read as fill
        for r in range(starts[q], starts[q + 1]):
            if bits[r] & bit:
                kn = _topk_insert(kbuf, kn, k, _value(a, r, absf))
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


@njit(cache=True, inline="always")
def _run_value(vals, nr, runv, q, mode, empty):
    if mode == FULL:
        return runv[q]
    return runv[q + 1] if q + 1 < nr and vals[q + 1] == vals[q] + 1 else empty


@njit(cache=True)
def _fill_runs(starts, vals, nr, runv, mode, empty, dst):
    """Full: every row of run q gets runv[q]; next: the value of the run right after it
    when that run is period vals[q] + 1, else the empty-window value."""
    q = 0
    nxt = starts[1]
    v = _run_value(vals, nr, runv, 0, mode, empty)
    for r in range(starts[nr]):
        if r == nxt:
            q += 1
            nxt = starts[q + 1]
            v = _run_value(vals, nr, runv, q, mode, empty)
        dst[r] = v


# One period-window target over the runs of its period kind, per aggregation family:
# the per-config driver (:mod:`.cpu_driver`) calls the family of each target, so a
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


@njit(cache=True)
def _period_std_target(starts, vals, nr, isnew, bits, f, a, absf, mode, agg, k, fill, dense, dst, kres, runv, krun, kbuf):
    """Sample std (:func:`_period_std`)."""
    if nr == 0:
        return
    _period_std(starts, nr, bits, np.uint64(1) << np.uint64(f), a, absf, mode, fill, dst, runv)
    if mode != EXPANDING:
        _fill_runs(starts, vals, nr, runv, mode, fill, dst)


@njit(cache=True)
def _period_extreme_target(starts, vals, nr, isnew, bits, f, a, absf, mode, agg, k, fill, dense, dst, kres, runv, krun, kbuf):
    """min / max: a running extreme (expanding) or one per run (full / next)."""
    if nr == 0:
        return
    bit = np.uint64(1) << np.uint64(f)
    m = starts[nr]
    if mode == EXPANDING:
        _expanding_extreme(starts, m, bits, bit, a, absf, agg == MIN, fill, dst)
        return
    _run_extreme(starts, m, bits, bit, a, absf, agg == MIN, fill, runv)
    _fill_runs(starts, vals, nr, runv, mode, fill, dst)


@njit(cache=True)
def _period_moments_expanding(starts, vals, nr, isnew, bits, f, a, absf, mode, agg, k, fill, dense, dst, kres, runv, krun, kbuf):
    """count / sum / mean / any over the expanding window. ``dense``: the target's filter
    passes many rows (see :func:`_dense_filters`), so sums and counts take the
    branch-free loops; sparse filters keep the branches, which then predict well and
    skip most of the work."""
    if nr == 0:
        return
    if dense and (agg == SUM or agg == COUNT or agg == ANY):
        _expanding_target(starts, nr, isnew, bits, f, a, _ABS_MASK if absf else np.int64(-1), agg, fill, dst)
    else:
        _expanding_moments(starts, starts[nr], bits, np.uint64(1) << np.uint64(f), a, absf, agg, fill, dst)


@njit(cache=True)
def _period_moments_runs(starts, vals, nr, isnew, bits, f, a, absf, mode, agg, k, fill, dense, dst, kres, runv, krun, kbuf):
    """count / sum / mean / any over the full or next period: one value per run, filled."""
    if nr == 0:
        return
    _run_moments(starts, nr, starts[nr], bits, np.uint64(1) << np.uint64(f), a, absf, agg, fill, runv)
    _fill_runs(starts, vals, nr, runv, mode, moments_result(agg, 0, 0.0, 0.0, 0.0, 0.0, fill), dst)


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


@intrinsic
def _count_le8(typingctx, arr, j, thr):
    """Number of ``arr[j:j + 8] <= thr`` (int64): one vector compare and a popcount."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1 and arr.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        jv = context.cast(builder, args[1], signature.args[1], types.int64)
        tv = context.cast(builder, args[2], signature.args[2], types.int64)
        vty = ir.VectorType(i64, 8)
        v = builder.load(builder.bitcast(builder.gep(ary.data, [jv]), vty.as_pointer()), align=8)
        undef = ir.Constant(vty, ir.Undefined)
        first = builder.insert_element(undef, tv, ir.Constant(ir.IntType(32), 0))
        splat = builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))
        mask = builder.bitcast(builder.icmp_signed("<=", v, splat), ir.IntType(8))
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(8), [ir.IntType(8)]), "llvm.ctpop.i8"
        )
        return builder.zext(builder.call(ctpop, [mask]), i64)

    return types.int64(arr, j, thr), codegen


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
    pmax = 0.0
    for j in range(nv):
        s, c = compensated_add(s, c, abs(vv[j]) if absf else vv[j])
        ps[j + 1] = s
        pc[j + 1] = c
        pmax = max(pmax, abs(s))
    # a prefix that went non-finite stays so; small prefixes make every difference exact
    # enough, so the per-window check (and its cost) is for users with huge or infinite values
    careful = not (s - s == 0.0) or PREFIX_ERROR * pmax > 1e-9
    for i in range(m):
        a, b = lo[i], hi[i]
        total = (ps[b] - ps[a]) + (pc[b] - pc[a])
        if careful and not sum_is_trusted(total, ps[a], ps[b]):
            total = _direct_sum(vv, a, b, absf)
        if agg == SUM:
            dst[i] = total
        else:
            dst[i] = total / (b - a) if b > a else fill


@njit(cache=True)
def _direct_sum(vv, a, b, absf):
    """sum(vv[a:b]) by compensated summation, straight from the values (no prefix):
    exact to float64 rounding, IEEE for infinities, and an overflow on the way that the
    exact sum does not have is avoided by a second pass scaled by 1/4."""
    s = 0.0
    c = 0.0
    qs = 0.0
    qc = 0.0
    n_pos = 0
    n_neg = 0
    for j in range(a, b):
        s, c, qs, qc, n_pos, n_neg = direct_sum_add(s, c, qs, qc, n_pos, n_neg, abs(vv[j]) if absf else vv[j])
    return finish_direct_sum(s, c, qs, qc, n_pos, n_neg)


@njit(cache=True)
def _direct_std(vv, a, b, absf):
    """Sample std (ddof = 1) of vv[a:b] by two passes over values scaled by their largest
    magnitude (no overflow of x^2); NaN when the window holds an infinity (IEEE)."""
    n = b - a
    scale = 0.0
    for j in range(a, b):
        scale = max(scale, abs(vv[j]))
    if not (scale - scale == 0.0):
        return np.nan
    if scale == 0.0:
        return 0.0
    s = 0.0
    c = 0.0
    for j in range(a, b):
        x = (abs(vv[j]) if absf else vv[j]) / scale
        s, c = compensated_add(s, c, x)
    mean = (s + c) / n
    s = 0.0
    c = 0.0
    for j in range(a, b):
        d = (abs(vv[j]) if absf else vv[j]) / scale - mean
        s, c = compensated_add(s, c, d * d)
    return scale * math.sqrt((s + c) / (n - 1))


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
    p1max = 0.0
    for j in range(nv):
        x = abs(vv[j]) if absf else vv[j]
        s1h[j + 1], s1l[j + 1] = dd_add(s1h[j], s1l[j], x)
        ph, pl = two_prod(x, x)
        s2h[j + 1], s2l[j + 1] = dd_add_dd(s2h[j], s2l[j], ph, pl)
        p1max = max(p1max, abs(s1h[j + 1]))
    # sums of x^2 only grow: the last is the largest; non-finite prefixes stay so. The
    # error bound of std_is_trusted for the worst window (n = 2, std 0, |W1| / n <= max|x|
    # <= sqrt(p2)) with these magnitudes decides whether any window needs the check
    p2 = s2h[nv]
    careful = not (p2 - p2 == 0.0 and s1h[nv] - s1h[nv] == 0.0) or (
        PREFIX_ERROR * (p2 + 2.0 * math.sqrt(p2) * p1max) > 1e-14)
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
                if careful and not std_is_trusted(n, v, w1h + w1l, s1h[a], s1h[b], s2h[a], s2h[b]):
                    v = _direct_std(vv, a, b, absf)  # a huge or non-finite value in the prefixes
            else:
                v = fill
            last_a, last_b = a, b
        dst[i] = v


@njit(cache=True, inline="always")
def _block_scans(x, starts, nb, pm, sm):
    """Prefix maxima ``pm`` and suffix maxima ``sm`` of x inside each block
    [starts[k], starts[k + 1])."""
    for k in range(nb):
        b0, b1 = starts[k], starts[k + 1]
        run = -np.inf
        for j in range(b0, b1):
            v = x[j]
            run = v if v > run else run
            pm[j] = run
        run = -np.inf
        for j in range(b1 - 1, b0 - 1, -1):
            v = x[j]
            run = v if v > run else run
            sm[j] = run


@njit(cache=True)
def _sliding_extreme(vv, nv, absf, lo, hi, is_min, fill, dst):
    """min/max over [lo[i], hi[i]) (both non-decreasing) in O(nv + m), branch-light.

    The two-stack queue of van Herk / Gil-Werman, with blocks cut where the windows
    need them: a block ends at the window's upper bound the first time the lower bound
    passes the previous block's end. Every window is then a suffix of one block joined
    to a prefix of the next, so its maximum is max(sm[lo], pm[hi - 1]) with suffix and
    prefix maxima precomputed per block. (M. van Herk, Pattern Recognit. Lett. 13,
    1992; J. Gil and M. Werman, IEEE PAMI 15, 1993.) min is the max of -x.
    """
    m = lo.shape[0]
    if nv == 0:
        for i in range(m):
            dst[i] = fill
        return
    x = np.empty(nv, dtype=np.float64)
    for j in range(nv):
        v = abs(vv[j]) if absf else vv[j]
        x[j] = -v if is_min else v
    # block boundaries, and the boundary in effect for each row
    starts = np.empty(nv + 2, dtype=np.int64)
    bnd = np.empty(m, dtype=np.int64)
    starts[0] = 0
    nb = 0
    cut = 0
    for i in range(m):
        if lo[i] >= cut and hi[i] > cut:
            nb += 1
            cut = hi[i]
            starts[nb] = cut
        bnd[i] = cut
    if starts[nb] < nv:
        nb += 1
        starts[nb] = nv
    pm = np.empty(nv, dtype=np.float64)
    sm = np.empty(nv, dtype=np.float64)
    _block_scans(x, starts, nb, pm, sm)
    for i in range(m):
        a, b, c = lo[i], hi[i], bnd[i]
        front = sm[min(a, nv - 1)] if a < c else -np.inf
        back = pm[max(b - 1, 0)] if b > c else -np.inf
        v = front if front > back else back
        v = -v if is_min else v
        dst[i] = v if b > a else fill


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


@njit(cache=True, inline="always")
def _row_bits(mcc, amount, mcc_bits, sign_bits, nomcc_bits, one_sign):
    """:func:`.elementwise.row_filter_bits` without branches on the amount's sign (a
    random mix of debits and credits would mispredict them). ``one_sign`` (a literal at
    each call site): no filter depends on the sign, so ``sign_bits[0]`` serves every row
    (seed_daily_5411's preparation pass 7.30 -> 6.46 TSC cycles per row,
    ``benchmarks/profile_kernel.py``)."""
    b = mcc_bits[mcc] if mcc >= 0 and mcc < mcc_bits.shape[0] else nomcc_bits
    nan_mask = np.uint64(-np.int64(amount == amount))  # NaN: no filter
    if one_sign:
        return b & sign_bits[0] & nan_mask
    side = np.int64(amount > 0) - np.int64(amount < 0) + 1  # 0 debit, 1 zero, 2 credit (NaN: 1)
    return b & sign_bits[side] & nan_mask


@njit(cache=True, inline="always")
def _bits_and_days_loop(mc, a, lraw, num, den, mcc_bits, sign_bits, nomcc_bits, bits, starts, vals, isnew, one_sign):
    m = lraw.shape[0]
    starts[0] = 0
    nr = 0
    if den == 1:
        # a tick is a whole number of days: a new run wherever the tick changes, stored
        # without a branch (a day ends after ~10 rows, at random)
        prev = lraw[0] - 1 if m > 0 else 0
        for r in range(m):
            bits[r] = _row_bits(mc[r], a[r], mcc_bits, sign_bits, nomcc_bits, one_sign)
            x = lraw[r]
            new = np.int64(x != prev)
            isnew[r] = new
            starts[nr] = r
            vals[nr] = x * num
            nr += new
            prev = x
    else:
        nb = _INT64_MIN  # the next run starts at the first row >= nb
        for r in range(m):
            bits[r] = _row_bits(mc[r], a[r], mcc_bits, sign_bits, nomcc_bits, one_sign)
            x = lraw[r]
            new = x >= nb
            isnew[r] = new
            if new:
                d, nb = _period_and_next(x, den)
                starts[nr] = r
                vals[nr] = d
                nr += 1
    starts[nr] = m
    return nr


@njit(cache=True)
def _bits_and_days(mc, a, lraw, num, den, mcc_bits, sign_bits, nomcc_bits, bits, starts, vals, isnew):
    """One pass: every row's filter bits, and the runs of local days (as
    :func:`_tick_runs`, over non-decreasing ``lraw``) with ``isnew`` set on their first
    rows. Returns the number of day runs."""
    if sign_bits[0] == sign_bits[1] and sign_bits[1] == sign_bits[2]:
        return _bits_and_days_loop(mc, a, lraw, num, den, mcc_bits, sign_bits, nomcc_bits, bits, starts, vals, isnew, True)
    return _bits_and_days_loop(mc, a, lraw, num, den, mcc_bits, sign_bits, nomcc_bits, bits, starts, vals, isnew, False)


@njit(cache=True)
def _mono_runs(lraw, codes, runp, ds, dv, nd, pst, pvl, pnr):
    """Runs of every period kind used (``codes``) over one user's rows, local time
    non-decreasing (always in UTC).

    Fills ``pst[s, :pnr[s] + 1]`` (run starts, then m) and ``pvl[s, :pnr[s]]`` (period
    indices) for each slot s but the day slot, whose runs ``(ds, dv, nd)`` were found
    with the filter bits (:func:`_bits_and_days`); weeks .. years are merged from them.
    ``runp[2:]`` = (hour num, hour den): the hour is ``floor(lraw * num / den)``.
    """
    for s in range(codes.shape[0]):
        code = codes[s]
        if code == 0:
            pnr[s] = _tick_runs(lraw, runp[2], runp[3], pst[s], pvl[s])
        elif code == 1:
            pnr[s] = nd
        else:
            pnr[s] = _coarsen_runs(ds, dv, nd, code, pst[s], pvl[s])


@njit(cache=True)
def _local_runs(lraw, lfac, codes, pst, pvl, pnr, nonmono):
    """:func:`_mono_runs` when local wall-clock time goes back (a DST fall-back): period
    indices row by row. A slot whose period then goes back too is flagged in ``nonmono``
    and its per-row indices are returned (row ``s`` of the result)."""
    m = lraw.shape[0]
    n_slots = codes.shape[0]
    pv = np.empty((n_slots, m), dtype=np.int64)
    for s in range(n_slots):
        code = codes[s]
        row = pv[s]
        for r in range(m):
            row[r] = period_index(lraw[r] * lfac, code)
        if _is_non_decreasing(row):
            pnr[s] = _value_runs(row, pst[s], pvl[s])
        else:
            nonmono[s] = True
    return pv


_DENSE = 0.05  # share of rows a filter passes above which the branch-free loops pay
_DENSITY_SAMPLE = 1 << 14


@njit(cache=True)
def _dense_filters(mcc, amount, mcc_bits, sign_bits, nomcc_bits):
    """Per filter bit: does it pass more than ``_DENSE`` of the first rows?

    Chooses between branchy and branch-free loops; results do not depend on it.
    """
    n = min(mcc.shape[0], _DENSITY_SAMPLE)
    counts = np.zeros(64, dtype=np.int64)
    for r in range(n):
        b = row_filter_bits(mcc[r], amount[r], mcc_bits, sign_bits, nomcc_bits)
        while b:  # one step per filter the row passes
            low = b & (~b + np.uint64(1))
            f = 0
            while (np.uint64(1) << np.uint64(f)) != low:
                f += 1
            counts[f] += 1
            b ^= low
    dense = np.empty(64, dtype=np.bool_)
    for f in range(64):
        dense[f] = counts[f] > _DENSE * max(n, 1)
    return dense


@parallel_njit
def _inverse(order):
    """inv[order[k]] = k."""
    inv = np.empty(order.shape[0], dtype=np.int64)
    for k in prange(order.shape[0]):
        inv[order[k]] = k
    return inv


@parallel_njit
def _unpermute(rows, inv, dst):
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
def _first_touch(flat):
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


def _fresh_output(shape) -> np.ndarray:
    """A float32 array of ``shape`` from :data:`gpu_targets.buffers.OUTPUT_POOL`: the
    memory of an earlier, dropped output when one fits, else new memory with its pages
    faulted in (:func:`_first_touch`)."""
    buf, fresh = OUTPUT_POOL.empty(shape, np.float32)
    if fresh and _PREFAULT and buf.size:
        _first_touch(buf.reshape(-1))
    return buf


_PREFAULT = True


def _ratio(period_ns: int, tick_ns: int) -> tuple[int, int]:
    """(num, den) with ``period index = floor(ticks * num / den)``, one of them 1."""
    if period_ns % tick_ns == 0:
        return 1, period_ns // tick_ns
    if tick_ns % period_ns == 0:
        return tick_ns // period_ns, 1
    raise ValueError(f"a tick of {tick_ns} ns does not divide or fill a period of {period_ns} ns")


def _driver(config: Config, plan: Plan = None):
    """The per-config driver module (:mod:`.cpu_driver`) of ``config``."""
    plan = compile_plan(config) if plan is None else plan
    return load_driver(driver_shape(plan, config.timezone == "UTC"))


def compile_seconds(config: Config) -> int:
    """A rough first-call compile time of ``config``'s driver from an empty cache on the
    2-core development machine, in whole seconds (about 10 s for one kernel, 26 s for
    seed20's seven: ``benchmarks/cold_start.py``); less when other configs already
    compiled some of the kernels."""
    n_kernels = len(driver_shape(compile_plan(config), config.timezone == "UTC")[1])
    return int(5 * round((7 + 2.7 * n_kernels) / 5))


def needs_compile(config: Config) -> bool:
    """True when the driver of ``config``'s shape is neither loaded in this process nor
    in Numba's disk cache (for the current engine sources): the next :func:`compute`
    compiles (seconds to half a minute on 2 cores, with the kernels it calls). Reads the
    cache's small index file, nothing is compiled."""
    driver = _driver(config)
    if driver.users_targets.signatures or getattr(driver, "_cache_checked", False):
        return False
    from numba.core.caching import FunctionCache

    try:
        cold = not FunctionCache(driver.users_targets.py_func)._cache_file._load_index()
    except Exception:  # an unreadable cache: Numba will compile
        return True
    driver._cache_checked = not cold  # read the index once per driver and process
    return cold


_POOL = None
_POOL_KEY = None


def _in_threads(fn, offsets: np.ndarray, u0: int, u1: int, args: tuple) -> None:
    """``fn(a, b, offsets, *args)`` over users [u0, u1) split into ranges of about equal
    rows, run side by side by ``numba.get_num_threads()`` threads (``fn`` releases the
    GIL); in the calling thread when that is 1 or in a process forked from one whose
    thread pools cannot be trusted (:func:`gpu_targets.forksafe.runs_serial`: a
    DataLoader worker then computes on its own core, as the serial twins did).

    Four ranges per thread, cut at user boundaries by row count, even out users of
    different sizes (OpenMP's static schedule of ``prange`` cut by users).
    """
    import numba

    from ..forksafe import runs_serial

    n_threads = 1 if runs_serial() else numba.get_num_threads()
    if n_threads <= 1 or u1 - u0 < 2:
        fn(u0, u1, offsets, *args)
        return
    global _POOL, _POOL_KEY
    key = (os.getpid(), n_threads)
    if _POOL_KEY != key:  # a forked child inherits no live threads: a pool of its own
        from concurrent.futures import ThreadPoolExecutor

        _POOL, _POOL_KEY = ThreadPoolExecutor(n_threads, thread_name_prefix="gpu_targets-cpu"), key
    cuts = np.searchsorted(offsets, np.linspace(offsets[u0], offsets[u1], 4 * n_threads + 1), side="left")
    cuts = np.unique(np.clip(cuts, u0, u1))
    cuts[0], cuts[-1] = u0, u1
    futures = [_POOL.submit(fn, int(a), int(b), offsets, *args) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    for f in futures:
        f.result()


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
        With ``progress``, users are processed in batches of about this many rows
        (progress granularity); without, in one batch.
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
    users_targets = _driver(config, plan).users_targets
    kind = target_kernels(plan)
    kmax = np.int64(max(int(plan.k.max(initial=1)), 1))
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
    fdense = _dense_filters(mcc, amount, plan.mcc_bits, plan.sign_bits, plan.nomcc_bits)
    runp = np.array([*_ratio(_NS_PER_DAY, int(lfac)), *_ratio(_NS_PER_HOUR, int(lfac))], dtype=np.int64)
    result = out
    if out is None:
        result = out = _fresh_output((plan.n_columns, len(tx)))
    elif out.shape != (plan.n_columns, len(tx)) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(plan.n_columns, len(tx))}, got {out.dtype} {out.shape}")
    if has_order:
        # unsorted input: the kernel writes in sorted order, row-major, and the rows are
        # then put back in input order by a gather (random reads of whole rows of
        # targets, sequential writes), much cheaper than scattering column by column
        out = _fresh_output((len(tx), plan.n_columns)).T
    n_users = offsets.shape[0] - 1
    if progress is None:
        rows_per_batch = len(tx)  # one parallel region: no progress to report between batches
    u0 = 0
    while u0 < n_users:
        u1 = int(np.searchsorted(offsets, offsets[u0] + rows_per_batch, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_users)
        _in_threads(users_targets, offsets, u0, u1, (
            order, has_order, time, tfac, local, lfac, local_is_utc, amount, mcc,
            plan.window, param, plan.period_slot, plan.agg, plan.k, plan.fbit, plan.absval,
            plan.fill, plan.col, kind, plan.window_key, plan.period_codes, plan.mcc_bits, plan.sign_bits,
            plan.nomcc_bits, kmax, runp, fdense, out,
        ))
        if progress is not None:
            progress(int(offsets[u1] - offsets[u0]))
        u0 = u1
    if has_order:
        _unpermute(out.T, _inverse(order), result)
    return result
