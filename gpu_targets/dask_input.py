"""The distributed job's input: a Parquet file, directory or glob as a Dask DataFrame.

Two readers give the same partitions' content, pandas frames typed as the single-machine
read types them (:func:`gpu_targets.io.read_transactions`), plus the helper column
``ROW``, the row's global position in the input (files in sorted path order), which
breaks ties in time:

- :func:`read_parquet_frame`: ``dask.dataframe.read_parquet``, one partition per file.
  With ``dataframe.backend: cudf`` (the cuda engine with dask_cudf installed) cuDF
  decodes the files on the GPU and the partitions stay there. Taken when every file has
  the schema of the whole input (no column missing from a file, no type to promote), no
  hive ``key=value`` directory adds columns, no column is dictionary-encoded or a pandas
  index, and each file fits a partition.
- :func:`read_units_frame`: ``dask.dataframe.from_map`` over the job's own pyarrow
  reader, for the rest: files conformed to the unified schema (issue 13's rule: every
  column of any file, nulls where a file lacks it), hive keys typed as the
  single-machine read types them, large files split by row group.

Both run in CPU CI (pandas backend); the cuDF backend changes only the
``dataframe.backend`` value the first one reads under.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from .transactions import DataError

__all__ = ["ROW", "parquet_files", "inspect", "bytes_per_row", "read_parquet_frame", "read_units_frame"]

PathLike = Union[str, os.PathLike]

#: Helper column: the global input row position (ties keep input order); never written.
ROW = "__gpu_targets_row__"
_GLOB_CHARS = frozenset("*?[")

def parquet_files(path: PathLike) -> tuple[list[Path], Optional[Path]]:
    """The data files of a file, directory (sorted, ``.``/``_`` names skipped) or glob, and
    the directory when hive ``key=value`` sub-directories may hold partition columns."""
    text = os.fspath(path)
    p = Path(text)
    if p.is_dir():
        files = sorted(
            f for f in p.rglob("*")
            if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(p).parts)
        )
        if not files:
            raise DataError(f"directory {text!r} holds no Parquet files")
        return files, p
    if p.exists():
        return [p], None
    if _GLOB_CHARS & set(text):
        files = sorted(Path(m) for m in glob.glob(text) if Path(m).is_file())
        if not files:
            raise DataError(f"no file matches the pattern {text!r}")
        return files, None
    raise DataError(f"input file {text!r} not found")


def hive_keys(path: Path, root: Optional[Path]) -> dict[str, str]:
    if root is None:
        return {}
    keys = {}
    for part in path.relative_to(root).parts[:-1]:
        if "=" in part:
            k, v = part.split("=", 1)
            keys[k] = v
    return keys


def inspect(files: list[Path], root: Optional[Path]):
    """Footer check of every file: row groups, rows, one schema. DataError names a bad file.

    Returns ``(infos, schema, uniform)``: ``(path, rows per row group, uncompressed bytes)``
    per file, the input's unified schema (hive keys appended), and whether
    :func:`read_parquet_frame` reads exactly what the single-machine read reads (every
    file holds the unified schema, no hive key, dictionary or pandas index column).
    """
    import pyarrow.parquet as pq

    from .io import unified_schema

    infos, schemas = [], []
    for f in files:
        try:
            meta = pq.read_metadata(f)
            schemas.append(meta.schema.to_arrow_schema())
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"cannot read {str(f)!r} as parquet: {' '.join(str(err).split())}") from None
        groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
        infos.append((f, [g.num_rows for g in groups], sum(g.total_byte_size for g in groups)))
    # the single-machine read's rule: columns of every file, types unified, nulls where missing
    schema = unified_schema(schemas, files)
    if root is not None:
        # partition columns as the single-machine read types them
        from .io import hive_key_schema

        keys = [f for f in hive_key_schema(root, files) if f.name not in schema.names]
        schema = pa.schema(list(schema) + keys)  # keys are appended as plain values
    uniform = (
        all(s.equals(schema) for s in schemas)
        and not any(hive_keys(f, root) for f in files)
        and not any(pa.types.is_dictionary(f.type) for f in schema)
        and not _pandas_index_columns(schemas)
    )
    return infos, schema, uniform


def _pandas_index_columns(schemas: list[pa.Schema]) -> bool:
    """Whether a file stores a pandas index as a column (pandas' metadata names it);
    a RangeIndex is stored as metadata only and reads the same either way."""
    import json

    for s in schemas:
        raw = (s.metadata or {}).get(b"pandas")
        if raw and any(isinstance(c, str) for c in json.loads(raw).get("index_columns", [])):
            return True
    return False


def bytes_per_row(infos, schema: pa.Schema, n_rows: int, sample_rows: int = 10_000) -> float:
    """In-memory bytes per input row, the row-position column included.

    The largest of: Parquet's uncompressed size per row, the fixed-width columns at full
    width, and the Arrow size of the first rows of the first non-empty file (columns
    stored as dictionaries or runs decode to far more than their Parquet size).
    """
    import pyarrow.parquet as pq

    fixed = sum(f.type.bit_width // 8 for f in schema if pa.types.is_primitive(f.type) and f.type.bit_width >= 8)
    width = max(sum(size for _, _, size in infos) / n_rows, fixed)
    path = next(path for path, groups, _ in infos if sum(groups) > 0)
    try:
        batch = next(pq.ParquetFile(path).iter_batches(batch_size=sample_rows))
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {str(path)!r} as parquet: {' '.join(str(err).split())}") from None
    return max(width, batch.nbytes / batch.num_rows) + 8


def _decoded(field: pa.Field) -> pa.Field:
    """A dictionary field as its value type (hive keys are appended decoded)."""
    return field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field


def read_unit(unit, schema: pa.Schema) -> pd.DataFrame:
    """Read one partition: a list of ``(path, row_groups or None, first_row, hive_keys)``,
    each file's table conformed to the input's unified ``schema``."""
    import pyarrow.parquet as pq

    from .io import _to_pandas, conform

    frames = []
    for path, row_groups, first_row, keys in unit:
        try:
            pf = pq.ParquetFile(path)
            table = pf.read() if row_groups is None else pf.read_row_groups(row_groups)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"cannot read {str(path)!r} as parquet: {' '.join(str(err).split())}") from None
        for name, value in keys.items():
            if name in table.column_names:  # the file's own column wins, as in the single-machine read
                continue
            field = schema.field(name)
            typ = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
            table = table.append_column(name, pa.array([value] * table.num_rows).cast(typ))
        frame = _to_pandas(conform(table, schema), nullable_integers=True)
        frame[ROW] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
        frames.append(frame)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def units(infos, root, partition_rows: int, split_files: bool) -> list[list]:
    """Group files (or their row groups when ``split_files``) into read units of about
    ``partition_rows`` rows, in input order, each piece carrying its first global row."""
    pieces, row = [], 0
    for path, groups, _ in infos:
        keys = hive_keys(path, root)
        n = sum(groups)
        if not split_files or n <= partition_rows or len(groups) <= 1:
            pieces.append((n, (path, None, row, keys)))
        else:
            first = row
            for i, g in enumerate(groups):
                pieces.append((g, (path, [i], first, keys)))
                first += g
        row += n
    units, current, size = [], [], 0
    for n, piece in pieces:
        if current and size + n > partition_rows:
            units.append(current)
            current, size = [], 0
        current.append(piece)
        size += n
    if current:
        units.append(current)
    return units




def read_units_frame(units: list, schema: pa.Schema, meta: pd.DataFrame):
    """The input as ``dd.from_map`` over :func:`read_unit`: one partition per read unit
    (see :func:`units`), pandas frames with ``ROW``."""
    import dask.dataframe as dd

    return dd.from_map(read_unit, units, schema=schema, meta=meta, enforce_metadata=False)


def read_parquet_frame(infos, meta: pd.DataFrame, *, on_gpu: bool = False):
    """The input as ``dask.dataframe.read_parquet``, one partition per file, with ``ROW``.

    Parameters
    ----------
    infos : list of (Path, list of int, int)
        :func:`inspect`'s files in the input's order (sorted paths), rows per row group.
    meta : pandas.DataFrame
        The empty frame of the single-machine read's dtypes, ``ROW`` included (nullable
        integers, no string conversion).
    on_gpu : bool
        Read under ``dataframe.backend: cudf`` (dask_cudf): cuDF partitions decoded on
        the GPU. Its ``blocksize=None`` keeps one partition per file there too.

    Returns
    -------
    dask.dataframe.DataFrame or None
        None when Dask plans another number of partitions than files (a Dask version
        that fuses or splits them anyway); the caller then reads with
        :func:`read_units_frame`.

    Notes
    -----
    Dask orders the files by ``dask.utils.natural_sort_key`` (``part2`` before
    ``part10``), the input by plain sorted paths; each partition's first global row is
    taken from its file's place in the input order, and a partition whose row count is
    not its file's raises a DataError (never a silently wrong tie order).
    """
    import dask
    import dask.dataframe as dd
    from dask.utils import natural_sort_key

    from .io import _NULLABLE_INTEGERS

    paths = [str(path) for path, _, _ in infos]
    firsts = np.concatenate([[0], np.cumsum([sum(groups) for _, groups, _ in infos])])
    order = sorted(range(len(paths)), key=lambda i: natural_sort_key(paths[i]))
    pieces = [(paths[i], int(firsts[i]), int(firsts[i + 1] - firsts[i])) for i in order]
    settings = {
        # Dask's pandas backend fuses small files into one partition unless told not to
        "dataframe.parquet.minimum-partition-size": 0,
        "dataframe.backend": "cudf" if on_gpu else "pandas",
    }
    with dask.config.set(settings):
        frame = dd.read_parquet(
            paths, index=False, blocksize=None, split_row_groups=False, calculate_divisions=False,
            arrow_to_pandas={"types_mapper": _NULLABLE_INTEGERS.get, "date_as_object": False},
        )
    if frame.npartitions != len(pieces):
        return None
    return frame.map_partitions(_with_row_positions, pieces, meta=meta, enforce_metadata=False)


def _with_row_positions(part, pieces, partition_info=None):
    """``part`` (pandas or cuDF, one file) with ``ROW``: its file's first global row on."""
    if partition_info is None:  # Dask probing the function on an empty frame
        path, first, rows = "", 0, len(part)
    else:
        path, first, rows = pieces[partition_info["number"]]
    if len(part) != rows:
        raise DataError(f"reading {path!r}: {len(part)} rows in its partition, {rows} in the file")
    # pandas and cuDF both take a range (cuDF builds the sequence on the device)
    return part.assign(**{ROW: range(first, first + rows)})
