"""The PyTorch feed: per-user sequences with synthetic targets computed on the fly.

Targets are too many to precompute, so the collate function computes them for the
users of each batch with an engine of the registry, on the user's *whole* history (so
``max_len`` truncation never changes a target), then pads the batch.

A batch (``dataset.collate(items)``) is a dict:

==================  ========================  =============================================
key                 dtype, shape              meaning
==================  ========================  =============================================
``amount``          float32 ``[B, T]``        transaction amounts (NaN kept: null amount)
``mcc``             int64 ``[B, T]``          MCC, -1 for null/out of range
``time``            float64 ``[B, T]``        seconds since 1970-01-01 UTC
``mask``            bool ``[B, T]``           True on real transactions
``lengths``         int64 ``[B]``             transactions per user after truncation
``targets``         float32 ``[B, T, C]``     the config's target columns
``target_names``    list of C str             column names, config order
``is_label``        bool ``[C]``              True for windows that look ahead
``user``            list of B ids             the users
==================  ========================  =============================================

Padding is on the right (positions ``lengths[b]:`` are padding, zero and ``mask``
False); ``max_len`` keeps each user's most recent transactions.

Labels versus features: a target whose window reaches past the transaction (``next``
and ``forward``, and also ``full``, which covers the rest of the current period) sums up
the *future* of the transaction. It is a label: fed to the model as an input at step t it
leaks what the model is asked to predict, and a model trained that way learns to copy
instead of to forecast, then fails in production where the future is unknown. Only
``expanding`` and ``previous`` periods and ``trailing`` durations and rows windows are
past-only features; a derived target is a label when any of its inputs is one (SPEC.md
2.1). ``is_label`` marks the label columns; :func:`split_features_labels` returns the
two index lists.

Arrays are allocated once per batch and handed to torch through DLPack without copies.

Where the work happens: DataLoader workers only do host work and never touch CUDA. With
the ``cpu`` engine they compute the targets; with ``cuda`` they assemble the batch's
transactions and the main process computes the targets on the device
(:func:`finish_batch`: the transactions are copied there, non-blocking from pinned
memory, and the targets written into one preallocated ``[B, T, C]`` device tensor).
``dataset.loader(batch_size=..., num_workers=...)`` yields finished batches on
``device``; with a plain ``DataLoader`` call ``dataset.finish(batch)`` on each batch.

DataLoader workers: the datasets hold NumPy buffers that forked workers share. Each
worker runs the engine on one thread; a forked worker runs the serial compilation of
the parallel kernels (:mod:`gpu_targets.forksafe`: GNU OpenMP cannot run in a child
forked after its pool started), so ``generate()`` before a ``DataLoader`` is safe in
any import order.
"""

from __future__ import annotations

import os
from typing import Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from . import engines
from .engines.grouping import group_users
from .torch_batch import collate_users, finish_batch, split_features_labels
from .api import check_time_range
from .formats import to_roles, user_column
from .spec import Config, load_config
from .transactions import DataError, Transactions, extract

__all__ = ["IterableSequenceDataset", "SequenceDataset", "collate_users", "finish_batch", "split_features_labels"]


class _Collating:
    """Shared collate configuration of both datasets."""

    config: Config
    max_len: Optional[int]
    backend: str
    device: str
    pin_memory: bool

    def collate(self, items: Sequence[dict]) -> dict:
        """``collate_fn`` for :class:`torch.utils.data.DataLoader` (see :func:`collate_users`)."""
        return collate_users(items, self.config, max_len=self.max_len, backend=self.backend,
                             device=self.device, pin_memory=self.pin_memory)

    def finish(self, batch: dict) -> dict:
        """A batch from a DataLoader worker, moved to ``device`` with its ``cuda`` targets
        computed there (:func:`finish_batch`); a finished batch passes through."""
        return finish_batch(batch, self.config, self.device)

    def loader(self, **kwargs) -> Iterator[dict]:
        """Finished batches of a :class:`torch.utils.data.DataLoader` over this dataset.

        ``kwargs`` go to the DataLoader (``batch_size``, ``shuffle``, ``num_workers``...);
        ``collate_fn`` is :meth:`collate` and ``pin_memory`` defaults to the dataset's.
        Workers assemble host batches; each batch is finished (moved to ``device``,
        ``cuda`` targets computed) in this process as it is taken.
        """
        from torch.utils.data import DataLoader

        kwargs.setdefault("pin_memory", bool(self.pin_memory and torch.cuda.is_available()))
        for batch in DataLoader(self, collate_fn=self.collate, **kwargs):
            yield self.finish(batch)

    @property
    def target_names(self) -> list[str]:
        return list(self.config.output_columns)


def _role_arrays(frame: pd.DataFrame, config: Config, stored_targets: bool = False):
    """Validated role arrays sorted by (user, time, row), user offsets, raw user ids, the
    time factor, (``stored_targets``) the frame's own target columns as float32
    ``[n, C]`` rows in the same order, else None, and the [v2] ``where:``/``value:``
    inputs (:class:`gpu_targets.where.ColumnInputs`) in the same order, else None."""
    stored = None
    if stored_targets:
        names = config.output_columns
        missing = [c for c in names if c not in frame.columns]
        if missing:
            from .transactions import DataError

            raise DataError(f"precomputed target column {missing[0]!r} is not in the input")
        stored = frame[names].to_numpy(np.float32)
        frame = frame.drop(columns=names)
    roles, role_config = to_roles(frame, config)
    tx = extract(roles, role_config)
    check_time_range(tx, config, role_config.columns.time)
    order, offsets = group_users(tx)
    user_col = roles[role_config.columns.user].to_numpy()
    if config.format == "generic" and isinstance(config.columns.user, list):  # a composite user: its tuple
        parts = [frame[c].to_numpy() for c in config.columns.user]
        user_col = np.empty(len(frame), dtype=object)
        user_col[:] = list(zip(*parts))
    if tx.kept_rows is not None:
        user_col = user_col[tx.kept_rows]
        stored = None if stored is None else stored[tx.kept_rows]
    if order is None:
        return tx.time, tx.amount, tx.mcc, offsets, user_col[offsets[:-1]], tx.time_factor, stored, tx.columns
    stored = None if stored is None else stored[order]
    columns = None if tx.columns is None else tx.columns.take(order)
    return (tx.time[order], tx.amount[order], tx.mcc[order], offsets, user_col[order[offsets[:-1]]],
            tx.time_factor, stored, columns)


class SequenceDataset(_Collating, Dataset):
    """One item per user (map-style), targets computed in :meth:`collate`.

    Parameters
    ----------
    transactions : pandas.DataFrame or path
        The transactions (a path is read with :func:`gpu_targets.io.read_transactions`).
    config : Config, dict or path
        The targets; ``config.format`` picks the input adapter.
    max_len : int, optional
        Keep the most recent ``max_len`` transactions of a user in a batch.
    backend : str
        Engine for the targets (``"cpu"``; ``"cuda"`` where registered).
    device : str
        Device of the batch tensors.
    pin_memory : bool
        Page-locked host buffers (only with a CUDA build of torch).
    precompute : bool
        Compute every target once here and only slice them in :meth:`collate` (the
        baseline the on-the-fly feed is benchmarked against; memory: 4 bytes per
        target column per transaction).

    Notes
    -----
    The table is held as four contiguous NumPy arrays sorted by (user, time); an item is
    a set of views of them, so DataLoader workers (forked) share the buffers instead of
    copying the table.

    Examples
    --------
    >>> from torch.utils.data import DataLoader
    >>> from gpu_targets.datasets import synthetic_transactions
    >>> ds = SequenceDataset(synthetic_transactions(8, 50), "configs/seed20.yaml", max_len=32)
    >>> batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=ds.collate)))
    >>> tuple(batch["targets"].shape)
    (4, 32, 22)
    """

    def __init__(self, transactions, config, *, max_len=None, backend="cpu", device="cpu", pin_memory=False,
                 precompute=False):
        self.config = load_config(config)
        if not isinstance(transactions, pd.DataFrame):
            from .io import read_transactions

            transactions = read_transactions(transactions)
        self.max_len, self.backend, self.device, self.pin_memory = max_len, backend, device, pin_memory
        (self._time, self._amount, self._mcc, self._offsets, self.users, self._time_factor, _,
         self._columns) = _role_arrays(transactions, self.config)
        self._values = None
        if precompute:
            lengths = np.diff(self._offsets)
            user = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
            tx = Transactions(user, self._time, self._amount, self._mcc, time_factor=self._time_factor, ordered=True,
                              columns=self._columns)
            self._values = np.ascontiguousarray(engines.get(backend).compute(tx, self.config).T)  # [n, C]

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"user index {i} out of range for {len(self)} users")
        i = i % len(self)
        s, e = self._offsets[i], self._offsets[i + 1]
        item = {
            "user": self.users[i],
            "time": self._time[s:e],
            "amount": self._amount[s:e],
            "mcc": self._mcc[s:e],
            "time_factor": self._time_factor,
        }
        if self._values is not None:
            item["values"] = self._values[s:e]
        if self._columns is not None:
            item["columns"] = self._columns.take(slice(s, e))
        return item


class IterableSequenceDataset(_Collating, IterableDataset):
    """Users streamed from a Parquet file row group by row group, for data larger than memory.

    The file must hold each user's transactions contiguously (grouped by user, any time
    order inside a user). Row groups are dealt round-robin to the
    ``world_size x num_workers`` shards (DataLoader workers of every rank); a user
    belongs to the shard owning the row group where it *starts*, which reads on into
    the next row groups to finish it. So every user is yielded exactly once per epoch.

    Parameters
    ----------
    path : str or path-like
        A Parquet file.
    config, max_len, backend, device, pin_memory
        As :class:`SequenceDataset`.
    rank, world_size : int, optional
        This process's rank among ``world_size`` (default: from ``torch.distributed``
        when initialised, else 0 of 1).
    precomputed : bool
        Read the targets from the file's own target columns (an output of
        ``gpu-targets generate``) instead of computing them: the "load precomputed
        targets" baseline the on-the-fly feed is measured against.

    Raises
    ------
    DataError
        A user appears in two separate runs of rows (the file is not grouped by user).
    """

    def __init__(self, path, config, *, max_len=None, backend="cpu", device="cpu", pin_memory=False,
                 rank: Optional[int] = None, world_size: Optional[int] = None, precomputed: bool = False):
        import pyarrow.parquet as pq

        self.precomputed = precomputed
        self.path = os.fspath(path)
        self.config = load_config(config)
        self.max_len, self.backend, self.device, self.pin_memory = max_len, backend, device, pin_memory
        if rank is None or world_size is None:
            dist = torch.distributed
            ready = dist.is_available() and dist.is_initialized()
            rank = dist.get_rank() if ready else 0
            world_size = dist.get_world_size() if ready else 1
        self.rank, self.world_size = rank, world_size
        self._n_groups = pq.ParquetFile(self.path).num_row_groups
        self._user_column_name = user_column(self.config)
        if isinstance(self._user_column_name, list):
            raise DataError("IterableSequenceDataset streams users by one user column; a composite user "
                            f"({self._user_column_name}) needs SequenceDataset, or one column combining them")

    def _read(self, pf, group: int) -> pd.DataFrame:
        return pf.read_row_group(group).to_pandas()

    def _users_of(self, pf, group: int) -> np.ndarray:
        return pf.read_row_group(group, columns=[self._user_column_name]).column(0).to_numpy(zero_copy_only=False)

    def _shard(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def __iter__(self) -> Iterator[dict]:
        import pyarrow.parquet as pq

        from .transactions import DataError

        pf = pq.ParquetFile(self.path)
        shard, n_shards = self._shard()
        for g in range(shard, self._n_groups, n_shards):
            frame = self._read(pf, g)
            users = frame[self._user_column_name].to_numpy()
            skip = 0
            if g > 0 and len(users):
                prev = self._users_of(pf, g - 1)
                if len(prev) and prev[-1] == users[0]:  # started in an earlier row group
                    skip = int(np.argmax(users != users[0])) if (users != users[0]).any() else len(users)
            frame = frame.iloc[skip:]
            if len(frame) == 0:
                continue
            # finish the last user from the following row groups
            last = frame[self._user_column_name].iloc[-1]
            parts, nxt = [frame], g + 1
            while nxt < self._n_groups:
                more = self._read(pf, nxt)
                same = (more[self._user_column_name] == last).to_numpy()
                n_same = int(np.argmin(same)) if not same.all() else len(same)
                if n_same:
                    parts.append(more.iloc[:n_same])
                if n_same < len(more):
                    break
                nxt += 1
            frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else frame.reset_index(drop=True)
            runs = frame[self._user_column_name].to_numpy()
            starts = np.flatnonzero(np.r_[True, runs[1:] != runs[:-1]])
            if len(pd.unique(runs[starts])) != len(starts):
                raise DataError(f"{self.path}: row group {g} is not grouped by user (a user appears twice)")
            time, amount, mcc, offsets, user_ids, factor, stored, columns = _role_arrays(
                frame, self.config, stored_targets=self.precomputed
            )
            for i in range(len(offsets) - 1):
                s, e = offsets[i], offsets[i + 1]
                item = {"user": user_ids[i], "time": time[s:e], "amount": amount[s:e], "mcc": mcc[s:e],
                        "time_factor": factor}
                if stored is not None:
                    item["values"] = stored[s:e]
                if columns is not None:
                    item["columns"] = columns.take(slice(s, e))
                yield item
