"""Hostile input: nothing is lost. Every case checks that the inputs are left byte for
byte as they were and that the command fails with exit code 2 and one line."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert result.exit_code == 2 and "not an earlier gpu-targets output" in result.output, result.output
    assert (out / "notes.txt").read_text() == "mine"
    # a Dask dataset (part.0.parquet) is not ours either
    (out / "notes.txt").unlink()
    pd.DataFrame({"a": [1]}).to_parquet(out / "part.0.parquet")
    result = CliRunner().invoke(main, ["generate", str(inputs / "in.parquet"), "-c", str(CONFIG_DT), "-o", str(out),
                                       "--scheduler", "local", "--no-progress"])
    assert result.exit_code == 2 and (out / "part.0.parquet").exists()


def test_python_api_refuses_too(inputs):
    from gpu_targets import distributed

    with pytest.raises(FileExistsError, match="is the input"):
        distributed.generate(inputs / "dir", CONFIG_DT, inputs / "dir", backend="cpu")
    assert len(list((inputs / "dir").iterdir())) == 2
    pd.read_parquet(inputs / "dir")  # still readable


# --------------------------------------------------------------------------- carried columns


def _every_type_table(n: int = 6):
    """Role columns plus one column of every Arrow type pyarrow writes to Parquet, with nulls."""
    import datetime
    import decimal

    import pyarrow as pa

    def with_null(values, typ):
        return pa.array(values[:-1] + [None], type=typ)

    ints = list(range(n))
    extra = {
        "i8": with_null(ints, pa.int8()), "i16": with_null(ints, pa.int16()), "u32": with_null(ints, pa.uint32()),
        "big_id": with_null([2**60 + i for i in ints], pa.int64()),
        "u64": with_null([2**64 - 1 - i for i in ints], pa.uint64()),
        "f16": pa.array([1.5] * n, type=pa.float16()), "f32": with_null([0.1] * n, pa.float32()),
        "flag": with_null([True, False] * (n // 2), pa.bool_()),
        "dec": with_null([decimal.Decimal("12345678901234567890.123")] * n, pa.decimal128(38, 3)),
        "dec256": with_null([decimal.Decimal("1.5")] * n, pa.decimal256(50, 2)),
        "day": with_null([datetime.date(2020, 1, 1 + i) for i in ints], pa.date32()),
        "day64": with_null([datetime.date(1900, 1, 1)] * n, pa.date64()),
        "clock": with_null([datetime.time(1, 2, 3)] * n, pa.time64("us")),
        "clock32": with_null([datetime.time(1, 2, 3)] * n, pa.time32("ms")),
        "ts_ms_tz": with_null([datetime.datetime(2020, 1, 1)] * n, pa.timestamp("ms", tz="Asia/Tokyo")),
        "text": with_null([f"t{i}" for i in ints], pa.string()),
        "large_text": with_null(["é" * i for i in ints], pa.large_string()),
        "blob": with_null([bytes([i]) * 3 for i in ints], pa.binary()),
        "fixed": with_null([bytes([i]) * 4 for i in ints], pa.binary(4)),
        "items": with_null([[i, i + 1] for i in ints], pa.list_(pa.int64())),
        "big_items": with_null([[str(i)] for i in ints], pa.large_list(pa.string())),
        "record": with_null([{"a": i, "b": "x"} for i in ints], pa.struct([("a", pa.int32()), ("b", pa.string())])),
        "mapping": with_null([[("k", i)] for i in ints], pa.map_(pa.string(), pa.int64())),
        "category": pa.array([f"c{i % 2}" for i in ints]).dictionary_encode(),
        "span": with_null([datetime.timedelta(seconds=i) for i in ints], pa.duration("s")),
    }
    roles = {
        "user_id": pa.array([1, 1, 1, 2, 2, 2][:n], type=pa.int64()),
        "timestamp": pa.array([datetime.datetime(2021, 1, 1, i) for i in ints], type=pa.timestamp("us")),
        "amount": pa.array([1.0, -2.0, 3.0, 4.0, None, 6.0][:n]),
        "mcc": pa.array([5411, None, 5411, 5812, 5411, 5411][:n], type=pa.int32()),
    }
    return pa.table({**roles, **extra})


def test_every_input_column_comes_back_with_its_arrow_type_and_values(tmp_path):
    """The CLI carries every non-role (and role) column through Arrow unchanged."""
    import pyarrow.parquet as pq

    table = _every_type_table()
    pq.write_table(table, tmp_path / "in.parquet")
    stored = pq.read_table(tmp_path / "in.parquet")  # what Parquet itself gives back
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "in.parquet"), "-c", str(CONFIG_DT),
                                       "-o", str(tmp_path / "out.parquet"), "--no-progress", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    out = pq.read_table(tmp_path / "out.parquet")
    kept = out.select(stored.column_names)
    assert kept.schema.equals(stored.schema), (kept.schema, stored.schema)
    assert kept.equals(stored)
    assert out.num_columns > stored.num_columns


def test_huge_user_ids_with_a_null_user_are_grouped_exactly(tmp_path):
    """Ids above 2^53 that float64 would merge stay apart; the null user's row is dropped
    (on_invalid: drop) and the user column is written back as int64, unchanged."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    base = 2**60
    table = pa.table({
        "user_id": pa.array([base, base + 1, None, base, base + 1], type=pa.int64()),
        "timestamp": pa.array([0, 1, 2, 3, 4], type=pa.timestamp("s")),
        "amount": [1.0, 10.0, 100.0, 2.0, 20.0],
        "mcc": pa.array([5411] * 5, type=pa.int32()),
    })
    pq.write_table(table, tmp_path / "in.parquet")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"on_invalid": "drop", "targets": [
        {"name": "s", "agg": "sum", "window": {"period": "year", "mode": "expanding"}}]}))
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "in.parquet"), "-c", str(cfg), "-o",
                                       str(tmp_path / "out.parquet"), "--no-progress", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.field("user_id").type == pa.int64()
    assert out.column("user_id").to_pylist() == [base, base + 1, base, base + 1]
    assert out.column("s").to_pylist() == [1.0, 10.0, 3.0, 30.0]


# --------------------------------------------------------------------------- differing schemas


def _two_files(tmp_path, later_extra):
    """Two Parquet files of one dataset; the second has one more column ``later_extra``."""
    frame = synthetic_transactions(2, 10, seed=1)
    d = tmp_path / "in"
    d.mkdir()
    frame.iloc[:10].to_parquet(d / "a.parquet", index=False)
    second = frame.iloc[10:].copy()
    second["extra"] = later_extra
    second.to_parquet(d / "b.parquet", index=False)
    return d, frame


@pytest.mark.parametrize("how", ["directory", "glob", "distributed"])
def test_a_column_only_a_later_file_has_is_kept_with_nulls(tmp_path, how):
    """One rule for files, directories, globs and the distributed job: every column of
    any file, nulls where a file lacks it."""
    from gpu_targets import distributed
    from gpu_targets.io import read_transactions

    d, frame = _two_files(tmp_path, later_extra="x")
    src = {"directory": d, "glob": str(d / "*.parquet"), "distributed": d}[how]
    if how == "distributed":
        out = read_transactions(distributed.generate(src, CONFIG_DT, tmp_path / "out", backend="cpu"))
        out = out.sort_values(["user_id", "timestamp"], kind="stable")
    else:
        out = read_transactions(src)
    assert "extra" in out.columns and len(out) == len(frame)
    assert out["extra"].isna().sum() == 10 and (out["extra"] == "x").sum() == 10


@pytest.mark.parametrize("how", ["directory", "glob", "distributed"])
def test_columns_whose_types_do_not_unify_name_both_files(tmp_path, how):
    from gpu_targets import distributed
    from gpu_targets.io import read_transactions
    from gpu_targets.transactions import DataError

    d, _ = _two_files(tmp_path, later_extra=1.5)
    first = pd.read_parquet(d / "a.parquet")
    first["extra"] = [b"bytes"] * len(first)  # binary vs double: no common type
    first.to_parquet(d / "a.parquet", index=False)
    src = {"directory": d, "glob": str(d / "*.parquet"), "distributed": d}[how]
    with pytest.raises(DataError, match=r"b\.parquet.*a\.parquet"):
        if how == "distributed":
            distributed.generate(src, CONFIG_DT, tmp_path / "out", backend="cpu")
        else:
            read_transactions(src)


# --------------------------------------------------------------------------- config validation


_WINDOW = {"period": "day", "mode": "expanding"}


@pytest.mark.parametrize("target, key", [
    ({"name": "abc\n", "agg": "sum", "window": _WINDOW}, "name"),  # $ matched before the newline
    ({"name": "ok", "agg": "sum", "window": {"duration": "\u0667d", "mode": "trailing"}}, "duration"),  # Arabic-Indic 7
    ({"name": "ok", "agg": "sum", "window": {"duration": "\uff17d", "mode": "trailing"}}, "duration"),  # fullwidth 7
    ({"name": "ok", "agg": "sum", "window": {"duration": "16000w", "mode": "forward"}}, "duration"),  # > int64 ns
    ({"name": "ok", "agg": "sum", "window": {"duration": "36501d", "mode": "forward"}}, "duration"),
    ({"name": "ok", "agg": "topk", "k": 10**9, "window": _WINDOW}, "k"),  # 10^9 column names
    ({"name": "ok", "agg": "topk", "k": 1001, "window": _WINDOW}, "k"),
])
def test_values_outside_the_stated_limits_are_config_errors(target, key):
    from gpu_targets import ConfigError, load_config

    with pytest.raises(ConfigError, match=key):
        load_config({"targets": [target]})


def test_limits_themselves_are_accepted():
    from gpu_targets import load_config

    cfg = load_config({"targets": [{"name": "a", "agg": "topk", "k": 1000, "window": _WINDOW},
                                   {"name": "b", "agg": "sum", "window": {"duration": "36500d", "mode": "forward"}}]})
    assert len(cfg.output_columns) == 1001


@pytest.mark.parametrize("text", [
    "targets:\n- {name: a, agg: sum, window: {period: day, mode: expanding}, agg: count}\n",
    "timezone: UTC\ntimezone: Europe/Moscow\ntargets:\n- {name: a, agg: sum, window: {period: day, mode: expanding}}\n",
])
def test_a_key_given_twice_is_rejected_not_silently_replaced(text, tmp_path):
    from gpu_targets import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml line \d+: .*duplicate key"):
        load_config(path)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "duplicate key" in result.output


def test_configs_load_with_the_c_yaml_loader_when_there():
    import yaml

    from gpu_targets.spec_yaml import _strict_loader

    if yaml.__with_libyaml__:
        assert issubclass(_strict_loader(), yaml.CSafeLoader)
    assert issubclass(_strict_loader(), getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_mid_write_leave_no_temporary_file(inputs, sig):
    """What `docker stop` sends: handled as Ctrl-C is, the half-written temporary output is
    removed and the exit code is 128 + the signal's number."""
    import signal
    import subprocess
    import sys

    code = f"""
import os, signal, sys, time
from gpu_targets import cli, io

def write_then_get_killed(table, path):
    with io.replacing(path) as tmp:
        tmp.write_bytes(b"half a file")
        os.kill(os.getpid(), signal.{sig})
        time.sleep(30)

cli.write_output = write_then_get_killed
sys.argv = ["gpu-targets", "generate", {str(inputs / "in.parquet")!r}, "-c", {str(CONFIG_DT)!r},
            "-o", {str(inputs / "out.parquet")!r}, "--no-progress", "--backend", "cpu"]
cli.main()
"""
    before = _snapshot(inputs)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 128 + getattr(signal, sig), proc.stderr
    # one error line (a fresh environment first says that it compiles the kernels)
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("compiling the cpu engine")]
    assert f"terminated by {sig}" in proc.stderr and len(lines) == 1, proc.stderr
    assert _snapshot(inputs) == before
    assert not [p for p in inputs.iterdir() if ".tmp-" in p.name or p.name == "out.parquet"]


# --------------------------------------------------------------------------- nulls in integer times


def test_integer_times_with_an_empty_cell_drop_that_row(tmp_path):
    """A CSV (or pandas) integer time column with an empty cell arrives as float64: with
    time_unit, NaN is a null time (dropped under on_invalid: drop), other values must be
    integers."""
    import gpu_targets
    from gpu_targets.transactions import DataError

    (tmp_path / "in.csv").write_text("user_id,timestamp,amount,mcc\n1,0,1.0,5411\n1,,2.0,5411\n1,2,3.0,5411\n")
    cfg = {"time_unit": "D", "on_invalid": "drop",
           "targets": [{"name": "s", "agg": "sum", "window": {"period": "day", "mode": "expanding"}}]}
    frame = pd.read_csv(tmp_path / "in.csv")
    assert frame["timestamp"].dtype == "float64"
    out = gpu_targets.generate(frame, cfg, backend="cpu")
    assert out["s"].tolist() == [1.0, 3.0] and out["amount"].tolist() == [1.0, 3.0]
    with pytest.raises(DataError, match="null"):
        gpu_targets.generate(frame, {**cfg, "on_invalid": "error"}, backend="cpu")
    frame.loc[2, "timestamp"] = 2.5
    with pytest.raises(DataError, match=r"not integers \(first rows: 2\)"):
        gpu_targets.generate(frame, cfg, backend="cpu")


@pytest.mark.parametrize("bad", ["0 99:99:99", "3 24:00:00", "3 10:60:00", "3 10:00:61"])
def test_sdsj2016_times_outside_the_clock_are_refused(bad):
    import gpu_targets
    from gpu_targets.transactions import DataError

    frame = pd.DataFrame({"customer_id": [1, 1], "tr_datetime": ["0 10:00:00", bad], "mcc_code": [5411, 5411],
                          "amount": [-1.0, -2.0]})
    cfg = {"format": "sdsj2016", "targets": [{"name": "s", "agg": "sum", "window": {"period": "day",
                                                                                    "mode": "expanding"}}]}
    with pytest.raises(DataError, match=r"tr_datetime.*first rows: \[1\]"):
        gpu_targets.generate(frame, cfg, backend="cpu")
    frame.loc[1, "tr_datetime"] = "0 23:59:60"  # the data's own :60 stays accepted
    assert len(gpu_targets.generate(frame, cfg, backend="cpu")) == 2


def test_any_number_of_distinct_filters(backend):
    """Version 1 targets hold 64 distinct mcc/sign filters in one bit set per row; the
    65th and later ones, and every SPEC v2 target's, take the range path's filter tables
    (any number of 64-filter words): 132 targets, 66 v1 and 66 v2, one filter each."""
    from conftest import assert_matches_reference
    from gpu_targets import load_config
    from gpu_targets.engines.plan import MAX_FILTERS, compile_plan

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"user_id": np.repeat([1, 2], 40), "timestamp": np.tile(np.arange(40) // 3, 2),
                          "amount": np.round(rng.normal(0, 50, 80), 2), "mcc": rng.integers(1000, 1075, 80)})
    targets = [{"name": f"t{i}", "agg": "sum", "mcc": [1000 + i, 1001 + i], "window": _WINDOW} for i in range(66)]
    targets += [{"name": f"v{i}", "agg": "median" if i % 2 else "count", "mcc": [1000 + i], "sign": "negative",
                 "window": {"rows": 5, "mode": "trailing"}} for i in range(66)]
    config = {"time_unit": "D", "targets": targets}
    plan = compile_plan(load_config(config))
    assert plan.ranged.sum() == 66 - MAX_FILTERS + 66 and plan.range_mcc_bits.shape[0] == 2  # 68 filters: 2 words
    assert_matches_reference(frame, config, backend)


# --------------------------------------------------------------------------- time limits


@pytest.mark.parametrize("start", ["1677-09-21 00:30:00", "2262-04-10 12:00:00", "1677-12-31 23:00:00",
                                   "2262-01-01 00:00:00"])
@pytest.mark.parametrize("tz", ["UTC", "Pacific/Kiritimati"])
def test_times_outside_1678_2261_are_a_data_error_naming_the_column(start, tz):
    """They gave garbage on cpu (a 1 h trailing sum of [1, 2] gave [-2, 0]; two days merged
    near 2262): the promised DataError instead, under any time zone."""
    import gpu_targets
    from gpu_targets.transactions import DataError

    frame = pd.DataFrame({"user_id": [1, 1], "ts": pd.to_datetime([start, start]) + pd.to_timedelta([0, 1], "s"),
                          "amount": [1.0, 2.0], "mcc": [5411, 5411]})
    cfg = {"columns": {"time": "ts"}, "timezone": tz, "targets": [
        {"name": "h", "agg": "sum", "window": {"duration": "1h", "mode": "trailing"}},
        {"name": "d", "agg": "count", "window": {"period": "day", "mode": "expanding"}}]}
    for backend in ("reference", "cpu"):
        with pytest.raises(DataError, match=r"column 'ts' \(time\).*1678-01-01 \.\. 2261-12-31"):
            gpu_targets.generate(frame, cfg, backend=backend)


@pytest.mark.parametrize("tz", ["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_times_at_the_edges_of_the_range_are_computed_exactly(tz):
    import gpu_targets

    times = pd.to_datetime(["1678-01-01 00:00:00", "1678-01-01 00:30:00", "1678-01-02 00:10:00",
                            "2261-12-30 23:00:00", "2261-12-31 23:30:00", "2261-12-31 23:59:59"])
    frame = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2], "timestamp": times, "amount": [1.0, 2.0, 4.0, 1.0, 2.0, 4.0],
                          "mcc": [5411] * 6})
    cfg = {"timezone": tz, "targets": [
        {"name": "h", "agg": "sum", "window": {"duration": "1h", "mode": "trailing"}},
        {"name": "f", "agg": "sum", "window": {"duration": "1h", "mode": "forward"}},
        {"name": "d", "agg": "count", "window": {"period": "day", "mode": "expanding"}}]}
    ref = gpu_targets.generate(frame, cfg, backend="reference")
    got = gpu_targets.generate(frame, cfg, backend="cpu")
    assert ref["h"].tolist() == [1.0, 3.0, 4.0, 1.0, 2.0, 6.0]
    assert ref["f"].tolist() == [2.0, 0.0, 0.0, 0.0, 4.0, 0.0]
    pd.testing.assert_frame_equal(got, ref)


def test_a_window_edge_beyond_int64_names_the_target():
    import gpu_targets
    from gpu_targets.transactions import DataError

    frame = pd.DataFrame({"user_id": [1], "timestamp": pd.to_datetime(["1700-01-01"]), "amount": [1.0], "mcc": [1]})
    cfg = {"targets": [{"name": "century", "agg": "sum", "window": {"duration": "36500d", "mode": "trailing"}}]}
    with pytest.raises(DataError, match="36500d trailing window of target 'century'"):
        gpu_targets.generate(frame, cfg, backend="cpu")


# --------------------------------------------------------------------------- error messages


BOMB = """a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
targets:
- {name: *h, agg: sum, window: {period: day, mode: expanding}}
"""


@pytest.mark.parametrize("text", [
    BOMB,  # billion laughs: a 9^8-element name
    "targets:\n- {name: " + "n" * 100_000 + "x-, agg: sum, window: {period: day, mode: expanding}}\n",
    "targets:\n- {name: a, agg: sum, window: {duration: " + "9" * 50_000 + "q, mode: trailing}}\n",
    "timezone: " + "Z" * 100_000 + "\ntargets:\n- {name: a, agg: sum, window: {period: day, mode: expanding}}\n",
])
def test_a_huge_bad_value_gives_a_short_one_line_error(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    # one short line per problem (the bomb's mapping also has 8 unknown keys, a..h)
    assert all(len(line) < 600 and line.startswith("error: ") for line in lines), result.output[:800]
    assert len(lines) == (9 if text is BOMB else 1), result.output[:800]


def test_a_config_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("targets:\n- {name: caf\xe9, agg: sum, window: {period: day, mode: expanding}}\n".encode("latin-1"))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "latin1.yaml" in result.output and "UTF-8" in result.output, result.output


@pytest.mark.parametrize("duration", ["36500d", "5214w", "876000h"])
def test_the_reference_is_right_for_the_longest_durations(duration):
    """The oracle overflowed int64 on long windows (a 14000w forward window gave 0); at
    the longest durations allowed it agrees with hand-computed values and with cpu."""
    import gpu_targets

    times = pd.to_datetime(["1780-01-01", "1800-01-01", "1879-11-01", "1950-01-01", "2150-01-01"])
    frame = pd.DataFrame({"user_id": [1] * 5, "timestamp": times, "amount": [1.0, 2.0, 4.0, 8.0, 16.0],
                          "mcc": [5411] * 5})
    cfg = {"targets": [{"name": "f", "agg": "sum", "window": {"duration": duration, "mode": "forward"}},
                       {"name": "t", "agg": "sum", "window": {"duration": duration, "mode": "trailing"}}]}
    ref = gpu_targets.generate(frame, cfg, backend="reference")
    assert ref["f"].tolist() == [6.0, 4.0, 8.0, 0.0, 0.0]  # ~100 years ahead, (t, t + D]
    assert ref["t"].tolist() == [1.0, 3.0, 7.0, 12.0, 16.0]  # (t - D, t]
    pd.testing.assert_frame_equal(gpu_targets.generate(frame, cfg, backend="cpu"), ref)


def test_a_full_disk_names_the_output_and_leaves_nothing(inputs, monkeypatch):
    import errno

    import pyarrow.parquet as pq

    def full(table, where, **kwargs):
        Path(where).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    out = inputs / "out.parquet"
    result = CliRunner().invoke(main, ["generate", str(inputs / "in.parquet"), "-c", str(CONFIG_DT), "-o", str(out),
                                       "--no-progress", "--backend", "cpu"])
    assert result.exit_code == 2, result.output
    assert "out.parquet" in result.output and "No space left" in result.output
    assert not [p for p in inputs.iterdir() if ".tmp-" in p.name or p.name == "out.parquet"]


def test_distributed_null_user_error_names_the_input_rows(tmp_path):
    """It named partition positions (998, 999 for input rows 3 and 500)."""
    from gpu_targets import distributed
    from gpu_targets.transactions import DataError

    frame = synthetic_transactions(20, 40, seed=4, shuffle=True)
    frame["user_id"] = frame["user_id"].astype("float64")
    frame.loc[[3, 500], "user_id"] = float("nan")
    (tmp_path / "in").mkdir()
    for i in range(4):
        frame.iloc[i * 200:(i + 1) * 200].to_parquet(tmp_path / "in" / f"p{i}.parquet", index=False)
    with pytest.raises(DataError, match=r"column 'user_id' has \d+ null values .*input rows: (3|500)\b"):
        distributed.generate(tmp_path / "in", CONFIG_DT, tmp_path / "out", backend="cpu", partition_rows=300)
    assert not (tmp_path / "out").exists()


def test_workers_that_keep_dying_end_the_job_with_one_line(inputs, monkeypatch):
    from distributed import KilledWorker

    from gpu_targets import distributed

    def dies(*args, **kwargs):
        raise KilledWorker("('targets-of-partition', 3)", None, 3)

    monkeypatch.setattr(distributed, "generate", dies)
    result = CliRunner().invoke(main, ["generate", str(inputs / "in.parquet"), "-c", str(CONFIG_DT), "-o",
                                       str(inputs / "out"), "--scheduler", "local", "--workers", "1", "--no-progress"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "died" in errors[0] and "Traceback" not in result.output


def test_distributed_job_carries_every_column_unchanged(tmp_path):
    """The distributed output holds the input's columns with their Arrow types and values
    (integers with nulls exact, dates as dates, decimals, maps...), rows grouped by user."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpu_targets import distributed

    table = _every_type_table()
    (tmp_path / "in").mkdir()
    pq.write_table(table.slice(0, 3), tmp_path / "in" / "a.parquet")
    pq.write_table(table.slice(3), tmp_path / "in" / "b.parquet")
    stored = pa.concat_tables([pq.read_table(tmp_path / "in" / n) for n in ("a.parquet", "b.parquet")])
    out = distributed.generate(tmp_path / "in", CONFIG_DT, tmp_path / "out", backend="cpu")
    got = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("*.parquet"))])
    got = got.sort_by([("user_id", "ascending"), ("timestamp", "ascending")]).select(stored.column_names)
    want = stored.sort_by([("user_id", "ascending"), ("timestamp", "ascending")])
    assert got.schema.equals(want.schema), (got.schema, want.schema)
    assert got.equals(want)


# --------------------------------------------------------------------------- review cases


def test_an_input_reached_through_a_link_inside_a_directory_is_not_overwritten(tmp_path):
    frame = synthetic_transactions(2, 10, seed=0)
    (tmp_path / "real").mkdir()
    frame.to_parquet(tmp_path / "real" / "data.parquet", index=False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.parquet").symlink_to(tmp_path / "real" / "data.parquet")
    before = _snapshot(tmp_path / "real")
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "d"), "-c", str(CONFIG_DT), "-o",
                                       str(tmp_path / "real" / "data.parquet"), "--no-progress"])
    assert result.exit_code == 2 and "input" in result.output, result.output
    assert _snapshot(tmp_path / "real") == before


def test_the_config_file_is_an_input_too(tmp_path, inputs):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG_DT.read_text())
    result = CliRunner().invoke(main, ["generate", str(inputs / "in.parquet"), "-c", str(cfg), "-o", str(cfg),
                                       "--no-progress"])
    assert result.exit_code == 2 and cfg.read_text() == CONFIG_DT.read_text()


def test_yaml_merge_keys_work_and_a_list_key_is_one_line(tmp_path):
    from gpu_targets import ConfigError, load_config

    merged = ("base: &b {agg: sum, window: {period: day, mode: expanding}}\n"
              "targets:\n- {<<: *b, name: t1}\n- {<<: *b, name: t2, agg: count}\n")
    cfg = load_config(_without_unknown(merged))
    assert [t.agg for t in cfg.targets] == ["sum", "count"]
    path = tmp_path / "c.yaml"
    path.write_text("targets:\n- {[1, 2]: 3}\n")
    with pytest.raises(ConfigError, match="key must be a plain value"):
        load_config(path)


def _without_unknown(text: str) -> dict:
    """The YAML loaded by the project's loader, minus the anchor-holding helper key."""
    import yaml

    from gpu_targets.spec_yaml import _strict_loader

    raw = yaml.load(text, Loader=_strict_loader())  # noqa: S506
    raw.pop("base")
    return raw


def test_a_dictionary_column_beside_a_plain_one_unifies(tmp_path):
    from gpu_targets.io import read_transactions

    frame = synthetic_transactions(2, 10, seed=0)
    (tmp_path / "d").mkdir()
    a, b = frame.iloc[:10].copy(), frame.iloc[10:].copy()
    a["note"] = pd.Categorical(["x"] * len(a))
    b["note"] = ["y"] * len(b)
    a.to_parquet(tmp_path / "d" / "a.parquet", index=False)
    b.to_parquet(tmp_path / "d" / "b.parquet", index=False)
    out = read_transactions(tmp_path / "d")
    assert out["note"].tolist() == ["x"] * 10 + ["y"] * 10


def test_a_hive_key_that_is_also_a_column_of_the_file(tmp_path):
    from gpu_targets import distributed
    from gpu_targets.io import read_transactions

    frame = synthetic_transactions(2, 10, seed=0)
    frame["k"] = 7
    (tmp_path / "d" / "k=1").mkdir(parents=True)
    frame.to_parquet(tmp_path / "d" / "k=1" / "a.parquet", index=False)
    single = read_transactions(tmp_path / "d")
    out = read_transactions(distributed.generate(tmp_path / "d", CONFIG_DT, tmp_path / "out", backend="cpu"))
    assert sorted(out["k"].unique().tolist()) == sorted(single["k"].unique().tolist())


def test_empty_windows_filled_with_nan_are_written_as_null(inputs, tmp_path):
    import pyarrow.parquet as pq
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"targets": [{"name": "m", "agg": "mean", "mcc": [1], "fill": "nan",
                                                "window": {"period": "day", "mode": "expanding"}}]}))
    result = CliRunner().invoke(main, ["generate", str(inputs / "in.parquet"), "-c", str(cfg), "-o",
                                       str(tmp_path / "o.parquet"), "--no-progress", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    column = pq.read_table(tmp_path / "o.parquet").column("m")
    assert column.null_count == len(column)


def test_signal_handlers_respect_nohup_and_are_restored(inputs):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        CliRunner().invoke(main, ["validate", str(CONFIG_DT)])
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    assert signal.getsignal(signal.SIGTERM) is before


# --------------------------------------------------------------------------- extreme amounts


def _sliding(amounts, agg, duration="2s", mode="trailing", backend="cpu"):
    import gpu_targets

    frame = pd.DataFrame({"user_id": 1, "timestamp": np.arange(len(amounts)), "amount": amounts, "mcc": 5411})
    cfg = {"time_unit": "s", "targets": [{"name": "x", "agg": agg, "fill": "nan",
                                          "window": {"duration": duration, "mode": mode}}]}
    return gpu_targets.generate(frame, cfg, backend=backend)["x"].to_numpy(np.float64)


import numpy as np  # noqa: E402


@pytest.mark.parametrize("big", [1e16, 1e20, 1e150, 1e300])
def test_a_huge_amount_leaves_no_trace_in_later_std(big):
    """One amount of 1e16 or more corrupted every later std of the user (1.0 instead of
    1.291; 0.0 for 1e20..1e150)."""
    amounts = [big, 1.0, 2.0, 3.0, 4.0]  # 2 s trailing: the last windows are [2, 3], [3, 4]
    for backend in ("reference", "cpu"):
        got = _sliding(amounts, "std", backend=backend)
        np.testing.assert_allclose(got[2:], [0.7071067811865476] * 3, rtol=1e-6)


def test_infinities_follow_ieee_and_leave_no_trace():
    """One inf made every later sliding sum NaN and std 0 for good."""
    inf = float("inf")
    amounts = [1.0, inf, 2.0, 3.0, -inf, 5.0, 6.0, 7.0]
    want_sum = [1.0, inf, inf, 5.0, -inf, -inf, 11.0, 13.0]
    for backend in ("reference", "cpu"):
        np.testing.assert_array_equal(_sliding(amounts, "sum", backend=backend), want_sum)
        std = _sliding(amounts, "std", backend=backend)
        assert np.isnan(std[1:3]).all() and np.isnan(std[4:6]).all()
        np.testing.assert_allclose(std[[3, 6, 7]], [0.7071067811865476] * 3, rtol=1e-6)
        mean = _sliding(amounts, "mean", backend=backend)
        np.testing.assert_allclose(mean[[0, 3, 6, 7]], [1.0, 2.5, 5.5, 6.5])
    mixed = _sliding([inf, -inf, 1.0], "sum", duration="3s")
    assert np.isnan(mixed[1]) and np.isnan(mixed[2])


def test_sums_near_the_float64_limit():
    """Two amounts of 1e308 made every later sum NaN; math.fsum raised OverflowError in
    the oracle. Sums that overflow only on the way (1e308 + 1e308 - 1e308 - 1e308 + 5)
    are exact; sums whose exact value is beyond float64 are +-inf."""
    amounts = [1e308, 1e308, -1e308, -1e308, 5.0, 1.0, 2.0]
    for backend in ("reference", "cpu"):
        s = _sliding(amounts, "sum", duration="5s", backend=backend)
        assert np.isinf(s[1]) and s[4] == 5.0  # 2e308 is beyond float64; the five cancel to 5
        assert _sliding(amounts, "mean", duration="5s", backend=backend)[4] == 1.0
        np.testing.assert_array_equal(_sliding(amounts, "sum", duration="2s", backend=backend)[5:], [6.0, 3.0])


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([1e16, -1e20, 1e150, 1e300, -1e300,
                                                                      float("inf"), -float("inf"), 0.0])),
                       min_size=2, max_size=25),
       duration=st.sampled_from(["1s", "3s", "6s"]), mode=st.sampled_from(["trailing", "forward"]))
def test_extreme_amounts_match_the_reference(values, duration, mode):
    """Random huge and infinite amounts: cpu equals the oracle (SPEC tolerance on finite
    values; the same infinities and NaNs)."""
    for agg in ("sum", "mean", "std"):
        ref = _sliding(values, agg, duration, mode, backend="reference")
        got = _sliding(values, agg, duration, mode, backend="cpu")
        special = ~np.isfinite(ref)
        np.testing.assert_array_equal(got[special], ref[special], err_msg=f"{agg} {duration} {mode}")
        tol = (1e-4 if agg == "std" else 1e-5) * np.maximum(1.0, np.abs(ref[~special]))
        assert (np.abs(got[~special] - ref[~special]) <= tol).all(), (agg, duration, mode, got, ref)


_EXTRA_NAMES = [n for n in _every_type_table().column_names if n not in ("user_id", "timestamp", "amount", "mcc")]


@settings(max_examples=25, deadline=None)
@given(names=st.lists(st.sampled_from(_EXTRA_NAMES), unique=True, min_size=1, max_size=8),
       rows=st.integers(1, 6), shuffle=st.randoms(use_true_random=False))
def test_random_schemas_are_carried_through_unchanged(tmp_path_factory, names, rows, shuffle):
    """Random subsets and orders of the Arrow types, random row counts: the CLI output's
    input columns equal the input's, schema and values."""
    import pyarrow.parquet as pq

    shuffle.shuffle(names)
    roles = ["user_id", "timestamp", "amount", "mcc"]
    order = names[: len(names) // 2] + roles + names[len(names) // 2:]  # roles anywhere among them
    table = _every_type_table().select(order).slice(0, rows)
    d = tmp_path_factory.mktemp("carry")
    pq.write_table(table, d / "in.parquet")
    stored = pq.read_table(d / "in.parquet")
    result = CliRunner().invoke(main, ["generate", str(d / "in.parquet"), "-c", str(CONFIG_DT), "-o",
                                       str(d / "out.parquet"), "--no-progress", "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    out = pq.read_table(d / "out.parquet")
    assert out.select(stored.column_names).equals(stored)
    assert out.schema.names[: len(order)] == order


def test_distributed_cli_error_is_one_line_without_worker_tracebacks(tmp_path):
    """The workers' "Compute Failed" tracebacks used to precede the one-line error."""
    import subprocess
    import sys

    frame = synthetic_transactions(10, 30, seed=4, shuffle=True)
    frame["user_id"] = frame["user_id"].astype("float64")
    frame.loc[[3, 200], "user_id"] = float("nan")
    (tmp_path / "in").mkdir()
    for i in range(2):
        frame.iloc[i * 150:(i + 1) * 150].to_parquet(tmp_path / "in" / f"p{i}.parquet", index=False)
    proc = subprocess.run([sys.executable, "-m", "gpu_targets.cli", "generate", str(tmp_path / "in"), "-c",
                           str(CONFIG_DT), "-o", str(tmp_path / "out"), "--scheduler", "local", "--workers", "1",
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("dashboard:")]
    assert len(lines) == 1 and lines[0].startswith("error: column 'user_id'"), proc.stderr
