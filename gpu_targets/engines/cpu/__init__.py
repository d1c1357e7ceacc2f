"""The ``cpu`` engine: Numba ``@njit`` kernels, parallel over users.

Rooms
-----
This module: :func:`compute` (grouping, output memory, the threads over users).
:mod:`.driver` generates the per-config driver that runs every target of a range of
users, calling only the kernels the config uses; the kernels live in :mod:`.runs`
(filter bits and calendar runs), :mod:`.periods` (expanding / full / next windows),
:mod:`.topk`, :mod:`.bounds` (duration windows: V and W(i)), :mod:`.sliding`
(aggregations over W(i)), :mod:`.ranges` (SPEC v2 targets: every window a range of
rows, V compacted per target) and :mod:`.intrinsics` (raw LLVM); :mod:`.records`
names the driver's arguments.

Layout of the work
------------------
1. Group rows by user and order each user's rows by ``(time, input row)``
   (:func:`group_users`). Input already grouped and time-sorted is recognised by the
   scan that validates the time column (``Transactions.ordered``) and is not sorted;
   user offsets then come from a galloping search. Otherwise a stable counting sort by
   user code (integer ids in a narrow range are their own codes), then a stable sort of
   the times inside each user that needs it.
2. Ranges of users on a thread pool (:func:`_in_threads`). A user's rows (views of the input when it is sorted) stay in
   cache while *every* target of the config is computed from them:

   * one pass gives each row's ``uint64`` bit set of the MCC/sign filters it passes and
     the runs of local days; hours come from their own pass, weeks .. years are merged
     from the day runs (O(days), no per-row calendar arithmetic);
   * period windows walk the rows once per target with a reset at each run:
     expanding values are written row by row, full/next windows keep one value per run
     and fill. Dense filters (more than 5% of rows) take branch-free loops (rows
     outside V add +0.0 through a bit mask), sparse ones keep a branch that predicts
     well;
   * trailing / forward durations: the rows of V (the target's filter) are compacted
     once per filter and W(i) becomes a range [lo[i], hi[i]) of them, once per
     (filter, duration, mode): a forward scan for sparse V, 8-wide vector compares in
     four interleaved lanes for dense V. Then compensated prefix sums for
     count/sum/mean/any, double-double prefix sums for std, a two-stack queue (van Herk
     / Gil-Werman) for min/max and a Fenwick tree over value ranks for top-k;
   * float64 arithmetic, float32 results.
3. On unsorted input the kernel writes in sorted order, row-major, and a tiled gather
   puts the rows back in input order. Outputs come from
   :data:`gpu_targets.buffers.OUTPUT_POOL` (the memory of dropped outputs, already
   faulted in); new memory is faulted in by a parallel first-touch pass before the
   kernel (:func:`gpu_targets.buffers.first_touch`), not by its stores.

Calendar periods need not be monotone in time under a DST time zone (a fall-back at
midnight repeats part of a day); such a user's rows are visited in a stable period order
instead, which gives the same windows as SPEC.md's definition.

How each loop was chosen, and the per-target cost in cycles, is in
``docs/benchmarks.md`` ("Where the time goes"). Compilation is cached on disk
(``cache=True``): a second process loads the machine code. Every array reaches the
kernels read-only, so each kernel has one signature.
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
from numba import njit

from ...buffers import fresh_output, inverse_permutation, unpermute_rows
from ...calendar import local_wall_clock_ns
from ...kernel_cache import announce
from ...spec import Config
from ...transactions import Transactions
from ..elementwise import row_filter_bits
from ..grouping import group_users, readonly as _ro
from ...where import column_arrays
from ..derive import apply_derived
from ..plan import WK_DURATION, Plan, compile_plan
from .driver import driver_shape, load_driver, target_kernels
from .records import InputRows, PlanArrays
from .runs import _NS_PER_DAY, _NS_PER_HOUR

__all__ = ["compute", "needs_compile", "compile_seconds", "compiling_message"]


_DENSE = 0.05  # share of rows a filter passes above which the branch-free loops pay
_DENSITY_SAMPLE = 1 << 14


@njit(cache=True)
def _dense_filters(mcc, amount, mcc_bits, sign_bits, nomcc_bits):
    """Per filter bit: does it pass more than ``_DENSE`` of the first rows?

    Chooses between branchy and branch-free loops; results do not depend on it.
    """
    n = min(mcc.shape[0], _DENSITY_SAMPLE)
    counts = np.zeros(64, dtype=np.int64)
    for r in range(n):
        b = row_filter_bits(mcc[r], amount[r], mcc_bits, sign_bits, nomcc_bits)
        while b:  # one step per filter the row passes
            low = b & (~b + np.uint64(1))
            f = 0
            while (np.uint64(1) << np.uint64(f)) != low:
                f += 1
            counts[f] += 1
            b ^= low
    dense = np.empty(64, dtype=np.bool_)
    for f in range(64):
        dense[f] = counts[f] > _DENSE * max(n, 1)
    return dense




def _ratio(period_ns: int, tick_ns: int) -> tuple[int, int]:
    """(num, den) with ``period index = floor(ticks * num / den)``, one of them 1."""
    if period_ns % tick_ns == 0:
        return 1, period_ns // tick_ns
    if tick_ns % period_ns == 0:
        return tick_ns // period_ns, 1
    raise ValueError(f"a tick of {tick_ns} ns does not divide or fill a period of {period_ns} ns")


def _driver(config: Config, plan: Plan = None):
    """The per-config driver module (:mod:`.driver`) of ``config``."""
    plan = compile_plan(config) if plan is None else plan
    return load_driver(driver_shape(plan, config.timezone == "UTC"))


def compile_seconds(config: Config) -> int:
    """A rough first-call compile time of ``config``'s driver from an empty cache on the
    2-core development machine, in whole seconds (about 10 s for one kernel, 26 s for
    seed20's seven: ``benchmarks/cold_start.py``); less when other configs already
    compiled some of the kernels."""
    n_kernels = len(driver_shape(compile_plan(config), config.timezone == "UTC")[1])
    return int(5 * round((7 + 2.7 * n_kernels) / 5))


def compiling_message(config: Config) -> str:
    """What a first run says before this engine compiles the kernels ``config`` needs
    (:func:`compile_seconds` estimates how long)."""
    return (f"compiling the cpu engine's kernels for this config once (about {compile_seconds(config)} s on "
            "2 cores; cached on disk afterwards, loaded in under a second)")


def needs_compile(config: Config, layout: str = "C", *, plan: Plan = None) -> bool:
    """True when the driver of ``config``'s shape, called with an output of ``layout``
    (``"C"``: sorted input, written in place; ``"F"``: the transposed buffer unsorted input
    is written to; ``"A"``: a caller's ``out`` with other strides), is neither compiled in
    this process nor in Numba's disk cache for the current engine sources: the next
    :func:`compute` compiles (seconds to half a minute on 2 cores). Reads the cache's
    small index file, compiles nothing."""
    driver = _driver(config, plan)
    if not hasattr(driver.users_targets, "signatures"):  # a plain wrapper (benchmarks/profile_kernel.py)
        return False
    if any(sig[-1].layout == layout for sig in driver.users_targets.signatures):
        return False
    cached = getattr(driver, "_cached_layouts", None)
    if cached is None:
        try:  # the dispatcher's own cache: the locator chosen when the driver was defined
            index = driver.users_targets._cache._cache_file._load_index()
            cached = {key[0][-1].layout for key in index if isinstance(key[0], tuple) and key[0]}
        except Exception:  # an unreadable cache: Numba will compile
            cached = set()
        driver._cached_layouts = cached  # read the index once per driver and process
    return layout not in cached


_POOL = None
_POOL_KEY = None
_POOL_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _POOL_LOCK
    _POOL_LOCK = threading.Lock()  # held by another thread at fork time, it would stay held


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _in_threads(fn, offsets: np.ndarray, u0: int, u1: int, args: tuple) -> None:
    """``fn(a, b, offsets, *args)`` over users [u0, u1) split into ranges of about equal
    rows, run side by side by ``numba.get_num_threads()`` threads (``fn`` releases the
    GIL); in the calling thread when that is 1 or in a process forked from one whose
    thread pools cannot be trusted (:func:`gpu_targets.forksafe.runs_serial`: a
    DataLoader worker then computes on its own core, as the serial twins did).

    Four ranges per thread, cut at user boundaries by row count, even out users of
    different sizes (OpenMP's static schedule of ``prange`` cut by users).
    """
    import numba

    from ...forksafe import runs_serial

    n_threads = 1 if runs_serial() else numba.get_num_threads()
    if n_threads <= 1 or u1 - u0 < 2:
        fn(u0, u1, offsets, *args)
        return
    global _POOL, _POOL_KEY
    from concurrent.futures import ThreadPoolExecutor, wait

    key = (os.getpid(), n_threads)
    with _POOL_LOCK:
        if _POOL_KEY != key:  # a forked child inherits no live threads: a pool of its own
            if _POOL is not None and _POOL_KEY[0] == os.getpid():
                _POOL.shutdown(wait=False)  # another thread count: the old threads end when idle
            _POOL, _POOL_KEY = ThreadPoolExecutor(n_threads, thread_name_prefix="gpu_targets-cpu"), key
        pool = _POOL
    cuts = np.searchsorted(offsets, np.linspace(offsets[u0], offsets[u1], 4 * n_threads + 1), side="left")
    cuts = np.unique(np.clip(cuts, u0, u1))
    cuts[0], cuts[-1] = u0, u1
    futures = [pool.submit(fn, int(a), int(b), offsets, *args) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    # every range finished (or never started) before returning or raising: none may
    # still write into ``out`` (a caller's buffer, reused for the next batch)
    try:
        wait(futures)
    except BaseException:  # KeyboardInterrupt: drop the ranges not started, wait for the rest
        for f in futures:
            f.cancel()
        wait(futures)
        raise
    for f in futures:
        f.result()


def compute(
    tx: Transactions, config: Config, progress=None, *, rows_per_batch: int = 1 << 21, out: np.ndarray = None
) -> np.ndarray:
    """All targets of ``config`` for every transaction, with the Numba kernels.

    Parameters
    ----------
    tx : Transactions
        Role arrays in input row order.
    config : Config
    progress : callable(int) or None
        Called with the number of rows finished after each batch of users.
    rows_per_batch : int
        With ``progress``, users are processed in batches of about this many rows
        (progress granularity); without, in one batch.
    out : ndarray of float32, shape (n_target_columns, n), optional
        Where to write, any strides: e.g. ``buf.T`` of a row-major ``(n, n_columns)``
        buffer, which the PyTorch feed copies user by user into its batch tensors.

    Returns
    -------
    ndarray of float32, shape (n_target_columns, n)
        Row ``c`` is output column ``config.output_columns[c]``, in input row order
        (``out`` when given).
    """
    plan: Plan = compile_plan(config)
    users_targets = _driver(config, plan).users_targets
    kind = target_kernels(plan)
    kmax = np.int64(max(int(plan.k.max(initial=1)), 1))
    order, offsets = group_users(tx)
    has_order = order is not None
    if order is None:
        order = np.empty(0, dtype=np.int64)
    local_is_utc = config.timezone == "UTC"
    time, amount, mcc = _ro(tx.time), _ro(tx.amount), _ro(tx.mcc)
    # durations in the input's own ticks when they divide exactly: no ns conversion pass
    tfac, param = np.int64(tx.time_factor), plan.param
    durations = plan.wkind == WK_DURATION
    nwin, offset = plan.nwin, plan.offset
    sec = 1e-9  # seconds per unit of the driver's times
    if tfac != 1 and np.all(param[durations] % tfac == 0) and np.all(offset[durations] % tfac == 0):
        param = np.where(durations, param // tfac, param)
        nwin = np.where(durations, nwin // tfac, nwin)
        offset = np.where(durations, offset // tfac, offset)
        sec = float(tfac) * 1e-9
        tfac = np.int64(1)
    local = time if local_is_utc else _ro(local_wall_clock_ns(tx.time_ns, config.timezone))
    lfac = np.int64(tx.time_factor if local_is_utc else 1)
    fdense = _dense_filters(mcc, amount, plan.mcc_bits, plan.sign_bits, plan.nomcc_bits)
    runp = np.array([*_ratio(_NS_PER_DAY, int(lfac)), *_ratio(_NS_PER_HOUR, int(lfac))], dtype=np.int64)
    values, masks = column_arrays(tx.columns, len(tx), config, plan)
    rows = InputRows(order, has_order, time, tfac, local, lfac, local_is_utc, amount, mcc, values, masks)
    arrays = PlanArrays(plan.window, param, plan.period_slot, plan.agg, plan.k, plan.fbit, plan.absval, plan.fill,
                        plan.col, kind, plan.window_key, plan.period_codes, plan.mcc_bits, plan.sign_bits,
                        plan.nomcc_bits, kmax, runp, fdense, plan.ranged, plan.wkind, nwin, offset, plan.q,
                        plan.vcol, plan.wmask, plan.range_mcc_bits, plan.range_sign_bits, plan.range_nomcc_bits,
                        plan.vkey, plan.wkey, plan.wslot, np.float64(sec))
    result = out
    if out is None:
        result = out = fresh_output((plan.n_columns, len(tx)))
    elif out.shape != (plan.n_columns, len(tx)) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 {(plan.n_columns, len(tx))}, got {out.dtype} {out.shape}")
    if has_order:
        # unsorted input: the kernel writes in sorted order, row-major, and the rows are
        # then put back in input order by a gather (random reads of whole rows of
        # targets, sequential writes), much cheaper than scattering column by column
        out = fresh_output((len(tx), plan.n_columns)).T
    if needs_compile(config, numba.typeof(out).layout, plan=plan):  # after the input checks: a run that computes
        announce(compiling_message(config))
    n_users = offsets.shape[0] - 1
    if progress is None:
        rows_per_batch = len(tx)  # one parallel region: no progress to report between batches
    u0 = 0
    while u0 < n_users:
        u1 = int(np.searchsorted(offsets, offsets[u0] + rows_per_batch, side="right")) - 1
        u1 = min(max(u1, u0 + 1), n_users)
        _in_threads(users_targets, offsets, u0, u1, (rows, arrays, out))
        if progress is not None:
            progress(int(offsets[u1] - offsets[u0]))
        u0 = u1
    if has_order:
        unpermute_rows(out.T, inverse_permutation(order), result)
    apply_derived(config, result)
    return result
