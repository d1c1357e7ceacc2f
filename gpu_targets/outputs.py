"""Output paths that lose nothing: an output never overwrites or lies inside an input,
never replaces a directory the job did not write, and appears only complete.

:func:`check_output_path` fails before long work rather than after it;
:func:`replacing` gives a temporary name beside the output and renames it over the
output on success (removes it on failure). Every writer of the package (Parquet and
CSV outputs, the distributed job's part files, ``describe``'s plots) goes through them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from pathlib import Path
from typing import Iterator, Union

__all__ = ["OUTPUT_MARKER", "check_output_path", "is_earlier_output", "replacing"]

PathLike = Union[str, os.PathLike]


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


#: A part file of the distributed job's output directory (five digits: Dask's own
#: ``to_parquet`` writes ``part.0.parquet``, which is not ours).
_PART_FILE = re.compile(r"part\.\d{5}\.parquet")
#: The file every distributed output directory holds, so that only such a directory is
#: ever replaced (a leading ``_``: dataset readers skip it).
OUTPUT_MARKER = "_gpu_targets_output"


def is_earlier_output(directory: Path) -> bool:
    """True when ``directory`` holds the marker and nothing but part files besides it."""
    names = [c.name for c in directory.iterdir()]
    return OUTPUT_MARKER in names and all(n == OUTPUT_MARKER or _PART_FILE.fullmatch(n) for n in names)


def _input_paths(inputs) -> list[Path]:
    """The resolved paths an input names: the file or directory itself and, for a
    directory, each of its data files (which may be links to elsewhere), or every file a
    glob pattern matches."""
    out = []
    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            out.append(p.resolve())
            from .io import _dataset_files

            out.extend(f.resolve() for f in _dataset_files(p))
        elif p.exists():
            out.append(p.resolve())
        elif set("*?[") & set(text):
            out.extend(Path(m).resolve() for m in glob.glob(text))
    return out


def _same_file(a: Path, b: Path) -> bool:
    """The same file by device and inode (a bind mount, a case-insensitive file system)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: PathLike, inputs=(), *, directory: bool = False) -> Path:
    """Check that ``path`` can be written without touching an input or a non-regular file.

    Lets a command fail before long work rather than after it, and before anything is
    written: nothing is lost.

    Parameters
    ----------
    path : str or path-like
        The output: a file, or with ``directory`` a directory of part files.
    inputs : iterable of str or path-like
        The input paths (files, directories, glob patterns). After resolving links, the
        output may not be an input, lie inside an input directory, or contain an input.
    directory : bool
        The output is a directory (the distributed job's): an existing one may be
        replaced only when it is empty or an earlier output (the ``_gpu_targets_output``
        marker and ``part.NNNNN.parquet`` files only), so files the job did not create
        are never deleted.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        The directory of ``path`` does not exist (it is not created).
    IsADirectoryError
        ``path`` is a directory (``directory=False``), or a file (``directory=True``).
    FileExistsError
        ``path`` is, contains or lies inside an input; it exists and is not a regular
        file (a device such as ``/dev/full``, a FIFO, a socket); or, with ``directory``,
        an existing directory is not empty and not an earlier output.
    """
    final = Path(path)
    if not final.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(final.parent)!r} does not exist")
    try:
        resolved = final.resolve()
    except (RuntimeError, OSError) as err:  # a symbolic link loop
        raise FileExistsError(f"output path {str(final)!r} cannot be resolved: {_one_line(err)}") from None
    for src in _input_paths(inputs):
        if resolved == src or src in resolved.parents or resolved in src.parents or _same_file(resolved, src):
            relation = "is" if resolved == src else ("lies inside" if src in resolved.parents else "contains")
            raise FileExistsError(f"output path {str(final)!r} {relation} the input {str(src)!r}; "
                                  "write the output somewhere else (inputs are never overwritten)")
    if directory:
        if final.exists() and not final.is_dir():
            raise IsADirectoryError(f"output path {str(final)!r} is a file; the distributed output is a directory")
        if final.is_dir() and any(final.iterdir()) and not is_earlier_output(final):
            raise FileExistsError(f"output directory {str(final)!r} is not an earlier gpu-targets output (no "
                                  f"{OUTPUT_MARKER} beside part files only); choose a new path")
        return final
    if final.is_dir():
        raise IsADirectoryError(f"output path {str(final)!r} is a directory")
    if final.exists() and not final.is_file():
        raise FileExistsError(f"output path {str(final)!r} exists and is not a regular file; "
                              "write to a regular file or a new path")
    return final


@contextlib.contextmanager
def replacing(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    The temporary name is ``.<name>.tmp-<pid>`` in the same directory (hidden, so a
    directory read as a dataset skips it); on any exception it is removed and the
    exception re-raised, so ``path`` is either the old file or the complete new one.

    Raises
    ------
    FileNotFoundError
        The directory of ``path`` does not exist (it is not created).
    IsADirectoryError
        ``path`` is a directory.
    """
    final = check_output_path(path)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
