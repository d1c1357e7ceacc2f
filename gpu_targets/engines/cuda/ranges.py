"""SPEC v2 targets on the cuda engine: every window a range of scan positions, every
aggregation read from that range by the row's own thread.

For one target and one batch of users (one thread block per user, its threads striding
over the user's rows in (time, row) order):

1. :func:`v_values` (host glue, ``xp``): ``xv`` float64 [nb], the target's value at each
   scan position when that row is in V (passes the target's ``mcc``/``sign`` filter and
   ``where:`` mask, and its value is not null; ``|x|`` with ``abs``), else NaN. Every
   kernel below reads V only through ``xv``; a NaN is "not in V".
2. :func:`_range_bounds`: W(q) as scan positions ``[lo[q], hi[q])`` (SPEC.md 2.1): period
   windows (``periods: N``; expanding, full, next, previous) by binary search of the
   user's period indices, duration windows with an ``offset`` by binary search of its
   times, ``rows`` windows by index arithmetic.
3. :func:`_range_values`: each thread reads its row's range: count/sum/mean/std/any
   (sums and stds computed directly from the values, compensated, as the duration
   windows' fallback :func:`.kernels._window_direct`), min/max/top-k
   (:func:`.kernels._window_extreme`), first/last and the times to the next / since the
   last row at the range's ends, nunique (a value counts at its first occurrence in the
   range) and median/quantile (the two order statistics around h = (n - 1) q found by
   counting, for each value, the values below and equal to it).

Cost: O(w) per row for every aggregation but nunique, median and quantile, which are
O(w^2) per row (w: the rows of the window). Correct under the simulator and on a
device; not yet the speed a device can give (shared-memory sorting of each window, or
prefix sums for the moments, would be the next step).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..plan import EXPANDING, FIRST, FULL, LAST, MAX, MEAN, MEDIAN, MIN, NEXT, NUNIQUE, QUANTILE, STD, SUM, TIME_SINCE_LAST, TIME_TO_NEXT, TOPK, TRAILING, WK_DURATION, WK_PERIOD
from .device import xp
from .functions import moments_result, quantile_of
from .kernels import _upper_key, _upper_time, _user_span, _window_direct, _window_extreme

__all__ = ["v_values", "_range_bounds", "_range_values"]


def v_values(amount, mcc, x, mask, mcc_bits, sign_bits, nomcc_bits, fbit, absf):
    """float64 [nb]: ``x`` (``|x|`` with ``absf``) where the row is in V, else NaN.

    ``amount``, ``mcc``: the batch's role arrays in scan order (``amount``'s sign and
    ``mcc`` decide the ``mcc``/``sign`` filter: filter ``fbit`` of the range path's tables
    ``mcc_bits`` [words, 10000], ``sign_bits`` [words, 3] (``xp``), ``nomcc_bits`` [words];
    a null amount is on neither side but, unlike version 1, does not exclude a row whose
    value is another column); ``x``: the aggregated values (NaN: null); ``mask``: the
    ``where:`` mask (nonzero: passes) or None. ``xp`` arrays; the same lines run with NumPy
    under the simulator and CuPy on a device.
    """
    w, bit = fbit >> 6, np.uint64(1) << np.uint64(fbit & 63)
    c = mcc.astype(xp.int64)
    known = (c >= 0) & (c < mcc_bits.shape[1])
    bits = xp.where(known, mcc_bits[w][xp.where(known, c, 0)], nomcc_bits[w])
    side = (amount > 0).astype(xp.int64) - (amount < 0).astype(xp.int64) + 1
    ok = ((bits & sign_bits[w][side] & bit) != 0) & (x == x)
    if mask is not None:
        ok &= mask != 0
    return xp.where(ok, xp.abs(x) if absf else x, np.nan)


@cuda.jit(cache=True)
def _range_bounds(offs, g, time, tfac, key, wkind, mode, n, gap, lo, hi):
    """lo[q], hi[q]: W(q) as scan positions (block per user, threads strided).

    ``key``: period indices (period windows, non-decreasing over the user's rows); the
    times are ``time[g[q]] * tfac`` ns; ``n``: N periods, the duration D (ns) or N rows;
    ``gap``: the offset G (ns) or K rows (SPEC.md 2.1).
    """
    s, e = _user_span(offs)
    q = s + cuda.threadIdx.x
    while q < e:
        if wkind == WK_PERIOD:
            p = key[q]
            if mode == EXPANDING or mode == FULL:  # P(t_q) - N < P <= P(t_q), up to q when expanding
                a = _upper_key(key, s, q + 1, p - n)
                b = q + 1 if mode == EXPANDING else _upper_key(key, q, e, p)
            elif mode == NEXT:  # P(t_q) < P <= P(t_q) + N
                a = _upper_key(key, q, e, p)
                b = _upper_key(key, a, e, p + n)
            else:  # previous: P(t_q) - N <= P < P(t_q)
                a = _upper_key(key, s, q, p - n - 1)
                b = _upper_key(key, a, q, p - 1)
        elif wkind == WK_DURATION:
            t = time[g[q]] * tfac
            if mode == TRAILING:  # t - G - D < t_j <= t - G, up to q itself when G = 0
                a = _upper_time(time, g, tfac, s, q + 1, t - gap - n)
                b = q + 1 if gap == 0 else _upper_time(time, g, tfac, a, q + 1, t - gap)
            else:  # forward: t + G < t_j <= t + G + D
                a = _upper_time(time, g, tfac, q, e, t + gap)
                b = _upper_time(time, g, tfac, a, e, t + gap + n)
        else:  # rows: the N rows ending K rows before q, or starting K rows after it
            r = q - s
            m = e - s
            if mode == TRAILING:
                a = s + min(max(r - gap - n + 1, 0), m)
                b = s + min(max(r - gap + 1, 0), m)
            else:
                a = s + min(r + gap + 1, m)
                b = s + min(r + gap + n + 1, m)
        lo[q] = a
        hi[q] = max(a, b)
        q += cuda.blockDim.x


@cuda.jit(device=True, inline="always")
def _order_statistics(xv, a, b, k0, k1):
    """The values of 0-based ranks k0 and k1 among the non-NaN ``xv[a:b]``: for each value,
    the values below and equal to it give the ranks it holds. O((b - a)^2)."""
    y0 = 0.0
    y1 = 0.0
    for j in range(a, b):
        x = xv[j]
        if x == x:
            below = 0
            equal = 0
            for i in range(a, b):
                y = xv[i]
                if y < x:
                    below += 1
                elif y == x:
                    equal += 1
            if below <= k0 and k0 < below + equal:
                y0 = x
            if below <= k1 and k1 < below + equal:
                y1 = x
    return y0, y1


@cuda.jit(device=True, inline="always")
def _range_value(g, ident, time, sec, r, a, b, xv, mcc, all_bits, all_sign, one, agg, qq, fill):
    """The value of one row's target over V ∩ scan positions [a, b) (r: the row's own)."""
    if agg == FIRST or agg == TIME_TO_NEXT:
        for j in range(a, b):
            if xv[j] == xv[j]:
                return xv[j] if agg == FIRST else (time[g[j]] - time[g[r]]) * sec
        return fill
    if agg == LAST or agg == TIME_SINCE_LAST:
        for j in range(b - 1, a - 1, -1):
            if xv[j] == xv[j] and (agg == LAST or j != r):
                return xv[j] if agg == LAST else (time[g[r]] - time[g[j]]) * sec
        return fill
    n = 0
    distinct = 0
    for j in range(a, b):
        x = xv[j]
        if x == x:
            n += 1
            if agg == NUNIQUE:
                seen = False
                for i in range(a, j):
                    if xv[i] == x:
                        seen = True
                        break
                distinct += 0 if seen else 1
    if agg == NUNIQUE:
        return float(distinct)
    if agg == MEDIAN or agg == QUANTILE:
        if n == 0:
            return fill
        h = (n - 1) * qq
        low = int(math.floor(h))
        y0, y1 = _order_statistics(xv, a, b, low, min(low + 1, n - 1))
        return quantile_of(y0, y1, h, low, agg == MEDIAN)
    v = moments_result(agg, n, 0.0, 0.0, 0.0, 0.0, fill)  # count, any, and empty windows
    if (agg == SUM or agg == MEAN) and n > 0:
        v = _window_direct(ident, a, b, xv, mcc, all_bits, all_sign, one, one, False, False)
        if agg == MEAN:
            v = v / n
    elif agg == STD and n >= 2:
        v = _window_direct(ident, a, b, xv, mcc, all_bits, all_sign, one, one, False, True)
    return v


@cuda.jit(cache=True)
def _range_values(offs, g, ident, time, sec, lo, hi, xv, mcc, all_bits, all_sign, one, agg, qq, k, fill, out, col):
    """out[col(:col + k), g[q]]: the target over V ∩ W(q) for every scan position q of the
    batch (block per user, threads strided). ``xv`` float64 [nb] by scan position (NaN: not
    in V); ``ident`` the identity of scan positions and ``mcc``/``all_bits``/``all_sign``/
    ``one`` a filter every row passes, so the shared window helpers read ``xv`` as their
    amounts; ``sec``: seconds per tick of ``time``."""
    s, e = _user_span(offs)
    r = s + cuda.threadIdx.x
    while r < e:
        a = lo[r]
        b = hi[r]
        if agg == MIN or agg == MAX or agg == TOPK:
            _window_extreme(ident, a, b, xv, mcc, all_bits, all_sign, one, one, False, agg, k, fill, out, col, g[r])
        else:
            out[col, g[r]] = _range_value(g, ident, time, sec, r, a, b, xv, mcc, all_bits, all_sign, one, agg, qq,
                                          fill)
        r += cuda.blockDim.x

