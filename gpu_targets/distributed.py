"""The distributed job: targets for a Parquet dataset on a Dask cluster (CPU or dask-cuda).

:func:`generate` reads a Parquet file, directory or glob as a Dask DataFrame
(``dask.dataframe.read_parquet`` where it reads what the single-machine read reads, cuDF
partitions on the GPU with dask_cudf; see :mod:`gpu_targets.dask_input`), brings
every user's transactions into one partition (a shuffle on the user column, skipped for
input declared partitioned by user), computes the targets of each partition with an
engine from :mod:`gpu_targets.engines` (through :func:`gpu_targets.api.generate`), and
writes a directory of Parquet files that appears complete or not at all.

Output order (SPEC.md section 3 allows it for a distributed run): the rows of a user are
together, ordered by ``(time, input row position)``; which partition (file) holds which
user, and the order of users, is unspecified. Sort by the user and time columns to
compare with a single-machine run.

``dask`` and ``distributed`` are imported here only (``pip install 'gpu_targets[dask]'``);
``import gpu_targets`` works without them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from . import engines
from . import dask_input
from .dask_memory import (  # noqa: F401 (re-exported: the job's public sizes)
    BYTES_PER_ROW, DEVICE_PARTITION_COPIES, DEVICE_SCRATCH_ROW_BYTES, FALLBACK_PARTITION_ROWS, PARTITION_COPIES,
    WORKER_BASELINE, _release_memory_plugin, default_partition_rows,
)
from .dask_input import ROW
from .outputs import OUTPUT_MARKER
from .spec import Config, load_config
from .transactions import DataError

__all__ = ["generate", "default_partition_rows"]

log = logging.getLogger("gpu_targets")

PathLike = Union[str, os.PathLike]

#: Seconds a worker may stay paused (above its memory pause threshold) before the job
#: fails instead of waiting for memory that will not come back.
PAUSED_TIMEOUT = 120.0


def _require_dask():
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise ImportError("the distributed job needs Dask: pip install 'gpu_targets[dask]'") from None


def user_column(config: Config) -> Union[str, list[str]]:
    """Name of the user column in the input: the format's own one, else ``config.columns.user``
    (a list for a composite user)."""
    from .formats import user_column as format_user_column

    return format_user_column(config)


def _names(user: Union[str, list[str]]) -> list[str]:
    return list(user) if isinstance(user, list) else [user]


# --------------------------------------------------------------------------- compute
def _targets_of_partition(part, config: Config, backend: str, meta: pd.DataFrame):
    """Targets of whole users: sort by (user, time, input row), compute, drop the helper column.

    ``part`` is a pandas or a cuDF DataFrame (``dataframe.backend: cudf``). With the
    generic schema and a datetime or integer time column the rows are sorted with
    ``sort_values`` on the partition itself, the API both share (so the lines a cuDF
    partition takes run in CPU CI on pandas partitions); other schemas (string times,
    the ``sdsj2016``/``tabformer`` adapters) are pandas-only and sorted by their role
    columns.
    """
    from .api import generate as generate_targets

    if len(part) == 0:
        return meta
    cols = config.columns
    if config.format == "generic" and config.on_invalid == "error":
        # name the *input* rows (the global positions), not the partition's
        for c in (*cols.user_columns, cols.time):
            null = part[c].isna() if c in part.columns else None
            if null is not None and bool(null.any()):
                rows = sorted(int(r) for r in part[ROW][null].to_numpy())[:5]
                raise DataError(f"column {c!r} has {int(null.sum())} null values in this partition (input rows: "
                                f"{', '.join(map(str, rows))}); set on_invalid: drop to drop them")
    if config.format == "generic" and part[cols.time].dtype.kind in "Miu":
        part = part.sort_values([*cols.user_columns, cols.time, ROW]).reset_index(drop=True)
    else:
        from .formats import to_roles

        roles, role_cfg = to_roles(part.drop(columns=[ROW]), config)
        key = pd.DataFrame(
            {"u": roles[role_cfg.columns.user].to_numpy(), "t": roles[role_cfg.columns.time].to_numpy(),
             "r": part[ROW].to_numpy()}
        )
        order = key.sort_values(["u", "t", "r"], kind="stable").index.to_numpy()
        part = part.iloc[order].reset_index(drop=True)
    return generate_targets(part.drop(columns=[ROW]), config, backend=backend)


def _write_part(frame: pd.DataFrame, directory: Path, schema: Optional[pa.Schema] = None,
                partition_info=None) -> pd.Series:
    """Write one partition as ``part.NNNNN.parquet`` (as :func:`gpu_targets.io.write_parquet`
    does: zstd, no dictionary for float columns), atomically: a rerun after a lost worker
    replaces the file. With ``schema`` (the input's unified schema plus the float32
    targets) every column is written back with the input's own Arrow type (partitions
    hold integers as pandas' nullable integers, so they stay exact). Returns its row count."""
    from .io import write_parquet

    number = partition_info["number"] if partition_info is not None else 0
    path = directory / f"part.{number:05d}.parquet"
    if type(frame).__module__.split(".")[0] == "cudf":  # gpu: cuDF writes from the device
        tmp = path.with_name(f".{path.name}.tmp")
        frame.to_parquet(tmp, compression="zstd", index=False)
        os.replace(tmp, path)
        return pd.Series([len(frame)], dtype=np.int64)
    if schema is None:
        write_parquet(frame, path)
    else:  # the input's own Arrow types (dates, decimals, exact integers...), then the targets
        from .io import write_table

        # the input's schema metadata, not pandas' description of this partition's frame
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        write_table(table.replace_schema_metadata(schema.metadata), path)
    return pd.Series([len(frame)], dtype=np.int64)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; an existing ``final`` directory (checked again: still an
    earlier output) is removed only after, and put back if the move fails."""
    from .io import check_output_path

    (tmp / OUTPUT_MARKER).write_text("written by gpu-targets generate --scheduler; replaced by the next run\n")
    old = None
    if final.exists():
        check_output_path(final, directory=True)  # files added meanwhile are never deleted
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _warm_up(client, config: Config, backend: str):
    """Compile the engine's kernels before the job's tasks need them.

    ``cpu``: in this process (the client's); workers of a cluster on this machine
    (``LocalCluster``) share Numba's disk cache and then only load the machine code.
    Compiling inside a worker instead costs LLVM a few hundred MB that the process keeps:
    a small worker then stays above its pause threshold and the job never finishes
    (docs/distributed.md, "Memory"). ``cuda``: on every worker, as a task pinned to it
    (not ``client.run``, which would block the worker's event loop for the compile), since
    the client need not have a GPU; each worker compiles (or loads from the disk cache)
    once per process, before its first partition. Without a client, in this process.

    Returns ``{worker address: free device bytes or None}`` for the workers that warmed
    up (``cuda`` with a client), else None.
    """
    if backend == "cuda" and client is not None:
        workers = list(client.scheduler_info(n_workers=-1).get("workers", {}))
        futures = [client.submit(_warm_up_kernels, config, backend, workers=[w], allow_other_workers=False,
                                 pure=False) for w in workers]
        return dict(zip(workers, client.gather(futures)))
    if backend in ("cpu", "cuda"):
        _warm_up_kernels(config, backend)
    return None


def _warm_up_kernels(config: Config, backend: str):
    """Compile (or load from Numba's disk cache) the engine's kernels in this process:
    the config's targets and time zone on two synthetic users. Returns the device memory
    the cuda engine's allocator can still hand out here (None for cpu, or under the
    simulator)."""
    from .api import generate as generate_targets
    from .datasets import synthetic_transactions
    from .spec import Columns

    # the kernels' signatures do not depend on the config's values: its targets and time
    # zone on two synthetic users, in the generic schema
    small = config.model_copy(update={"format": "generic", "columns": Columns(), "time_unit": None,
                                      "on_invalid": "error"})
    frame = synthetic_transactions(2, 64, seed=0)
    from .formats import target_columns

    for c in target_columns(config):  # [v2] where:/value: columns, as zeros (the kernels do not read their values' types)
        if c not in frame.columns:
            frame[c] = 0.0
    generate_targets(frame, small, backend=backend)
    if backend == "cuda":
        return engines.get("cuda")._free_device_bytes()
    return None


def _result_unless_paused(client, future, paused_timeout: float):
    """``future.result()``, but a job one of whose workers stays paused (its memory above
    the pause threshold) for ``paused_timeout`` seconds is cancelled with a MemoryError:
    the other workers then wait on it for ever (a shuffle needs every worker)."""
    from distributed import TimeoutError as DaskTimeoutError

    import time as _time

    paused_since: dict = {}
    while True:
        try:
            return future.result(timeout=5)
        except (DaskTimeoutError, TimeoutError):
            pass
        now = _time.monotonic()
        workers = client.scheduler_info().get("workers", {})
        paused_since = {a: paused_since.get(a, now) for a, w in workers.items() if w.get("status") == "paused"}
        stuck = [a for a, t in paused_since.items() if now - t > paused_timeout]
        if stuck:
            client.cancel(future)
            w = workers[stuck[0]]
            raise MemoryError(
                f"Dask worker {stuck[0]} has been paused above its memory pause threshold for {paused_timeout:.0f} s "
                f"(memory_limit {w['memory_limit'] / 2**20:,.0f} MiB, process memory "
                f"{w.get('metrics', {}).get('memory', 0) / 2**20:,.0f} MiB): give the workers more memory or pass a "
                "smaller partition_rows"
            )


def _resolve_on_workers(client, backend: str) -> str:
    """The engine the partitions will run, decided where they run: ``auto`` and ``cuda``
    depend on the workers' GPUs, not the client's (a laptop may drive GPU workers).
    Raises the worker's ImportError when the engine is unusable there."""
    if client is None or backend in ("reference", "cpu"):
        return engines.resolve(backend)
    return client.submit(engines.resolve, backend, pure=False).result()


def generate(
    input: PathLike,
    config: Union[Config, dict, str, os.PathLike],
    output: PathLike,
    *,
    client=None,
    backend: str = "auto",
    partitioned_by_user: bool = False,
    partition_rows: Optional[int] = None,
    progress: bool = False,
    paused_timeout: float = PAUSED_TIMEOUT,
) -> Path:
    """Compute the targets of a Parquet dataset on a Dask cluster and write them as Parquet.

    Parameters
    ----------
    input : str or path-like
        A Parquet file, a directory of Parquet files (sorted path order, names starting
        with ``.`` or ``_`` skipped, ``key=value`` sub-directories read as columns) or a
        glob pattern; the same inputs as :func:`gpu_targets.io.read_transactions`
        (except CSV). The input row position (in that order) breaks ties in time.
    config : Config, dict, or path/YAML string
        The targets (SPEC.md section 4); validated before any data is read. The user
        column is ``config.columns.user`` (``customer_id`` for ``format: sdsj2016``,
        ``User`` for ``tabformer``).
    output : str or path-like
        Directory to write (``part.NNNNN.parquet`` files, one per partition, written as
        :func:`gpu_targets.io.write_parquet` writes): the input's columns, then one
        ``float32`` column per target. Written to ``.<name>.tmp-<pid>`` beside it and
        renamed when complete; an existing directory is replaced only then.
    client : distributed.Client, optional
        The cluster; default: the current client (``distributed.default_client()``), or
        Dask's local scheduler when there is none.
    backend : {"auto", "reference", "cpu", "cuda"}
        Engine run on each partition; ``auto`` and ``cuda`` are resolved on a worker, so
        a client without a GPU can drive GPU workers (``auto``: ``cuda`` where the worker
        has a usable GPU and cuDF, else ``cpu``). With ``cuda`` and dask_cudf
        installed the partitions are read as cuDF frames.
    partitioned_by_user : bool, default False
        Declare that no user's transactions are split across input files, so the shuffle
        is skipped: each file (or a run of consecutive whole files) becomes a partition.
        True for input written with ``to_parquet(partition_on=[user])`` (one directory
        per user) or one file per group of whole users. A wrong declaration gives wrong
        targets for the split users.
    partition_rows : int, optional
        Rows per partition; default :func:`default_partition_rows`: what keeps the
        smallest worker below its pause threshold (80% of its memory limit), the width
        of a row measured on the first rows of the input. A read partition never splits
        a Parquet row group.
    progress : bool, default False
        Show ``distributed.progress`` bars (on a terminal or in a notebook).
    paused_timeout : float, default 120
        Seconds a worker may stay paused (its memory above Dask's pause threshold,
        ``distributed.worker.memory.pause``) before the job is cancelled with a
        MemoryError; a paused worker whose memory cannot come back otherwise holds up
        the whole job for ever.

    Returns
    -------
    pathlib.Path
        ``output``. Rows are grouped by user, each user's rows ordered by
        ``(time, input row position)`` (SPEC.md section 3); the users' order and their
        files are unspecified.

    Raises
    ------
    ConfigError
        Invalid config (before any data is read).
    DataError
        Missing input, a file that is not readable Parquet (named; footers are checked
        before the job starts), columns whose types do not unify across files, or what the engine raises (missing
        column, null user/time).
    FileNotFoundError
        The directory of ``output`` does not exist.
    FileExistsError
        ``output`` is, contains or lies inside the input, or is an existing directory
        holding files other than an earlier output's ``part.NNNNN.parquet``.
    MemoryError
        A worker stayed paused for ``paused_timeout`` seconds.
    ImportError
        Dask is not installed (``pip install 'gpu_targets[dask]'``).

    Notes
    -----
    A worker lost mid-job (killed, out of memory) has its tasks recomputed by the
    scheduler; the output still has every row exactly once. If the job fails, the
    temporary directory is removed and ``output`` is left as it was.

    For the cpu engine the kernels are compiled (or loaded from Numba's cache) in this
    process first, so that workers on this machine find them in the shared cache instead
    of compiling inside their memory limit.

    With a client, a worker plugin makes pyarrow on the workers return freed memory to
    the OS at once (jemalloc without decay instead of the default mimalloc, unless the
    workers run with ``MIMALLOC_PURGE_DELAY=0``); it stays for later jobs on that
    cluster. docs/distributed.md ("Memory") gives the measurements.

    Examples
    --------
    >>> import tempfile, os, pandas as pd
    >>> from gpu_targets import distributed
    >>> d = tempfile.mkdtemp()
    >>> pd.DataFrame({"user_id": [1, 2, 1], "timestamp": [0, 0, 1], "amount": [10.0, 1.0, 5.0],
    ...               "mcc": [5411] * 3}).to_parquet(os.path.join(d, "tx.parquet"))
    >>> cfg = {"time_unit": "D", "targets": [{"name": "s", "agg": "sum",
    ...        "window": {"period": "month", "mode": "expanding"}}]}
    >>> out = distributed.generate(os.path.join(d, "tx.parquet"), cfg, os.path.join(d, "out"), backend="cpu")
    >>> pd.read_parquet(out).sort_values(["user_id", "timestamp"])["s"].tolist()
    [10.0, 15.0, 1.0]
    """
    _require_dask()
    import dask

    cfg = load_config(config)
    from .io import check_output_path

    # never the input, inside it or around it; an existing directory only if it holds an
    # earlier output alone (nothing the job did not create is ever deleted)
    final = check_output_path(output, [input], directory=True)
    if client is None:
        with contextlib.suppress(ValueError):
            from distributed import default_client

            client = default_client()
    backend_used = _resolve_on_workers(client, backend)

    files, root = dask_input.parquet_files(input)
    infos, schema, uniform = dask_input.inspect(files, root)
    n_rows = sum(sum(groups) for _, groups, _ in infos)
    if n_rows == 0:
        raise DataError(f"the input {os.fspath(input)!r} has no rows")
    row_bytes = dask_input.bytes_per_row(infos, schema, n_rows)
    user = user_column(cfg)
    for name in _names(user):
        if name not in schema.names:
            from .formats import missing_column

            raise missing_column(name, schema.names, "user", fmt=cfg.format)
    warmed = _warm_up(client, cfg, backend_used)  # before any task: compile once, per worker for cuda
    device_free = [b for b in (warmed or {}).values() if b]
    if partition_rows is None:
        partition_rows = default_partition_rows(client, len(cfg.output_columns), row_bytes,
                                                min(device_free) if device_free else None)
    units = dask_input.units(infos, root, partition_rows, split_files=not partitioned_by_user)
    # Dask's own reader (one partition per file) where it reads what the job's reader
    # would and no file needs splitting into row groups
    by_file = uniform and all(piece[1] is None for unit in units for piece in unit)
    n_parts = max(1, math.ceil(n_rows / partition_rows))
    # a read partition holds at least a row group (a file for user-partitioned input)
    if partitioned_by_user:
        piece, piece_rows = "file", max(sum(g) for _, g, _ in infos)
    else:
        piece, piece_rows = "row group", max(max(g, default=0) for _, g, _ in infos)
    if piece_rows > 2 * partition_rows:
        log.warning("distributed: a %s of %d rows is read whole, above the %d rows per partition; "
                    "write smaller ones if the workers run out of memory", piece, piece_rows, partition_rows)
    log.info("distributed: %d rows in %d files, %d read units, %d partitions of <= %d rows, backend %s",
             n_rows, len(files), len(units), n_parts, partition_rows, backend_used)

    from .io import _to_pandas

    in_meta = _to_pandas(schema.empty_table(), nullable_integers=True)
    in_meta[ROW] = np.zeros(0, dtype=np.int64)
    from .formats import added_fields

    added = added_fields(cfg)  # columns the format's adapter adds (sdsj2016: the parsed time)
    out_meta = in_meta.drop(columns=[ROW])
    for name, typ in added:
        out_meta[name] = pa.array([], type=typ).to_pandas()
    for name in cfg.output_columns:
        out_meta[name] = np.zeros(0, dtype=np.float32)

    # keep the dtypes the single-machine read gives (no conversion to string[pyarrow])
    settings = {"dataframe.convert-string": False}
    # partitions on the GPU: cuDF frames that stay there (shuffle, compute, write)
    on_gpu = backend_used == "cuda" and importlib.util.find_spec("dask_cudf") is not None

    read_meta = in_meta
    if on_gpu:  # gpu: the same frames as cuDF; everything below is the same
        import cudf

        read_meta, out_meta = cudf.from_pandas(in_meta), cudf.from_pandas(out_meta)

    future = None
    tmp = (final.parent / f".{final.name}.tmp-{os.getpid()}").resolve()
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with dask.config.set(settings):
            frame = dask_input.read_parquet_frame(infos, read_meta, on_gpu=on_gpu) if by_file else None
            log.info("distributed: read with %s", "dask.dataframe.read_parquet" if frame is not None
                     else "the job's pyarrow reader (dask.dataframe.from_map)")
            if frame is None:
                frame = dask_input.read_units_frame(units, schema, in_meta)
                if on_gpu:  # gpu: Dask's backend-agnostic conversion
                    frame = frame.to_backend("cudf")
            if not partitioned_by_user:
                frame = frame.shuffle(on=user, npartitions=n_parts)
            result = frame.map_partitions(
                _targets_of_partition, cfg, backend_used, out_meta, meta=out_meta, enforce_metadata=False,
            )
            tmp.mkdir()
            out_schema = pa.schema(list(schema) + [pa.field(n, t) for n, t in added]
                                   + [pa.field(n, pa.float32()) for n in cfg.output_columns])
            job = result.map_partitions(_write_part, tmp, out_schema, meta=pd.Series([], dtype=np.int64),
                                        enforce_metadata=False)
            job = job.sum()
            if client is not None:
                client.register_plugin(_release_memory_plugin())
                future = client.compute(job)
                if progress:
                    from distributed import progress as show_progress

                    show_progress(future)
                written = _result_unless_paused(client, future, paused_timeout)
            else:
                (written,) = dask.compute(job)
        log.info("distributed: wrote %d rows to %s", written, final)
        _replace_dir(tmp, final)
    except BaseException:
        if future is not None:  # no task of this job may still write into tmp
            with contextlib.suppress(Exception):
                client.cancel(future)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
