"""Per-user preparation: each row's filter bits and the runs of calendar periods.

A user's rows are in (time, row) order, so each calendar period kind splits them into
runs of equal period index: ``starts[q]:starts[q+1]`` is run q (``starts[nr] = m``) and
``vals[q]`` its index. Day runs come from one pass that compares each row's local time
with the next midnight (a division only when the day changes), together with the rows'
filter bits; weeks, months, quarters and years are merged from the day runs, so they
cost O(days), not O(rows). Local time that goes back (a DST fall-back) takes
:func:`_local_runs`, which only non-UTC drivers call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ...calendar import DAY, HOUR, period_index, period_of_day
from ..grouping import is_non_decreasing as _is_non_decreasing


_INT64_MIN = np.iinfo(np.int64).min


_INT64_MAX = np.iinfo(np.int64).max


_NS_PER_DAY = 86_400_000_000_000


_NS_PER_HOUR = 3_600_000_000_000


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


@njit(cache=True, inline="always")
def _start_run(x, den, r, nr, starts, vals):
    """Row r (local tick x) starts run nr of ``floor(x / den)``: store it; returns (the
    first tick of the next period, nr + 1)."""
    d, nb = _period_and_next(x, den)
    starts[nr] = r
    vals[nr] = d
    return nb, nr + 1


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
        nb, nr = _start_run(lraw[0], den, 0, 0, starts, vals)
        for r in range(1, m):
            x = lraw[r]
            if x >= nb:
                nb, nr = _start_run(x, den, r, nr, starts, vals)
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
                nb, nr = _start_run(x, den, r, nr, starts, vals)
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
        if code == HOUR:
            pnr[s] = _tick_runs(lraw, runp[2], runp[3], pst[s], pvl[s])
        elif code == DAY:
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
