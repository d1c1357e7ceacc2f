"""Hostile input: nothing is lost. Every case checks that the inputs are left byte for
byte as they were and that the command fails with exit code 2 and one line."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from gpu_targets.cli import main
from gpu_targets.datasets import synthetic_transactions

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "seed_daily_5411.yaml"
CONFIG_DT = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def _snapshot(root: Path) -> dict:
    """Every file below ``root`` (or ``root`` itself) with the hash of its bytes."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def inputs(tmp_path):
    """An input file, an input directory of two files, and a link to the file."""
    frame = synthetic_transactions(3, 20, seed=0)
    (tmp_path / "dir").mkdir()
    frame.iloc[:30].to_parquet(tmp_path / "dir" / "a.parquet", index=False)
    frame.iloc[30:].to_parquet(tmp_path / "dir" / "b.parquet", index=False)
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    (tmp_path / "link.parquet").symlink_to(tmp_path / "in.parquet")
    return tmp_path


def _cases(root: Path):
    """(input, output, scheduler) triples where the output is, contains or lies inside an input."""
    d = str(root / "dir")
    return [
        (str(root / "in.parquet"), str(root / "in.parquet"), None),
        (str(root / "in.parquet"), str(root / "link.parquet"), None),  # a link to the input
        (str(root / "link.parquet"), str(root / "in.parquet"), None),
        (d, d, "local"),
        (d, str(root / "dir" / "out"), "local"),  # inside the input directory
        (str(root / "dir" / "a.parquet"), d, "local"),  # contains the input
        (d, str(root / "dir" / "a.parquet"), None),
        (str(root / "dir" / "*.parquet"), str(root / "dir" / "b.parquet"), None),  # a file the glob matches
        (str(root / "dir" / "*.parquet"), d, "local"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_output_that_is_contains_or_lies_inside_an_input_is_refused(inputs, case):
    src, out, scheduler = _cases(inputs)[case]
    before = _snapshot(inputs)
    args = ["generate", src, "-c", str(CONFIG_DT), "-o", out, "--no-progress"]
    if scheduler:
        args += ["--scheduler", scheduler]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "input" in result.output and len(result.output.strip().splitlines()) == 1
    assert _snapshot(inputs) == before  # nothing lost, nothing added


def test_output_that_is_not_a_regular_file_is_refused(inputs):
    fifo = inputs / "pipe"
    os.mkfifo(fifo)
    for target in [str(fifo), "/dev/full", "/dev/null"]:
        result = CliRunner().invoke(main, ["generate", str(inputs / "in.parquet"), "-c", str(CONFIG_DT), "-o", target,
                                           "--no-progress"])
        assert result.exit_code == 2 and "not a regular file" in result.output, result.output
    assert fifo.exists() and not fifo.is_file()
    assert Path("/dev/full").is_char_device()


def test_distributed_output_directory_with_foreign_files_is_not_replaced(inputs):
    out = inputs / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["generate", str(inputs / "in.parquet"), "-c", str(CONFIG_DT), "-o", str(out),
                                       "--scheduler", "local", "--no-progress"])
    assert result.exit_code == 2 and "notes.txt" in result.output, result.output
    assert (out / "notes.txt").read_text() == "mine"


def test_python_api_refuses_too(inputs):
    from gpu_targets import distributed

    with pytest.raises(FileExistsError, match="is the input"):
        distributed.generate(inputs / "dir", CONFIG_DT, inputs / "dir", backend="cpu")
    assert len(list((inputs / "dir").iterdir())) == 2
    pd.read_parquet(inputs / "dir")  # still readable
