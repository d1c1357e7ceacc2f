"""The gpu-targets command: generate, validate, demo, describe, and its one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gpu_targets
from gpu_targets.cli import main
from gpu_targets.io import write_parquet

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SDSJ = DATA / "sberbank_sdsj2016_transactions_partial.parquet"

CONFIG = """\
targets:
  - {name: grocery_sum_day, agg: sum, mcc: [5411], window: {period: day, mode: expanding}}
  - {name: spend_cnt_7d, agg: count, sign: negative, window: {duration: 7d, mode: trailing}}
  - {name: top_month, agg: topk, k: 2, fill: nan, window: {period: month, mode: full}}
"""
TARGETS = ["grocery_sum_day", "spend_cnt_7d", "top_month_1", "top_month_2"]


def _transactions() -> pd.DataFrame:
    """Two users, unsorted, with a tie and two extra columns."""
    return pd.DataFrame(
        {
            "user_id": np.array([2, 1, 1, 1, 2, 1], dtype=np.int64),
            "timestamp": pd.to_datetime(
                ["2021-01-03 09:00", "2021-01-01 10:00", "2021-01-01 10:00", "2021-01-02 08:00",
                 "2021-01-01 12:00", "2021-02-01 00:00"]
            ),
            "amount": [-5.0, -10.0, -2.5, 7.0, -1.0, -3.0],
            "mcc": np.array([5411, 5411, 5411, 5912, 6011, 5411], dtype=np.int32),
            "tr_type": np.array([1010, 1030, 1030, 7070, 2010, 1010], dtype=np.int32),
            "note": ["a", "b", "c", "d", "e", "f"],
        }
    )


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def tx_file(tmp_path) -> Path:
    path = tmp_path / "tx.parquet"
    write_parquet(_transactions(), path)
    return path


def _user_error(result, *needles: str) -> str:
    """Exit code 2, one line ``error: ...`` on stderr naming every needle, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _no_files_but(directory: Path, *names: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)


# --------------------------------------------------------------------------- generate
def _write_input(kind: str, tmp_path: Path) -> str:
    frame = _transactions()
    if kind == "file":
        write_parquet(frame, tmp_path / "tx.parquet")
        return str(tmp_path / "tx.parquet")
    if kind in ("dir", "glob"):
        (tmp_path / "ds").mkdir()
        write_parquet(frame.iloc[:3], tmp_path / "ds" / "part-0.parquet")
        write_parquet(frame.iloc[3:], tmp_path / "ds" / "part-1.parquet")
        return str(tmp_path / "ds") if kind == "dir" else str(tmp_path / "ds" / "part-*.parquet")
    frame.to_csv(tmp_path / "tx.csv", index=False)
    return str(tmp_path / "tx.csv")


@pytest.mark.parametrize("kind", ["file", "dir", "glob", "csv"])
def test_generate_round_trip(runner, tmp_path, config, kind):
    source = _write_input(kind, tmp_path)
    out = tmp_path / "out.parquet"
    result = runner.invoke(main, ["generate", source, "-c", str(config), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "6 rows, 4 target columns, backend cpu" in result.stdout
    assert "read" in result.stdout and "compute" in result.stdout and "write" in result.stdout

    got = pd.read_parquet(out)
    frame = _transactions()
    assert list(got.columns) == list(frame.columns) + TARGETS
    assert got["note"].tolist() == frame["note"].tolist()  # input row order, extra columns carried
    assert got["tr_type"].tolist() == frame["tr_type"].tolist()
    for c in TARGETS:
        assert got[c].dtype == np.float32
    want = gpu_targets.generate(frame, CONFIG, backend="reference")
    for c in TARGETS:
        np.testing.assert_allclose(got[c].to_numpy(), want[c].to_numpy(), rtol=1e-6, equal_nan=True)
    # hand-checked: user 1's 5411 rows of 2021-01-01 are tied; the first does not see the second
    assert got["grocery_sum_day"].tolist()[:3] == [-5.0, -10.0, -12.5]
    assert got["spend_cnt_7d"].tolist() == [2.0, 1.0, 2.0, 2.0, 1.0, 1.0]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_generate_spec_worked_example_from_csv(runner, tmp_path):
    amounts = [61.862096, 112.722485, 443.690425, 199.959683, 72.123675, 422.050677, 420.853556, 211.319643,
               258.552511, 30.908352]
    mccs = [5812, 5942, 5411, 5411, 5411, 5942, 5942, 5942, 5411, 5812]
    days = [1, 1, 2, 2, 2, 2, 2, 2, 3, 3]
    pd.DataFrame({"user_id": 7, "timestamp": days, "amount": amounts, "mcc": mccs}).to_csv(tmp_path / "x.csv", index=False)
    out = tmp_path / "out.parquet"
    result = runner.invoke(
        main, ["generate", str(tmp_path / "x.csv"), "-c", str(REPO / "configs" / "seed_daily_5411.yaml"),
               "-o", str(out), "--backend", "reference"],
    )
    assert result.exit_code == 0, result.output
    want = [0.0, 0.0, 443.690425, 643.650108, 715.773784, 715.773784, 715.773784, 715.773784, 258.552511, 258.552511]
    np.testing.assert_allclose(pd.read_parquet(out)["grocery_daily_cumsum"], want, rtol=1e-6)


def test_generate_sdsj2016_format(runner, tmp_path):
    frame = pd.DataFrame(
        {
            "customer_id": np.array([11, 11, 11, 22], dtype=np.int64),
            "tr_datetime": ["0 10:00:00", "0 11:59:60", "1 09:00:00", "0 00:00:00"],
            "mcc_code": np.array([5411, 5411, 5411, 6011], dtype=np.int32),
            "tr_type": np.array([1010, 1010, 1010, 2010], dtype=np.int32),
            "amount": [-10.0, -5.0, -3.0, -100.0],
            "term_id": ["t1", None, "t2", None],
        }
    )
    write_parquet(frame, tmp_path / "sdsj.parquet")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets:\n  - {name: grocery_sum_day, agg: sum, mcc: [5411], window: {period: day, mode: expanding}}\n")
    out = tmp_path / "out.parquet"
    args = ["generate", str(tmp_path / "sdsj.parquet"), "-c", str(cfg), "-o", str(out)]

    _user_error(runner.invoke(main, args), "user_id")  # the config says generic
    assert not out.exists()

    result = runner.invoke(main, args + ["--format", "sdsj2016"])
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(out)
    assert list(got.columns) == list(frame.columns) + ["tr_timestamp", "grocery_sum_day"]  # the parsed time
    assert [str(t) for t in got["tr_timestamp"]] == ["1970-01-01 10:00:00", "1970-01-01 12:00:00",
                                                     "1970-01-02 09:00:00", "1970-01-01 00:00:00"]
    assert got["grocery_sum_day"].tolist() == [-10.0, -15.0, -3.0, 0.0]


def test_format_option_overrides_the_config(runner, tmp_path, tx_file):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("format: sdsj2016\n" + CONFIG)
    out = tmp_path / "out.parquet"
    _user_error(runner.invoke(main, ["generate", str(tx_file), "-c", str(cfg), "-o", str(out)]), "customer_id")
    result = runner.invoke(main, ["generate", str(tx_file), "-c", str(cfg), "-o", str(out), "--format", "generic"])
    assert result.exit_code == 0, result.output


def test_truncated_input_is_named_and_nothing_is_written(runner, tmp_path, config, tx_file):
    data = tx_file.read_bytes()
    tx_file.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.parquet"
    _user_error(runner.invoke(main, ["generate", str(tx_file), "-c", str(config), "-o", str(out)]), "tx.parquet")
    _no_files_but(tmp_path, "tx.parquet", config.name)


def test_bad_file_in_an_input_directory_is_named(runner, tmp_path, config):
    _write_input("dir", tmp_path)
    bad = tmp_path / "ds" / "part-1.parquet"
    bad.write_bytes(bad.read_bytes()[:40])
    out = tmp_path / "out.parquet"
    _user_error(runner.invoke(main, ["generate", str(tmp_path / "ds"), "-c", str(config), "-o", str(out)]),
                "part-1.parquet")
    assert not out.exists()


def _drop_mcc(f):
    return f.drop(columns="mcc")


def _null_user(f):
    return f.assign(user_id=f["user_id"].astype("float64").where(f.index != 3))


def _text_amount(f):
    return f.assign(amount=f["amount"].astype(str))


def _empty(f):
    return f.iloc[:0]


@pytest.mark.parametrize(
    "spoil, needles",
    [
        (_drop_mcc, ["'mcc'"]),
        (_null_user, ["'user_id'", "1 null", "3"]),
        (_text_amount, ["'amount'"]),
        (_empty, ["no rows"]),
    ],
    ids=["missing-column", "null-user", "wrong-dtype", "empty-table"],
)
def test_bad_data_exits_2_with_one_line(runner, tmp_path, config, spoil, needles):
    write_parquet(spoil(_transactions()), tmp_path / "tx.parquet")
    out = tmp_path / "out.parquet"
    result = runner.invoke(main, ["generate", str(tmp_path / "tx.parquet"), "-c", str(config), "-o", str(out)])
    _user_error(result, *needles)
    _no_files_but(tmp_path, "tx.parquet", config.name)


def test_bad_config_is_reported_before_reading_data(runner, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("targets:\n  - {name: s, agg: sum, window: {duration: 0d, mode: trailing}}\n")
    out = tmp_path / "out.parquet"
    # the input does not exist: the config error must come first
    result = runner.invoke(main, ["generate", str(tmp_path / "absent.parquet"), "-c", str(cfg), "-o", str(out)])
    _user_error(result, "targets[0].window.duration")
    assert not out.exists()


def test_missing_input_and_output_directory(runner, tmp_path, config, tx_file):
    _user_error(runner.invoke(main, ["generate", str(tmp_path / "absent.parquet"), "-c", str(config),
                                     "-o", str(tmp_path / "o.parquet")]), "absent.parquet")
    _user_error(runner.invoke(main, ["generate", str(tx_file), "-c", str(config),
                                     "-o", str(tmp_path / "nowhere" / "o.parquet")]), "nowhere")
    _user_error(runner.invoke(main, ["generate", str(tx_file), "-c", str(tmp_path / "absent.yaml"),
                                     "-o", str(tmp_path / "o.parquet")]), "absent.yaml")
    _no_files_but(tmp_path, tx_file.name, config.name)


def test_usage_errors_are_one_line(runner, tmp_path, config, tx_file):
    _user_error(runner.invoke(main, ["generate", str(tx_file), "-o", str(tmp_path / "o.parquet")]), "--config")
    _user_error(runner.invoke(main, ["generate", str(tx_file), "-c", str(config), "-o", str(tmp_path / "o.parquet"),
                                     "--backend", "gpu"]), "--backend")
    _user_error(runner.invoke(main, ["frobnicate"]), "frobnicate")


def test_unregistered_cuda_backend_is_a_user_error(runner, tmp_path, config, tx_file):
    if "cuda" in gpu_targets.engines.available():
        pytest.skip("the cuda engine is registered")
    result = runner.invoke(main, ["generate", str(tx_file), "-c", str(config), "-o", str(tmp_path / "o.parquet"),
                                  "--backend", "cuda"])
    _user_error(result, "cuda")


def test_help_shows_defaults_and_units(runner):
    text = runner.invoke(main, ["demo", "--help"]).output
    assert "default: 2000" in text and "default: 512" in text and "Transactions per user" in text
    text = runner.invoke(main, ["generate", "--help"]).output
    assert "default: auto" in text and "float32" in text


# --------------------------------------------------------------------------- validate
def test_validate_lists_every_target_column(runner, config):
    result = runner.invoke(main, ["validate", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "3 targets, 4 float32 columns" in lines[0]
    for name, agg, window in [("grocery_sum_day", "sum", "day expanding"), ("spend_cnt_7d", "count", "7d trailing"),
                              ("top_month_1", "topk k=2 #1", "month full"), ("top_month_2", "topk k=2 #2", "month full")]:
        (line,) = [x for x in lines if x.split()[0] == name]
        assert agg in line and window in line


def test_validate_bad_config(runner, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("targets:\n  - {name: s, agg: medain, window: {period: day, mode: expanding}}\n")
    _user_error(runner.invoke(main, ["validate", str(cfg)]), "targets[0].agg", "medain")


# --------------------------------------------------------------------------- demo
def test_demo(runner, tmp_path):
    pytest.importorskip("gpu_targets.datasets")
    out = tmp_path / "demo.parquet"
    result = runner.invoke(main, ["demo", "--users", "20", "--tx-per-user", "50", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "for 20 users (1,000 transactions)" in result.stdout and "users/s" in result.stdout
    assert "grocery_sum_day" in result.stdout
    got = pd.read_parquet(out)
    assert len(got) == 1000
    assert (got.dtypes == np.float32).sum() == 8  # the packaged default config: 7 targets, one topk k=2


# --------------------------------------------------------------------------- describe
@pytest.fixture
def described(tmp_path) -> Path:
    frame = pd.DataFrame(
        {
            "user_id": np.arange(4, dtype=np.int64),
            "amount": np.array([1.0, 2.0, 3.0, 4.0]),  # float64: not a target column
            "s": np.array([0.0, 1.0, 3.0, 0.0], dtype=np.float32),
            "m": np.array([np.nan, -1.0, 2.0, 5.0], dtype=np.float32),
        }
    )
    write_parquet(frame, tmp_path / "out.parquet")
    return tmp_path / "out.parquet"


def _table(stdout: str) -> pd.DataFrame:
    lines = stdout.splitlines()
    header = lines[1].split()
    return pd.DataFrame([line.split() for line in lines[2:]], columns=header).set_index("column")


def test_describe_without_config(runner, described):
    result = runner.invoke(main, ["describe", str(described)])
    assert result.exit_code == 0, result.output
    table = _table(result.stdout)
    assert list(table.index) == ["s", "m"]  # float32 columns only
    assert float(table.loc["s", "rate"]) == 0.5
    assert float(table.loc["m", "rate"]) == 0.75  # non-zero and non-NaN
    assert float(table.loc["m", "min"]) == -1 and float(table.loc["m", "max"]) == 5
    assert float(table.loc["m", "50%"]) == 2 and float(table.loc["s", "mean"]) == 1
    assert list(table.columns) == ["rate", "mean", "std", "min", "5%", "25%", "50%", "75%", "95%", "max"]


def test_describe_with_config_uses_the_empty_window_value(runner, tmp_path, described):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "targets:\n"
        "  - {name: s, agg: sum, window: {period: day, mode: expanding}}\n"
        "  - {name: m, agg: mean, fill: 5.0, window: {period: day, mode: expanding}}\n"
    )
    result = runner.invoke(main, ["describe", str(described), "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    table = _table(result.stdout)
    assert float(table.loc["s", "rate"]) == 0.5
    assert float(table.loc["m", "rate"]) == 0.5  # NaN and the fill 5.0 are empty windows

    cfg.write_text("targets:\n  - {name: z, agg: sum, window: {period: day, mode: expanding}}\n")
    _user_error(runner.invoke(main, ["describe", str(described), "-c", str(cfg)]), "'z'")


def test_describe_plot_writes_a_png(runner, tmp_path, described):
    pytest.importorskip("matplotlib")
    png = tmp_path / "hist.png"
    result = runner.invoke(main, ["describe", str(described), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _no_files_but(tmp_path, described.name, png.name)


def test_describe_plot_without_matplotlib_names_the_extra(runner, tmp_path, described, monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    png = tmp_path / "hist.png"
    result = runner.invoke(main, ["describe", str(described), "--plot", str(png)])
    assert result.exit_code != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "pip install 'gpu_targets[plot]'" in line
    assert not png.exists()


def test_describe_marks_labels_and_warns_when_the_fill_reads_as_a_value(runner, tmp_path, described):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "targets:\n"
        "  - {name: s, agg: sum, window: {period: day, mode: next}}\n"
        "  - {name: m, agg: max, window: {duration: 1d, mode: trailing}}\n"  # fill 0 inside [-1, 5]
    )
    result = runner.invoke(main, ["describe", str(described), "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    table = _table(result.stdout)
    assert table.loc["s", "role"] == "label" and table.loc["m", "role"] == "feature"
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("warning: target 'm' (max): its fill 0") and "fill: .nan" in warning

    cfg.write_text("targets:\n  - {name: m, agg: max, fill: .nan, window: {duration: 1d, mode: trailing}}\n")
    result = runner.invoke(main, ["describe", str(described), "-c", str(cfg)])
    assert result.exit_code == 0 and not result.stderr.strip()


def test_describe_html_report_is_one_file_with_the_plots_inline(runner, tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame({
        "user_id": np.arange(n) % 7,
        "spend": np.where(rng.random(n) < 0.3, 0, rng.lognormal(3, 2, n)).astype(np.float32),  # money, 5 decades
        "flow": rng.normal(0, 1000, n).astype(np.float32),  # changes sign
        "any_atm": (rng.random(n) < 0.2).astype(np.float32),  # binary
    })
    write_parquet(frame, tmp_path / "out.parquet")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "targets:\n"
        "  - {name: spend, agg: sum, window: {period: day, mode: expanding}}\n"
        "  - {name: flow, agg: mean, fill: .nan, window: {duration: 7d, mode: forward}}\n"
        "  - {name: any_atm, agg: any, window: {duration: 7d, mode: forward}}\n"
    )
    html, png = tmp_path / "report.html", tmp_path / "hist.png"
    result = runner.invoke(main, ["describe", str(tmp_path / "out.parquet"), "-c", str(cfg), "--plot", str(png),
                                  "--html", str(html)])
    assert result.exit_code == 0, result.output
    text = html.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 1 and "<table" in text and "any_atm" in text
    assert "src='http" not in text and 'src="http' not in text  # nothing fetched from elsewhere
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _no_files_but(tmp_path, "out.parquet", "c.yaml", html.name, png.name)


# --------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.skipif(not SDSJ.exists(), reason="shared SDSJ 2016 data not present")
def test_generate_real_sdsj2016(runner, tmp_path):
    out = tmp_path / "out.parquet"
    result = runner.invoke(
        main,
        ["generate", str(SDSJ), "--format", "sdsj2016", "--config", str(REPO / "configs" / "seed20.yaml"),
         "--output", str(out), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "259,999 rows, 22 target columns" in result.stdout
    got = pd.read_parquet(out)
    original = ["customer_id", "tr_datetime", "mcc_code", "tr_type", "amount", "term_id"]
    assert len(got) == 259_999
    assert list(got.columns[:7]) == [*original, "tr_timestamp"]  # the input's columns, then the parsed time
    targets = list(got.columns[7:])
    assert len(targets) == 22 and all(got[c].dtype == np.float32 for c in targets)
    # every debit counts itself in its own trailing 7-day window
    debit = got["amount"].to_numpy() < 0
    assert (got["spend_cnt_7d"].to_numpy()[debit] >= 1).all()
