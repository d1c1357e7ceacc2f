"""Hand targets to PyTorch without copies (DLPack).

:func:`to_torch` turns a result of :func:`gpu_targets.generate` (pandas, CPU tensors),
of :func:`gpu_targets.engines.cuda.compute_device` (a device array, CUDA tensors) or a
cuDF frame (CUDA tensors) into torch tensors that share memory with it. torch, cuDF and
numba.cuda are imported only when such an object is passed.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["to_torch"]


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch needs PyTorch: pip install 'gpu_targets[torch]'") from None
    return torch


def _shared_block(arrays: list[np.ndarray]) -> Optional[np.ndarray]:
    """The ``[m, n]`` view whose rows are ``arrays`` in order, if they are consecutive
    rows of one C-contiguous float32 array (as :func:`gpu_targets.generate` writes its
    target columns: rows of one ``float32 [n_columns, n]`` array, whose memory may be a
    flat block of :data:`gpu_targets.buffers.OUTPUT_POOL`); else None."""
    first = arrays[0]
    if first.ndim != 1 or first.shape[0] == 0:
        return None
    n = first.shape[0]
    base = first  # the array that owns the memory (1-D for an output-pool block)
    while isinstance(base.base, np.ndarray):
        base = base.base
    if base.dtype != np.float32 or not base.flags.c_contiguous or base.size % n:
        return None
    base = base.reshape(-1, n)
    offset = first.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    if offset % (4 * n):
        return None
    j0 = offset // (4 * n)
    block = base[j0 : j0 + len(arrays)]
    if block.shape[0] != len(arrays):
        return None
    for j, a in enumerate(arrays):
        if a.shape != (n,) or a.dtype != np.float32 or a.strides != (4,) or a.__array_interface__["data"][0] != block[j].__array_interface__["data"][0]:
            return None
    return block


def _frame_columns(frame, columns):
    if columns is None:
        columns = [c for c in frame.columns if str(frame[c].dtype) == "float32"]
        if not columns:
            raise ValueError("the frame has no float32 (target) columns; pass columns=[...]")
    return list(columns)


def to_torch(result, *, stacked: bool = False, columns: Optional[Sequence] = None):
    """Targets as torch tensors on the result's device, sharing its memory (DLPack).

    Parameters
    ----------
    result : pandas.DataFrame, cudf.DataFrame or device array
        * a frame returned by :func:`gpu_targets.generate` (CPU tensors, zero-copy: the
          tensors view the frame's NumPy buffers);
        * a ``float32 [n_columns, n]`` device array from
          :func:`gpu_targets.engines.cuda.compute_device` (CUDA tensors via
          ``__cuda_array_interface__``; under numba's simulator, which has no device
          memory, the values are copied to CPU tensors);
        * a cuDF frame (CUDA tensors via ``__dlpack__`` of each column).
    stacked : bool
        False: a dict ``{column: tensor [n]}``. True: one ``float32`` tensor
        ``[n, n_columns]`` (a transposed view of the ``[n_columns, n]`` block when the
        columns lie in one block, as :func:`generate` writes them; else a copy).
    columns : sequence, optional
        Frame columns to take (default: every float32 column, i.e. the targets) or, for a
        device array, the names of its rows (default: 0 .. n_columns - 1).

    Returns
    -------
    dict of torch.Tensor, shape (n,), or torch.Tensor, shape (n, n_columns)

    Raises
    ------
    ImportError
        torch is not installed (names the extra).
    TypeError
        An object of another type.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from gpu_targets import to_torch
    >>> df = pd.DataFrame({"s": np.array([1.0, 2.0], dtype=np.float32)})
    >>> to_torch(df)["s"].tolist()
    [1.0, 2.0]
    """
    torch = _torch()
    mod = type(result).__module__
    if mod.startswith("pandas"):
        cols = _frame_columns(result, columns)
        arrays = [result[c].to_numpy() for c in cols]
        if stacked:
            block = _shared_block(arrays)
            if block is None:
                block = np.stack([a.astype(np.float32, copy=False) for a in arrays])
            return torch.from_dlpack(block).T
        return {c: torch.from_dlpack(a) for c, a in zip(cols, arrays)}
    if mod.startswith("cudf"):  # pragma: no cover - needs cuDF and a GPU
        cols = _frame_columns(result, columns)
        tensors = {c: torch.from_dlpack(result[c].values) for c in cols}
        if stacked:
            return torch.stack([tensors[c] for c in cols], dim=1)
        return tensors
    if hasattr(result, "__cuda_array_interface__") or hasattr(result, "__dlpack__"):
        block = torch.from_dlpack(result) if hasattr(result, "__dlpack__") else torch.as_tensor(result, device="cuda")
    elif hasattr(result, "copy_to_host"):  # numba simulator: no device memory to share
        block = torch.from_numpy(result.copy_to_host())
    else:
        raise TypeError(f"to_torch: expected a pandas/cuDF frame or a device array, got {type(result).__name__}")
    if block.ndim != 2:
        raise ValueError(f"to_torch: expected a [n_columns, n] array, got shape {tuple(block.shape)}")
    if stacked:
        return block.T
    names = list(columns) if columns is not None else list(range(block.shape[0]))
    if len(names) != block.shape[0]:
        raise ValueError(f"to_torch: {len(names)} names for {block.shape[0]} rows")
    return {c: block[j] for j, c in enumerate(names)}
