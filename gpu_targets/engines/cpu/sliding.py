"""Duration windows, second step: count/sum/mean/any from compensated prefix sums,
std from double-double prefix sums, min/max from a two-stack queue (van Herk /
Gil-Werman) over each W(i) = [lo[i], hi[i]) of V."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..elementwise import (
    PREFIX_ERROR, compensated_add, dd_add, dd_add_dd, direct_sum_add, finish_direct_sum, sample_std, std_is_trusted,
    sum_is_trusted, two_prod,
)
from ..plan import ANY, COUNT, SUM


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
