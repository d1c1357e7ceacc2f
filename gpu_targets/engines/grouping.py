"""Grouping rows by user, shared by every engine: order by ``(user, time, input row)``
and the users' offsets (:func:`group_users`), with parallel scans that skip the sort
when the input is already grouped and sorted (the usual case for Parquet written by
user)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit, prange

from ..forksafe import parallel_njit
from ..transactions import Transactions

__all__ = ["group_users", "is_non_decreasing", "readonly"]

_CHUNKS = 64  # row chunks of the parallel scans below


@parallel_njit
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


_RADIX_BITS = 11
_RADIX = 1 << _RADIX_BITS


@njit(cache=True)
def _stable_argsort(t):
    """``np.argsort(t, kind="stable")`` for int64 ``t``: an LSD radix sort on
    ``t - t.min()``, 11 bits per pass, as many passes as the range of ``t`` needs (5 for
    a year and a half of nanoseconds). Each pass is stable, so ties keep their order; the
    keys move with the permutation (no gathers), and the digit histograms of every pass
    come from one read of the keys.

    Replaced Numba's merge-sort argsort for the time sort inside users of unsorted input
    (one user's rows at a time, a few thousand values, where the passes stay in cache).
    """
    n = t.shape[0]
    perm = np.arange(n)
    if n < 2:
        return perm
    lo = t.min()
    span = np.uint64(t.max() - lo)  # the range fits uint64 even when t - lo overflows int64
    passes = 0
    while passes * _RADIX_BITS < 64 and (span >> np.uint64(passes * _RADIX_BITS)) != 0:
        passes += 1
    if passes == 0:
        return perm
    mask = np.uint64(_RADIX - 1)
    key = np.empty(n, dtype=np.uint64)
    hist = np.zeros((passes, _RADIX), dtype=np.int64)
    for i in range(n):
        k = np.uint64(t[i] - lo)
        key[i] = k
        for p in range(passes):
            hist[p, (k >> np.uint64(p * _RADIX_BITS)) & mask] += 1
    key2 = np.empty(n, dtype=np.uint64)
    perm2 = np.empty(n, dtype=np.int64)
    for p in range(passes):
        h = hist[p]
        total = 0
        for d in range(_RADIX):  # bucket starts
            c = h[d]
            h[d] = total
            total += c
        shift = np.uint64(p * _RADIX_BITS)
        for i in range(n):
            k = key[i]
            d = (k >> shift) & mask
            pos = h[d]
            key2[pos] = k
            perm2[pos] = perm[i]
            h[d] = pos + 1
        key, key2 = key2, key
        perm, perm2 = perm2, perm
    return perm


@njit(cache=True)
def is_non_decreasing(x):
    """True when ``x`` never decreases (branch-free, so LLVM vectorises it)."""
    ok = True
    for r in range(1, x.shape[0]):
        ok &= x[r] >= x[r - 1]
    return ok


@parallel_njit
def _sort_time_within_users(order, offsets, time):
    """Each user's slice of ``order`` (input rows, increasing) stably sorted by time.

    The user's times are gathered once (random reads of ``time``, the costly part on
    shuffled input), then checked and sorted in cache."""
    for u in prange(offsets.shape[0] - 1):
        s, e = offsets[u], offsets[u + 1]
        rows = order[s:e]
        t = np.empty(e - s, dtype=np.int64)
        for i in range(e - s):
            t[i] = time[rows[i]]
        if not is_non_decreasing(t):
            perm = _stable_argsort(t)  # stable: ties keep input row order
            kept = rows.copy()
            for i in range(e - s):
                rows[i] = kept[perm[i]]


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
    if tx.ordered or _grouped_and_sorted(user, time):
        return None, _run_offsets(user)
    n = len(tx)
    lo, hi = (0, int(tx.user.max())) if tx.user_is_code else (int(tx.user.min()), int(tx.user.max()))
    if hi - lo < 2 * n:
        # ids in a range not much wider than the table (codes, or integer ids such as
        # 0..n_users-1): they are their own codes, no hash table needed
        codes, n_codes = (tx.user if lo == 0 else tx.user - np.int64(lo)), hi - lo + 1
    else:
        codes, uniques = pd.factorize(tx.user, sort=False)
        codes, n_codes = codes.astype(np.int64, copy=False), len(uniques)
    codes = _ro(codes)
    if _grouped_and_sorted(codes, time):
        return None, _run_offsets(codes)
    order, offsets = _counting_sort(codes, n_codes)
    offsets = np.unique(offsets)  # drop the ids no row has (sorted, starts with 0, ends with n)
    _sort_time_within_users(order, offsets, time)
    return order, offsets


readonly = _ro
