"""A config compiled into flat integer/float arrays that kernels (CPU and CUDA) read.

Targets become rows of small arrays (window kind, period code or duration, aggregation,
filter bit, ...). The ``mcc``/``sign`` filters of the version 1 targets are deduplicated
into at most 64 distinct filters; a transaction's filters are one ``uint64`` bit set
computed once per row from an MCC lookup table and the amount's sign. The range path's
targets (SPEC v2 ones, and version 1 targets whose filter would be a 65th) have filter
tables of their own, of any number of 64-filter words: a config may use any number of
distinct filters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..calendar import PERIOD_CODES
from ..spec import Config, Derived

# window modes (PREVIOUS: SPEC v2, taken by the range path only)
EXPANDING, FULL, NEXT, TRAILING, FORWARD, PREVIOUS = range(6)
WINDOW_CODES = {"expanding": EXPANDING, "full": FULL, "next": NEXT, "trailing": TRAILING, "forward": FORWARD,
                "previous": PREVIOUS}
# window kinds
WK_PERIOD, WK_DURATION, WK_ROWS = range(3)
WINDOW_KINDS = {"period": WK_PERIOD, "duration": WK_DURATION, "rows": WK_ROWS}
# aggregations (FIRST .. TIME_SINCE_LAST: SPEC v2)
COUNT, SUM, MEAN, MIN, MAX, STD, ANY, TOPK, FIRST, LAST, NUNIQUE, MEDIAN, QUANTILE, TIME_TO_NEXT, TIME_SINCE_LAST = range(15)
AGG_CODES = {"count": COUNT, "sum": SUM, "mean": MEAN, "min": MIN, "max": MAX, "std": STD, "any": ANY, "topk": TOPK,
             "first": FIRST, "last": LAST, "nunique": NUNIQUE, "median": MEDIAN, "quantile": QUANTILE,
             "time_to_next": TIME_TO_NEXT, "time_since_last": TIME_SINCE_LAST}

N_MCC = 10000
#: Distinct mcc/sign filters of the version 1 targets held in one uint64 bit set per row;
#: a version 1 target whose filter would be another one takes the range path.
MAX_FILTERS = 64

#: The error of the cpu and cuda engines for a SPEC v2 period window of a user whose local
#: period index goes back in time (a DST fall-back across a period boundary): its windows
#: are no contiguous range of the user's rows (the reference engine computes them).
NONMONOTONE_PERIODS = ("a SPEC v2 period window where local time goes back across a period boundary (a DST "
                       "fall-back): the {engine} engine cannot compute it; use backend reference")


@dataclass(frozen=True)
class Plan:
    """Kernel-ready description of a config's targets, in execution order.

    Attributes (one entry per target unless noted)
    ----------------------------------------------
    window : int64 [T]         EXPANDING .. FORWARD
    param : int64 [T]          period code (0 hour .. 5 year) or duration in ns
    period_slot : int64 [T]    index into the per-user period arrays (-1 for durations)
    agg : int64 [T]            COUNT .. TOPK
    k : int64 [T]              topk size (1 otherwise)
    fbit : int64 [T]           filter bit of the target (``ranged``: its filter's index in the
                               ``range_*`` tables: word ``f >> 6``, bit ``f & 63``)
    absval : bool [T]          aggregate |amount|
    fill : float64 [T]         value of an empty window
    col : int64 [T]            first output row of the target
    window_key : int64 [T]     id of (filter, duration, mode) for duration windows, -1 else
    period_codes : int64 [P]   the distinct period codes used (slot order)
    mcc_bits : uint64 [10000]  bit f set when MCC passes filter f's mcc list (or f has none)
    sign_bits : uint64 [3]     filters allowed for amount < 0, == 0, > 0
    n_columns : int
    range_mcc_bits : uint64 [W, 10000], range_sign_bits : uint64 [W, 3], range_nomcc_bits : uint64 [W]
                               the range path's filter tables, as ``mcc_bits``... per word of 64 filters
    ranged : bool [T]          [v2] the target takes the range path (any SPEC v2 key, or a 65th
                               distinct filter among version 1 targets): its window is
                               ``wkind`` with ``nwin`` (N periods, D ns, or N rows) and ``offset`` (G ns
                               or K rows), its values ``vcol`` (-1: the amount), its where mask ``wmask``
    wkind : int64 [T]          WK_PERIOD, WK_DURATION or WK_ROWS
    nwin, offset : int64 [T]
    q : float64 [T]            quantile (0.5 for a median)
    vcol, wmask : int64 [T]    indices into ``value_keys`` / ``mask_keys`` (-1: none)
    value_keys, mask_keys :    :func:`gpu_targets.where.value_key` / ``filter_key`` of each array, in order
    vkey, wkey : int64 [T]     [v2] ids of a range-path target's V (filter, where mask, values, abs)
                               and of its window: equal ids are adjacent in plan order (-1: not ranged)
    wslot : int64 [T]          [v2] a slot of the cpu driver's window cache for a window that targets
                               apart in plan order share (their V differ), computed once per user
                               (-1: none, its adjacent targets share it)
    """

    window: np.ndarray
    param: np.ndarray
    period_slot: np.ndarray
    agg: np.ndarray
    k: np.ndarray
    fbit: np.ndarray
    absval: np.ndarray
    fill: np.ndarray
    col: np.ndarray
    period_codes: np.ndarray
    mcc_bits: np.ndarray
    sign_bits: np.ndarray
    nomcc_bits: np.uint64
    n_columns: int
    window_key: np.ndarray
    ranged: np.ndarray = None
    wkind: np.ndarray = None
    nwin: np.ndarray = None
    offset: np.ndarray = None
    q: np.ndarray = None
    vcol: np.ndarray = None
    wmask: np.ndarray = None
    value_keys: tuple = ()
    mask_keys: tuple = ()
    range_mcc_bits: np.ndarray = None
    range_sign_bits: np.ndarray = None
    range_nomcc_bits: np.ndarray = None
    vkey: np.ndarray = None
    wkey: np.ndarray = None
    wslot: np.ndarray = None


def compile_plan(config: Config) -> Plan:
    """Compile a config's targets into a :class:`Plan`.

    Derived targets (SPEC.md 2.4) take no place in the plan (the engine fills their
    columns from the others afterwards: :func:`.derive.apply_derived`); the output
    columns of the others keep their config positions (``col``).

    SPEC v2 targets (any v2 window, aggregation, ``where:`` or ``value:``) are marked
    ``ranged``: the cpu and cuda engines compute them on their range paths, last in
    execution order.

    Version 1 targets share one 64-bit set of filters; one whose (mcc, sign) filter would
    be the 65th distinct one takes the range path too (same result; there a DST fall-back
    across a period boundary is refused: :data:`NONMONOTONE_PERIODS`).
    """
    from ..where import filter_key, value_key

    targets = []
    filters: dict[tuple, int] = {}  # version 1 filters -> bit
    range_filters: dict[tuple, int] = {}  # the range path's -> index
    period_codes: list[int] = []
    window, param, slot, agg, k, fbit, absval, fill, col = ([] for _ in range(9))
    ranged, wkind, nwin, offset, q, vcol, wmask = ([] for _ in range(7))
    value_keys: list = []
    mask_keys: list = []
    c = 0
    for i, t in enumerate(config.targets):
        if isinstance(t, Derived):
            c += 1
            continue
        targets.append(t)
        w = t.window
        key = (t.mcc_codes, t.sign)
        on_range = not t.is_v1 or (key not in filters and len(filters) == MAX_FILTERS)
        ranged.append(on_range)
        if on_range:
            fbit.append(range_filters.setdefault(key, len(range_filters)))
        else:
            fbit.append(filters.setdefault(key, len(filters)))
        wkind.append(WINDOW_KINDS[w.kind])
        nwin.append(w.n_periods if w.kind == "period" else (w.duration_ns if w.kind == "duration" else w.rows))
        offset.append(w.offset_ns if w.kind == "duration" else w.offset_rows)
        q.append(0.5 if t.agg == "median" else (t.q if t.q is not None else 0.0))
        vk, fk = value_key(t), filter_key(t)
        if vk is not None and vk not in value_keys:
            value_keys.append(vk)
        if fk is not None and fk not in mask_keys:
            mask_keys.append(fk)
        vcol.append(-1 if vk is None else value_keys.index(vk))
        wmask.append(-1 if fk is None else mask_keys.index(fk))
        window.append(WINDOW_CODES[w.mode])
        if w.period is not None:
            code = PERIOD_CODES[w.period]
            if code not in period_codes:
                period_codes.append(code)
            param.append(code)
            slot.append(period_codes.index(code))
        elif w.kind == "duration":
            param.append(w.duration_ns)
            slot.append(-1)
        else:
            param.append(w.rows)
            slot.append(-1)
        agg.append(AGG_CODES[t.agg])
        k.append(t.k or 1)
        absval.append(t.abs)
        fill.append(t.fill)
        col.append(c)
        c += len(t.output_columns)

    # execution order: period windows first, then duration windows with equal filters and
    # equal (duration, mode) side by side, so the kernels compute V and W(i) once for them
    # (SPEC v2 targets last: the range path)
    n = len(targets)

    def duration(i):
        return wkind[i] == WK_DURATION and not ranged[i]

    def v_of(i):  # what V of a range-path target depends on
        return fbit[i], wmask[i], vcol[i], absval[i]

    def w_of(i):  # and its window
        return wkind[i], window[i], nwin[i], offset[i], slot[i]

    def order(i):
        if ranged[i]:  # equal V, then equal windows, side by side: computed once for them
            return (True, False, *v_of(i), *w_of(i), i)
        return (False, duration(i), fbit[i], param[i] if duration(i) else 0, window[i], i)

    run = sorted(range(n), key=order)
    window_keys: dict[tuple, int] = {}
    window_key = []
    v_keys: dict[tuple, int] = {}
    w_keys: dict[tuple, int] = {}
    vkey, wkey = [], []
    for i in run:
        if duration(i):
            window_key.append(window_keys.setdefault((fbit[i], param[i], window[i]), len(window_keys)))
        else:
            window_key.append(-1)
        vkey.append(v_keys.setdefault(v_of(i), len(v_keys)) if ranged[i] else -1)
        wkey.append(w_keys.setdefault(w_of(i), len(w_keys)) if ranged[i] else -1)
    # a window whose targets are not all side by side (their V differ) is computed once per
    # user into a cache slot; one used by a single run of adjacent targets needs none
    runs_of = {}
    for j, w in enumerate(wkey):
        if w >= 0 and (j == 0 or wkey[j - 1] != w):
            runs_of[w] = runs_of.get(w, 0) + 1
    slots = {w: i for i, w in enumerate(w for w, r in runs_of.items() if r > 1)}
    wslot = [slots.get(w, -1) for w in wkey]
    window, param, slot, agg, k, fbit, absval, fill, col, ranged, wkind, nwin, offset, q, vcol, wmask = (
        [v[i] for i in run]
        for v in (window, param, slot, agg, k, fbit, absval, fill, col, ranged, wkind, nwin, offset, q, vcol, wmask)
    )

    mcc_bits, sign_bits, nomcc = _filter_tables(filters)
    range_mcc_bits, range_sign_bits, range_nomcc = _filter_tables(range_filters)
    return Plan(
        window=np.asarray(window, dtype=np.int64),
        param=np.asarray(param, dtype=np.int64),
        period_slot=np.asarray(slot, dtype=np.int64),
        agg=np.asarray(agg, dtype=np.int64),
        k=np.asarray(k, dtype=np.int64),
        fbit=np.asarray(fbit, dtype=np.int64),
        absval=np.asarray(absval, dtype=np.bool_),
        fill=np.asarray(fill, dtype=np.float64),
        col=np.asarray(col, dtype=np.int64),
        period_codes=np.asarray(period_codes, dtype=np.int64),
        mcc_bits=mcc_bits[0],
        sign_bits=sign_bits[0],
        nomcc_bits=np.uint64(nomcc[0]),
        n_columns=c,
        window_key=np.asarray(window_key, dtype=np.int64),
        ranged=np.asarray(ranged, dtype=np.bool_),
        wkind=np.asarray(wkind, dtype=np.int64),
        nwin=np.asarray(nwin, dtype=np.int64),
        offset=np.asarray(offset, dtype=np.int64),
        q=np.asarray(q, dtype=np.float64),
        vcol=np.asarray(vcol, dtype=np.int64),
        wmask=np.asarray(wmask, dtype=np.int64),
        value_keys=tuple(value_keys),
        mask_keys=tuple(mask_keys),
        range_mcc_bits=range_mcc_bits,
        range_sign_bits=range_sign_bits,
        range_nomcc_bits=range_nomcc,
        vkey=np.asarray(vkey, dtype=np.int64),
        wkey=np.asarray(wkey, dtype=np.int64),
        wslot=np.asarray(wslot, dtype=np.int64),
    )


def _filter_tables(filters: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint64 [W, 10000] MCC bits, [W, 3] sign bits (amount < 0, == 0, > 0) and [W] bits of
    the filters without an MCC list, for ``filters`` ((mcc codes, sign) -> index f: word
    ``f >> 6``, bit ``f & 63``; at least one word). A filter without an MCC list passes
    every MCC (its bit is in every entry) and a null or out-of-range one."""
    words = max(1, (len(filters) + 63) // 64)
    mcc_bits = np.zeros((words, N_MCC), dtype=np.uint64)
    sign_bits = np.zeros((words, 3), dtype=np.uint64)
    nomcc = np.zeros(words, dtype=np.uint64)
    for (codes, sign), f in filters.items():
        w, bit = f >> 6, np.uint64(1) << np.uint64(f & 63)
        if codes is None:
            nomcc[w] |= bit
        else:
            mcc_bits[w, list(codes)] |= bit
        for side, allowed in enumerate((sign in ("any", "negative"), sign == "any", sign in ("any", "positive"))):
            if allowed:
                sign_bits[w, side] |= bit
    mcc_bits |= nomcc[:, None]
    return mcc_bits, sign_bits, nomcc
