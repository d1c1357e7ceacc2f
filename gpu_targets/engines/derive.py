"""Derived targets (SPEC.md 2.4 [v2]): ratios and linear combinations of output columns.

Every engine calls :func:`apply_derived` on its finished output, so a derived target is
computed once, the same way, from the float32 values the engine wrote (read as float64),
on whatever array namespace holds them (NumPy, or CuPy for the cuda engine).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..spec import Config, Derived

__all__ = ["apply_derived"]


def apply_derived(config: Config, out, xp=np) -> None:
    """Write the rows of ``out`` (float32 [n_target_columns, n], ``xp`` array) that belong
    to derived targets, in config order (a derived target may use an earlier one).

    ``ratio``: a / b; ``linear``: sum of coef_j x_j; a result that is not finite (a zero
    denominator, a NaN or infinite input) is the target's ``fill``.
    """
    derived = [t for t in config.targets if isinstance(t, Derived)]
    if not derived:
        return
    index = {c: j for j, c in enumerate(config.output_columns)}
    n = out.shape[1]
    # NumPy: chunks of 64 Ki rows, whose float64 temporaries stay in cache (one pass over
    # 8 M rows at once allocated and faulted in ~0.1 GB per temporary); CuPy: one pass
    step = (1 << 16) if xp is np else max(n, 1)
    for t in derived:
        rows = [index[c] for c in t.of]
        dst = index[t.name]
        for s in range(0, n, step):
            x = [out[j, s : s + step].astype(xp.float64) for j in rows]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore") if xp is np else contextlib.nullcontext():
                if t.derive == "ratio":
                    r = x[0] / x[1]
                else:
                    r = xp.zeros_like(x[0])
                    for c, v in zip(t.coefficients, x):
                        r = r + c * v
            out[dst, s : s + step] = xp.where(xp.isfinite(r), r, t.fill)
