"""Per-config drivers of the ``cpu`` engine: compile only what a config uses.

Numba compiles every branch of a function, whatever values it will see, so one kernel
holding every window kind and aggregation cost a new user a minute of compilation for
a single daily sum (issue 15). Here the per-user driver is *generated* from the config's
:class:`~.plan.Plan`: straight-line code with one block per target that calls the
window and aggregation kernels of :mod:`.cpu` that this target needs, with the window
kind and aggregation written in as constants. What no target uses (duration windows,
top-k, std, the local-time code of non-UTC zones) is never referenced, so never
compiled.

The driver's source depends on the config's *shape* only (:func:`driver_shape`: window
kind, aggregation family and filter/window sharing per target, and whether the zone is
UTC); MCC lists, durations, fills and ``k`` stay data (the plan's arrays). Configs of
one shape share a driver. The source is written once to a file (its name is a hash of
its text, which names the engine-source stamp, so editing an engine source makes a new
file) in the drivers directory, and imported from there, so Numba's disk cache
(``cache=True``) keeps its machine code: a second process loads it.

Drivers directory: ``$NUMBA_CACHE_DIR/gpu_targets_drivers`` when ``NUMBA_CACHE_DIR`` is
set, else ``gpu_targets_drivers`` in the user cache directory (``$XDG_CACHE_HOME`` or
``~/.cache``), else a temporary directory (nothing cached across processes).

Targets run in plan order, which puts duration targets with equal filters and equal
(duration, mode) side by side: the driver compacts V once per filter and computes W(i)
once per window, decided when the source is generated (``fusion``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from . import driver_templates as T
from ..plan import (EXPANDING, FIRST, LAST, MAX, MEDIAN, MIN, NEXT, NUNIQUE, QUANTILE, STD, TIME_SINCE_LAST,
                    TIME_TO_NEXT, TOPK, WK_PERIOD, Plan)

__all__ = ["PERIOD_KERNELS", "SLIDING_KERNELS", "RANGE_KERNELS", "target_kernels", "driver_shape", "driver_source", "load_driver", "drivers_dir"]

#: The window-and-aggregation kernels of :mod:`.cpu` a target may call, by id: the plan
#: gives each target one (:func:`target_kernels`), a driver holds a dispatch to those
#: its config uses. Period kernels first; all share one signature per group.
PERIOD_KERNELS = (
    "_period_moments_expanding",  # count / sum / mean / any, expanding
    "_period_moments_runs",  # count / sum / mean / any, full / next
    "_period_extreme_target",  # min / max
    "_period_std_target",
    "_period_topk4_target",  # top-k, k <= 4
    "_period_topkn_target",  # top-k, k > 4
)
SLIDING_KERNELS = ("_sliding_moments", "_sliding_extreme", "_sliding_std", "_sliding_topk")
#: SPEC v2 targets (:mod:`.ranges`): every window a range of rows, by aggregation family.
RANGE_KERNELS = ("_range_moments", "_range_order", "_range_nunique", "_range_quantile")
_N_PERIOD = len(PERIOD_KERNELS)
_FIRST_RANGE = _N_PERIOD + len(SLIDING_KERNELS)
#: The module of :mod:`gpu_targets.engines.cpu` holding a kernel (else ``periods`` or ``sliding``).
_KERNEL_MODULE = {"_period_topk4_target": "topk", "_period_topkn_target": "topk", "_sliding_topk": "topk",
                  **{name: "ranges" for name in RANGE_KERNELS}}
#: The package the generated code imports the kernels from (``gpu_targets``; another
#: name for a copy, as ``benchmarks/profile_kernel.py --baseline`` makes).
_PACKAGE = __name__.rsplit(".", 3)[0]


def _range_kernel(agg: int) -> int:
    if agg in (FIRST, LAST, TIME_TO_NEXT, TIME_SINCE_LAST):
        name = "_range_order"
    elif agg == NUNIQUE:
        name = "_range_nunique"
    elif agg in (MEDIAN, QUANTILE):
        name = "_range_quantile"
    else:
        name = "_range_moments"
    return _FIRST_RANGE + RANGE_KERNELS.index(name)


def _kernel_id(window: int, agg: int, k: int) -> int:
    if window <= NEXT:
        if agg == TOPK:
            name = "_period_topk4_target" if k <= 4 else "_period_topkn_target"
        elif agg in (MIN, MAX):
            name = "_period_extreme_target"
        elif agg == STD:
            name = "_period_std_target"
        else:
            name = "_period_moments_expanding" if window == EXPANDING else "_period_moments_runs"
        return PERIOD_KERNELS.index(name)
    if agg == TOPK:
        name = "_sliding_topk"
    elif agg in (MIN, MAX):
        name = "_sliding_extreme"
    elif agg == STD:
        name = "_sliding_std"
    else:
        name = "_sliding_moments"
    return _N_PERIOD + SLIDING_KERNELS.index(name)


def target_kernels(plan: Plan) -> np.ndarray:
    """int64 [T]: the kernel id of each target (an index into ``PERIOD_KERNELS +
    SLIDING_KERNELS``), in plan order."""
    ids = [_range_kernel(int(g)) if r else _kernel_id(int(w), int(g), int(k))
           for w, g, k, r in zip(plan.window, plan.agg, plan.k, plan.ranged)]
    return np.array(ids, dtype=np.int64)


def driver_shape(plan: Plan, utc: bool) -> tuple:
    """What the generated driver depends on: ``(utc, kernel ids used, whether a SPEC v2
    target has a period window)``. Configs that use the same kernels share a driver."""
    range_periods = bool(np.any(plan.ranged & (plan.wkind == WK_PERIOD)))
    return (bool(utc), tuple(sorted({int(i) for i in target_kernels(plan)})), range_periods)


# --------------------------------------------------------------------------- source
def _sliding_call(name: str, value: str, kvalue: str) -> str:
    if name == "_sliding_topk":
        return f"_sliding_topk(vv, nv, plan.absval[ti], wlo, whi, plan.k[ti], plan.fill[ti], {kvalue})"
    if name == "_sliding_extreme":
        return f"_sliding_extreme(vv, nv, plan.absval[ti], wlo, whi, plan.agg[ti] == {MIN}, plan.fill[ti], {value})"
    if name == "_sliding_std":
        return f"_sliding_std(vv, nv, plan.absval[ti], wlo, whi, plan.fill[ti], {value})"
    return f"_sliding_moments(vv, nv, plan.absval[ti], wlo, whi, plan.agg[ti], plan.fill[ti], {value})"


def _dispatch(cases: list[tuple[int, str]], indent: str) -> str:
    """``if kid == i: <lines>`` for each case (no test when there is one case)."""
    if len(cases) == 1:
        return "".join(indent + line + "\n" for line in cases[0][1].splitlines())
    out = []
    for j, (kid, body) in enumerate(cases):
        out.append(f"{indent}{'if' if j == 0 else 'elif'} kid == {kid}:\n")
        out.extend(indent + "    " + line + "\n" for line in body.splitlines())
    return "".join(out)


def driver_source(shape: tuple, stamp: str = "") -> str:
    """The Python source of the driver module for ``shape`` (:func:`driver_shape`)."""
    utc, ids, range_periods = shape
    period = [i for i in ids if i < _N_PERIOD]
    sliding = [i for i in ids if _N_PERIOD <= i < _FIRST_RANGE]
    ranged = [i for i in ids if i >= _FIRST_RANGE]
    names = ([PERIOD_KERNELS[i] for i in period] + [SLIDING_KERNELS[i - _N_PERIOD] for i in sliding]
             + [RANGE_KERNELS[i - _FIRST_RANGE] for i in ranged])
    parts = [T._USER_START]
    if period or range_periods:
        parts.append(T._PERIODS.format(mono="True" if utc else "rows.local_is_utc or _is_non_decreasing(lraw)",
                                     runs=T._RUNS_UTC if utc else T._RUNS_LOCAL))
    elif sliding:  # the filter bits of the duration windows (SPEC v2 targets test their own filters)
        parts.append(T._BITS_ONLY)
    if any("topk" in name for name in names):
        parts.append(T._TOPK_SCRATCH)
    else:
        parts.append("    kbuf = np.empty(0, dtype=np.float64)\n    krun = np.empty((0, 0), dtype=np.float64)\n")
    if sliding or ranged:
        parts.append(T._TIMES)
    if sliding:
        parts.append(T._DURATIONS)
    if ranged:
        parts.append(T._RANGE_SCRATCH)
    parts.append(T._LOOP)
    if ranged:
        args = ("rvv, rvt, rvr, nv, rvlo, rvhi, t, plan.sec, plan.agg[ti], plan.q[ti], plan.k[ti], plan.fill[ti], "
                "dst, kdst")
        calls = []
        for i in ranged:
            name = RANGE_KERNELS[i - _FIRST_RANGE]
            if name == "_range_quantile":  # a sorted window for narrow ranges, else V's ranks (once per V)
                calls.append((i, f"qw = _range_width(rvlo, rvhi)\n"
                                 f"if qw <= (SORTED_WINDOW_RANKED_MAX if ranked else SORTED_WINDOW_MAX):\n"
                                 f"    _range_quantile_sorted({args}, qw)\n"
                                 f"else:\n    if not ranked:\n        _v_ranks(rvv, nv, rrank, rsorted)\n"
                                 f"        ranked = True\n    {name}({args}, rrank, rsorted)"))
            else:
                calls.append((i, f"{name}({args})"))
        dispatch = _dispatch(calls, " " * 12)
        bounds = T._RANGE_BOUNDS
        if range_periods:
            bounds = T._RANGE_PERIOD_BOUNDS.format(wk_period=WK_PERIOD, nonmono="" if utc else T._RANGE_NONMONO)
        parts.append(T._RANGE.format(first=_FIRST_RANGE, bounds=bounds, dispatch=dispatch))
    if period:
        if sliding:
            parts.append(f"        if kid < {_N_PERIOD}:\n")
        else:
            parts.append("        if True:  # every target has a period window\n")
        parts.append("            sl = plan.slot[ti]\n")
        if not utc:
            local = _dispatch([(i, f"{PERIOD_KERNELS[i]}({T._PERIOD_ARGS_LOCAL})") for i in period], " " * 16)
            parts.append(T._PERIOD_LOCAL.format(dispatch=local))
        parts.append(_dispatch([(i, f"{PERIOD_KERNELS[i]}({T._PERIOD_ARGS})") for i in period], " " * 12))
        parts.append("            continue\n")
    if sliding:
        sparse, dense = [], []
        for i in sliding:
            name = SLIDING_KERNELS[i - _N_PERIOD]
            if name == "_sliding_topk":
                fill = "for j in range(plan.k[ti]):\n    _fill_segments(seg_row, nseg, seg_k[j], kdst[j])"
            else:
                fill = "_fill_segments(seg_row, nseg, seg_val, dst)"
            sparse.append((i, _sliding_call(name, "seg_val[:nseg]", "seg_k[:, :nseg]") + "\n" + fill))
            dense.append((i, _sliding_call(name, "dst", "kdst")))
        parts.append(T._DURATION.format(sparse=_dispatch(sparse, " " * 12), dense=_dispatch(dense, " " * 12)))
    body = "".join(parts)
    body = "".join("    " + line if line.strip() else line for line in body.splitlines(keepends=True))
    kernel_imports = "\n".join(f"from {_PACKAGE}.engines.cpu.{_KERNEL_MODULE.get(n, 'periods' if n.startswith('_period') else 'sliding')} import {n}"
                               for n in names)
    if ranged:
        kernel_imports += (f"\nfrom {_PACKAGE}.engines.cpu.ranges import (SORTED_WINDOW_MAX, SORTED_WINDOW_RANKED_MAX, "
                           "_compact_v, _membership, "
                           "_period_bounds, _range_quantile_sorted, _range_width, _row_bounds, _user_values, _v_ranges, "
                           "_v_ranks)")
    import numba

    from ... import __version__

    return T._HEADER.format(stamp=stamp, shape=shape, names=", ".join(names), pkg=_PACKAGE, body=body.rstrip("\n"),
                          kernel_imports=kernel_imports, version=__version__, numba_version=numba.__version__)


# --------------------------------------------------------------------------- loading
_LOADED: dict = {}
_LOCK = threading.Lock()
_PRIVATE_DIR: list = []  # this process's own temporary drivers directory, once made


def _after_fork_in_child() -> None:
    global _LOCK
    _LOCK = threading.Lock()  # a lock held by another thread at fork time stays held in the child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def drivers_dir() -> Path:
    """Where generated driver files live (see the module docstring): the first of
    ``$NUMBA_CACHE_DIR/gpu_targets_drivers`` (when set) or the user cache directory's
    ``gpu_targets_drivers`` that can be created and written, else a private temporary
    directory of this process (``tempfile.mkdtemp``: mode 0o700, a new name, so no other
    user can have planted files in it; nothing is cached across processes then)."""
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        path = Path(numba_dir) / "gpu_targets_drivers"
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(cache) / "gpu_targets_drivers"
    try:
        if path.parent.is_dir():  # never create a missing home directory
            path.mkdir(mode=0o700, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
    except OSError:
        pass
    if not _PRIVATE_DIR:
        _PRIVATE_DIR.append(Path(tempfile.mkdtemp(prefix="gpu_targets_drivers-")))
    return _PRIVATE_DIR[0]


def _write_once(path: Path, text: str) -> None:
    """Make ``path`` hold ``text``: created by an exclusive link of a private temporary
    file (of concurrent processes one creates it, the others find it and leave its
    modification time, which Numba's cache index checks, alone); a file there with other
    content (corrupt, or planted) is replaced by an atomic rename."""
    try:
        if path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            os.link(tmp, path)  # fails when the file exists
        except FileExistsError:
            if path.read_text() != text:
                os.replace(tmp, path)
                tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


#: How long a computed engine-source stamp is trusted: the glob and stat of every source
#: (about 0.4 ms) is paid at most once a second, not on every ``compute`` (a torch feed
#: calls it per batch). An edited source is seen by the calls after that second.
_STAMP_MAX_AGE_S = 1.0
_STAMP: list = [None, "", -math.inf]  # (the stamp function, its value, time.monotonic() of it)


def _current_stamp() -> str:
    from ... import kernel_cache

    fn = kernel_cache.engine_source_stamp  # looked up each time: tests replace it
    now = time.monotonic()
    last_fn, stamp, at = _STAMP
    if last_fn is fn and now - at < _STAMP_MAX_AGE_S:
        return stamp
    stamp = fn()
    _STAMP[:] = [fn, stamp, now]
    return stamp


def load_driver(shape: tuple):
    """The driver module for ``shape``: generated, written and imported on first use in
    a process (its kernels compile on first call, or load from Numba's disk cache).
    Its ``users_targets(u0, u1, offsets, rows, plan, out)`` computes users u0..u1
    (``nogil``; the records of :mod:`.records`)."""
    stamp = _current_stamp()
    key = (shape, stamp)
    module = _LOADED.get(key)
    if module is not None:
        return module
    with _LOCK:
        module = _LOADED.get(key)
        if module is None:
            text = driver_source(shape, stamp)
            name = f"{_PACKAGE}_driver_" + hashlib.sha256(text.encode()).hexdigest()[:20]
            path = drivers_dir() / f"{name}.py"
            _write_once(path, text)
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            _LOADED[key] = module
    return module

