"""The public entry point: :func:`generate`."""

from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Union

import numpy as np
import pandas as pd

from . import engines
from .formats import to_roles
from .spec import Config, load_config
from .transactions import extract

__all__ = ["generate", "compute_targets"]

log = logging.getLogger("gpu_targets")


def compute_targets(
    transactions: pd.DataFrame,
    config: Union[Config, dict, str, os.PathLike],
    *,
    backend: str = "auto",
    progress: Optional[Callable[[int], None]] = None,
):
    """Targets only, as an array: the core of :func:`generate`.

    Returns
    -------
    values : ndarray of float32, shape (n_target_columns, n_kept)
    kept_rows : ndarray of int64 or None
        Input rows that were kept (``on_invalid: drop``); ``None`` when all were.
    config : Config
    """
    cfg = load_config(config)
    roles, role_cfg = to_roles(transactions, cfg)
    tx = extract(roles, role_cfg)
    if tx.kept_rows is not None:
        log.warning("on_invalid: drop dropped %d rows with a null user or time", len(roles) - len(tx))
    engine = engines.get(engines.resolve(backend))
    return engine.compute(tx, cfg, progress), tx.kept_rows, cfg


def generate(
    transactions: Union[pd.DataFrame, str, os.PathLike],
    config: Union[Config, dict, str, os.PathLike],
    *,
    backend: str = "auto",
    progress: Optional[Callable[[int], None]] = None,
) -> pd.DataFrame:
    """Compute synthetic targets and append them to the transactions.

    Parameters
    ----------
    transactions : pandas.DataFrame or path
        One row per transaction with the role columns of SPEC.md section 1 (names from
        ``config.columns``, or a real schema chosen by ``config.format``); a path is read
        with :func:`gpu_targets.io.read_transactions` (Parquet file/directory/glob, CSV).
    config : Config, dict, or path/YAML string
        The targets (SPEC.md section 4); validated before any data is read.
    backend : {"auto", "reference", "cpu", "cuda"}
        Engine from :mod:`gpu_targets.engines`; ``auto`` picks the fastest usable one.
    progress : callable(int), optional
        Called with the number of transactions finished, batch by batch.

    Returns
    -------
    pandas.DataFrame
        The input's columns followed by one ``float32`` column per target output
        (``topk``: ``name_1..name_k``), in the input's row order (rows dropped by
        ``on_invalid: drop`` are left out).

    Raises
    ------
    ConfigError
        Invalid config (key path, value, what is allowed).
    DataError
        Missing column, wrong dtype, empty table, null user/time.

    Examples
    --------
    >>> import pandas as pd, gpu_targets
    >>> tx = pd.DataFrame({"user_id": [1, 1, 1], "timestamp": [0, 0, 1],
    ...                    "amount": [10.0, 5.0, 2.0], "mcc": [5411, 5411, 5411]})
    >>> cfg = {"time_unit": "D", "targets": [{"name": "s", "agg": "sum",
    ...        "window": {"period": "day", "mode": "expanding"}}]}
    >>> gpu_targets.generate(tx, cfg, backend="cpu")["s"].tolist()
    [10.0, 15.0, 2.0]
    """
    cfg = load_config(config)
    if not isinstance(transactions, pd.DataFrame):
        from .io import read_transactions

        transactions = read_transactions(transactions)
    values, kept, cfg = compute_targets(transactions, cfg, backend=backend, progress=progress)
    return attach_targets(transactions, values, cfg.output_columns, kept)


def attach_targets(frame: pd.DataFrame, values: np.ndarray, names: list[str], kept=None) -> pd.DataFrame:
    """The frame's columns followed by the target columns (one float32 column each).

    ``values`` is ``float32 [n_columns, n]``; each row becomes a column without a copy
    where pandas allows it.
    """
    if kept is not None:
        frame = frame.iloc[kept].reset_index(drop=True)
    targets = pd.DataFrame(dict(zip(names, values)), index=frame.index, copy=False)
    return pd.concat([frame, targets], axis=1)
