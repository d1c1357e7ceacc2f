"""Hand-written cases of SPEC.md, for the reference engine and every engine.

Every expected number here is worked out by hand from SPEC.md (not taken from an
engine); the ``backend`` fixture runs each case on ``reference`` and on every
registered engine, and a few cases are also compared engine-vs-reference.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from conftest import RTOL_STD, assert_close, assert_matches_reference, run
from gpu_targets import DataError, generate

nan = float("nan")
DAY = 86400


# --------------------------------------------------------------------------- helpers


def P(period: str, mode: str) -> dict:
    return {"period": period, "mode": mode}


def D(duration: str, mode: str) -> dict:
    return {"duration": duration, "mode": mode}


def T(name: str, agg: str, window: dict, **kw) -> dict:
    return {"name": name, "agg": agg, "window": window, **kw}


def cfg(*targets: dict, **top) -> dict:
    return {"targets": list(targets), **top}


def frame(times, amounts, *, users=None, mcc=None, **extra) -> pd.DataFrame:
    n = len(amounts)
    return pd.DataFrame(
        {
            "user_id": [1] * n if users is None else users,
            "timestamp": times,
            "amount": amounts,
            "mcc": [5411] * n if mcc is None else mcc,
            **extra,
        }
    )


def utc(*texts: str) -> pd.Series:
    """Naive datetime64[ns] (= UTC) from ISO strings."""
    return pd.Series(pd.to_datetime(list(texts))).astype("datetime64[ns]")


def check(backend: str, data: pd.DataFrame, config: dict, expected: dict) -> pd.DataFrame:
    """Run ``generate`` and compare the named target columns with hand-computed values."""
    out = run(data, config, backend)
    stds = {t["name"] for t in config["targets"] if t["agg"] == "std"}
    for col, values in expected.items():
        assert out[col].dtype == np.float32, f"{col}: dtype {out[col].dtype}"
        rtol = RTOL_STD if col in stds else 1e-5
        assert_close(out[col].to_numpy(), values, rtol=rtol, label=f"{backend}: {col}")
    return out


# --------------------------------------------------------------------------- ties


def test_ties_expanding_and_trailing_exclude_later_tied_rows(backend):
    data = frame([10, 10, 20], [1.0, 2.0, 4.0])
    config = cfg(
        T("e", "sum", P("day", "expanding")),
        T("ce", "count", P("day", "expanding")),
        T("tr", "sum", D("1h", "trailing")),
        T("ctr", "count", D("1h", "trailing")),
        T("fw", "sum", D("15s", "forward")),
        T("cfw", "count", D("15s", "forward")),
        T("full", "sum", P("day", "full")),
        time_unit="s",
    )
    check(backend, data, config, {
        "e": [1, 3, 7], "ce": [1, 2, 3],
        "tr": [1, 3, 7], "ctr": [1, 2, 3],
        # forward (t, t+D] excludes the tied row and the row itself
        "fw": [4, 4, 0], "cfw": [1, 1, 0],
        "full": [7, 7, 7],
    })


def test_ties_are_ordered_by_input_row_not_by_value(backend):
    # sorted by (time, input row): (5, 1.0)[row 1], (10, 2.0)[row 0], (10, 4.0)[row 2]
    data = frame([10, 5, 10], [2.0, 1.0, 4.0])
    config = cfg(
        T("e", "sum", P("day", "expanding")),
        T("mx", "max", P("day", "expanding")),
        T("mn", "min", D("1d", "trailing")),
        T("top", "topk", P("day", "expanding"), k=2, fill=-1.0),
        T("fw", "sum", D("5s", "forward")),
        time_unit="s",
    )
    check(backend, data, config, {
        "e": [3, 1, 7],
        "mx": [2, 1, 4],
        "mn": [1, 1, 1],
        "top_1": [2, 1, 4], "top_2": [1, -1, 2],
        "fw": [0, 6, 0],
    })


def test_ties_first_row_of_tie_sees_only_itself(backend):
    data = frame([0, 0], [9.0, 5.0])
    config = cfg(
        T("mx", "max", P("hour", "expanding")),
        T("top", "topk", D("1h", "trailing"), k=2, fill=nan),
        T("n", "count", D("1s", "trailing")),
        time_unit="s",
    )
    check(backend, data, config, {"mx": [9, 9], "top_1": [9, 9], "top_2": [nan, 5], "n": [1, 2]})
    swapped = frame([0, 0], [5.0, 9.0])
    check(backend, swapped, config, {"mx": [5, 9], "top_1": [5, 9], "top_2": [nan, 5], "n": [1, 2]})


# --------------------------------------------------------------------------- nulls


@pytest.mark.parametrize(
    "amounts",
    [
        [nan, 1.0, nan, 4.0],
        pd.array([None, 1.0, None, 4.0], dtype="Float64"),
        pd.array([None, 1, None, 4], dtype="Int64"),
    ],
    ids=["float-nan", "Float64-NA", "Int64-NA"],
)
def test_null_amount_contributes_nothing_but_gets_targets(backend, amounts):
    data = frame([0, 1, 2, 3], amounts)
    config = cfg(
        T("s", "sum", P("year", "expanding")),
        T("n", "count", P("year", "expanding")),
        T("m", "mean", P("year", "expanding"), fill=-1.0),
        T("mx", "max", P("year", "expanding"), fill=nan),
        T("a", "any", P("year", "expanding")),
        T("sd", "std", P("year", "expanding"), fill=-1.0),
        T("tn", "count", D("2d", "trailing")),
        T("fs", "sum", D("10d", "forward")),
        T("full", "sum", P("year", "full")),
        time_unit="D",
    )
    out = check(backend, data, config, {
        "s": [0, 1, 1, 5],
        "n": [0, 1, 1, 2],
        "m": [-1, 1, 1, 2.5],
        "mx": [nan, 1, 1, 4],
        "a": [0, 1, 1, 1],
        "sd": [-1, -1, -1, 2.1213203435596424],
        "tn": [0, 1, 1, 1],
        "fs": [5, 4, 4, 0],
        "full": [5, 5, 5, 5],
    })
    assert len(out) == 4


@pytest.mark.parametrize(
    "mcc",
    [
        pd.array([5411, None, 5411, 6011], dtype="Int64"),
        [5411.0, nan, 5411.0, 6011.0],
    ],
    ids=["Int64-NA", "float-NaN"],
)
def test_null_mcc_matches_no_filter_but_counts_without_one(backend, mcc):
    data = frame([0, 0, 0, 0], [1.0, 2.0, 4.0, 8.0], mcc=mcc)
    config = cfg(
        T("grocery", "sum", P("day", "expanding"), mcc=[5411]),
        T("scalar_mcc", "sum", P("day", "expanding"), mcc=5411),
        T("all", "sum", P("day", "expanding")),
        T("atm", "sum", P("day", "expanding"), mcc=[6011]),
        T("two", "count", P("day", "expanding"), mcc=[5411, 6011]),
        T("zero", "count", P("day", "full"), mcc=[0]),
        T("unused", "count", P("day", "full"), mcc=[9999, 1]),
        time_unit="D",
    )
    check(backend, data, config, {
        "grocery": [1, 1, 5, 5],
        "scalar_mcc": [1, 1, 5, 5],
        "all": [1, 3, 7, 15],
        "atm": [0, 0, 0, 8],
        "two": [1, 1, 2, 3],
        "zero": [0, 0, 0, 0],
        "unused": [0, 0, 0, 0],
    })


# --------------------------------------------------------------------------- filters


def test_sign_filters_and_abs(backend):
    data = frame([0, 1, 2, 3, 4], [-5.0, 3.0, -2.0, 0.0, nan], mcc=[5411, 5411, 6011, 5411, 5411])
    y = P("year", "expanding")
    config = cfg(
        T("neg", "sum", y, sign="negative"),
        T("neg_abs", "sum", y, sign="negative", abs=True),
        T("pos", "sum", y, sign="positive"),
        T("pos_n", "count", y, sign="positive"),
        T("any_n", "count", y, sign="any"),
        T("abs_sum", "sum", y, abs=True),
        T("neg_max", "max", y, sign="negative"),
        T("neg_abs_max", "max", y, sign="negative", abs=True),
        T("neg_abs_min", "min", y, sign="negative", abs=True),
        T("pos_min", "min", y, sign="positive", fill=nan),
        T("abs_min", "min", y, abs=True),
        T("neg_grocery", "sum", y, sign="negative", mcc=[5411]),
        T("neg_top", "topk", P("year", "full"), k=3, sign="negative", abs=True, fill=0.0),
        time_unit="D",
    )
    check(backend, data, config, {
        "neg": [-5, -5, -7, -7, -7],
        "neg_abs": [5, 5, 7, 7, 7],
        "pos": [0, 3, 3, 3, 3],
        "pos_n": [0, 1, 1, 1, 1],  # zero is neither negative nor positive
        "any_n": [1, 2, 3, 4, 4],  # NaN never counts
        "abs_sum": [5, 8, 10, 10, 10],
        "neg_max": [-5, -5, -2, -2, -2],
        "neg_abs_max": [5, 5, 5, 5, 5],
        "neg_abs_min": [5, 5, 2, 2, 2],
        "pos_min": [nan, 3, 3, 3, 3],
        "abs_min": [5, 3, 2, 0, 0],
        "neg_grocery": [-5, -5, -5, -5, -5],
        "neg_top_1": [5] * 5, "neg_top_2": [2] * 5, "neg_top_3": [0] * 5,
    })


# --------------------------------------------------------------------------- empty windows

WINDOWS = {
    "expanding": P("day", "expanding"),
    "full": P("day", "full"),
    "next": P("day", "next"),
    "trailing": D("1d", "trailing"),
    "forward": D("1d", "forward"),
}


@pytest.mark.parametrize("window", list(WINDOWS), ids=list(WINDOWS))
@pytest.mark.parametrize("fill", [-1.5, nan, "nan"], ids=["fill-1.5", "fill-nan", "fill-nan-string"])
def test_empty_window_for_every_agg(backend, window, fill):
    # the only row's MCC matches no filter: every window is empty
    data = frame([0], [3.0], mcc=[5411])
    w = WINDOWS[window]
    aggs = ["count", "sum", "any", "mean", "min", "max", "std"]
    config = cfg(
        *(T(a, a, w, mcc=[1234], fill=fill) for a in aggs),
        T("top", "topk", w, k=3, mcc=[1234], fill=fill),
        time_unit="D",
    )
    f = nan if isinstance(fill, str) else fill
    check(backend, data, config, {
        "count": [0], "sum": [0], "any": [0],
        "mean": [f], "min": [f], "max": [f], "std": [f],
        "top_1": [f], "top_2": [f], "top_3": [f],
    })


def test_std_needs_two_values(backend):
    data = frame([0, 0, 1, 1], [3.0, 4.0, 7.0, 7.0])
    config = cfg(
        T("sd", "std", P("day", "expanding"), fill=-1.0),
        T("sd_full", "std", P("day", "full"), fill=nan),
        T("sd_tr", "std", D("1d", "trailing"), fill=-2.0),
        time_unit="D",
    )
    check(backend, data, config, {
        "sd": [-1, 0.7071067811865476, -1, 0.0],
        "sd_full": [0.7071067811865476, 0.7071067811865476, 0, 0],
        "sd_tr": [-2, 0.7071067811865476, -2, 0.0],
    })


def test_std_is_sample_std_ddof_1(backend):
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]  # population std 2, sample std sqrt(32/7)
    data = frame(list(range(8)), values)
    config = cfg(
        T("sd", "std", P("year", "expanding"), fill=nan),
        T("sd_full", "std", P("year", "full")),
        T("sd_tr", "std", D("100d", "trailing"), fill=nan),
        T("sd_fw", "std", D("100d", "forward"), fill=nan),
        time_unit="D",
    )
    expanding = [nan, 1.4142135623730951, 1.1547005383792515, 1.0, 1.0954451150103321,
                 1.0954451150103321, 1.511857892036909, 2.138089935299395]
    check(backend, data, config, {
        "sd": expanding,
        "sd_full": [math.sqrt(32 / 7)] * 8,
        "sd_tr": expanding,
        # forward of row 0: the other seven values
        "sd_fw": [1.9023794624226837, 1.96638416050035, 2.0, 1.9148542155126762, 2.0, 1.4142135623730951,
                  nan, nan],
    })


def test_std_without_cancellation_on_large_offsets(backend):
    data = frame([0, 1, 2], [1e8 + 1, 1e8 + 2, 1e8 + 3])
    config = cfg(
        T("sd", "std", P("year", "full")),
        T("sd_tr", "std", D("10d", "trailing"), fill=nan),
        time_unit="D",
    )
    check(backend, data, config, {"sd": [1.0, 1.0, 1.0], "sd_tr": [nan, 0.7071067811865476, 1.0]})


def test_two_prod_is_exact_from_python_and_from_njit():
    """elementwise.two_prod: Dekker's split from Python, an FMA in njit code (the cpu
    engine's std); both give p = fl(a * b) and p + e = a * b exactly (checked with
    fractions), huge, tiny and negative factors included."""
    from fractions import Fraction

    from numba import njit

    from gpu_targets.engines.elementwise import two_prod

    jitted = njit(lambda a, b: two_prod(a, b))
    rng = np.random.default_rng(5)
    xs = np.concatenate([rng.normal(0, 1, 200) * 10.0 ** rng.integers(-150, 150, 200), [1e8 + 1, -3.0, 0.1, 1e-300]])
    for a, b in zip(xs, np.roll(xs, 1)):
        if abs(a * b) < 1e-290:  # the error would be subnormal: not representable exactly
            continue
        for p, e in (two_prod(a, b), jitted(a, b)):
            assert p == a * b
            assert Fraction(p) + Fraction(e) == Fraction(a) * Fraction(b)


# --------------------------------------------------------------------------- topk


def test_topk_larger_than_window_and_duplicates(backend):
    data = frame([0, 1, 2], [3.0, 1.0, 2.0])
    config = cfg(
        T("full", "topk", P("year", "full"), k=5, fill=-1.0),
        T("exp", "topk", P("year", "expanding"), k=2, fill=nan),
        T("tr", "topk", D("2d", "trailing"), k=2, fill=0.0),
        T("fw", "topk", D("1d", "forward"), k=2, fill=-9.0),
        time_unit="D",
    )
    out = check(backend, data, config, {
        "full_1": [3, 3, 3], "full_2": [2, 2, 2], "full_3": [1, 1, 1], "full_4": [-1, -1, -1], "full_5": [-1, -1, -1],
        "exp_1": [3, 3, 3], "exp_2": [nan, 1, 2],
        "tr_1": [3, 3, 2], "tr_2": [0, 1, 1],
        "fw_1": [1, 2, -9], "fw_2": [-9, -9, -9],
    })
    assert [c for c in out.columns if c.startswith("full_")] == [f"full_{i}" for i in range(1, 6)]

    dup = frame([0, 0, 0], [5.0, 1.0, 5.0])
    check(backend, dup, cfg(T("t", "topk", P("day", "full"), k=2), time_unit="D"), {"t_1": [5, 5, 5], "t_2": [5, 5, 5]})


# --------------------------------------------------------------------------- calendar periods


def test_full_and_next_periods_with_a_gap(backend):
    data = frame([0, 0, 1, 3], [1.0, 2.0, 4.0, 8.0])
    config = cfg(
        T("exp", "sum", P("day", "expanding")),
        T("full", "sum", P("day", "full")),
        T("next", "sum", P("day", "next")),
        T("next_mean", "mean", P("day", "next"), fill=nan),
        T("next_n", "count", P("day", "next")),
        T("next_any", "any", P("day", "next")),
        T("next_top", "topk", P("day", "next"), k=2, fill=-1.0),
        time_unit="D",
    )
    check(backend, data, config, {
        "exp": [1, 3, 4, 8],
        "full": [3, 3, 4, 8],
        # day 1's next period is day 2, which is empty: it is not day 3
        "next": [4, 4, 0, 0],
        "next_mean": [4, 4, nan, nan],
        "next_n": [1, 1, 0, 0],
        "next_any": [1, 1, 0, 0],
        "next_top_1": [4, 4, -1, -1], "next_top_2": [-1, -1, -1, -1],
    })


def test_week_starts_monday_midnight(backend):
    # Sun 23:59:59 | Mon 00:00 ... Sun 23:59:59 | Mon 00:00
    data = frame(utc("2024-01-07 23:59:59", "2024-01-08 00:00:00", "2024-01-14 23:59:59", "2024-01-15 00:00:00"),
                 [1.0, 2.0, 4.0, 8.0])
    config = cfg(
        T("full", "sum", P("week", "full")),
        T("next", "sum", P("week", "next")),
        T("exp", "sum", P("week", "expanding")),
    )
    check(backend, data, config, {"full": [1, 6, 6, 8], "next": [6, 8, 8, 0], "exp": [1, 2, 6, 8]})


def test_week_across_1970(backend):
    # 1969-12-29 is a Monday; 1970-01-01 a Thursday in the same week
    data = frame(
        utc("1969-12-28 23:59:59", "1969-12-29 00:00:00", "1970-01-01 12:00:00", "1970-01-04 23:59:59",
            "1970-01-05 00:00:00"),
        [1.0, 2.0, 4.0, 8.0, 16.0],
    )
    check(backend, data, cfg(T("full", "sum", P("week", "full"))), {"full": [1, 14, 14, 14, 16]})


def test_month_quarter_year_boundaries(backend):
    data = frame(
        utc("2023-12-31 23:59:59", "2024-01-01 00:00:00", "2024-01-31 23:59:59", "2024-02-29 12:00:00",
            "2024-03-31 23:59:59", "2024-04-01 00:00:00", "2024-12-31 23:59:59", "2025-01-01 00:00:00"),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
    )
    config = cfg(
        T("m", "sum", P("month", "full")),
        T("q", "sum", P("quarter", "full")),
        T("y", "sum", P("year", "full")),
        T("m_next", "sum", P("month", "next")),
        T("q_next", "sum", P("quarter", "next")),
        T("y_next", "sum", P("year", "next")),
        T("m_exp", "sum", P("month", "expanding")),
    )
    check(backend, data, config, {
        "m": [1, 6, 6, 8, 16, 32, 64, 128],
        "q": [1, 30, 30, 30, 30, 32, 64, 128],
        "y": [1, 126, 126, 126, 126, 126, 126, 128],
        "m_next": [6, 8, 8, 16, 32, 0, 128, 0],
        "q_next": [30, 32, 32, 32, 32, 0, 128, 0],
        "y_next": [126, 128, 128, 128, 128, 128, 128, 0],
        "m_exp": [1, 2, 6, 8, 16, 32, 64, 128],
    })


def test_hour_boundaries_in_milliseconds(backend):
    base = 1_709_251_200_000  # 2024-03-01 00:00 UTC in ms
    h = 3_600_000
    data = frame([base + 11 * h - 1, base + 11 * h, base + 12 * h - 1, base + 12 * h], [1.0, 2.0, 4.0, 8.0])
    config = cfg(
        T("full", "sum", P("hour", "full")),
        T("next", "sum", P("hour", "next")),
        T("exp", "sum", P("hour", "expanding")),
        time_unit="ms",
    )
    check(backend, data, config, {"full": [1, 6, 6, 8], "next": [6, 8, 8, 0], "exp": [1, 2, 6, 8]})


def test_before_1970_uses_floor(backend):
    # seconds: -1 is 1969-12-31 23:59:59 (day -1), not day 0
    data = frame([-1, 0, -DAY, -DAY - 1], [1.0, 2.0, 4.0, 8.0])
    config = cfg(
        T("full", "sum", P("day", "full")),
        T("exp", "sum", P("day", "expanding")),
        T("next", "sum", P("day", "next")),
        T("y", "sum", P("year", "full")),
        T("m", "sum", P("month", "full")),
        time_unit="s",
    )
    check(backend, data, config, {
        "full": [5, 2, 5, 8],
        "exp": [5, 2, 4, 8],
        "next": [2, 0, 2, 5],
        "y": [13, 2, 13, 13],
        "m": [13, 2, 13, 13],
    })
    hours = frame([-3601, -3600, -1, 0], [1.0, 2.0, 4.0, 8.0])
    check(backend, hours, cfg(T("h", "sum", P("hour", "full")), time_unit="s"), {"h": [1, 6, 6, 8]})


def test_calendar_long_before_1970(backend):
    # 1968 is a leap year, 1900 and 1700 are not; every month boundary by the proleptic calendar
    data = frame(
        utc("1700-02-28 23:59:59", "1700-03-01 00:00:00", "1900-02-28 23:59:59", "1900-03-01 00:00:00",
            "1968-02-29 12:00:00", "1969-02-28 23:59:59", "1969-03-01 00:00:00", "1969-04-01 00:00:00"),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
    )
    config = cfg(
        T("m", "sum", P("month", "full")),
        T("q", "sum", P("quarter", "full")),
        T("y", "sum", P("year", "full")),
        T("y_next", "sum", P("year", "next")),
        T("w", "count", P("week", "full")),
    )
    check(backend, data, config, {
        "m": [1, 2, 4, 8, 16, 32, 64, 128],
        "q": [3, 3, 12, 12, 16, 96, 96, 128],
        "y": [3, 3, 12, 12, 16, 224, 224, 224],
        "y_next": [0, 0, 0, 0, 224, 0, 0, 0],
        # 1700-03-01 is a Monday (a new week); 1900-02-28/03-01 are Wed/Thu and
        # 1969-02-28/03-01 Fri/Sat of one week
        "w": [1, 1, 2, 2, 1, 2, 2, 1],
    })


# --------------------------------------------------------------------------- durations


def test_trailing_and_forward_bounds_are_exact(backend):
    data = frame([0, 5, 10, 15], [1.0, 2.0, 4.0, 8.0])
    config = cfg(
        T("tr", "sum", D("10s", "trailing")),
        T("tr_n", "count", D("10s", "trailing")),
        T("tr_min", "min", D("10s", "trailing")),
        T("fw", "sum", D("10s", "forward")),
        T("fw_n", "count", D("10s", "forward")),
        T("fw_max", "max", D("10s", "forward"), fill=nan),
        T("fw_mean", "mean", D("10s", "forward"), fill=-1.0),
        time_unit="s",
    )
    check(backend, data, config, {
        "tr": [1, 3, 6, 12],  # (t - 10s, t]: the row exactly 10 s before is out
        "tr_n": [1, 2, 2, 2],
        "tr_min": [1, 1, 2, 4],
        "fw": [6, 12, 8, 0],  # (t, t + 10s]: the row exactly 10 s after is in
        "fw_n": [2, 2, 1, 0],
        "fw_max": [4, 8, 8, nan],
        "fw_mean": [3, 6, 8, -1],
    })


@pytest.mark.parametrize(
    "duration, seconds",
    [("3s", 3), ("90s", 90), ("1min", 60), ("30min", 1800), ("2h", 7200), ("1d", DAY), ("7d", 7 * DAY),
     ("1w", 7 * DAY), ("2w", 14 * DAY)],
)
def test_duration_units(backend, duration, seconds):
    data = frame([0, seconds, seconds + 1], [1.0, 2.0, 4.0])
    config = cfg(
        T("tr", "sum", D(duration, "trailing")),
        T("fw", "sum", D(duration, "forward")),
        T("fw_top", "topk", D(duration, "forward"), k=1, fill=-1.0),
        time_unit="s",
    )
    check(backend, data, config, {"tr": [1, 2, 6], "fw": [2, 4, 0], "fw_top_1": [2, 4, -1]})


def test_duration_in_milliseconds(backend):
    data = frame([0, 999, 1000, 1001], [1.0, 2.0, 4.0, 8.0])
    config = cfg(T("tr", "sum", D("1s", "trailing")), T("fw", "sum", D("1s", "forward")), time_unit="ms")
    check(backend, data, config, {"tr": [1, 3, 6, 14], "fw": [6, 12, 8, 0]})


# --------------------------------------------------------------------------- time zones

MOSCOW_TIMES = ("2024-03-10 20:59:59", "2024-03-10 21:00:00", "2024-03-31 20:59:59", "2024-03-31 21:00:00")


@pytest.mark.parametrize(
    "timezone, day, week, month",
    [
        # UTC: 2024-03-10 and 2024-03-31 are Sundays; all four rows are in March
        ("UTC", [3, 3, 12, 12], [3, 3, 12, 12], [15, 15, 15, 15]),
        # Moscow (+03:00): Sun 23:59:59 | Mon 00:00 ... Sun 31 Mar 23:59:59 | Mon 1 Apr 00:00
        ("Europe/Moscow", [1, 2, 4, 8], [1, 2, 4, 8], [7, 7, 7, 8]),
    ],
)
def test_timezone_moscow(backend, timezone, day, week, month):
    data = frame(utc(*MOSCOW_TIMES), [1.0, 2.0, 4.0, 8.0])
    config = cfg(
        T("d", "sum", P("day", "full")),
        T("w", "sum", P("week", "full")),
        T("m", "sum", P("month", "full")),
        T("tr", "sum", D("1d", "trailing")),  # durations are absolute: the same in every zone
        timezone=timezone,
    )
    check(backend, data, config, {"d": day, "w": week, "m": month, "tr": [1, 3, 4, 12]})


def test_timezone_aware_input_is_the_same_instant(backend):
    naive = frame(utc(*MOSCOW_TIMES), [1.0, 2.0, 4.0, 8.0])
    aware = naive.assign(timestamp=naive["timestamp"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))
    config = cfg(T("d", "sum", P("day", "full")), T("m", "sum", P("month", "full")), timezone="Europe/Moscow")
    for data in (naive, aware):
        check(backend, data, config, {"d": [1, 2, 4, 8], "m": [7, 7, 7, 8]})


@pytest.mark.parametrize(
    "timezone, hour, day",
    [
        ("UTC", [15, 15, 15, 15, 48, 48], [63] * 6),
        # +05:30: 15:30, 15:59:59 | 16:00, 16:29:59 | 23:59:59 | next day 00:00
        ("Asia/Kolkata", [3, 3, 12, 12, 16, 32], [31, 31, 31, 31, 31, 32]),
    ],
)
def test_timezone_half_hour_offset(backend, timezone, hour, day):
    data = frame(
        utc("2024-01-01 10:00:00", "2024-01-01 10:29:59", "2024-01-01 10:30:00", "2024-01-01 10:59:59",
            "2024-01-01 18:29:59", "2024-01-01 18:30:00"),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
    )
    config = cfg(
        T("h", "sum", P("hour", "full")),
        T("d", "sum", P("day", "full")),
        T("tr", "sum", D("1h", "trailing")),
        timezone=timezone,
    )
    check(backend, data, config, {"h": hour, "d": day, "tr": [1, 3, 7, 15, 16, 48]})


def test_timezone_new_york_fall_back(backend):
    # 2024-11-03: 02:00 EDT -> 01:00 EST, so local hour 01 lasts two real hours
    data = frame(
        utc("2024-11-03 04:59:59", "2024-11-03 05:00:00", "2024-11-03 05:59:59", "2024-11-03 06:00:00",
            "2024-11-03 06:59:59", "2024-11-03 07:00:00"),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
    )
    config = cfg(
        T("h", "sum", P("hour", "full")),
        T("h_exp", "sum", P("hour", "expanding")),
        T("h_next", "sum", P("hour", "next")),
        T("d", "sum", P("day", "full")),
        T("tr", "count", D("1h", "trailing")),
        timezone="America/New_York",
    )
    check(backend, data, config, {
        "h": [1, 30, 30, 30, 30, 32],
        "h_exp": [1, 2, 6, 14, 30, 32],
        "h_next": [30, 32, 32, 32, 32, 0],
        "d": [63] * 6,
        "tr": [1, 2, 2, 2, 2, 2],  # (t - 1h, t]: the row exactly 1 h before is out
    })


def test_timezone_new_york_spring_forward(backend):
    # 2024-03-10: 02:00 EST -> 03:00 EDT; local hour 02 does not exist; the day has 23 hours
    data = frame(
        utc("2024-03-10 04:59:59", "2024-03-10 05:00:00", "2024-03-10 06:59:59", "2024-03-10 07:00:00",
            "2024-03-11 03:59:59", "2024-03-11 04:00:00"),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
    )
    check(backend, data, cfg(
        T("d", "sum", P("day", "full")),
        T("h", "sum", P("hour", "full")),
        T("h_next", "sum", P("hour", "next")),
        timezone="America/New_York",
    ), {
        "d": [1, 30, 30, 30, 30, 32],
        "h": [1, 2, 4, 8, 16, 32],
        "h_next": [2, 4, 0, 0, 32, 0],  # after 01:xx comes the missing hour 02: empty
    })
    check(backend, data, cfg(T("d", "sum", P("day", "full")), timezone="UTC"), {"d": [15, 15, 15, 15, 48, 48]})


def test_timezone_sao_paulo_dst_end_at_midnight_repeats_the_last_hour(backend):
    # 2018-02-18 00:00 BRST (-02) -> 2018-02-17 23:00 BRT (-03): local 23:00-24:00 of the
    # 17th happens twice, and local time goes backwards while real time goes on
    data = frame(
        utc("2018-02-17 01:59:59", "2018-02-17 02:00:00", "2018-02-18 01:30:00", "2018-02-18 02:15:00",
            "2018-02-18 02:59:59", "2018-02-18 03:00:00"),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
    )
    config = cfg(
        T("d", "sum", P("day", "full")),
        T("d_exp", "sum", P("day", "expanding")),
        T("d_next", "sum", P("day", "next")),
        T("h", "sum", P("hour", "full")),
        T("h_exp", "sum", P("hour", "expanding")),
        T("h_max", "max", P("hour", "expanding")),
        timezone="America/Sao_Paulo",
    )
    check(backend, data, config, {
        "d": [1, 30, 30, 30, 30, 32],
        "d_exp": [1, 2, 6, 14, 30, 32],
        "d_next": [30, 32, 32, 32, 32, 0],
        "h": [1, 2, 28, 28, 28, 32],
        # ordered by real time, not by local wall-clock time (23:30 comes before 23:15)
        "h_exp": [1, 2, 4, 12, 28, 32],
        "h_max": [1, 2, 4, 8, 16, 32],
    })


@pytest.mark.parametrize("timezone", ["Europe/Moscow", "Asia/Kolkata", "America/New_York", "America/Sao_Paulo"])
def test_timezones_match_reference_over_a_dst_year(engine, timezone):
    rng = np.random.default_rng(7)
    n = 600
    start = pd.Timestamp("2017-10-01").value // 10**9
    times = np.sort(rng.integers(start, start + 400 * DAY, size=n))
    times[::7] = (times[::7] // 3600) * 3600  # many rows exactly on hour boundaries
    data = frame(pd.to_datetime(times, unit="s"), np.round(rng.normal(0, 100, n), 2),
                 users=rng.integers(0, 3, n), mcc=rng.choice([5411, 6011], n))
    config = cfg(
        *(T(f"{p}_{m}", "sum", P(p, m)) for p in ("hour", "day", "week", "month") for m in ("expanding", "full", "next")),
        T("tr", "mean", D("36h", "trailing")),
        timezone=timezone,
    )
    assert_matches_reference(data, config, engine)


def test_larger_random_table_matches_reference(engine):
    """Every aggregation over every window kind on ~250 rows per user (long windows, ties,
    NaN amounts, null MCCs): what the small hypothesis tables cannot reach."""
    rng = np.random.default_rng(20240601)
    n = 750
    seconds = pd.Timestamp("2024-02-20").value // 10**9 + rng.integers(0, 60 * DAY, n)
    seconds[rng.random(n) < 0.3] //= 3600
    seconds = np.where(seconds < 10**9, seconds * 3600, seconds)  # a third on whole hours: ties
    amount = np.round(rng.normal(-50, 300, n), 2)
    amount[rng.random(n) < 0.05] = nan
    amount[rng.random(n) < 0.05] = 0.0
    mcc = pd.array(rng.choice([5411, 5812, 6011, 4829], n), dtype="Int64")
    mcc[rng.random(n) < 0.05] = None
    data = frame(pd.to_datetime(seconds, unit="s"), amount, users=rng.choice(["u1", "u2", "u3"], n), mcc=mcc)
    windows = {"ed": P("day", "expanding"), "fw": P("week", "full"), "nm": P("month", "next"),
               "t3d": D("3d", "trailing"), "f36h": D("36h", "forward"), "t30m": D("30min", "trailing")}
    targets = []
    for wname, w in windows.items():
        for agg in ("count", "sum", "mean", "min", "max", "std", "any"):
            targets.append(T(f"{agg}_{wname}", agg, w, fill=nan))
        targets.append(T(f"top_{wname}", "topk", w, k=3, fill=-1.0))
        targets.append(T(f"neg_{wname}", "sum", w, sign="negative", abs=True, mcc=[5411, 5812]))
    assert_matches_reference(data, cfg(*targets, timezone="Europe/Moscow"), engine)


def test_integer_amounts(backend):
    data = frame([0, 0, 1], np.array([3, -4, 5], dtype=np.int64))
    config = cfg(T("s", "sum", P("year", "expanding")), T("sd", "std", P("year", "full")),
                 T("mn", "min", D("1d", "trailing"), abs=True), time_unit="D")
    check(backend, data, config, {"s": [3, -1, 4], "sd": [4.725815626252609] * 3, "mn": [3, 3, 5]})


# --------------------------------------------------------------------------- users, units, order


@pytest.mark.parametrize("kind", ["object", "string", "category", "int"])
def test_user_ids(backend, kind):
    ids = {"object": ["alice", "bob", "alice", "bob", "carol"],
           "string": pd.array(["alice", "bob", "alice", "bob", "carol"], dtype="string"),
           "category": pd.Categorical(["alice", "bob", "alice", "bob", "carol"]),
           "int": [-5, 2**40, -5, 2**40, 0]}[kind]
    data = frame([0, 0, 1, 1, 1], [1.0, 2.0, 4.0, 8.0, 16.0], users=ids)
    config = cfg(T("s", "sum", P("year", "expanding")), T("fw", "count", D("1d", "forward")), time_unit="D")
    out = check(backend, data, config, {"s": [1, 2, 5, 10, 16], "fw": [1, 1, 0, 0, 0]})
    assert out["user_id"].tolist() == list(ids)


TIMES_DAYS = [0, 0, 1, 3]


@pytest.mark.parametrize(
    "represent",
    ["int-s", "int-ms", "int-us", "int-ns", "int-D", "int32-D", "datetime-s", "datetime-ms", "datetime-us",
     "datetime-ns", "iso-strings", "tz-aware"],
)
def test_time_representations(backend, represent):
    days = np.asarray(TIMES_DAYS, dtype=np.int64)
    extra = {}
    kind, unit = represent.split("-", 1) if "-" in represent else (represent, None)
    if kind == "int":
        factor = {"s": DAY, "ms": DAY * 1000, "us": DAY * 10**6, "ns": DAY * 10**9, "D": 1}[unit]
        times = days * factor
        extra = {"time_unit": unit}
    elif kind == "int32":
        times, extra = days.astype(np.int32), {"time_unit": "D"}
    elif kind == "datetime":
        times = (days * DAY).astype("datetime64[s]").astype(f"datetime64[{unit}]")
    elif represent == "iso-strings":
        times = [f"1970-01-{1 + d:02d}T00:00:00" for d in TIMES_DAYS]
    else:
        times = pd.Series(pd.to_datetime(days, unit="D")).dt.tz_localize("UTC")
    data = frame(times, [1.0, 2.0, 4.0, 8.0])
    config = cfg(
        T("full", "sum", P("day", "full")),
        T("next", "sum", P("day", "next")),
        T("tr", "sum", D("2d", "trailing")),
        **extra,
    )
    check(backend, data, config, {"full": [3, 3, 4, 8], "next": [4, 4, 0, 0], "tr": [1, 3, 7, 8]})


def test_unsorted_input_keeps_input_row_order(backend):
    # user 1 in (time, row) order: rows 3, 1, 4; user 2: rows 2, 5, 0
    data = frame([3, 1, 1, 0, 1, 2], [1.0, 2.0, 4.0, 8.0, 16.0, 32.0], users=[2, 1, 2, 1, 1, 2])
    config = cfg(
        T("s", "sum", P("year", "expanding")),
        T("tr", "count", D("2d", "trailing")),
        T("fw", "sum", D("1d", "forward")),
        T("full", "sum", P("day", "full")),
        time_unit="D",
    )
    check(backend, data, config, {
        "s": [37, 10, 4, 8, 26, 36],
        "tr": [2, 2, 1, 1, 3, 2],
        "fw": [0, 0, 32, 18, 0, 1],
        "full": [1, 18, 4, 8, 18, 32],
    })


def test_users_interleaved_do_not_mix(backend):
    data = frame([0, 0, 1, 1, 2, 2], [1.0, 10.0, 2.0, 20.0, 4.0, 40.0], users=[7, 9, 7, 9, 7, 9])
    config = cfg(
        T("s", "sum", P("year", "expanding")),
        T("fw", "max", D("1d", "forward"), fill=nan),
        T("n", "count", P("year", "full")),
        time_unit="D",
    )
    check(backend, data, config, {
        "s": [1, 10, 3, 30, 7, 70],
        "fw": [2, 20, 4, 40, nan, nan],
        "n": [3, 3, 3, 3, 3, 3],
    })


def test_custom_column_names(backend):
    data = pd.DataFrame({"client": ["x", "x", "y"], "ts": [0, 1, 1], "value": [1.0, 2.0, 4.0], "code": [1, 1, 1]})
    config = cfg(
        T("s", "sum", P("year", "expanding"), mcc=[1]),
        columns={"user": "client", "time": "ts", "amount": "value", "mcc": "code"},
        time_unit="D",
    )
    out = check(backend, data, config, {"s": [1, 3, 4]})
    assert list(out.columns) == ["client", "ts", "value", "code", "s"]


# --------------------------------------------------------------------------- output shape


def test_output_columns_dtypes_and_extra_columns(backend):
    data = pd.DataFrame({
        "note": ["a", None, "c"],
        "amount": [1.0, 2.0, 4.0],
        "user_id": [1, 1, 2],
        "flag": [True, False, True],
        "timestamp": [0, 1, 1],
        "when": pd.to_datetime(["2020-01-01", "2020-01-02", None]),
        "mcc": np.array([5411, 5411, 5411], dtype=np.int16),
        "score": [0.5, nan, 1.5],
    })
    before = data.copy()
    config = cfg(
        T("z_sum", "sum", P("year", "expanding")),
        T("a_top", "topk", P("year", "full"), k=2),
        T("m_count", "count", D("2d", "trailing")),
        time_unit="D",
    )
    out = check(backend, data, config, {
        "z_sum": [1, 3, 4], "a_top_1": [2, 2, 4], "a_top_2": [1, 1, 0], "m_count": [1, 2, 1],
    })
    # input columns first, untouched, then the targets in config order
    assert list(out.columns) == [*data.columns, "z_sum", "a_top_1", "a_top_2", "m_count"]
    pd.testing.assert_frame_equal(out[list(data.columns)], before)
    pd.testing.assert_frame_equal(data, before)  # the caller's frame is not modified
    assert all(out[c].dtype == np.float32 for c in ["z_sum", "a_top_1", "a_top_2", "m_count"])
    assert len(out) == len(data)


def test_engine_does_not_modify_input(backend):
    data = frame([3, 1, 2], [1.0, nan, -4.0], users=["b", "a", "b"])
    before = data.copy()
    generate(data, cfg(T("s", "sum", D("2d", "trailing"), abs=True), time_unit="D"), backend=backend)
    pd.testing.assert_frame_equal(data, before)


# --------------------------------------------------------------------------- invalid rows


def frame_with_null_users() -> pd.DataFrame:
    return frame(
        [0, 1, 2, 3, 4],
        [1.0, 2.0, 4.0, 8.0, 16.0],
        users=pd.array([1, None, 1, None, 1], dtype="Int64"),
        note=["a", "b", "c", "d", "e"],
    )


def test_null_user_is_an_error_by_default(backend):
    config = cfg(T("s", "sum", P("year", "expanding")), time_unit="D")
    with pytest.raises(DataError, match=r"'user_id'.*\b2\b.*null.*first rows: 1, 3"):
        run(frame_with_null_users(), config, backend)
    with pytest.raises(DataError, match=r"'user_id'"):
        run(frame([0, 1], [1.0, 2.0], users=["a", None]), config, backend)


@pytest.mark.parametrize("times", [pd.array([None, 1, 2, None], dtype="Int64"),
                                   utc("1970-01-01", "NaT", "1970-01-03", "1970-01-04")],
                         ids=["Int64", "datetime-NaT"])
def test_null_time_is_an_error_by_default(backend, times):
    config = cfg(T("s", "sum", P("year", "expanding")), time_unit="D")
    data = frame(times, [1.0, 2.0, 4.0, 8.0])
    with pytest.raises(DataError, match=r"'timestamp'.*null.*first rows: "):
        run(data, config, backend)


def test_on_invalid_drop_drops_rows_and_says_how_many(backend, caplog):
    data = frame_with_null_users()
    data["timestamp"] = pd.array([0, 1, None, 3, 4], dtype="Int64")
    config = cfg(T("s", "sum", P("year", "expanding")), T("n", "count", P("year", "full")),
                 time_unit="D", on_invalid="drop")
    with caplog.at_level(logging.WARNING, logger="gpu_targets"):
        out = run(data, config, backend)
    # rows 1 and 3 (null user) and 2 (null time) are dropped; they contribute nothing
    assert out["note"].tolist() == ["a", "e"]
    assert out["amount"].tolist() == [1.0, 16.0]
    assert_close(out["s"].to_numpy(), [1, 17], label=backend)
    assert_close(out["n"].to_numpy(), [2, 2], label=backend)
    assert any("3" in r.getMessage() and "drop" in r.getMessage() for r in caplog.records), caplog.text


# --------------------------------------------------------------------------- bad input


GOOD = {"targets": [T("s", "sum", P("day", "expanding"))], "time_unit": "s"}


@pytest.mark.parametrize(
    "mutate, column",
    [
        (lambda f: f.drop(columns="amount"), "amount"),
        (lambda f: f.drop(columns="mcc"), "mcc"),
        (lambda f: f.drop(columns="user_id"), "user_id"),
        (lambda f: f.drop(columns="timestamp"), "timestamp"),
        (lambda f: f.assign(amount=["1.0", "2.0"]), "amount"),
        (lambda f: f.assign(mcc=["5411", "5411"]), "mcc"),
        (lambda f: f.assign(timestamp=[0.5, 1.5]), "timestamp"),
        (lambda f: f.assign(user_id=[1.5, 2.5]), "user_id"),
        (lambda f: f.assign(timestamp=["yesterday", "today"]), "timestamp"),
        (lambda f: f.assign(user_id=[True, False]), "user_id"),
    ],
    ids=["no-amount", "no-mcc", "no-user", "no-time", "amount-strings", "mcc-strings", "time-floats",
         "user-floats", "time-not-iso", "user-bool"],
)
def test_bad_input_names_the_column(backend, mutate, column):
    data = mutate(frame([0, 1], [1.0, 2.0]))
    with pytest.raises(DataError, match=f"'{column}'"):
        run(data, GOOD, backend)


def test_integer_time_needs_time_unit(backend):
    with pytest.raises(DataError, match=r"'timestamp'.*time_unit"):
        run(frame([0, 1], [1.0, 2.0]), {"targets": GOOD["targets"]}, backend)


def test_empty_table(backend):
    data = frame(np.array([], dtype=np.int64), np.array([], dtype=np.float64), users=np.array([], dtype=np.int64),
                 mcc=np.array([], dtype=np.int64))
    with pytest.raises(DataError, match="no rows"):
        run(data, GOOD, backend)


def test_target_name_clashing_with_an_input_column(backend):
    data = frame([0, 1], [1.0, 2.0], s=[0, 0])
    with pytest.raises(DataError, match="'s'"):
        run(data, GOOD, backend)


def test_missing_renamed_column_is_named(backend):
    config = {**GOOD, "columns": {"user": "client"}}
    with pytest.raises(DataError, match="'client'"):
        run(frame([0, 1], [1.0, 2.0]), config, backend)


@pytest.mark.parametrize("n_runs", [1, 2, 3, 4, 5, 9])
def test_cpu_expanding_sum_lanes_restart_at_every_run(n_runs):
    """The cpu engine's dense expanding sum walks four lanes of runs at once: each row's
    value must still be the sum of the V rows before it in its own run, whatever the
    number of runs (fewer than four lanes' worth included) and their lengths."""
    from gpu_targets.engines.cpu import periods

    rng = np.random.default_rng(n_runs)
    lengths = rng.integers(1, 40, n_runs)
    lengths[0] = 1
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    m = int(starts[-1])
    isnew = np.zeros(m, dtype=np.uint8)
    isnew[starts[:-1]] = 1
    bits = rng.integers(0, 2, m).astype(np.uint64) << np.uint64(3)
    a = np.round(rng.normal(0, 100, m), 2)
    dst = np.full(m, np.nan, dtype=np.float32)
    periods._masked_sum(starts, n_runs, isnew, bits, 3, a, np.int64(-1), dst)
    want = np.empty(m)
    for q in range(n_runs):
        sel = np.where(bits[starts[q] : starts[q + 1]] != 0, a[starts[q] : starts[q + 1]], 0.0)
        want[starts[q] : starts[q + 1]] = np.cumsum(sel)
    np.testing.assert_allclose(dst, want.astype(np.float32), rtol=1e-6, atol=1e-4)
