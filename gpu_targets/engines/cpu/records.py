"""The named records the cpu engine's driver takes: the input's rows and the plan's arrays.

A generated driver (:mod:`.driver`) is called as ``users_targets(u0, u1, offsets, rows,
plan, out)``: two NamedTuples of arrays instead of thirty positional ones, so a field is
read by name (``plan.fbit``) wherever it is used and a new one (SPEC v2's filters on any
column) is added in one place. Numba types a NamedTuple by its fields' types, so a
record is as cheap to pass as its arrays; the classes live here, in an importable
module, so that Numba's disk cache can name them in a cached signature.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["InputRows", "PlanArrays"]


class InputRows(NamedTuple):
    """The role arrays, read-only, in input row order (``n`` rows).

    Attributes
    ----------
    order : int64 [n] or [0]
        Input row of each sorted position (users grouped, ``(time, row)`` order inside a
        user); empty when the input is already in that order (``has_order`` False).
    has_order : bool
    time : int64 [n]
        Transaction time in ticks of ``tfac`` ns (ns = ``time * tfac``).
    tfac : int64
        Nanoseconds per tick of ``time`` (1 when durations were converted to ticks).
    local : int64 [n]
        Local wall-clock time in ticks of ``lfac`` ns (``time`` itself in UTC).
    lfac : int64
    local_is_utc : bool
    amount : float64 [n]
    mcc : int32 [n]
        MCC code (-1: none).
    values : float64 [V, n]
        [v2] The ``value:`` arrays of the plan's ``value_keys`` (NaN: null); [0, n] without.
    masks : uint8 [W, n]
        [v2] The ``where:`` masks of the plan's ``mask_keys``; [0, n] without.
    """

    order: np.ndarray
    has_order: bool
    time: np.ndarray
    tfac: np.int64
    local: np.ndarray
    lfac: np.int64
    local_is_utc: bool
    amount: np.ndarray
    mcc: np.ndarray
    values: np.ndarray
    masks: np.ndarray


class PlanArrays(NamedTuple):
    """A :class:`~gpu_targets.engines.plan.Plan` as the driver reads it (``T`` targets in
    plan order), with what :func:`gpu_targets.engines.cpu.compute` derives per call.

    Attributes
    ----------
    window, param, slot, agg, k, fbit, absval, fill, col, window_key, codes, mcc_bits,
    sign_bits, nomcc_bits :
        The plan's arrays (``slot`` = ``Plan.period_slot``, ``codes`` =
        ``Plan.period_codes``); ``param`` holds durations in ``InputRows.tfac`` ticks.
    kind : int64 [T]
        Kernel id of each target (:func:`.driver.target_kernels`).
    kmax : int64
        Largest top-k size (1 without top-k).
    runp : int64 [4]
        (day num, day den, hour num, hour den): a local tick's period index is
        ``floor(tick * num / den)``.
    fdense : bool [64]
        Filter bit f passes more than 5% of the sampled rows (branch-free loops).
    ranged, wkind, nwin, offset, q, vcol, wmask, range_mcc_bits, range_sign_bits, range_nomcc_bits, vkey, wkey, wslot :
        [v2] The plan's arrays of the range path (``nwin`` and ``offset`` of duration
        windows in ``InputRows.tfac`` ticks; its filter tables, one row per 64 filters).
    sec : float64
        Seconds per unit of the driver's times ``t`` (``time_to_next``, ``time_since_last``).
    """

    window: np.ndarray
    param: np.ndarray
    slot: np.ndarray
    agg: np.ndarray
    k: np.ndarray
    fbit: np.ndarray
    absval: np.ndarray
    fill: np.ndarray
    col: np.ndarray
    kind: np.ndarray
    window_key: np.ndarray
    codes: np.ndarray
    mcc_bits: np.ndarray
    sign_bits: np.ndarray
    nomcc_bits: np.uint64
    kmax: np.int64
    runp: np.ndarray
    fdense: np.ndarray
    ranged: np.ndarray
    wkind: np.ndarray
    nwin: np.ndarray
    offset: np.ndarray
    q: np.ndarray
    vcol: np.ndarray
    wmask: np.ndarray
    range_mcc_bits: np.ndarray
    range_sign_bits: np.ndarray
    range_nomcc_bits: np.ndarray
    vkey: np.ndarray
    wkey: np.ndarray
    wslot: np.ndarray
    sec: np.float64
