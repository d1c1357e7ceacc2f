"""The public entry point: :func:`generate`."""

from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Union

import numpy as np
import pandas as pd

from . import engines
from .formats import target_columns, to_roles
from .kernel_cache import announce_compile  # the CLI and users set the compile-line callback here
from .spec import Config, load_config
from .transactions import extract

__all__ = ["generate", "generate_table", "compute_targets", "announce_compile"]

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
    values, kept, cfg, _ = _compute(transactions, config, backend, progress)
    return values, kept, cfg


def _compute(transactions, config, backend, progress):
    """:func:`compute_targets` plus the columns the format's adapter adds to the output
    (:func:`gpu_targets.formats.added_columns`, over every input row)."""
    from .formats import added_columns

    cfg = load_config(config)
    roles, role_cfg = to_roles(_plain_role_columns(transactions, cfg), cfg)
    tx = extract(roles, role_cfg)
    check_time_range(tx, cfg, role_cfg.columns.time)
    if tx.kept_rows is not None:
        log.warning("on_invalid: drop dropped %d rows with a null user or time", len(roles) - len(tx))
    engine = engines.get(engines.resolve(backend))
    # a first run's compile line comes from the engine (kernel_cache.announce), after these checks
    return engine.compute(tx, cfg, progress=progress), tx.kept_rows, cfg, added_columns(roles, cfg)


def _plain_role_columns(frame, cfg: Config):
    """The frame with its role columns held as Arrow (``pd.ArrowDtype``: timestamps,
    dictionaries, ``int64[pyarrow]``...) converted to NumPy-backed pandas columns, the
    way a Parquet read converts them (dictionaries decoded, integers with nulls as
    nullable integers); other columns are not touched (the caller attaches the targets
    to its own frame)."""
    from .formats import source_columns

    if not isinstance(frame, pd.DataFrame):
        return frame
    arrow = [c for c in source_columns(cfg) if c in frame.columns and isinstance(frame[c].dtype, pd.ArrowDtype)]
    if not arrow:
        return frame
    import pyarrow as pa

    from .io import _to_pandas

    plain = _to_pandas(pa.table({c: pa.array(frame[c].array) for c in arrow}), exact_integers=True)
    plain.index = frame.index
    out = frame.copy(deep=False)
    for c in arrow:
        out[c] = plain[c]
    return out


def check_time_range(tx, config: Config, column: str) -> None:
    """Refuse duration windows whose edges ``t - D`` (trailing) or ``t + D`` (forward)
    would leave int64 nanoseconds. (Times outside 1678-01-01 .. 2261-12-31 are refused by
    :func:`gpu_targets.transactions.extract` itself, in its one pass over the times.)

    Raises
    ------
    DataError
        Naming the column, the time and the target.
    """
    if tx.time_bounds is not None:
        lo, hi = (int(b) * tx.time_factor for b in tx.time_bounds)
        check_window_edges(lo, hi, config, column)


def check_window_edges(lo: int, hi: int, config: Config, column: str) -> None:
    """:func:`check_time_range` for the first and last time (UTC ns) of the data."""
    from .transactions import DataError

    int64 = np.iinfo(np.int64)
    for target in config.aggregated:
        w = target.window
        if w.duration is None:
            continue
        d = w.duration_ns + w.offset_ns
        if (w.mode == "trailing" and lo - d < int64.min) or (w.mode == "forward" and hi + d > int64.max):
            when = np.datetime64(lo if w.mode == "trailing" else hi, "ns")
            raise DataError(f"column {column!r} (time): the {w.duration} {w.mode} window of target {target.name!r} "
                            f"from {when} leaves the int64 nanosecond range; use a shorter window")


def generate(
    transactions,
    config: Union[Config, dict, str, os.PathLike],
    *,
    backend: str = "auto",
    progress: Optional[Callable[[int], None]] = None,
):
    """Compute synthetic targets and append them to the transactions.

    Parameters
    ----------
    transactions : DataFrame or path
        One row per transaction with the role columns of SPEC.md section 1 (names from
        ``config.columns``, or a real schema chosen by ``config.format``): a pandas
        DataFrame (NumPy or Arrow dtypes: ``pd.ArrowDtype`` timestamps, dictionaries), a
        pyarrow Table, a Polars DataFrame or LazyFrame, a cuDF DataFrame (computed on
        the GPU); or a path, read with
        :func:`gpu_targets.io.read_transactions` (Parquet file/directory/glob, CSV).
    config : Config, dict, or path/YAML string
        The targets (SPEC.md section 4); validated before any data is read.
    backend : {"auto", "reference", "cpu", "cuda"}
        Engine from :mod:`gpu_targets.engines`; ``auto`` picks the fastest usable one.
    progress : callable(int), optional
        Called with the number of transactions finished, batch by batch.

    Returns
    -------
    DataFrame of the kind given (pandas for a path; Polars in, Polars out; a LazyFrame for a LazyFrame)
        The input's columns followed by one ``float32`` column per target output
        (``topk``: ``name_1..name_k``), in the input's row order (rows dropped by
        ``on_invalid: drop`` are left out). Frames other than pandas and cuDF go
        through Arrow: their columns come back with their Arrow types, targets that
        are NaN (empty windows with ``fill: .nan``) as nulls.

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
    if type(transactions).__module__.split(".")[0] == "cudf":
        return _generate_on_device(transactions, cfg, backend)
    if isinstance(transactions, (str, os.PathLike)):
        from .io import read_transactions

        transactions = read_transactions(transactions)
    if not isinstance(transactions, pd.DataFrame):
        return _generate_other_frame(transactions, cfg, backend, progress)
    values, kept, cfg, added = _compute(transactions, cfg, backend, progress)
    return attach_targets(transactions, values, cfg.output_columns, kept, added)


def _generate_other_frame(frame, cfg: Config, backend: str, progress):
    """A pyarrow Table, or a Polars DataFrame or LazyFrame: through Arrow
    (:func:`generate_table`, every column carried unchanged) and back to the same kind,
    with narwhals (a LazyFrame is collected and returned lazy). Other libraries' frames
    (Dask, DuckDB...) and Python-object columns are refused with a DataError rather than
    returned as another kind or changed."""
    import pyarrow as pa

    from .transactions import DataError

    if isinstance(frame, pa.Table):
        return generate_table(frame, cfg, backend=backend, progress=progress)
    import narwhals as nw

    try:
        native = nw.from_native(frame)
    except TypeError:
        raise DataError(f"expected transactions as a DataFrame (pandas, Polars, pyarrow, cuDF) or a path, "
                        f"got {type(frame).__name__}") from None
    kind = native.implementation
    if kind is not nw.Implementation.POLARS:  # pandas, cuDF and pyarrow are handled above
        hint = "; for Dask use gpu_targets.distributed" if kind is nw.Implementation.DASK else ""
        raise DataError(f"generate() takes pandas, Polars, pyarrow or cuDF frames, not {type(frame).__name__} "
                        f"({kind.name.lower()}){hint}; convert it (e.g. to Arrow) first")
    lazy = isinstance(native, nw.LazyFrame)
    eager = native.collect() if lazy else native
    objects = [name for name, dtype in eager.schema.items() if dtype == nw.Object]
    if objects:  # Arrow cannot hold Python objects: they would not come back unchanged
        raise DataError(f"column {objects[0]!r} holds Python objects, which cannot pass through Arrow unchanged; "
                        "drop or convert it first")
    out = generate_table(eager.to_arrow(), cfg, backend=backend, progress=progress)
    result = nw.from_arrow(out, backend=kind)
    return (result.lazy(backend=kind) if lazy else result).to_native()


def generate_table(table, config, *, backend: str = "auto", progress=None):
    """Targets appended to an Arrow table; every input column comes back unchanged.

    Only the columns the role columns are built from (:func:`gpu_targets.formats.source_columns`)
    and those ``where:``/``value:`` read are converted to pandas for the engines, integers holding nulls as pandas' nullable
    integers (user ids above 2^53 stay exact); the output is the input table itself (its
    kept rows under ``on_invalid: drop``) with one ``float32`` column per target
    appended, so every other column keeps its Arrow type and values (dates, decimals,
    lists, maps, dictionaries...). The CLI's ``generate`` runs this.

    Parameters
    ----------
    table : pyarrow.Table
    config, backend, progress
        As :func:`generate`.

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    ConfigError, DataError
        As :func:`generate`; a target name that is already an input column.
    """
    import pyarrow as pa

    from .formats import source_columns
    from .io import _to_pandas
    from .transactions import DataError

    cfg = load_config(config)
    clash = [c for c in cfg.output_columns if c in table.column_names]
    if clash:
        raise DataError(f"target column {clash[0]!r} already exists in the input; rename the target")
    missing = [c for c in source_columns(cfg) if c not in table.column_names]
    if missing:  # named against the input's own columns, not the selected ones
        from .formats import missing_column

        raise missing_column(missing[0], table.column_names, fmt=cfg.format)
    # [v2] the columns where:/value: read come along (a missing one: extract names its target)
    read = source_columns(cfg)
    read += [c for c in target_columns(cfg) if c in table.column_names and c not in read]
    roles = _to_pandas(table.select(read), exact_integers=True)
    values, kept, cfg, added = _compute(roles, cfg, backend, progress)
    if kept is not None:
        table = table.take(pa.array(kept))
    from .formats import added_fields

    for name, typ in added_fields(cfg):
        column = added[name] if kept is None else added[name].iloc[kept]
        table = table.append_column(pa.field(name, typ), pa.array(column, type=typ, from_pandas=True))
    for name, column in zip(cfg.output_columns, values):
        # NaN (an empty window's default fill) is written as null, as the pandas path writes it
        table = table.append_column(pa.field(name, pa.float32()), pa.array(column, from_pandas=True))
    return table


def attach_targets(frame: pd.DataFrame, values: np.ndarray, names: list[str], kept=None,
                   added: Optional[dict] = None) -> pd.DataFrame:
    """The frame's columns, the columns the format adds (``added``: name -> values over
    every input row), then the target columns (one float32 column each).

    ``values`` is ``float32 [n_columns, n]``; each row becomes a column without a copy
    where pandas allows it.
    """
    extra = pd.DataFrame({k: np.asarray(v) for k, v in (added or {}).items()}, index=frame.index)
    if kept is not None:
        frame = frame.iloc[kept].reset_index(drop=True)
        extra = extra.iloc[kept].reset_index(drop=True)
    targets = pd.DataFrame(dict(zip(names, values)), index=frame.index, copy=False)
    return pd.concat([frame, extra, targets], axis=1) if added else pd.concat([frame, targets], axis=1)


_TIME_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "D": 86_400_000_000_000}


def _device_values(series, dtype, na_value):
    """A column's values as a device array of ``dtype``, nulls replaced by ``na_value``.

    cuDF: ``Series.to_cupy(dtype, na_value=...)`` (cuDF keeps NaN and null apart, and
    ``.values`` raises on a column holding nulls). pandas (standing in for cuDF under the
    CUDA simulator, where NumPy is the device namespace): ``to_numpy``, the same call.
    """
    to_device = getattr(series, "to_cupy", None) or series.to_numpy
    return to_device(dtype=dtype, na_value=na_value)


def _generate_on_device(frame, cfg: Config, backend: str = "auto"):
    """cuDF in, cuDF out: the role columns go to the cuda engine as device arrays and the
    targets come back as device columns (no host round trip of the data).

    Written against the API cuDF and pandas share: on a GPU the frame is a
    ``cudf.DataFrame`` and the arrays CuPy's; under the CUDA simulator a pandas frame
    runs the same lines with NumPy (tests/test_cuda_sim.py), so they run in CPU CI.

    Raises
    ------
    ValueError
        A backend other than ``cuda``/``auto``.
    DataError
        ``format`` other than generic, a missing role column, a target name already in
        the frame, null users/times under ``on_invalid: error``, a time column that is
        neither datetime64 nor integers with ``time_unit``, a user column that is neither
        integers nor strings/categories.
    """
    from .transactions import DataError, check_time_span

    if backend not in ("auto", "cuda"):
        raise ValueError(f"a cudf.DataFrame needs backend 'cuda' (or 'auto'), not {backend!r}")
    if cfg.format != "generic":
        raise DataError(f"format {cfg.format} needs a pandas frame: pass frame.to_pandas()")
    cols = cfg.columns
    users = cols.user_columns  # one, or the parts of a composite user
    for c in (*users, cols.time, cols.amount, cols.mcc):
        if c not in frame.columns:
            from .formats import missing_column

            raise missing_column(c, frame.columns)
    clash = [c for c in cfg.output_columns if c in frame.columns]
    if clash:
        raise DataError(f"target column {clash[0]!r} already exists in the input; rename the target")
    for c in (*users, cols.time):
        n_null = int(frame[c].isnull().sum())
        if n_null and cfg.on_invalid == "error":
            raise DataError(f"column {c!r} has {n_null} null values; set on_invalid: drop to drop them")
    if cfg.on_invalid == "drop":
        frame = frame.dropna(subset=[*users, cols.time]).reset_index(drop=True)
    engine = engines.get("cuda")
    xp = engine.xp

    if len(users) > 1:  # a composite user: one code per distinct tuple (cuDF and pandas: GroupBy.ngroup)
        user_values = _device_values(frame.groupby(users, sort=True, dropna=True, observed=True).ngroup(), "int64", 0)
    elif (user := frame[cols.user]).dtype.kind in "iu":
        user_values = _device_values(user, "int64", 0)
    elif user.dtype.kind in "OU" or str(user.dtype) in ("category", "string", "str"):
        user_values = xp.asarray(user.factorize()[0])  # codes: CuPy array (cuDF), NumPy (pandas)
    else:
        raise DataError(f"column {cols.user!r} (user) has dtype {user.dtype}; expected integers or strings")
    time = frame[cols.time]
    if getattr(time.dtype, "tz", None) is not None:  # datetime64[ns, tz]: the naive UTC instants
        time = time.dt.tz_convert(None)
    if time.dtype.kind == "M":
        unit = np.datetime_data(time.dtype)[0]
        factor = _TIME_UNIT_NS[unit]
        time_values = _device_values(time.astype("int64"), "int64", 0)
    elif time.dtype.kind in "iu" and cfg.time_unit is not None:
        factor = _TIME_UNIT_NS[cfg.time_unit]
        time_values = _device_values(time, "int64", 0)
    else:
        raise DataError(f"column {cols.time!r} (time) must be datetime64 or integers with time_unit")
    # float64 first (nulls kept): cuDF's to_cupy fills nulls in the column's own dtype,
    # which refuses NaN (or -1) in an integer (unsigned) column; out-of-range MCCs stay so
    amount = _device_values(frame[cols.amount].astype("float64"), "float64", np.nan)
    mcc = _device_values(frame[cols.mcc].astype("float64"), "float64", -1.0)
    mcc = xp.where((mcc >= 0) & (mcc <= 9999), mcc, -1).astype(xp.int32)
    if len(frame):  # the engines' time range (two scalars read back)
        bounds = getattr(xp, "asnumpy", np.asarray)(xp.stack([time_values.min(), time_values.max()]))
        lo, hi = int(bounds[0]) * factor, int(bounds[1]) * factor
        check_time_span(lo, hi, cols.time)
        check_window_edges(lo, hi, cfg, cols.time)
    columns = None
    read = target_columns(cfg)
    if read:  # [v2] the where:/value: columns, through the host once (narwhals: cuDF or pandas alike)
        import narwhals as nw

        from .where import read_column_inputs

        # a column missing from the frame: read_column_inputs names the target and the column
        host = nw.from_native(frame[[c for c in read if c in frame.columns]], eager_only=True).to_pandas()
        columns = read_column_inputs(host, cfg)
    values = engine.compute_device(user_values, time_values, amount, mcc, cfg, time_factor=factor, columns=columns)
    return frame.assign(**{name: values[c] for c, name in enumerate(cfg.output_columns)})
