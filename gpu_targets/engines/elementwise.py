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
from numba import types
from numba.extending import intrinsic, overload, register_jitable

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


def two_prod(a, b):
    """a * b as an exact double-double ``(p, e)``, p = fl(a * b), p + e = a * b.

    From Python: Dekker's split product (no FMA needed). In ``njit`` code (the overload
    below): ``e = fma(a, b, -p)``, the product's exact error by definition (IEEE 754
    fusedMultiplyAdd, one rounding), in two instructions instead of Dekker's 17; both
    give the same ``e`` wherever Dekker's split does not overflow (|a|, |b| < ~1e300).
    The CUDA engine binds its own ``cuda.fma`` version (:mod:`.cuda.functions`).
    """
    p = a * b
    c = 134217729.0 * a
    ah = c - (c - a)
    al = a - ah
    c = 134217729.0 * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@intrinsic
def _fma(typingctx, a, b, c):
    """float64 ``a * b + c`` rounded once: LLVM's ``llvm.fma.f64``, the CPU's FMA
    instruction where it has one, else libm's ``fma`` (exact either way)."""
    if not all(isinstance(x, (types.Float, types.Integer)) for x in (a, b, c)):
        return None

    def codegen(context, builder, signature, args):
        x, y, z = (context.cast(builder, v, t, types.float64) for v, t in zip(args, signature.args))
        return builder.fma(x, y, z)

    return types.float64(a, b, c), codegen


@overload(two_prod, jit_options={"cache": True})
def _two_prod_njit(a, b):
    def impl(a, b):
        p = a * b
        return p, _fma(a, b, -p)

    return impl


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


#: Relative error bound of a compensated or double-double prefix per unit of its
#: magnitude, over up to ~10^6 rows (n * 2^-106 for double-double; n^2 eps^2 for the
#: Neumaier pair): a window value from prefix differences is trusted only when this
#: times the prefixes' magnitude is negligible against the value (SPEC.md 2.2 tolerance).
PREFIX_ERROR = 1e-26


@register_jitable
def sum_is_trusted(total, pa, pb):
    """True when a window sum taken as a difference of prefixes ``pa``, ``pb`` is finite
    and its rounding error (PREFIX_ERROR * max |prefix|) is below 1e-9 * max(1, |sum|).

    A huge value that entered the prefixes earlier (1e16 and up) or a non-finite one
    (inf, an overflow of 1e308 + 1e308) makes later differences untrustworthy: the engine
    then sums that window directly, so a value that left the window leaves no trace.
    """
    if not (total - total == 0.0 and pa - pa == 0.0 and pb - pb == 0.0):  # inf or NaN
        return False
    return PREFIX_ERROR * max(abs(pa), abs(pb)) <= 1e-9 * max(1.0, abs(total))


@register_jitable
def std_is_trusted(n, std, w1, s1a, s1b, s2a, s2b):
    """True when a window std from prefix sums of x (``s1``) and x^2 (``s2``) is finite
    and its error is below 1e-7 * max(1, std).

    With W1 = s1b - s1a (``w1``) and M2 = (s2b - s2a) - W1^2 / n, the prefixes' rounding
    errors (PREFIX_ERROR times their magnitude) give err(M2) <= PREFIX_ERROR * (max|s2| +
    2 |W1| / n * max|s1|), and the std's error is at most sqrt(err(M2) / (n - 1)).
    """
    if not (std - std == 0.0 and w1 - w1 == 0.0 and s1a - s1a == 0.0 and s1b - s1b == 0.0 and s2a - s2a == 0.0
            and s2b - s2b == 0.0):  # an inf or NaN (max() would skip a NaN)
        return False
    err = PREFIX_ERROR * (max(abs(s2a), abs(s2b)) + 2.0 * abs(w1) / n * max(abs(s1a), abs(s1b)))
    if not (err - err == 0.0):
        return False
    return math.sqrt(err / (n - 1)) <= 1e-7 * max(1.0, std)


@register_jitable
def direct_sum_add(s, c, scaled_s, scaled_c, n_pos_inf, n_neg_inf, x):
    """One value into :func:`finish_direct_sum`'s state: infinities counted, finite values
    added to the plain and the 1/4-scaled compensated sums. Returns the new state."""
    if x == math.inf:
        n_pos_inf += 1
    elif x == -math.inf:
        n_neg_inf += 1
    else:
        s, c = compensated_add(s, c, x)
        scaled_s, scaled_c = compensated_add(scaled_s, scaled_c, x * 0.25)
    return s, c, scaled_s, scaled_c, n_pos_inf, n_neg_inf


@register_jitable
def finish_direct_sum(s, c, scaled_s, scaled_c, n_pos_inf, n_neg_inf):
    """A window's sum from two compensated passes over its finite values, plain and
    times 1/4, and its counts of +inf and -inf (kept out of the passes, where they would
    turn the compensation into NaN): IEEE for infinities (inf + -inf is NaN); else the
    plain sum unless it overflowed (an exact sum beyond the float64 range is +-inf, one
    that only overflowed on the way, 1e308 + 1e308 - 1e308, is 1e308)."""
    if n_pos_inf > 0 or n_neg_inf > 0:
        if n_pos_inf > 0 and n_neg_inf > 0:
            return math.nan
        return math.inf if n_pos_inf > 0 else -math.inf
    total = s + c
    if total - total == 0.0:
        return total
    return (scaled_s + scaled_c) * 4.0


@register_jitable
def topk_insert(buf, kn, k, x):
    """Insert ``x`` into the descending buffer ``buf[:kn]`` holding at most ``k`` values
    (a 1-D view, any stride: the cpu engine's scratch, or the cuda engine's float32
    output column ``out[col:col + k, row]``, where rounding is monotone, so the k largest
    rounded values are the rounded k largest values). Returns the new ``kn``. NaN is
    never inserted (``x > ...`` is false); O(k) per insert."""
    if kn == k:
        if not x > buf[k - 1]:
            return kn
        j = k - 1
    else:
        j = kn
        kn += 1
    while j > 0 and buf[j - 1] < x:
        buf[j] = buf[j - 1]
        j -= 1
    buf[j] = x
    return kn


@register_jitable
def quantile_of(y0, y1, h, low, median):
    """The quantile at h = (n - 1) q of a window's n values (SPEC.md 2.2: numpy's default
    linear interpolation) from its order statistics ``y0`` (0-based rank ``low`` =
    floor(h)) and ``y1`` (rank low + 1, or ``y0`` at the top). The median of two values is
    their midpoint, halved first when the sum alone would overflow (1e308 + 1e308)."""
    if h == low:
        return y0
    if median:
        v = (y0 + y1) / 2
        if not math.isfinite(v) and math.isfinite(y0) and math.isfinite(y1):
            v = y0 / 2 + y1 / 2
        return v
    return y0 + (h - low) * (y1 - y0)
