"""What a new user meets first (issue 14): errors they can act on, outputs named as
written, the CPU engine's fork safety (tests/test_forksafe.py) and the README
(tests/test_readme.py)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gpu_targets.cli import main
from gpu_targets.io import write_parquet
from gpu_targets.spec import ConfigError, load_config

CONFIG = "targets:\n  - {name: s, agg: sum, window: {duration: 7d, mode: trailing}}\n"


def _tx() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": np.array([1, 1, 2], dtype=np.int64),
        "timestamp": pd.to_datetime(["2024-01-01 10:00", "2024-01-03 00:00", "2024-01-02 00:00"]),
        "amount": [5.0, -2.5, 7.0],
        "mcc": np.array([5411, 5912, 6011], dtype=np.int32),
        "note": ["a", None, "c"],
    })


def _errors(result) -> list[str]:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.stderr
    return lines


# --------------------------------------------------------------------------- config errors
THREE_TYPOS = """\
targets:
  - {name: a, agg: summ, sing: negative, window: {period: day, mode: expanding}}
  - {name: b, agg: sum, window: {perod: day, mode: expanding}}
timezon: UTC
"""


def test_every_config_error_is_reported_at_once_with_did_you_mean():
    with pytest.raises(ConfigError) as info:
        load_config(THREE_TYPOS)
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 4, problems
    assert any(p.startswith("targets[0].agg (target 'a')") and "did you mean 'sum'" in p for p in problems)
    assert any(p.startswith("targets[0].sing (target 'a')") and "did you mean 'sign'" in p for p in problems)
    assert any(p.startswith("targets[1].window.perod (target 'b')") and "did you mean 'period'" in p
               for p in problems)
    assert any(p.startswith("timezon") and "did you mean 'timezone'" in p for p in problems)
    assert info.value.path == "targets[0].agg (target 'a')"  # the first problem's, as before
    assert str(info.value).startswith("4 problems in the config:")


def test_a_misspelt_required_key_is_reported_once_as_the_unknown_key():
    with pytest.raises(ConfigError) as info:
        load_config("targets:\n  - {name: a, agg: sum, widnow: {period: day, mode: expanding}}\n")
    (problem,) = info.value.problems
    assert str(problem).startswith("targets[0].widnow (target 'a'): unknown key") and "'window'" in str(problem)


def test_cli_prints_one_line_per_config_problem(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(THREE_TYPOS)
    result = CliRunner().invoke(main, ["validate", str(cfg)])
    assert len(_errors(result)) == 4


# --------------------------------------------------------------------------- data errors
def test_a_bad_csv_time_names_its_row_and_gives_no_pandas_advice(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "tx.csv").write_text("user_id,timestamp,amount,mcc\n1,2024-01-01,5.0,5411\n1,yesterday,3.0,5411\n")
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.csv"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.parquet")])
    (line,) = _errors(result)
    assert "column 'timestamp' (time)" in line and "row 1: 'yesterday'" in line
    assert "passing" not in line and "format=" not in line and "dayfirst" not in line


def test_a_bad_csv_amount_names_its_row(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "tx.csv").write_text("user_id,timestamp,amount,mcc\n1,2024-01-01,5.0,5411\n2,2024-01-02,1O.5,5411\n")
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.csv"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.parquet")])
    (line,) = _errors(result)
    assert "column 'amount' (amount)" in line and "row 1: '1O.5'" in line


def test_an_unknown_input_suffix_does_not_suggest_a_python_argument(tmp_path):
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "tx.data").write_text("x")
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.data"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.parquet")])
    (line,) = _errors(result)
    assert "file_format" not in line and ".csv" in line


def test_sdsj_columns_with_a_generic_config_suggest_the_format(tmp_path):
    frame = pd.DataFrame({"customer_id": [1], "tr_datetime": ["0 10:00:00"], "mcc_code": [5411],
                          "tr_type": [1010], "amount": [-5.0], "term_id": [None]})
    write_parquet(frame, tmp_path / "tx.parquet")
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.parquet"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.parquet")])
    (line,) = _errors(result)
    assert "no column 'user_id'" in line and "--format sdsj2016" in line


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", reason="the simulator makes cuda usable")
def test_an_unusable_cuda_backend_exits_2_with_one_line_saying_why_and_the_fix(tmp_path):
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU is usable here")
    write_parquet(_tx(), tmp_path / "tx.parquet")
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.parquet"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.parquet"), "--backend", "cuda"])
    (line,) = _errors(result)
    assert "no usable CUDA device" in line and "--backend cpu" in line
    assert not (tmp_path / "out.parquet").exists()


# --------------------------------------------------------------------------- outputs
def test_output_csv_is_csv_with_the_same_values_as_parquet(tmp_path):
    write_parquet(_tx(), tmp_path / "tx.parquet")
    (tmp_path / "c.yaml").write_text(CONFIG)
    for name in ("out.csv", "out.parquet"):
        result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.parquet"), "-c", str(tmp_path / "c.yaml"),
                                           "-o", str(tmp_path / name), "--no-progress"])
        assert result.exit_code == 0, result.output
    assert not (tmp_path / "out.csv").read_bytes().startswith(b"PAR1")
    from_csv = pcsv.read_csv(tmp_path / "out.csv", convert_options=pcsv.ConvertOptions(strings_can_be_null=True)).to_pandas()
    from_parquet = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert list(from_csv.columns) == list(from_parquet.columns)
    np.testing.assert_allclose(from_csv["s"], from_parquet["s"])
    assert from_csv["note"].isna().tolist() == [False, True, False]


def test_an_output_suffix_that_is_neither_parquet_nor_csv_is_refused_before_any_work(tmp_path):
    write_parquet(_tx(), tmp_path / "tx.parquet")
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.parquet"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.json")])
    (line,) = _errors(result)
    assert "out.json" in line and ".csv" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "tx.parquet"]


# --------------------------------------------------------------------------- frames users have
FRAME_CONFIG = {"targets": [
    {"name": "s", "agg": "sum", "window": {"duration": "7d", "mode": "trailing"}},
    {"name": "g", "agg": "max", "mcc": [5411], "fill": float("nan"), "window": {"period": "day", "mode": "full"}},
]}


def _arrow_tx():
    import pyarrow as pa

    return pa.table({
        "user_id": pa.array(["b", "a", "a", "b", "a"]).dictionary_encode(),
        "timestamp": pa.array([5, 0, 3_600, 86_400 * 9, 60], pa.timestamp("s", tz="UTC")).cast(pa.timestamp("us", "UTC")),
        "amount": pa.array([2.0, 1.0, None, 4.0, 8.0]),
        "mcc": pa.array([5411, 5411, 1, 5411, 5411], pa.int16()),
        "note": pa.array([[1], [2, 3], None, [], [4]], pa.list_(pa.int64())),
    })


def _expected():
    import gpu_targets

    plain = _arrow_tx().drop_columns(["note"]).to_pandas()
    plain["user_id"] = plain["user_id"].astype(str)
    return gpu_targets.generate(plain, FRAME_CONFIG, backend="cpu")[["s", "g"]].to_numpy()


def test_pandas_with_arrow_dtypes():
    import gpu_targets

    frame = _arrow_tx().to_pandas(types_mapper=pd.ArrowDtype)
    out = gpu_targets.generate(frame, FRAME_CONFIG, backend="cpu")
    np.testing.assert_array_equal(out[["s", "g"]].to_numpy(dtype=np.float64), _expected())
    for c in frame.columns:  # carried through unchanged, Arrow dtypes included
        assert out[c].dtype == frame[c].dtype
        assert out[c].equals(frame[c])


def test_pyarrow_table_in_table_out():
    import pyarrow as pa

    import gpu_targets

    table = _arrow_tx()
    out = gpu_targets.generate(table, FRAME_CONFIG, backend="cpu")
    assert isinstance(out, pa.Table)
    assert out.select(table.column_names).equals(table)
    got = np.column_stack([out["s"].to_numpy(zero_copy_only=False), out["g"].to_numpy(zero_copy_only=False)])
    np.testing.assert_array_equal(got, _expected())


def test_polars_in_polars_out_eager_and_lazy():
    pl = pytest.importorskip("polars")
    import gpu_targets

    frame = pl.from_arrow(_arrow_tx())
    out = gpu_targets.generate(frame, FRAME_CONFIG, backend="cpu")
    assert isinstance(out, pl.DataFrame)
    assert out.select(frame.columns).equals(frame)
    np.testing.assert_array_equal(out.select("s", "g").to_numpy().astype(np.float64), _expected())
    lazy = gpu_targets.generate(frame.lazy(), FRAME_CONFIG, backend="cpu")
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(out)


def test_something_that_is_not_a_frame_is_a_data_error():
    import gpu_targets
    from gpu_targets.transactions import DataError

    with pytest.raises(DataError, match="got list"):
        gpu_targets.generate([1, 2, 3], FRAME_CONFIG, backend="cpu")


# --------------------------------------------------------------------------- composite users
COMPOSITE = {"columns": {"user": ["client", "card"]}, "targets": [
    {"name": "s", "agg": "sum", "window": {"duration": "7d", "mode": "trailing"}},
    {"name": "n", "agg": "count", "window": {"period": "month", "mode": "full"}},
]}


def _cards() -> pd.DataFrame:
    from gpu_targets.datasets import synthetic_transactions

    f = synthetic_transactions(n_users=20, tx_per_user=40, seed=5).rename(columns={"user_id": "client"})
    f["client"] = "c" + f["client"].astype(str)
    f["card"] = (np.arange(len(f)) * 7 % 3).astype(np.int64)
    return f


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_composite_users_are_the_distinct_tuples(backend):
    import gpu_targets

    frame = _cards()
    out = gpu_targets.generate(frame, COMPOSITE, backend=backend)
    joined = frame.assign(uc=frame["client"] + "/" + frame["card"].astype(str))
    single = gpu_targets.generate(joined, {**COMPOSITE, "columns": {"user": "uc"}}, backend=backend)
    np.testing.assert_allclose(out[["s", "n"]].to_numpy(), single[["s", "n"]].to_numpy(), rtol=1e-6)
    assert list(out.columns) == [*frame.columns, "s", "n"]  # the user columns as they were
    for c in frame.columns:
        assert out[c].equals(frame[c])


def test_a_null_part_of_a_composite_user_is_a_null_user():
    import gpu_targets
    from gpu_targets.transactions import DataError

    frame = _cards()
    frame["card"] = frame["card"].astype("Int64")
    frame.loc[3, "card"] = pd.NA
    with pytest.raises(DataError, match="null"):
        gpu_targets.generate(frame, COMPOSITE, backend="cpu")
    out = gpu_targets.generate(frame, {**COMPOSITE, "on_invalid": "drop"}, backend="cpu")
    assert len(out) == len(frame) - 1


def test_composite_user_config_errors():
    with pytest.raises(ConfigError, match="distinct"):
        load_config({**COMPOSITE, "columns": {"user": ["client", "client"]}})
    with pytest.raises(ConfigError, match="distinct"):
        load_config({**COMPOSITE, "columns": {"user": ["client", "amount"]}})
    assert load_config({**COMPOSITE, "columns": {"user": ["client"]}}).columns.user == "client"


def test_composite_users_in_the_distributed_job(tmp_path):
    pytest.importorskip("dask")
    from gpu_targets import distributed

    frame = _cards()
    write_parquet(frame, tmp_path / "tx.parquet")
    out = distributed.generate(tmp_path / "tx.parquet", COMPOSITE, tmp_path / "out", backend="cpu",
                               partition_rows=200)
    got = pd.read_parquet(out).sort_values(["client", "card", "timestamp", "amount"]).reset_index(drop=True)
    import gpu_targets

    want = gpu_targets.generate(frame, COMPOSITE, backend="cpu")
    want = want.sort_values(["client", "card", "timestamp", "amount"]).reset_index(drop=True)
    np.testing.assert_allclose(got[["s", "n"]].to_numpy(), want[["s", "n"]].to_numpy(), rtol=1e-6)


# --------------------------------------------------------------------------- SDSJ real time
SDSJ_TARGETS = [{"name": "m", "agg": "sum", "window": {"period": "month", "mode": "expanding"}},
                {"name": "w", "agg": "count", "window": {"period": "week", "mode": "full"}}]


def _sdsj_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": np.array([7, 7, 7, 8], dtype=np.int64),
        "tr_datetime": ["0 10:23:26", "30 23:59:60", "31 00:00:01", "5 12:00:00"],
        "mcc_code": np.array([5411, 5411, 5411, 6011], dtype=np.int32),
        "amount": [-1.0, -2.0, -4.0, -8.0],
        "term_id": ["a", None, "b", "c"],
    })


def test_sdsj_start_date_makes_months_real_and_keeps_tr_datetime():
    import gpu_targets

    frame = _sdsj_frame()
    cfg = {"format": "sdsj2016", "format_options": {"start_date": "2014-08-01"}, "targets": SDSJ_TARGETS}
    out = gpu_targets.generate(frame, cfg, backend="cpu")
    assert list(out.columns) == [*frame.columns, "tr_timestamp", "m", "w"]
    assert out["tr_datetime"].equals(frame["tr_datetime"])
    assert [str(t) for t in out["tr_timestamp"]] == ["2014-08-01 10:23:26", "2014-09-01 00:00:00",
                                                     "2014-09-01 00:00:01", "2014-08-06 12:00:00"]
    # day 30 23:59:60 is 2014-09-01 00:00:00: September's first second, so a new month
    assert out["m"].tolist() == [-1.0, -2.0, -6.0, -8.0]
    # the same targets from the parsed times under the generic schema
    generic = out[["customer_id", "tr_timestamp", "amount", "mcc_code"]].rename(
        columns={"customer_id": "user_id", "tr_timestamp": "timestamp", "mcc_code": "mcc"})
    want = gpu_targets.generate(generic, {"targets": SDSJ_TARGETS}, backend="cpu")
    np.testing.assert_array_equal(out[["m", "w"]].to_numpy(), want[["m", "w"]].to_numpy())
    # without start_date day 0 is 1970-01-01 (a Thursday), so the weeks differ
    plain = gpu_targets.generate(frame, {"format": "sdsj2016", "targets": SDSJ_TARGETS}, backend="cpu")
    assert str(plain["tr_timestamp"].iloc[0]) == "1970-01-01 10:23:26"


def test_sdsj_parsed_time_in_the_cli_output(tmp_path):
    write_parquet(_sdsj_frame(), tmp_path / "tx.parquet")
    (tmp_path / "c.yaml").write_text("format: sdsj2016\nformat_options: {start_date: 2014-08-01}\n"
                                     "targets:\n  - {name: m, agg: sum, window: {period: month, mode: expanding}}\n")
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.parquet"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.parquet"), "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["customer_id", "tr_datetime", "mcc_code", "amount", "term_id", "tr_timestamp", "m"]
    assert str(table["tr_timestamp"][1].as_py()) == "2014-09-01 00:00:00"


def test_start_date_belongs_to_sdsj_only():
    with pytest.raises(ConfigError, match="format_options.start_date"):
        load_config({"format_options": {"start_date": "2014-08-01"}, "targets": SDSJ_TARGETS})
    with pytest.raises(ConfigError, match="not a date"):
        load_config({"format": "sdsj2016", "format_options": {"start_date": "08/01/2014"}, "targets": SDSJ_TARGETS})


# --------------------------------------------------------------------------- review mends
def test_decimal_amounts_are_numbers():
    import decimal

    import pyarrow as pa

    import gpu_targets

    table = pa.table({"user_id": [1, 1], "timestamp": pa.array([0, 60], pa.timestamp("s")),
                      "amount": pa.array([decimal.Decimal("1.25"), decimal.Decimal("2.50")], pa.decimal128(10, 2)),
                      "mcc": [1, 2]})
    out = gpu_targets.generate(table, CONFIG, backend="cpu")
    assert out["s"].to_pylist() == [1.25, 3.75] and out["amount"].type == pa.decimal128(10, 2)
    out = gpu_targets.generate(table.to_pandas(), CONFIG, backend="cpu")
    assert out["s"].tolist() == [1.25, 3.75]


def test_frames_of_other_libraries_are_refused_not_changed():
    import gpu_targets
    from gpu_targets.transactions import DataError

    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"user_id": [1], "timestamp": [0], "amount": [1.0], "mcc": [1],
                          "o": pl.Series([object()], dtype=pl.Object)})
    with pytest.raises(DataError, match="column 'o' holds Python objects"):
        gpu_targets.generate(frame, {**load_config(CONFIG).model_dump(), "time_unit": "s"}, backend="cpu")
    duckdb = pytest.importorskip("duckdb")
    with pytest.raises(DataError, match="duckdb"):
        gpu_targets.generate(duckdb.sql("select 1 as user_id"), CONFIG, backend="cpu")


def test_composite_user_null_names_the_users_column_and_other_formats_refuse_columns():
    import gpu_targets
    from gpu_targets.transactions import DataError

    frame = _cards()
    frame["card"] = frame["card"].astype("Int64")
    frame.loc[3, "card"] = pd.NA
    with pytest.raises(DataError, match=r"column 'card' \(part of the user\) has 1 null values \(first rows: 3\)"):
        gpu_targets.generate(frame, COMPOSITE, backend="cpu")
    with pytest.raises(ConfigError, match="format tabformer reads its own columns"):
        load_config({**COMPOSITE, "format": "tabformer"})
    with pytest.raises(ConfigError, match="tr_timestamp"):
        load_config({"format": "sdsj2016", "targets": [
            {"name": "tr_timestamp", "agg": "sum", "window": {"period": "day", "mode": "expanding"}}]})


def test_csv_output_checks_come_before_the_work(tmp_path):
    frame = _tx().assign(blob=[b"\xff", b"a", b"b"])
    write_parquet(frame, tmp_path / "tx.parquet")
    (tmp_path / "c.yaml").write_text(CONFIG)
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.parquet"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.csv")])
    (line,) = _errors(result)
    assert "column 'blob'" in line and ".parquet" in line
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "tx.parquet"), "-c", str(tmp_path / "c.yaml"),
                                       "-o", str(tmp_path / "out.csv"), "--scheduler", "local"])
    (line,) = _errors(result)
    assert "directory of Parquet files" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "tx.parquet"]


def test_one_mistake_is_one_problem_even_in_a_union():
    for raw in ({"targets": [{"name": "t", "agg": "sum", "mcc": "5411", "window": {"period": "day", "mode": "full"}}]},
                {"columns": {"user": [1, "b"]}, "targets": [{"name": "t", "agg": "sum",
                                                           "window": {"period": "day", "mode": "full"}}]},
                {"format": "sdsj2016", "format_options": {"start_date": "1500-01-01"}, "targets": [
                    {"name": "t", "agg": "sum", "window": {"period": "day", "mode": "full"}}]}):
        with pytest.raises(ConfigError) as info:
            load_config(raw)
        assert len(info.value.problems) == 1, str(info.value)
    with pytest.raises(ConfigError) as info:  # an unknown key beside a missing one it is not a typo of
        load_config("targets:\n  - {name: a, agg: sum, fil: 0}\n")
    assert len(info.value.problems) == 2 and "'fill'" in str(info.value) and "window" in str(info.value)
