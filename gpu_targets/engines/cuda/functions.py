"""Device functions of the ``cuda`` engine, compiled from the sources the CPU engine uses.

The per-element logic (filter bits, double-double arithmetic, sample std, aggregation
results, calendar periods) is written once, as plain Python in
:mod:`gpu_targets.engines.elementwise` and :mod:`gpu_targets.calendar`. The CPU engine
compiles those functions with ``njit`` (through ``register_jitable``). Here each one is
compiled with ``numba.cuda.jit(device=True, inline="always")``, so kernels call real
CUDA device functions, inlined into them at the Numba IR level, rather than core-Numba
overloads reached through numba-cuda's typing bridge.

How: every function is copied with :class:`types.FunctionType` (same code object) into a
namespace of its own module's globals in which the names of the other shared functions
are bound to their device versions. A call ``two_prod(m, s1h)`` inside ``sample_std``
then resolves, when the kernel is compiled, to the device ``two_prod``.

One function differs on the device: :func:`two_prod` uses ``cuda.fma`` (the CPU's njit
overload uses LLVM's ``llvm.fma``; its Python body is Dekker's split). Dekker's split
product is exact only when every operation is rounded on its own; libNVVM contracts
``a * b - p`` and the split's products into FMAs, which silently changes the error term.
``fma(a, b, -p)`` is the exact error of ``p = a * b`` by definition (one rounding), so
the device result is the exact double-double product. (Numba's CUDA simulator computes
``fma`` as ``a * b + c`` in Python, rounded twice: under the simulator the error term
is 0 and double-double sums of squares are plain float64; see docs/cuda.md.)

``inline``: numba-cuda >= 0.22 deprecates a boolean ``inline`` (``True`` meant Numba-IR
inlining, now spelled ``"always"``); NVVM-level ``forceinline=True`` is not accepted by
the simulator's ``jit`` (numba-cuda 0.30), so it would be a line CPU CI cannot run.
"""

from __future__ import annotations

import types

from numba import cuda

from ... import calendar
from .. import elementwise

__all__ = ["civil_from_days", "compensated_add", "dd_add_dd", "direct_sum_add", "finish_direct_sum", "moments_result", "period_index",
           "period_of_day", "quantile_of", "row_filter_bits", "sample_std", "std_is_trusted", "sum_is_trusted", "topk_insert", "two_prod"]


def _device(fn, namespace: dict):
    """``fn``'s code compiled as an inlined CUDA device function whose globals are ``namespace``."""
    copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__doc__ = fn.__doc__
    return cuda.jit(device=True, inline="always")(copy)


def _two_prod_fma(a, b):
    """a * b as an exact double-double ``(p, e)``: ``e = fma(a, b, -p)`` (one rounding)."""
    p = a * b
    return p, cuda.fma(a, b, -p)


_two_prod_fma.__name__ = "two_prod"

# calendar: civil_from_days <- period_of_day <- period_index
_CALENDAR = ("civil_from_days", "period_of_day", "period_index")
_calendar_ns = dict(vars(calendar))
for _name in _CALENDAR:
    _calendar_ns[_name] = _device(getattr(calendar, _name), _calendar_ns)

# elementwise: two_prod (FMA) and dd_add_dd <- sample_std <- moments_result; row_filter_bits;
# the duration windows' trust checks and direct sums
_ELEMENTWISE = ("dd_add_dd", "sample_std", "moments_result", "row_filter_bits", "compensated_add", "direct_sum_add",
                "sum_is_trusted", "std_is_trusted", "finish_direct_sum", "topk_insert", "quantile_of")
_elementwise_ns = dict(vars(elementwise))
_elementwise_ns["cuda"] = cuda
_elementwise_ns["two_prod"] = _device(_two_prod_fma, _elementwise_ns)
for _name in _ELEMENTWISE:
    _elementwise_ns[_name] = _device(getattr(elementwise, _name), _elementwise_ns)

# the module's names: the device versions
globals().update({n: _calendar_ns[n] for n in _CALENDAR})
globals().update({n: _elementwise_ns[n] for n in ("two_prod", *_ELEMENTWISE)})
