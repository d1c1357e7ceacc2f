"""The ``cuda`` engine: numba.cuda kernels, one thread block per user.

Rooms
-----
This module: the host glue (grouping, batching, launching, output) and the entry
points :func:`compute` and :func:`compute_device`. :mod:`.kernels`: the kernels and
their device helpers. :mod:`.functions`: per-element device functions compiled from
the CPU engine's source. :mod:`.device`: ``xp``, RMM, devices, streams and array
interchange.

Host glue and array namespace
-----------------------------
Every array the engine allocates, sorts, gathers or searches lives in one array
namespace ``xp``: **CuPy** on a GPU, **NumPy** under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, where NumPy arrays are the simulated device memory). The
glue (sort by ``(user, time, row)``, user offsets, the time-zone offsets, period order
under DST, batching, output) is written once against ``xp``, so the simulator tests in
CPU CI execute the same lines a GPU executes. Kernels take ``xp`` arrays directly
(``__cuda_array_interface__`` on a GPU). The few lines only a GPU takes (choosing CuPy,
the caller's stream, free device memory, RMM) are marked ``# gpu`` and listed in
docs/cuda.md.

Memory: everything is allocated through CuPy (its pool, or RMM's pool when RMM is
installed: :func:`use_rmm`), never through Numba's own allocator, so the memory is
visible to RMM, cuDF and CuPy alike.

Device and stream: :func:`compute_device` runs on the device that holds its inputs and
on the caller's stream (torch's current stream for torch tensors, else CuPy's current
stream), so its result is ordered with whatever consumes it.

Layout of the work
------------------
1. Order rows by ``(user, time, input row)`` (two stable argsorts; skipped when the
   rows are already grouped and time-sorted, or declared so with ``user_offsets``). Kernels never move rows: they read the input
   arrays through ``g[q]``, the input row at scan position ``q`` (the identity on sorted
   input, so reads coalesce), and write results straight to input row order.
2. Users are processed in batches of whole users (``max_rows_per_batch``) that bound the
   per-row scratch memory; every kernel runs one thread block per user of the batch,
   its threads striding over the user's rows (row ``s + tid``, ``s + tid + blockDim``...).
3. Per target, in plan order (targets sharing a filter and window reuse the scan):

   * **period windows** (expanding / full / next; hour .. year, any time zone): the
     period index of each row (:func:`gpu_targets.calendar.period_index` on the local
     wall-clock time: UTC plus the zone's offset, looked up on the device in a small
     table built on the host by :func:`gpu_targets.calendar.utc_offset_table`) is
     written per batch; a block-wide *segmented* inclusive scan (Hillis-Steele in shared
     memory, chunks of ``blockDim`` rows with a carry) gives every row its
     period-to-date count, double-double sums of x and x^2, min and max. ``expanding``
     reads the row's own state, ``full`` the state at the last row of its period,
     ``next`` the state at the last row of the following period when that period is
     ``p + 1`` (both found by binary search of the sorted period indices). Top-k: each
     thread scans its window (O(w k)). Under a DST time zone the period indices need
     not be monotone in time: a check kernel finds such batches and their rows are
     visited in stable period order (two stable argsorts), which is SPEC.md's definition.
   * **duration windows** (trailing ``(t - D, t]`` up to the row itself, forward
     ``(t, t + D]``): a block-wide (unsegmented) scan gives prefix counts and
     double-double prefix sums over the user's rows in time order; each thread finds
     its window's bounds ``[lo, hi)`` by binary search in the user's sorted times, and
     a window's count/sum/std come from ``P[hi - 1] - P[lo - 1]``. min/max and top-k:
     each thread scans its window (O(w) and O(w k)).

   * **SPEC v2 targets** (every v2 window, aggregation, ``where:``/``value:``; and
     version 1 targets whose filter would be the config's 65th): the range path of
     :mod:`.ranges`: per target and batch the values of V (NaN elsewhere) by ``xp``
     elementwise ops, each row's window as a range of scan positions by binary search
     or index arithmetic, then each thread reads its range (O(w); nunique, median and
     quantile O(w^2)).

Per-element logic (filter bits, period indices, double-double arithmetic, sample std,
aggregation results) is the CPU engine's source compiled as CUDA device functions
(:mod:`.functions`). Arithmetic is float64, results float32 (SPEC.md 2.2). Kernels
are compiled once per process and cached on disk (``cache=True``).
"""

from __future__ import annotations

import logging

import numpy as np

from .device import SIMULATOR, _as_xp, _as_xp_2d, _asnumpy, _free_device_bytes, _on_device_of, use_rmm, xp
from ...kernel_cache import install_cuda  # noqa: E402

install_cuda()  # before any kernel: numba-cuda's disk cache keyed on every engine source

from ...calendar import utc_offset_table  # noqa: E402
from ...spec import Config  # noqa: E402
from ...transactions import Transactions  # noqa: E402
from ..derive import apply_derived  # noqa: E402
from ...where import ColumnInputs, column_arrays  # noqa: E402
from ..plan import MAX, MIN, N_MCC, NEXT, NONMONOTONE_PERIODS, TOPK, WK_PERIOD, Plan, compile_plan  # noqa: E402
from .kernels import (  # noqa: E402
    BLOCK,
    _duration_moments,
    _duration_scan,
    _grid,
    _monotone_check,
    _pad_kernel,
    _period_keys,
    _period_result,
    _period_topk,
    _scan,
)
from .ranges import _range_bounds, _range_values, v_values  # noqa: E402

__all__ = ["compute", "compute_device", "pad_targets", "use_rmm", "xp", "SIMULATOR"]

log = logging.getLogger("gpu_targets")

_SIM_BATCH_ROWS = 1 << 16
# scratch bytes per row of a batch: scan state (8 x 8 B) + per period slot key and order
_SCRATCH_ROW_BYTES = 64
_SLOT_ROW_BYTES = 16
# SPEC v2 targets: bounds (16 B), identity and filler (12 B), the batch's amounts and MCCs
# (12 B), one target's gathered values, mask and V (17 B), and their temporaries
_RANGE_ROW_BYTES = 96


def _stable_argsort_by(primary, secondary):
    """Permutation ordering rows by (primary, secondary, position): two stable radix
    argsorts (CuPy's sort is always stable; NumPy's needs ``kind="stable"``), cheaper on
    a GPU than ``lexsort``'s comparison sort of a stacked key."""
    order = xp.argsort(secondary, kind="stable")
    return order[xp.argsort(primary[order], kind="stable")].astype(xp.int64)


def _group(user, time):
    """(order, offsets) on the device: int64 [n] scan order by (user, time, row) and int64
    [n_users + 1] user offsets; ``order`` is ``arange(n)`` for rows already grouped and
    time-sorted (checked on the device, no sort then)."""
    n = user.shape[0]
    order = xp.arange(n, dtype=xp.int64)
    in_order = n < 2 or bool(xp.all((user[1:] > user[:-1]) | ((user[1:] == user[:-1]) & (time[1:] >= time[:-1]))))
    us = user
    if not in_order:
        order = _stable_argsort_by(user, time)
        us = user[order]
    starts = xp.flatnonzero(us[1:] != us[:-1]) + 1
    offsets = xp.concatenate([xp.zeros(1, dtype=xp.int64), starts.astype(xp.int64),
                              xp.full(1, n, dtype=xp.int64)])
    return order, offsets


def _local_time(time, tfac, timezone: str):
    """Local wall-clock ns of every row, on the device: the zone's offset table (built on
    the host from the data's time range) looked up by binary search."""
    t = time * tfac
    lo, hi = (int(v) for v in _asnumpy(xp.stack([t.min(), t.max()])))  # one device-to-host copy
    start, offset = utc_offset_table(timezone, lo, hi)
    if start.shape[0] == 1:
        return t + int(offset[0])
    j = xp.searchsorted(xp.asarray(start), t, side="right") - 1
    return t + xp.asarray(offset)[j]


def _stable_period_order(key, offs):
    """Permutation of a batch's scan positions ordering each user's rows by period,
    stably (ties keep (time, row) order). ``offs``: the batch's user offsets (device)."""
    pos = xp.arange(key.shape[0], dtype=xp.int64)
    # user of each position from the offsets (cupy.repeat with an array of repeats needs CuPy >= 14.1)
    uidx = xp.searchsorted(offs, pos, side="right") - 1
    return _stable_argsort_by(uidx, key)


class _RangeScratch:
    """Scratch of the SPEC v2 targets for batches of up to ``rows`` rows, and one target's
    launch (:mod:`.ranges`)."""

    def __init__(self, rows: int, time_factor: int, plan: Plan):
        self.lo = xp.empty(rows, dtype=xp.int64)
        self.hi = xp.empty(rows, dtype=xp.int64)
        self.ident = xp.arange(rows, dtype=xp.int64)
        self.zeros = xp.zeros(rows, dtype=xp.int32)
        self.all_bits = xp.ones(N_MCC, dtype=xp.uint64)  # with all_sign and 1: a filter every row passes
        self.all_sign = xp.ones(3, dtype=xp.uint64)
        self.sec = np.float64(time_factor * 1e-9)  # seconds per tick
        self.mcc_bits, self.sign_bits = xp.asarray(plan.range_mcc_bits), xp.asarray(plan.range_sign_bits)

    def batch(self, gb, amount, mcc):
        """The batch's amounts and MCCs in scan order (the mcc/sign filters read them)."""
        self.amount, self.mcc = amount[gb], mcc[gb]

    def target(self, plan, ti, offs, gb, nblk, time, tfac, values, masks, slot_key, monotone, out, stream):
        nb = gb.shape[0]
        wk = int(plan.wkind[ti])
        key = self.ident[:nb]  # read by period windows only
        if wk == WK_PERIOD:
            sl = int(plan.period_slot[ti])
            if not monotone[sl]:
                raise ValueError(NONMONOTONE_PERIODS.format(engine="cuda"))
            key = slot_key[sl]
        vc, wm = int(plan.vcol[ti]), int(plan.wmask[ti])
        x = self.amount if vc < 0 else values[vc][gb]
        xv = v_values(self.amount, self.mcc, x, None if wm < 0 else masks[wm][gb], self.mcc_bits,
                      self.sign_bits, plan.range_nomcc_bits, int(plan.fbit[ti]), bool(plan.absval[ti]))
        lo, hi = self.lo[:nb], self.hi[:nb]
        _range_bounds[nblk, BLOCK, stream](offs, gb, time, tfac, key, np.int64(wk), np.int64(plan.window[ti]),
                                           np.int64(plan.nwin[ti]), np.int64(plan.offset[ti]), lo, hi)
        _range_values[nblk, BLOCK, stream](offs, gb, self.ident[:nb], time, self.sec, lo, hi, xv, self.zeros[:nb],
                                           self.all_bits, self.all_sign, np.uint64(1), np.int64(plan.agg[ti]),
                                           np.float64(plan.q[ti]), np.int64(plan.k[ti]), np.float64(plan.fill[ti]),
                                           out, np.int64(plan.col[ti]))


def _default_batch_rows(n_slots: int, ranged: bool) -> int:
    per_row = _SCRATCH_ROW_BYTES + _SLOT_ROW_BYTES * n_slots + (_RANGE_ROW_BYTES if ranged else 0)
    free = _free_device_bytes()
    if free is None:
        return _SIM_BATCH_ROWS
    return max(1 << 16, int(free * 0.5) // per_row)  # gpu


def _run(user, time, amount, mcc, plan: Plan, timezone: str, time_factor: int, max_rows_per_batch, progress,
         stream, out=None, user_offsets=None, values=None, masks=None):
    """Every target of ``plan`` on ``xp`` arrays (input row order); float32 [n_cols, n] ``xp`` array.

    ``user_offsets`` (host int64 [n_users + 1]): the rows are known to be grouped by user
    and time-sorted, so neither the check nor the sort runs (no device-to-host sync).
    ``values`` float64 [V, n], ``masks`` uint8 [W, n] (``xp``): the SPEC v2 ``value:`` and
    ``where:`` inputs, rows in ``plan.value_keys`` / ``plan.mask_keys`` order.
    """
    n = time.shape[0]
    if out is None:
        out = xp.empty((plan.n_columns, n), dtype=xp.float32)
    if n == 0:
        return out
    if user_offsets is None:
        order, offsets = _group(user, time)
        offsets_h = _asnumpy(offsets)
    else:
        offsets_h = np.asarray(user_offsets, dtype=np.int64)
        order, offsets = xp.arange(n, dtype=xp.int64), xp.asarray(offsets_h)
    tfac = np.int64(time_factor)
    if plan.period_codes.shape[0] == 0 or timezone == "UTC":
        local, lfac = time, tfac
    else:
        local, lfac = _local_time(time, tfac, timezone), np.int64(1)
    mcc_bits = xp.asarray(plan.mcc_bits)
    sign_bits = xp.asarray(plan.sign_bits)
    nomcc = np.uint64(plan.nomcc_bits)
    n_slots = plan.period_codes.shape[0]
    cap = int(max_rows_per_batch or _default_batch_rows(n_slots, bool(plan.ranged.any())))
    n_users = offsets_h.shape[0] - 1
    biggest = int(np.max(np.diff(offsets_h)))
    rows = max(min(cap, n), biggest)
    cnt = xp.empty(rows, dtype=xp.int64)
    s1h, s1l, s2h, s2l, mn, mx = (xp.empty(rows, dtype=xp.float64) for _ in range(6))
    keys = [xp.empty(rows, dtype=xp.int64) for _ in range(n_slots)]
    flags = xp.ones(max(n_slots, 1), dtype=xp.int32)
    ranges = _RangeScratch(rows, time_factor, plan) if plan.ranged.any() else None
    u0 = 0
    while u0 < n_users:
        u1 = int(np.searchsorted(offsets_h, offsets_h[u0] + cap, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_users)
        r0, r1 = int(offsets_h[u0]), int(offsets_h[u1])
        nb = r1 - r0
        offs = offsets[u0 : u1 + 1] - r0
        gb = order[r0:r1]
        nblk = u1 - u0
        # per period slot: scan order and period index of every scan position; the
        # monotonicity flags of all slots come back to the host in one copy
        slot_g, slot_key = [], []
        if n_slots:
            flags.fill(1)
        for sl in range(n_slots):
            _period_keys[_grid(nb), BLOCK, stream](gb, local, lfac, np.int64(plan.period_codes[sl]), keys[sl][:nb])
            _monotone_check[nblk, BLOCK, stream](offs, keys[sl][:nb], flags, np.int64(sl))
        monotone = _asnumpy(flags) if n_slots else ()
        for sl in range(n_slots):
            key = keys[sl][:nb]
            if monotone[sl]:
                slot_g.append(gb)
            else:  # DST: visit the batch's rows in stable period order
                perm = _stable_period_order(key, offs)
                slot_g.append(gb[perm])
                key = key[perm]
            slot_key.append(key)
        scanned = None
        if ranges is not None:
            ranges.batch(gb, amount, mcc)
        for ti in range(plan.window.shape[0]):
            if plan.ranged[ti]:  # SPEC v2 target: the range path (ranges.py)
                ranges.target(plan, ti, offs, gb, nblk, time, tfac, values, masks, slot_key, monotone, out, stream)
                continue
            w = int(plan.window[ti])
            g_agg = int(plan.agg[ti])
            col = np.int64(plan.col[ti])
            bit = np.uint64(1) << np.uint64(plan.fbit[ti])
            absf = bool(plan.absval[ti])
            fill = np.float64(plan.fill[ti])
            k = np.int64(plan.k[ti])
            if w <= NEXT:
                sl = int(plan.period_slot[ti])
                g, key = slot_g[sl], slot_key[sl]
                if g_agg == TOPK:
                    _period_topk[nblk, BLOCK, stream](offs, g, key, np.int64(w), k, fill, amount, mcc, mcc_bits,
                                                      sign_bits, nomcc, bit, absf, out, col)
                    continue
                state = ("period", sl, int(plan.fbit[ti]), absf)
                if scanned != state:
                    _scan[nblk, BLOCK, stream](offs, g, key, np.int64(1), amount, mcc, mcc_bits, sign_bits, nomcc, bit,
                                               absf, cnt, s1h, s1l, s2h, s2l, mn, mx)
                    scanned = state
                _period_result[nblk, BLOCK, stream](offs, g, key, np.int64(w), np.int64(g_agg), fill,
                                                    cnt, s1h, s1l, s2h, s2l, mn, mx, out, col)
            else:
                d = np.int64(plan.param[ti])
                if g_agg in (MIN, MAX, TOPK):
                    _duration_scan[nblk, BLOCK, stream](offs, gb, time, tfac, d, np.int64(w), np.int64(g_agg), k,
                                                        fill, amount, mcc, mcc_bits, sign_bits, nomcc, bit, absf,
                                                        out, col)
                    continue
                state = ("duration", int(plan.fbit[ti]), absf)
                if scanned != state:
                    _scan[nblk, BLOCK, stream](offs, gb, gb, np.int64(0), amount, mcc, mcc_bits, sign_bits, nomcc,
                                               bit, absf, cnt, s1h, s1l, s2h, s2l, mn, mx)
                    scanned = state
                _duration_moments[nblk, BLOCK, stream](offs, gb, time, tfac, d, np.int64(w), np.int64(g_agg), fill,
                                                       cnt, s1h, s1l, s2h, s2l, amount, mcc, mcc_bits, sign_bits,
                                                       nomcc, bit, absf, out, col)
        if progress is not None:
            stream.synchronize()
            progress(nb)
        u0 = u1
    return out


def compute_device(user, time, amount, mcc, config: Config, *, time_factor: int = 1, max_rows_per_batch=None,
                   user_offsets=None, columns: ColumnInputs = None):
    """All targets of ``config`` for transactions already on the device.

    Parameters
    ----------
    user : device array of integers, shape (n,)
        User ids (any integer dtype; string ids must be encoded first, e.g. with
        ``factorize``).
    time : device array of integers, shape (n,)
        UTC time in ticks of ``time_factor`` ns since 1970-01-01.
    amount : device array of float, shape (n,)
        NaN = null (contributes to no window).
    mcc : device array of integers, shape (n,)
        -1 (or outside 0..9999) = null: matches no ``mcc`` filter.
    config : Config
    time_factor : int
        Nanoseconds per tick of ``time``.
    max_rows_per_batch : int, optional
        Users are processed in batches of whole users of about this many rows (bounds
        the scratch memory, ~64 B/row + 16 B/row per period kind + 96 B/row with SPEC v2
        targets). Default: half the
        device memory the allocator can still hand out (a constant under the simulator).
    user_offsets : ndarray of int64, shape (n_users + 1,), optional
        Host offsets of the users when the rows are already grouped by user (any user
        order) and time-sorted within each user, as a training batch is: the engine then
        neither checks nor sorts (no device-to-host synchronisation for it). Wrong
        offsets give wrong targets.

    Arrays may be CuPy arrays, numba device arrays, anything with
    ``__cuda_array_interface__`` or torch CUDA tensors (``__dlpack__``); under the
    simulator, NumPy arrays. They must lie on one device: the kernels run there
    (``cuda.gpus[i]``), on the caller's stream (torch's current stream when an input is
    a torch tensor, else CuPy's), so the result is ordered with its consumer.
    Non-UTC time zones: a table of the zone's UTC offsets over the data's time range is
    built on the host (two scalars read back) and applied on the device.

    Returns
    -------
    ``xp`` array of float32, shape (n_target_columns, n)
        A CuPy array on the inputs' device (NumPy under the simulator). Row ``c`` is
        output column ``config.output_columns[c]``, in input row order.

    Raises
    ------
    TypeError
        An input is not a device array.
    ValueError
        Inputs of different lengths, not 1-d, or on different devices; a SPEC v2 period
        window of a user whose local period index goes back in time (DST fall-back).
    DataError
        The config reads ``where:``/``value:`` columns and ``columns`` is None.
    """
    plan = compile_plan(config)
    inputs = (user, time, amount, mcc)
    with _on_device_of(inputs) as stream:
        arrays = [_as_xp(x, dt, name) for x, dt, name in
                  zip(inputs, (np.int64, np.int64, np.float64, np.int32), ("user", "time", "amount", "mcc"))]
        lengths = {a.shape[0] for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"user, time, amount and mcc must have the same length, got {sorted(lengths)}")
        hint = "and columns= was not given (gpu_targets.where.read_column_inputs(frame, config) reads them)"
        vcols, masks = (xp.asarray(a) for a in column_arrays(columns, arrays[0].shape[0], config, plan, hint))
        values = _run(*arrays, plan, config.timezone, int(time_factor), max_rows_per_batch, None, stream,
                      user_offsets=user_offsets, values=vcols, masks=masks)
        apply_derived(config, values, xp)
        return values


def compute(tx: Transactions, config: Config, progress=None, *, out=None, max_rows_per_batch=None) -> np.ndarray:
    """All targets of ``config`` for every transaction, with the CUDA kernels.

    Copies the four role arrays to the current device (28 B/row; [v2] and the
    ``value:`` arrays, 8 B/row each, and ``where:`` masks, 1 B/row each), runs
    :func:`compute_device`'s kernels in batches of whole users and copies the result back.

    Parameters
    ----------
    tx : Transactions
        Role arrays in input row order (string users arrive as integer codes).
    config : Config
    progress : callable(int) or None
        Called with the number of rows finished after each batch of users.
    out : ndarray of float32, shape (n_target_columns, n), optional
        Host array to write the result into (any strides: e.g. the transpose of a
        row-major ``[n, C]`` array).
    max_rows_per_batch : int, optional
        See :func:`compute_device`.

    Returns
    -------
    ndarray of float32, shape (n_target_columns, n)
        Row ``c`` is output column ``config.output_columns[c]``, in input row order
        (``out`` when given).

    Raises
    ------
    ValueError
        A SPEC v2 period window of a user whose local period index goes back in time.
    DataError
        The config reads ``where:``/``value:`` columns ``tx`` was made without.
    """
    plan = compile_plan(config)
    arrays = [xp.array(a) for a in (tx.user, tx.time, tx.amount, tx.mcc)]  # a device copy (host copy: simulator)
    vcols, masks = (xp.array(a) for a in column_arrays(tx.columns, len(tx), config, plan))
    with _on_device_of(arrays) as stream:
        values = _run(*arrays, plan, config.timezone, int(tx.time_factor), max_rows_per_batch, progress, stream,
                      values=vcols, masks=masks)
        apply_derived(config, values, xp)
        host = _asnumpy(values)
    if out is None:
        return host
    out[...] = host
    return out


def pad_targets(values, offsets, lengths, out) -> None:
    """Scatter targets of whole users into a padded ``[B, T, C]`` block, on the device.

    Parameters
    ----------
    values : ``xp`` array of float32, shape (C, n)
        Targets of ``B`` users whose rows are consecutive (``offsets``), as
        :func:`compute_device` returns them for rows grouped by user.
    offsets : device array of int64, shape (B + 1,)
        Row offsets of the users in ``values``.
    lengths : device array of int64, shape (B,)
        Rows kept per user: the *last* ``lengths[b]`` rows of user ``b`` (``max_len``
        truncation keeps the most recent transactions).
    out : device array of float32, shape (B, T, C), ``T >= max(lengths)``
        Written in place (a torch CUDA tensor's memory through DLPack, say): row ``j`` of
        user ``b`` for ``j < lengths[b]``, zero beyond (padding).
    """
    if out.shape[0] == 0:
        return
    # device and stream from the caller's own objects (torch's current stream for torch
    # tensors), and every conversion inside, so all of it is ordered on that stream
    with _on_device_of((values, offsets, lengths, out)) as stream:
        dst = out if isinstance(out, xp.ndarray) else xp.from_dlpack(out)  # writable view (no grad)
        offsets = _as_xp(offsets, np.int64, "offsets")
        starts = offsets[1:] - _as_xp(lengths, np.int64, "lengths")
        _pad_kernel[dst.shape[0], BLOCK, stream](_as_xp_2d(values), offsets, starts, dst)
