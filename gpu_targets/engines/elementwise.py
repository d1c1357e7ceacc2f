"""Per-element logic shared by the compiled engines (CPU ``njit`` and CUDA ``cuda.jit``).

Every function here is plain Python on scalars, registered with
:func:`numba.extending.register_jitable` so that it is callable from Python, from
``@njit`` code and from CUDA kernels alike: the CPU and CUDA engines compile the *same*
source and cannot drift apart.

Window sums are carried as double-double numbers ``(hi, lo)`` (error-free transforms of
Knuth's TwoSum and Dekker's TwoProduct; see J.-M. Muller et al., *Handbook of
Floating-Point Arithmetic*, 2nd ed., ch. 4). Adding and later removing a value then
leaves no rounding residue, so trailing/forward sums and standard deviations stay
within SPEC.md's tolerance however long the stream.
"""

from __future__ import annotations

import math

import numpy as np
from numba.extending import register_jitable

from .plan import ANY, COUNT, MEAN, STD, SUM


@register_jitable
def row_filter_bits(mcc, amount, mcc_bits, sign_bits, nomcc_bits):
    """Bit set of the filters a transaction passes (bit f: filter f of the plan).

    ``mcc`` outside 0..9999 (null = -1) passes only filters without an MCC list; a NaN
    amount passes none (SPEC.md 1: it contributes to no window).
    """
    if mcc >= 0 and mcc < mcc_bits.shape[0]:
        b = mcc_bits[mcc]
    else:
        b = nomcc_bits
    if amount != amount:
        return np.uint64(0)
    if amount < 0:
        return b & sign_bits[0]
    if amount > 0:
        return b & sign_bits[2]
    return b & sign_bits[1]


@register_jitable
def dd_add(hi, lo, x):
    """(hi, lo) + x as a double-double (TwoSum, then renormalise)."""
    s = hi + x
    bb = s - hi
    err = (hi - (s - bb)) + (x - bb) + lo
    h = s + err
    return h, err - (h - s)


@register_jitable
def compensated_add(s, c, x):
    """Compensated running sum: (s, c) + x, the rounding error of s + x kept in c.

    The error term is Knuth's branch-free TwoSum, accumulated as in Neumaier's
    summation (A. Neumaier, ZAMM 54, 1974): ``s + c`` is accurate to ~2 eps |sum|
    whatever the order of adds and removes, and the loop-carried chain is one addition.
    """
    t = s + x
    bp = t - s
    c += (s - (t - bp)) + (x - bp)
    return t, c


@register_jitable
def two_prod(a, b):
    """a * b as an exact double-double (Dekker's product, no FMA needed)."""
    p = a * b
    c = 134217729.0 * a
    ah = c - (c - a)
    al = a - ah
    c = 134217729.0 * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@register_jitable
def dd_add_dd(ahi, alo, bhi, blo):
    """(ahi, alo) + (bhi, blo) as a double-double."""
    s = ahi + bhi
    bb = s - ahi
    err = (ahi - (s - bb)) + (bhi - bb) + alo + blo
    h = s + err
    return h, err - (h - s)


@register_jitable
def sample_std(n, s1h, s1l, s2h, s2l):
    """Sample standard deviation (ddof = 1) from count and double-double sums.

    ``sum (x - m)^2 = S2 - 2 m S1 + n m^2`` for any m; with m the rounded mean and every
    term in double-double the cancellation leaves ~1e-32 relative error.
    """
    m = (s1h + s1l) / n
    ph, pl = two_prod(m, s1h)
    pl += m * s1l
    rh, rl = two_prod(m, m)
    # exact n*m^2 = n * (rh + rl); n is an integer <= 2^53
    nh, nl = two_prod(rh, float(n))
    nl += rl * n
    mh, ml = dd_add_dd(s2h, s2l, -2.0 * ph, -2.0 * pl)
    mh, ml = dd_add_dd(mh, ml, nh, nl)
    var = (mh + ml) / (n - 1)
    return math.sqrt(var) if var > 0.0 else 0.0


@register_jitable
def moments_result(agg, cnt, s1h, s1l, s2h, s2l, fill):
    """Value of a count/sum/mean/std/any target from its running moments (SPEC.md 2.2)."""
    if agg == COUNT:
        return float(cnt)
    if agg == ANY:
        return 1.0 if cnt > 0 else 0.0
    if agg == SUM:
        return s1h + s1l
    if agg == MEAN:
        return (s1h + s1l) / cnt if cnt > 0 else fill
    if agg == STD:
        return sample_std(cnt, s1h, s1l, s2h, s2l) if cnt >= 2 else fill
    return fill
