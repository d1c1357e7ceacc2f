"""Period windows (expanding, full, next) over a user's runs of one period kind.

Each function computes one target for one user: ``bits[r] & bit`` says whether row r is
in V (mcc/sign filter, amount not NaN), ``a[r]`` is its amount (``absf``: use |a|),
results go to ``dst[r]``. Expanding windows write every row; full and next windows
compute one value per run (``runv``) and fill. The ``_period_*`` entry points (one
signature for all) are what the per-config drivers (:mod:`.driver`) call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..elementwise import compensated_add, dd_add, dd_add_dd, moments_result, two_prod
from ..plan import ANY, COUNT, EXPANDING, FULL, MIN, STD, SUM
from .intrinsics import _ABS_MASK, _fand


@njit(cache=True, inline="always")
def _value(a, r, absf):
    x = a[r]
    return abs(x) if absf else x


# The loops below walk a user's rows with ``r`` from 0 (so that no index needs Python's
# negative-index wraparound) and reset at each run start (``r == nxt``, a well
# predicted branch). Their switches are data, not branches: ``absmask`` ANDs the
# amount's bits (:data:`.intrinsics._ABS_MASK` clears the sign for ``abs: true``, -1
# keeps it) and ``sgn`` (-1.0 for min, +1.0 for max) turns a minimum into the maximum of
# the negated values (negation is exact). So no loop needs a ladder of calls with
# literal flags to avoid a branch on a loop-invariant flag (inside the large per-user
# function LLVM does not unswitch such loops itself), and the four-way ladders
# (``absf`` x ``is_min``) of earlier versions are gone.


@njit(cache=True, inline="always")
def _moment(agg, cnt, total, fill):
    """count / any / sum / mean of a window from its count and compensated sum."""
    if agg == COUNT:
        return float(cnt)
    if agg == ANY:
        return float(min(cnt, 1))
    if agg == SUM:
        return total
    return total / cnt if cnt > 0 else fill


# One walker per accumulator family, for both kinds of period window: ``expanding`` (a
# literal at each of the two call sites, so each inlined copy is its own loop) writes
# the running value at every row; otherwise the value of each whole run goes to
# ``runv[q]``, written when the next run starts and after the last row.


@njit(cache=True, inline="always")
def _walk_moments(starts, m, bits, bit, a, absmask, agg, fill, expanding, dst, runv):
    """count/sum/mean/any: a running compensated sum (TwoSum errors, as Neumaier, so
    large cancelling amounts 1e12, 0.1, -1e12 still give 0.1) and count, reset at each run."""
    q = 0
    nxt = starts[1]
    s1 = 0.0
    c1 = 0.0
    cnt = 0
    for r in range(m):
        if r == nxt:
            if not expanding:
                runv[q] = _moment(agg, cnt, s1 + c1, fill)
            q += 1
            nxt = starts[q + 1]
            s1 = 0.0
            c1 = 0.0
            cnt = 0
        if bits[r] & bit:
            s1, c1 = compensated_add(s1, c1, _fand(a[r], absmask))
            cnt += 1
        if expanding:
            dst[r] = _moment(agg, cnt, s1 + c1, fill)
    if not expanding:
        runv[q] = _moment(agg, cnt, s1 + c1, fill)


@njit(cache=True, inline="always")
def _walk_extreme(starts, m, bits, bit, a, absmask, sgn, fill, expanding, dst, runv):
    """min/max: the running maximum of ``sgn * x``, branch-free (rows outside V count as
    -inf; a window whose V is empty gives fill)."""
    q = 0
    nxt = starts[1]
    ext = -np.inf
    cnt = 0
    for r in range(m):
        if r == nxt:
            if not expanding:
                runv[q] = sgn * ext if cnt > 0 else fill
            q += 1
            nxt = starts[q + 1]
            ext = -np.inf
            cnt = 0
        inv = bits[r] & bit
        ext = max(ext, sgn * _fand(a[r], absmask) if inv else -np.inf)
        cnt += 1 if inv else 0
        if expanding:
            dst[r] = sgn * ext if cnt > 0 else fill
    if not expanding:
        runv[q] = sgn * ext if cnt > 0 else fill


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
    absmask = _ABS_MASK if absf else np.int64(-1)
    sgn = -1.0 if agg == MIN else 1.0
    if mode == EXPANDING:
        _walk_extreme(starts, m, bits, bit, a, absmask, sgn, fill, True, dst, runv)
        return
    _walk_extreme(starts, m, bits, bit, a, absmask, sgn, fill, False, dst, runv)
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
        _walk_moments(starts, starts[nr], bits, np.uint64(1) << np.uint64(f), a, _ABS_MASK if absf else np.int64(-1),
                      agg, fill, True, dst, runv)


@njit(cache=True)
def _period_moments_runs(starts, vals, nr, isnew, bits, f, a, absf, mode, agg, k, fill, dense, dst, kres, runv, krun, kbuf):
    """count / sum / mean / any over the full or next period: one value per run, filled."""
    if nr == 0:
        return
    _walk_moments(starts, starts[nr], bits, np.uint64(1) << np.uint64(f), a, _ABS_MASK if absf else np.int64(-1),
                  agg, fill, False, dst, runv)
    _fill_runs(starts, vals, nr, runv, mode, moments_result(agg, 0, 0.0, 0.0, 0.0, 0.0, fill), dst)
