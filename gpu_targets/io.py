"""Transactions in and targets out: Parquet and CSV through pyarrow.

:func:`read_transactions` reads one Parquet file, a directory of Parquet files (a
dataset, ``key=value`` sub-directories read as hive partitions), a glob pattern, or a
CSV file (``.csv``, ``.csv.gz``, ``.csv.bz2``, ``.csv.zst``) into a pandas DataFrame.
:func:`write_parquet` writes a frame so that a reader never sees half a file: to a
temporary name beside the target, then renamed over it.

Every problem with an input (missing file, a pattern that matches nothing, a truncated
or unreadable file, an unknown suffix) raises :class:`~gpu_targets.transactions.DataError`
with one line naming the file.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Optional, Union

import pandas as pd
import pyarrow as pa

from .outputs import check_output_path, replacing
from .transactions import DataError

__all__ = ["check_output_path", "output_format", "read_table", "read_transactions", "replacing", "write_output",
           "write_parquet", "write_table"]

PathLike = Union[str, os.PathLike]

_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_FORMATS = ("parquet", "csv")
_GLOB_CHARS = frozenset("*?[")


def read_transactions(path: PathLike, *, file_format: Optional[str] = None) -> pd.DataFrame:
    """Read a transactions table from Parquet or CSV.

    Parameters
    ----------
    path : str or path-like
        A Parquet file; a directory holding a Parquet dataset (files read in sorted path
        order; names starting with ``.`` or ``_`` are skipped; ``key=value``
        sub-directories become columns); a glob pattern such as ``"data/part-*.parquet"``
        (matches read in sorted order and concatenated); or a CSV file with a header row.
        Several files: every column of any file, types unified (int32 + int64 -> int64,
        int + float -> float64), nulls where a file lacks a column
        (:func:`unified_schema`; the distributed job reads by the same rule).
    file_format : {None, "parquet", "csv"}, default None
        ``None`` chooses by suffix (``.parquet``, ``.pq``, ``.parq``; ``.csv``,
        ``.csv.gz``, ``.csv.bz2``, ``.csv.zst``); a directory is read as Parquet.

    Returns
    -------
    pandas.DataFrame
        One row per stored row, in file order, with plain NumPy dtypes where Arrow allows:
        ``int64``/``int32`` integers (``float64`` where a column holds nulls), ``float64``,
        ``datetime64[unit]`` for timestamps (CSV times such as ``2021-01-01 10:00:00``
        are inferred as timestamps), ``bool``; strings become pandas' string dtype.

    Raises
    ------
    DataError
        The path does not exist, a glob matches no file, a directory holds no data file,
        a suffix is unknown, or a file cannot be parsed (truncated or corrupt Parquet,
        malformed CSV; the message names the offending file).
    ValueError
        ``file_format`` is not one of None, ``"parquet"``, ``"csv"``.

    Examples
    --------
    >>> import tempfile, os, pandas as pd
    >>> d = tempfile.mkdtemp()
    >>> frame = pd.DataFrame({"user_id": [1, 2], "amount": [3.5, -1.0]})
    >>> write_parquet(frame, os.path.join(d, "tx.parquet"))
    >>> read_transactions(os.path.join(d, "tx.parquet"))["amount"].tolist()
    [3.5, -1.0]
    """
    return _to_pandas(read_table(path, file_format=file_format))


def read_table(path: PathLike, *, file_format: Optional[str] = None) -> pa.Table:
    """Read a transactions table as Arrow, every column with its stored type.

    The inputs, order and errors of :func:`read_transactions`, without the conversion to
    pandas: the CLI keeps this table and appends the targets to it, so every non-role
    column is written back with its type and values unchanged.

    Returns
    -------
    pyarrow.Table
    """
    if file_format is not None and file_format not in _FORMATS:
        raise ValueError(f"file_format {file_format!r} is not one of None, 'parquet', 'csv'")
    text = os.fspath(path)
    p = Path(text)
    if p.is_dir():
        if file_format == "csv":
            raise DataError(f"{text!r} is a directory; CSV input must be a single file (or a glob pattern)")
        return _read_parquet_dir(p)
    if p.exists():
        return _read_files([p], file_format)
    if _GLOB_CHARS & set(text):
        matches = sorted(m for m in glob.glob(text) if Path(m).is_file())
        if not matches:
            raise DataError(f"no file matches the pattern {text!r}")
        return _read_files([Path(m) for m in matches], file_format)
    raise DataError(f"input file {text!r} not found")


def _format_of(path: Path, file_format: Optional[str]) -> str:
    if file_format is not None:
        return file_format
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    known = ", ".join(_PARQUET_SUFFIXES + _CSV_SUFFIXES)
    raise DataError(f"cannot tell the format of {str(path)!r} from its suffix (known: {known}); "
                    "rename it with one of those")


def unified_schema(schemas: list[pa.Schema], names: list) -> pa.Schema:
    """The one schema of several input files: every column of any file, in first-seen
    order, each with a type every file's column can be cast to (Arrow's permissive
    promotion: int32 + int64 -> int64, int + float -> float64, null -> anything). A
    column missing from a file is null in that file's rows.

    Raises
    ------
    DataError
        Two files hold a column with types that do not unify; names both files.
    """
    unified = schemas[0]
    for i in range(1, len(schemas)):
        try:
            try:
                unified = pa.unify_schemas([unified, schemas[i]], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. dictionary<string> beside string
                unified = pa.unify_schemas([_plain(unified), _plain(schemas[i])], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            for j in range(i):
                try:
                    pa.unify_schemas([schemas[j], schemas[i]], promote_options="permissive")
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    break
            raise DataError(f"{str(names[i])!r} and {str(names[j])!r} hold columns of types that do not unify: "
                            f"{_one_line(err)}") from None
    return unified


def _plain(schema: pa.Schema) -> pa.Schema:
    """``schema`` with dictionary columns as their value type."""
    return pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema],
                     metadata=schema.metadata)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: cast where the type differs, nulls
    where the table lacks the column (see :func:`unified_schema`)."""
    if table.schema.equals(schema):
        return table
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _read_files(paths: list[Path], file_format: Optional[str]) -> pa.Table:
    tables = [_read_one(p, _format_of(p, file_format)) for p in paths]
    if len(tables) == 1:
        return tables[0]
    schema = unified_schema([t.schema for t in tables], paths)
    conformed = []
    for p, t in zip(paths, tables):
        try:
            conformed.append(conform(t, schema))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise DataError(f"{str(p)!r} has values that do not fit the columns' unified types: {_one_line(err)}") from None
    return pa.concat_tables(conformed)


def _read_one(path: Path, file_format: str) -> pa.Table:
    try:
        if file_format == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {str(path)!r} as {file_format}: {_one_line(err)}") from None


def _dataset_files(directory: Path) -> list[Path]:
    """The data files of a directory: sorted paths, names starting with ``.``/``_`` skipped."""
    return sorted(
        f for f in directory.rglob("*")
        if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(directory).parts)
    )


def hive_key_schema(directory: Path, files: list[Path]) -> pa.Schema:
    """The ``key=value`` sub-directory columns of a dataset, typed as pyarrow's hive
    discovery types them: int32 when every value is an integer, else string."""
    values: dict[str, list[str]] = {}
    for f in files:
        for part in f.relative_to(directory).parts[:-1]:
            if "=" in part:
                k, v = part.split("=", 1)
                values.setdefault(k, []).append(v)

    def is_int(v: str) -> bool:
        try:
            return -(2**31) <= int(v) < 2**31
        except ValueError:
            return False

    return pa.schema([(k, pa.int32() if all(is_int(v) for v in vs) else pa.string()) for k, vs in values.items()])


def _read_parquet_dir(directory: Path) -> pa.Table:
    """A directory of Parquet files (``key=value`` sub-directories as columns), files in
    sorted path order, their schemas unified as for a glob (:func:`unified_schema`)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = _dataset_files(directory)
    if not files:
        raise DataError(f"directory {str(directory)!r} holds no Parquet files")
    schemas = []
    for f in files:
        try:
            schemas.append(pq.read_schema(f))
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"cannot read {str(f)!r} in dataset {str(directory)!r}: {_one_line(err)}") from None
    schema = unified_schema(schemas, files)
    try:
        keys = [f for f in hive_key_schema(directory, files) if f.name not in schema.names]
        dataset = ds.dataset([str(f) for f in files], schema=pa.schema(list(schema) + keys), format="parquet",
                             partitioning=ds.HivePartitioning(pa.schema(keys)) if keys else None,
                             partition_base_dir=str(directory))
        return dataset.to_table()
    except (pa.ArrowException, OSError) as err:
        bad = _find_bad_parquet(directory)
        if bad is not None:
            raise bad from None
        raise DataError(f"cannot read the Parquet dataset {str(directory)!r}: {_one_line(err)}") from None


def _find_bad_parquet(directory: Path) -> Optional[DataError]:
    """The first data file of a directory that cannot be read on its own."""
    import pyarrow.parquet as pq

    for f in _dataset_files(directory):
        try:
            pq.read_table(f)
        except (pa.ArrowException, OSError) as err:
            return DataError(f"cannot read {str(f)!r} in dataset {str(directory)!r}: {_one_line(err)}")
    return None


def _to_pandas(table: pa.Table, *, exact_integers: bool = False, nullable_integers: bool = False) -> pd.DataFrame:
    """Arrow to pandas; dictionary-encoded columns (hive partition keys) are decoded to
    their value type. ``exact_integers``: integer columns holding nulls become pandas'
    nullable integers (``Int64``...) instead of float64, so ids above 2^53 stay exact;
    ``nullable_integers``: every integer column does (one dtype per column whatever a
    piece holds, as a Dask frame's partitions need)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    if nullable_integers:
        return table.to_pandas(date_as_object=False, types_mapper=_NULLABLE_INTEGERS.get)
    nullable = [f.name for f, c in zip(table.schema, table.columns)
                if exact_integers and pa.types.is_integer(f.type) and c.null_count]
    if not nullable:
        return table.to_pandas(date_as_object=False)
    # each column converted once: those with nulls as nullable integers, the rest as usual
    rest = table.drop_columns(nullable).to_pandas(date_as_object=False)
    exact = table.select(nullable).to_pandas(types_mapper=_NULLABLE_INTEGERS.get)
    return pd.concat([rest, exact], axis=1)[table.column_names]


_NULLABLE_INTEGERS = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                      pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                      pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype()}


def write_table(table: pa.Table, path: PathLike) -> None:
    """Write an Arrow table to a Parquet file, all or nothing (as :func:`write_parquet`)."""
    import pyarrow.parquet as pq

    # dictionary encoding pays off for ids and codes, not for continuous float targets
    # (it made writing 2.4x slower and the file larger on seed20 output)
    dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    with replacing(path) as tmp:
        try:
            pq.write_table(table, tmp, compression="zstd", use_dictionary=dictionary)
        except OSError as err:  # a full disk, a quota, an I/O error: name the output
            raise OSError(f"cannot write {os.fspath(path)!r}: {err.strerror or _one_line(err)}") from None


def output_format(path: PathLike) -> str:
    """``"parquet"`` or ``"csv"`` from an output file's suffix (``.parquet``/``.pq``/
    ``.parq``, or none: Parquet; ``.csv``: CSV). DataError for any other suffix, so a file
    is never written in a format its name does not say."""
    name = Path(path).name.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES) or not Path(name).suffix:
        return "parquet"
    raise DataError(f"cannot write {os.fspath(path)!r}: its suffix is neither .parquet (.pq, .parq) nor .csv")


def write_output(table: pa.Table, path: PathLike) -> None:
    """Write ``table`` as Parquet or CSV as :func:`output_format` says, all or nothing.

    CSV: a header line, then one line per row (pyarrow's writer: ISO-8601 times, empty
    fields for nulls, dictionary columns written as their values). Raises DataError for
    a column CSV cannot hold (lists, structs), naming it.
    """
    if output_format(path) == "parquet":
        write_table(table, path)
        return
    import pyarrow.csv as pcsv

    check_csv_writable(table.schema, path)
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    with replacing(path) as tmp:
        try:
            pcsv.write_csv(table, tmp)
        except OSError as err:
            raise OSError(f"cannot write {os.fspath(path)!r}: {err.strerror or _one_line(err)}") from None


def check_csv_writable(schema: pa.Schema, path: PathLike) -> None:
    """DataError naming the first column CSV cannot hold (lists, structs, maps, binary)."""
    for field in schema:
        typ = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if pa.types.is_nested(typ) or pa.types.is_binary(typ) or pa.types.is_large_binary(typ) \
                or pa.types.is_fixed_size_binary(typ):
            raise DataError(f"cannot write {os.fspath(path)!r} as CSV: column {field.name!r} holds {field.type}; "
                            "write .parquet instead")


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def write_parquet(frame: pd.DataFrame, path: PathLike) -> None:
    """Write a frame to a Parquet file, all or nothing.

    Parameters
    ----------
    frame : pandas.DataFrame
        Written column by column with its dtypes (float32 target columns stay float32);
        the index is not written.
    path : str or path-like
        The output file; its directory must exist. An existing file is replaced only
        once the new one is complete (written to ``.<name>.tmp-<pid>``, then
        :func:`os.replace`).

    Raises
    ------
    FileNotFoundError
        The output directory does not exist.
    IsADirectoryError
        ``path`` is a directory.
    pyarrow.ArrowException, OSError
        Conversion or write failures (no temporary file is left behind).
    """
    write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
