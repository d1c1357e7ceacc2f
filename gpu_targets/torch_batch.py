"""Batches of whole users for the PyTorch feed (:mod:`gpu_targets.torch`): targets
computed for the batch's users and padded into ``[B, T]`` / ``[B, T, C]`` arrays.

:func:`collate_users` runs in DataLoader workers (host work only: with the ``cpu``
engine it computes the targets, with ``cuda`` it assembles the transactions);
:func:`finish_batch` runs in the main process and, for ``cuda``, computes the targets on
the device. The batch's keys are listed in :mod:`gpu_targets.torch`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numba
import numpy as np
import torch
from numba import prange
from torch.utils.data import get_worker_info

from . import engines
from .forksafe import parallel_njit
from .spec import Config
from .transactions import Transactions

__all__ = ["collate_users", "finish_batch", "split_features_labels"]


def split_features_labels(config: Config) -> tuple[list[int], list[int]]:
    """Indices of the target columns that are past-only features and that are labels.

    A column is a feature only when its window holds no transaction later than the row
    (``expanding`` and ``previous`` periods, ``trailing`` durations and rows); ``full``,
    ``next`` and ``forward`` windows include later transactions, so they are labels, and
    so is a derived target with a label among its inputs (SPEC.md 2.1).
    """
    features, labels = [], []
    for col, label in enumerate(config.label_flags):
        (labels if label else features).append(col)
    return features, labels


@parallel_njit
def _pad(offsets, starts, ns_per_s, time, time_factor, amount, mcc, rows, o_amount, o_mcc, o_time, o_mask, o_tgt):
    """Copy each user's last ``lengths`` rows into row b of the padded outputs.

    ``rows`` holds the targets row-major ([n, C]), so a user's block is one contiguous
    copy into ``o_tgt[b]``.
    """
    n_cols = rows.shape[1]
    t_max = o_amount.shape[1]
    for b in prange(offsets.shape[0] - 1):
        s0 = starts[b]
        n = offsets[b + 1] - s0
        for j in range(n):
            r = s0 + j
            o_amount[b, j] = amount[r]
            o_mcc[b, j] = mcc[r]
            o_time[b, j] = (time[r] * time_factor) / ns_per_s
            o_mask[b, j] = True
            for c in range(n_cols):
                o_tgt[b, j, c] = rows[r, c]
        for j in range(n, t_max):
            o_amount[b, j] = 0.0
            o_mcc[b, j] = 0
            o_time[b, j] = 0.0
            o_mask[b, j] = False
            for c in range(n_cols):
                o_tgt[b, j, c] = 0.0


def collate_users(
    items: Sequence[dict],
    config: Config,
    *,
    max_len: Optional[int] = None,
    backend: str = "cpu",
    device: Union[str, torch.device] = "cpu",
    pin_memory: bool = False,
) -> dict:
    """Assemble a batch of users and compute its targets (see the module docstring).

    Inside a DataLoader worker only host work is done, so workers never touch CUDA
    (a CUDA context made before ``fork`` breaks every worker, and each worker would hold
    a context of its own): the ``cpu`` engine computes the targets there, and the
    ``cuda`` engine leaves them to :func:`finish_batch`, which runs in the main process
    (``dataset.loader()`` calls it; with a plain ``DataLoader`` call ``dataset.finish``).
    Called in the main process (``num_workers=0``), the batch is finished here.

    Parameters
    ----------
    items : sequence of dict
        Users as yielded by the datasets: ``time`` int64 ticks (``time_factor`` ns each),
        ``amount`` float64, ``mcc`` int32, each sorted by (time, input row); ``user``;
        [v2] ``columns``, the user's ``where:``/``value:`` inputs, when the config reads any.
    config : Config
    max_len : int, optional
        Keep each user's most recent ``max_len`` transactions (targets are computed on
        the whole history first).
    backend : str
        Engine of :mod:`gpu_targets.engines` computing the targets. ``cuda``: on
        ``device`` in the main process, from the batch's transactions moved there.
    device : str or torch.device
        Where the finished tensors live.
    pin_memory : bool
        Allocate the host buffers in page-locked memory when running in the main process
        (CUDA builds of torch only); in workers pass ``pin_memory=True`` to the DataLoader
        instead, which pins in the main process.

    Returns
    -------
    dict
        Finished (main process) or host-only (worker; ``pending`` holds what
        :func:`finish_batch` needs for ``cuda`` targets).
    """
    in_worker = get_worker_info() is not None
    if in_worker:
        numba.set_num_threads(1)  # one thread per DataLoader worker: no oversubscription
    lengths_full = np.fromiter((len(it["time"]) for it in items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths_full, out=offsets[1:])
    time = np.concatenate([it["time"] for it in items])
    amount = np.concatenate([it["amount"] for it in items])
    mcc = np.concatenate([it["mcc"] for it in items])
    factor = int(items[0]["time_factor"]) if items else 1
    n_cols = len(config.output_columns)
    on_device = backend == "cuda" and not (items and "values" in items[0])
    columns = None
    if items and "columns" in items[0]:  # [v2] where:/value: inputs of the batch's users
        from .where import ColumnInputs

        columns = ColumnInputs.concat([it["columns"] for it in items])
    if items and "values" in items[0]:  # precomputed targets (SequenceDataset(precompute=True))
        rows = np.concatenate([it["values"] for it in items], axis=0)
    elif on_device:  # the targets are computed on the device by finish_batch
        rows = np.empty((len(time), 0), dtype=np.float32)
    else:
        # the batch is grouped by user and time-sorted: the engine takes its no-sort path;
        # targets are written row-major ([n, C]) so padding copies whole rows
        tx = Transactions(np.repeat(np.arange(len(items), dtype=np.int64), lengths_full), time, amount, mcc,
                          time_factor=factor, ordered=True, columns=columns)
        rows = np.empty((len(time), n_cols), dtype=np.float32)
        engines.get(backend).compute(tx, config, out=rows.T)
    lengths = lengths_full if max_len is None else np.minimum(lengths_full, max_len)
    starts = offsets[1:] - lengths
    b, t_max, c = len(items), int(lengths.max(initial=0)), rows.shape[1]
    pin = bool(pin_memory and not in_worker and torch.cuda.is_available())

    def empty(shape, dtype):
        return torch.empty(shape, dtype=dtype, pin_memory=pin)

    out = {
        "amount": empty((b, t_max), torch.float32),
        "mcc": empty((b, t_max), torch.int64),
        "time": empty((b, t_max), torch.float64),
        "mask": empty((b, t_max), torch.bool),
        "targets": empty((b, t_max, c), torch.float32),
    }
    _pad(offsets, starts, 1e9, time, factor, amount, mcc, rows,
         *(out[k].numpy() for k in ("amount", "mcc", "time", "mask", "targets")))
    out["lengths"] = torch.from_dlpack(lengths.copy())
    if on_device:
        del out["targets"]
        out["pending"] = {"time": torch.from_dlpack(time), "amount": torch.from_dlpack(amount),
                          "mcc": torch.from_dlpack(mcc), "offsets": torch.from_dlpack(offsets),
                          "time_factor": factor, "columns": columns}
        if pin:
            out["pending"] = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v
                              for k, v in out["pending"].items()}
    _, labels = split_features_labels(config)
    is_label = torch.zeros(n_cols, dtype=torch.bool)
    is_label[labels] = True
    out["is_label"] = is_label
    out["target_names"] = list(config.output_columns)
    out["user"] = [it["user"] for it in items]
    if in_worker:
        return out
    return finish_batch(out, config, device)


def finish_batch(batch: dict, config: Config, device: Union[str, torch.device] = "cpu") -> dict:
    """Move a collated batch to ``device`` and compute its pending ``cuda`` targets there.

    Runs in the main process. Host tensors are copied with ``non_blocking`` when they are
    pinned (``DataLoader(pin_memory=True)``). A batch collated for the ``cuda`` engine
    carries its transactions (``pending``: flat ``time``, ``amount``, ``mcc``, user
    ``offsets`` and [v2] the host ``columns`` its ``where:``/``value:`` targets read); they are moved to the device, the engine computes the targets there
    (:func:`gpu_targets.engines.cuda.compute_device`, on torch's current stream), and
    :func:`gpu_targets.engines.cuda.pad_targets` writes them into one preallocated
    ``float32 [B, T, C]`` tensor on the device: no host round trip. Under Numba's CUDA
    simulator ``device="cpu"`` runs the same lines.

    Returns the batch (the same dict, updated); a finished batch passes through unchanged.
    """
    device = torch.device(device)
    pending = batch.pop("pending", None)
    if device.type != "cpu":
        for k, v in list(batch.items()):
            if isinstance(v, torch.Tensor) and v.device != device:
                batch[k] = v.to(device, non_blocking=v.is_pinned())
    if pending is None:
        return batch
    engine = engines.get("cuda")
    # the targets are computed on a CUDA device: ``device``, or the current one when the
    # batch itself stays on the host (the simulator's device is the host)
    on = device
    if device.type == "cpu" and not engine.SIMULATOR:
        on = torch.device("cuda", torch.cuda.current_device())  # gpu
    offsets_host = pending["offsets"].numpy()  # the users' rows are consecutive and time-sorted
    p = {k: v.to(on, non_blocking=v.is_pinned()) if isinstance(v, torch.Tensor) else v
         for k, v in pending.items()}
    n_users = p["offsets"].shape[0] - 1
    n = p["time"].shape[0]
    user = torch.repeat_interleave(torch.arange(n_users, device=on), torch.diff(p["offsets"]), output_size=n)
    values = engine.compute_device(user, p["time"], p["amount"], p["mcc"], config, time_factor=p["time_factor"],
                                   user_offsets=offsets_host, columns=p["columns"])
    targets = torch.empty((n_users, batch["amount"].shape[1], len(config.output_columns)), dtype=torch.float32,
                          device=on)
    engine.pad_targets(values, p["offsets"], batch["lengths"].to(on, non_blocking=True), targets)
    if on != device:
        targets = targets.to(device)  # gpu
    batch["targets"] = targets
    return batch
