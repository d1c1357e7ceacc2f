"""Tests of the synthetic transaction generator (gpu_targets.datasets)."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpu_targets import datasets
from gpu_targets.datasets import load_calibration, synthetic_transactions

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SDSJ = SHARED_DATA / "sberbank_sdsj2016_transactions_partial.parquet"

COLUMNS = ["user_id", "timestamp", "amount", "mcc"]


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    """A sample large enough for share checks (300k rows)."""
    return synthetic_transactions(1500, 200, seed=7)


def test_same_seed_same_table_other_seed_other_table():
    a = synthetic_transactions(20, (1, 50), seed=3)
    b = synthetic_transactions(20, (1, 50), seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = synthetic_transactions(20, (1, 50), seed=4)
    assert not (len(a) == len(c) and a.equals(c))


def test_dtypes_and_columns():
    df = synthetic_transactions(5, 10)
    assert list(df.columns) == COLUMNS
    assert df["user_id"].dtype == np.int64
    assert df["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert df["amount"].dtype == np.float64
    assert df["mcc"].dtype == np.int32
    assert isinstance(df.index, pd.RangeIndex)
    for unit in ["s", "ms", "us", "ns", "D"]:
        assert synthetic_transactions(5, 10, time_unit=unit)["timestamp"].dtype == np.int64


def test_sorted_by_user_then_time():
    df = synthetic_transactions(30, (0, 80), seed=11)
    u = df["user_id"].to_numpy()
    t = df["timestamp"].to_numpy().view(np.int64)
    du, dt = np.diff(u), np.diff(t)
    assert np.all((du > 0) | ((du == 0) & (dt >= 0)))


def test_shuffle_is_a_permutation_of_the_sorted_rows():
    ordered = synthetic_transactions(25, (1, 60), seed=5)
    shuffled = synthetic_transactions(25, (1, 60), seed=5, shuffle=True)
    assert len(shuffled) == len(ordered)
    assert not shuffled["user_id"].is_monotonic_increasing
    key = COLUMNS
    pd.testing.assert_frame_equal(
        shuffled.sort_values(key, kind="stable", ignore_index=True),
        ordered.sort_values(key, kind="stable", ignore_index=True),
    )


def test_exact_counts_per_user_and_user_ids():
    df = synthetic_transactions(7, 13, user_id_start=100)
    counts = df.groupby("user_id").size()
    assert counts.index.tolist() == list(range(100, 107))
    assert (counts == 13).all()


def test_count_range_per_user():
    df = synthetic_transactions(200, (0, 5), seed=2)
    counts = df.groupby("user_id").size().reindex(range(200), fill_value=0)
    assert counts.between(0, 5).all()
    assert set(counts.unique()) == set(range(6))  # every count in [0, 5] occurs
    assert len(df) == counts.sum()


def test_empty_results():
    for kw in ({"n_users": 0}, {"n_users": 3, "tx_per_user": 0}, {"n_users": 3, "tx_per_user": 0, "time_unit": "D"}):
        df = synthetic_transactions(**kw)
        assert len(df) == 0 and list(df.columns) == COLUMNS
    assert synthetic_transactions(3, 0)["timestamp"].dtype == np.dtype("datetime64[ns]")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_users": -1},
        {"n_users": 2, "tx_per_user": -1},
        {"n_users": 2, "tx_per_user": (5, 2)},
        {"n_users": 2, "tx_per_user": (1, 2, 3)},
        {"n_users": 2, "time_unit": "h"},
        {"n_users": 2, "start": "2262-01-01"},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic_transactions(**kwargs)


def test_integer_time_units_match_the_datetimes():
    kw = dict(n_users=10, tx_per_user=50, seed=9, start="2020-02-28")
    ts = synthetic_transactions(**kw)["timestamp"]
    ns = ts.to_numpy().view(np.int64)
    days = synthetic_transactions(**kw, time_unit="D")["timestamp"].to_numpy()
    np.testing.assert_array_equal(days, ns // (86_400 * 10**9))
    np.testing.assert_array_equal(days, (ts - pd.Timestamp("1970-01-01")).dt.days.to_numpy())
    for unit, per_s in [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)]:
        got = synthetic_transactions(**kw, time_unit=unit)["timestamp"].to_numpy()
        np.testing.assert_array_equal(got, ns // 10**9 * per_s)


def test_times_are_whole_seconds_inside_the_window():
    calib = load_calibration()
    df = synthetic_transactions(50, 100, seed=1, start="2019-06-01")
    ts = df["timestamp"]
    assert (ts.dt.floor("s") == ts).all()
    span = df.groupby("user_id")["timestamp"].agg(["min", "max"])
    assert (span["min"].dt.normalize() == pd.Timestamp("2019-06-01")).all()
    last_day = pd.Timestamp("2019-06-01") + pd.Timedelta(days=calib["time"]["window_days"] - 1)
    assert (span["max"].dt.normalize() == last_day).all()


def test_mcc_shares_follow_the_calibration(big):
    calib = load_calibration()["mcc"]
    share = big["mcc"].value_counts(normalize=True)
    expected = dict(zip(calib["codes"], calib["shares"]))
    for code in (6011, 5411, 4814, 5912):
        assert abs(share.get(code, 0.0) - expected[code]) < 0.03, code
    assert share.get(5411, 0) > share.get(5912, 0) * 3  # grocery common, pharmacy rarer
    known = set(calib["codes"]) | set(calib["other_codes"])
    assert set(share.index) <= known


def test_users_have_different_mcc_mixes(big):
    per_user = big.assign(g=big["mcc"] == 5411).groupby("user_id")["g"].mean()
    # Dirichlet preferences: far more spread than binomial noise (sd ~ 0.027 at 200 rows)
    assert per_user.std() > 0.08


def test_amounts(big):
    a = big["amount"].to_numpy()
    assert np.all(a != 0) and np.all(np.isfinite(a))
    np.testing.assert_allclose(a * 100, np.round(a * 100), atol=1e-6 * np.abs(a * 100).max())
    neg = float((a < 0).mean())
    assert 0.85 < neg < 0.95  # SDSJ: 89.8% debits
    # cash desk (6010) is mostly credits (deposits), grocery almost never
    assert (big.loc[big["mcc"] == 6010, "amount"] > 0).mean() > 0.8
    assert (big.loc[big["mcc"] == 5411, "amount"] > 0).mean() < 0.02


def test_time_of_day(big):
    ts = big["timestamp"]
    calib = load_calibration()["time"]
    midnight = float((ts == ts.dt.normalize()).mean())
    assert abs(midnight - calib["midnight_share"]) < 0.02
    hours = ts.dt.hour.value_counts(normalize=True)
    assert hours[13] > 5 * hours[3]  # busy at lunch, quiet at night


def test_docstring_examples():
    result = doctest.testmod(datasets, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.skipif(not SDSJ.exists(), reason="shared/data with the SDSJ 2016 file is absent")
def test_top5_mccs_match_the_real_data(big):
    real = pd.read_parquet(SDSJ, columns=["mcc_code"])["mcc_code"]
    top_real = set(real.value_counts().index[:5])
    top_syn = set(big["mcc"].value_counts().index[:5])
    assert len(top_real & top_syn) >= 4, (top_real, top_syn)
