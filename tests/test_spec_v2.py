"""SPEC version 2 (sections marked [v2]): the config model, its errors, the columns read
for ``where:``/``value:``, and the reference engine on hand-written cases for every
v2 row (values worked out by hand from SPEC.md's tables, not by running the engine).

Every hand case runs on the reference and the cpu engine (its range path, engines/cpu/
ranges.py); tests/test_cuda_sim.py runs each of them on the cuda engine too (its range
path, engines/cuda/ranges.py; under the simulator in CI).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import gpu_targets
from gpu_targets.spec import ConfigError, load_config
from gpu_targets.transactions import DataError

DAY = 86_400
NAN = float("nan")


@pytest.fixture(params=["reference", "cpu"])
def v2_backend(request) -> str:
    """The engines that compute every SPEC v2 row."""
    return request.param


def _run(rows, targets, backend="reference", **config):
    """Targets of ``targets`` for one user's ``rows`` ([(day, amount, mcc, extra...)]),
    as float64 arrays by target column."""
    frame = pd.DataFrame(rows)
    frame.insert(0, "user_id", 1)
    out = gpu_targets.generate(frame, {"time_unit": "D", **config, "targets": targets}, backend=backend)
    return {c: out[c].to_numpy(np.float64) for c in load_config({"targets": targets}).output_columns}


def _tx(days, amounts, mccs=None, **extra):
    mccs = mccs if mccs is not None else [5411] * len(days)
    return {"timestamp": days, "amount": amounts, "mcc": mccs, **extra}


def _eq(got, want):
    np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=1e-6, atol=0, equal_nan=True)


# --------------------------------------------------------------------------- windows
def test_periods_n_and_previous_on_day_boundaries(v2_backend):
    # days 0, 0, 1, 3, 4; amounts 1, 2, 4, 8, 16
    rows = _tx([0, 0, 1, 3, 4], [1.0, 2.0, 4.0, 8.0, 16.0])
    got = _run(rows, [
        {"name": "exp2", "agg": "sum", "window": {"period": "day", "mode": "expanding", "periods": 2}},
        {"name": "full2", "agg": "sum", "window": {"period": "day", "mode": "full", "periods": 2}},
        {"name": "next2", "agg": "sum", "window": {"period": "day", "mode": "next", "periods": 2}},
        {"name": "prev1", "agg": "sum", "window": {"period": "day", "mode": "previous"}},
        {"name": "prev2", "agg": "sum", "window": {"period": "day", "mode": "previous", "periods": 2}},
    ], backend=v2_backend)
    _eq(got["exp2"], [1, 3, 7, 8, 24])  # days (d-1, d], up to the row itself
    _eq(got["full2"], [3, 3, 7, 8, 24])
    _eq(got["next2"], [4, 4, 8, 16, 0])  # days (d, d + 2]
    _eq(got["prev1"], [0, 0, 3, 0, 8])  # day d - 1 only: day 2 is empty for the row of day 3
    _eq(got["prev2"], [0, 0, 3, 4, 8])  # days [d - 2, d)


def test_previous_month_calendar(v2_backend):
    rows = _tx([0, 30, 31, 59, 60], [1.0, 2.0, 4.0, 8.0, 16.0])  # Jan 1, Jan 31, Feb 1, Mar 1, Mar 2 (1970)
    got = _run(rows, [{"name": "p", "agg": "sum", "window": {"period": "month", "mode": "previous"}}], backend=v2_backend)
    _eq(got["p"], [0, 0, 3, 4, 4])


def test_duration_offsets_both_directions(v2_backend):
    rows = _tx([0, 1, 2, 3, 5], [1.0, 2.0, 4.0, 8.0, 16.0])
    got = _run(rows, [
        {"name": "tr", "agg": "sum", "window": {"duration": "2d", "mode": "trailing", "offset": "1d"}},
        {"name": "tr0", "agg": "sum", "window": {"duration": "2d", "mode": "trailing", "offset": "0s"}},
        {"name": "fw", "agg": "sum", "window": {"duration": "2d", "mode": "forward", "offset": "1d"}},
    ], backend=v2_backend)
    _eq(got["tr"], [0, 1, 3, 6, 8])  # (t - 3d, t - 1d]
    _eq(got["tr0"], [1, 3, 6, 12, 16])  # offset 0s: version 1's trailing window (t - 2d, t]
    _eq(got["fw"], [12, 8, 16, 16, 0])  # (t + 1d, t + 3d]


def test_trailing_offset_window_includes_later_tied_rows(v2_backend):
    """With G > 0 the bound is on time only: a row tied with t - G counts whatever its
    position (SPEC.md 2.1: pos(j) <= pos(i) only when G = 0)."""
    rows = _tx([0, 1, 1], [1.0, 2.0, 4.0])
    got = _run(rows, [{"name": "g", "agg": "sum", "window": {"duration": "1d", "mode": "trailing", "offset": "1d"}}], backend=v2_backend)
    _eq(got["g"], [0, 1, 1])


def test_rows_windows_at_the_first_and_last_transactions(v2_backend):
    rows = _tx([0, 0, 1, 2, 3], [1.0, 2.0, 4.0, 8.0, 16.0])
    got = _run(rows, [
        {"name": "t2", "agg": "sum", "window": {"rows": 2, "mode": "trailing"}},
        {"name": "t2k1", "agg": "sum", "window": {"rows": 2, "mode": "trailing", "offset": 1}},
        {"name": "f1", "agg": "first", "fill": NAN, "window": {"rows": 1, "mode": "forward"}},
        {"name": "f2k1", "agg": "sum", "window": {"rows": 2, "mode": "forward", "offset": 1}},
    ], backend=v2_backend)
    _eq(got["t2"], [1, 3, 6, 12, 24])
    _eq(got["t2k1"], [0, 1, 3, 6, 12])
    _eq(got["f1"], [2, 4, 8, 16, NAN])  # tied rows: the next in (time, input row) order
    _eq(got["f2k1"], [12, 24, 16, 0, 0])


def test_rows_window_takes_n_rows_then_filters(v2_backend):
    rows = _tx([0, 1, 2, 3], [1.0, 2.0, 4.0, 8.0], [5411, 4814, 4814, 5411])
    got = _run(rows, [{"name": "g", "agg": "count", "mcc": [5411], "window": {"rows": 2, "mode": "trailing"}}], backend=v2_backend)
    _eq(got["g"], [1, 1, 0, 1])


# --------------------------------------------------------------------------- aggregations
def test_first_last_median_quantile(v2_backend):
    rows = _tx([0, 1, 2, 3], [4.0, 1.0, 3.0, 2.0])
    got = _run(rows, [
        {"name": "first", "agg": "first", "window": {"period": "year", "mode": "expanding"}},
        {"name": "last", "agg": "last", "window": {"period": "year", "mode": "full"}},
        {"name": "med", "agg": "median", "window": {"period": "year", "mode": "expanding"}},
        {"name": "q0", "agg": "quantile", "q": 0.0, "window": {"period": "year", "mode": "expanding"}},
        {"name": "q1", "agg": "quantile", "q": 1.0, "window": {"period": "year", "mode": "expanding"}},
        {"name": "q25", "agg": "quantile", "q": 0.25, "window": {"period": "year", "mode": "expanding"}},
    ], backend=v2_backend)
    _eq(got["first"], [4, 4, 4, 4])
    _eq(got["last"], [2, 2, 2, 2])
    _eq(got["med"], [4, 2.5, 3, 2.5])  # even counts: the mean of the two middle values
    _eq(got["q0"], [4, 1, 1, 1])
    _eq(got["q1"], [4, 4, 4, 4])
    # q = 0.25 of [1, 3, 4]: h = 0.5 -> 1 + 0.5 * 2 = 2; of [1, 2, 3, 4]: h = 0.75 -> 1.75
    _eq(got["q25"], [4, 1.75, 2, 1.75])


def test_quantile_matches_numpy_on_random_windows(v2_backend):
    rng = np.random.default_rng(3)
    amounts = rng.normal(size=30).round(3)
    rows = _tx(list(range(30)), amounts.tolist())
    got = _run(rows, [{"name": "q", "agg": "quantile", "q": 0.9, "window": {"rows": 7, "mode": "trailing"}}], backend=v2_backend)
    want = [np.quantile(amounts[max(0, i - 6): i + 1], 0.9) for i in range(30)]
    _eq(got["q"], want)


def test_nunique_counts_minus_zero_as_zero_and_ignores_nan(v2_backend):
    rows = _tx([0, 1, 2, 3, 4], [0.0, -0.0, NAN, 5.0, 5.0])
    got = _run(rows, [{"name": "n", "agg": "nunique", "window": {"period": "year", "mode": "expanding"}}], backend=v2_backend)
    _eq(got["n"], [1, 1, 1, 2, 2])


def test_time_to_next_and_since_last_in_seconds_and_censored(v2_backend):
    rows = _tx([0, 1, 1, 4], [1.0, 2.0, 3.0, 4.0], [6011, 5411, 6011, 6011])
    got = _run(rows, [
        {"name": "to_atm", "agg": "time_to_next", "mcc": [6011], "window": {"duration": "2d", "mode": "forward"}},
        {"name": "since_atm", "agg": "time_since_last", "mcc": [6011], "window": {"duration": "3d", "mode": "trailing"}},
        {"name": "since_any", "agg": "time_since_last", "window": {"period": "year", "mode": "expanding"}},
    ], backend=v2_backend)
    _eq(got["to_atm"], [DAY, NAN, NAN, NAN])  # the tied ATM row at day 1 is not strictly later for row 2
    _eq(got["since_atm"], [NAN, DAY, DAY, NAN])  # i itself is not "the last"; (day 1, day 4] holds only i
    _eq(got["since_any"], [NAN, DAY, 0, 3 * DAY])  # a tied earlier row: 0 s


# --------------------------------------------------------------------------- where and value
def test_where_on_any_column_with_nulls_failing_every_condition(v2_backend):
    rows = _tx([0, 1, 2, 3, 4], [10.0, -20.0, 30.0, -40.0, 50.0],
               tr_type=pd.array([2010, 2011, None, 1010, 2010], dtype="Int64"),
               city=["a", None, "b", "a", "c"])
    got = _run(rows, [
        {"name": "in", "agg": "count", "where": [{"column": "tr_type", "in": [2010, 2011]}],
         "window": {"period": "year", "mode": "full"}},
        {"name": "not_in", "agg": "count", "where": [{"column": "tr_type", "not_in": [2010]}],
         "window": {"period": "year", "mode": "full"}},
        {"name": "ne_str", "agg": "count", "where": [{"column": "city", "ne": "a"}],
         "window": {"period": "year", "mode": "full"}},
        {"name": "range", "agg": "sum", "where": [{"column": "amount", "ge": -20, "lt": 50}],
         "window": {"period": "year", "mode": "full"}},
        {"name": "both", "agg": "count", "where": [{"column": "city", "eq": "a"}, {"column": "amount", "gt": 0}],
         "window": {"period": "year", "mode": "full"}},
    ], backend=v2_backend)
    _eq(got["in"], [3] * 5)
    _eq(got["not_in"], [2] * 5)  # the null tr_type fails not_in too
    _eq(got["ne_str"], [2] * 5)  # "b", "c": the null city fails ne
    _eq(got["range"], [20] * 5)  # 10 - 20 + 30
    _eq(got["both"], [1] * 5)


def test_where_and_nunique_on_ids_above_2_53_are_exact(v2_backend):
    big = 2**60
    rows = _tx([0, 1, 2], [1.0, 2.0, 4.0], term=pd.array([big, big + 1, big + 1], dtype="Int64"))
    got = _run(rows, [
        {"name": "eq", "agg": "sum", "where": [{"column": "term", "eq": big + 1}],
         "window": {"period": "year", "mode": "full"}},
        {"name": "n", "agg": "nunique", "value": "term", "window": {"period": "year", "mode": "expanding"}},
    ], backend=v2_backend)
    _eq(got["eq"], [6, 6, 6])
    _eq(got["n"], [1, 2, 2])


def test_value_column_strings_booleans_and_nan(v2_backend):
    rows = _tx([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0], city=["a", None, "b", "a"], flag=[True, False, True, True],
               score=[1.5, NAN, -2.0, 4.0])
    got = _run(rows, [
        {"name": "cities", "agg": "nunique", "value": "city", "window": {"period": "year", "mode": "expanding"}},
        {"name": "n_city", "agg": "count", "value": "city", "window": {"period": "year", "mode": "full"}},
        {"name": "flags", "agg": "sum", "value": "flag", "window": {"period": "year", "mode": "full"}},
        {"name": "score_mean", "agg": "mean", "value": "score", "abs": True, "window": {"period": "year", "mode": "full"}},
    ], backend=v2_backend)
    _eq(got["cities"], [1, 1, 2, 2])
    _eq(got["n_city"], [3] * 4)  # a null value is not in V
    _eq(got["flags"], [3] * 4)
    _eq(got["score_mean"], [2.5] * 4)  # (1.5 + 2 + 4) / 3


def test_missing_where_or_value_column_is_a_data_error_naming_target_and_column(v2_backend):
    rows = _tx([0, 1], [1.0, 2.0])
    with pytest.raises(DataError, match=r"target 'x': where column 'tr_type' is not in the input"):
        _run(rows, [{"name": "x", "agg": "count", "where": [{"column": "tr_type", "eq": 1}],
                     "window": {"rows": 1, "mode": "trailing"}}], backend=v2_backend)
    with pytest.raises(DataError, match=r"target 'y': value column 'term' is not in the input"):
        _run(rows, [{"name": "y", "agg": "nunique", "value": "term", "window": {"rows": 1, "mode": "trailing"}}], backend=v2_backend)


def test_a_string_value_column_feeds_count_any_nunique_only(v2_backend):
    rows = _tx([0, 1], [1.0, 2.0], city=["a", "b"])
    with pytest.raises(DataError, match=r"target 's': value column 'city' holds .*sum needs numbers"):
        _run(rows, [{"name": "s", "agg": "sum", "value": "city", "window": {"rows": 1, "mode": "trailing"}}], backend=v2_backend)
    with pytest.raises(DataError, match=r"target 'g': where gt compares numbers, and column 'city'"):
        _run(rows, [{"name": "g", "agg": "count", "where": [{"column": "city", "gt": 1}],
                     "window": {"rows": 1, "mode": "trailing"}}], backend=v2_backend)


# --------------------------------------------------------------------------- derived targets
DERIVED = [
    {"name": "a", "agg": "sum", "window": {"period": "day", "mode": "expanding"}},
    {"name": "b", "agg": "count", "mcc": [4814], "window": {"period": "day", "mode": "next"}},
    {"name": "ratio", "derive": "ratio", "of": ["a", "b"]},
    {"name": "lin", "derive": "linear", "of": ["a", "b", "ratio"], "coef": [1.0, -2.0, 0.5], "fill": -1.0},
]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_derived_ratio_and_linear_with_zero_denominators(backend):
    rows = _tx([0, 0, 1, 2], [1.0, 2.0, 4.0, 8.0], [5411, 5411, 4814, 5411])
    got = _run(rows, DERIVED, backend=backend)
    _eq(got["a"], [1, 3, 4, 8])
    _eq(got["b"], [1, 1, 0, 0])
    _eq(got["ratio"], [1, 3, NAN, NAN])  # x / 0: not finite, fill (NaN by default)
    _eq(got["lin"], [1 - 2 + 0.5, 3 - 2 + 1.5, -1, -1])  # a NaN input: the fill


def test_derived_targets_are_labels_when_an_input_is():
    cfg = load_config({"targets": DERIVED + [{"name": "c", "derive": "linear", "of": ["a"]}]})
    assert cfg.label_flags == [False, True, True, True, False]
    from gpu_targets.torch_batch import split_features_labels

    assert split_features_labels(cfg) == ([0, 4], [1, 2, 3])
    prev = load_config({"targets": [
        {"name": "p", "agg": "sum", "window": {"period": "month", "mode": "previous", "periods": 3}},
        {"name": "r", "agg": "first", "window": {"rows": 1, "mode": "forward"}},
        {"name": "t", "agg": "sum", "window": {"rows": 5, "mode": "trailing", "offset": 2}}]})
    assert prev.label_flags == [False, True, False]


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("text, where, what", [
    ("{name: t, agg: quantile, window: {rows: 3, mode: trailing}}", "targets[0].q (target 't')", "quantile needs"),
    ("{name: t, agg: sum, window: {duration: 1d, mode: trailing, periods: 2}}", "targets[0].window.periods", "periods"),
    ("{name: t, agg: sum, window: {period: day, mode: next, offset: 1d}}", "targets[0].window.offset", "offset"),
    ("{name: t, agg: sum, window: {rows: 0, mode: forward}}", "targets[0].window.rows", "1 <= N"),
    ("{name: t, agg: sum, window: {rows: 2, mode: expanding}}", "targets[0].window.mode", "rows window"),
    ("{name: t, agg: sum, window: {period: day, mode: previous, periods: 0}}", "targets[0].window.periods", "1 <= N"),
    ("{name: t, agg: time_since_last, window: {rows: 2, mode: forward}}", "targets[0].window.mode", "earlier rows"),
    ("{name: t, agg: count, where: [], window: {rows: 2, mode: forward}}", "targets[0].where", "empty"),
    ("{name: t, agg: count, where: [{column: c, lt: [1]}], window: {rows: 2, mode: forward}}",
     "targets[0].where[0].lt", "numbers only"),
    ("{name: t, agg: count, where: [{eq: 1}], window: {rows: 2, mode: forward}}", "targets[0].where[0].column",
     "required"),
    ("{name: t, derive: ratio, of: [x, y], window: {rows: 2, mode: forward}}", "targets[0].window", "unknown key"),
    ("{name: t, derive: sum, of: [x]}", "targets[0].derive", "ratio, linear"),
])
def test_every_new_key_has_its_config_error(text, where, what):
    with pytest.raises(ConfigError) as err:
        load_config(f"targets: [{text}]")
    assert str(err.value).startswith(where) and what in str(err.value), str(err.value)


def test_version_1_configs_are_unchanged_and_time_fills_default_to_nan():
    v1 = load_config("configs/seed20.yaml")
    assert v1.is_v1 and all(t.window.n_periods == 1 and t.window.offset_ns == 0 for t in v1.aggregated)
    t = load_config({"targets": [{"name": "t", "agg": "time_to_next", "window": {"rows": 1, "mode": "forward"}}]})
    assert math.isnan(t.targets[0].fill)
    assert load_config({"targets": [{"name": "t", "agg": "time_to_next", "fill": -1,
                                     "window": {"rows": 1, "mode": "forward"}}]}).targets[0].fill == -1


def test_the_plan_keeps_derived_columns_in_place_and_marks_v2_targets_ranged():
    from gpu_targets.engines.plan import compile_plan

    cfg = load_config({"targets": [
        {"name": "ok", "agg": "sum", "window": {"period": "day", "mode": "expanding"}},
        {"name": "r", "derive": "ratio", "of": ["ok", "ok"]},
        {"name": "med", "agg": "median", "window": {"rows": 2, "mode": "trailing"}}]})
    plan = compile_plan(cfg)
    assert plan.n_columns == 3 and len(plan.window) == 2  # the derived column keeps its place
    assert plan.ranged.tolist() == [False, True] and plan.col.tolist() == [0, 2]


def test_where_and_value_columns_reach_the_format_adapters_and_composite_users(v2_backend):
    """sdsj2016's adapter and a composite user build their own role frames: the columns
    where:/value: read come along (tr_type filters, distinct terminals)."""
    sdsj = pd.DataFrame({"customer_id": [7, 7, 7], "tr_datetime": ["0 10:00:00", "0 11:00:00", "1 09:00:00"],
                         "mcc_code": [6011, 6011, 5411], "tr_type": [2010, 7070, 2010],
                         "amount": [-100.0, -50.0, -20.0], "term_id": ["t1", "t2", "t1"]})
    targets = [
        {"name": "cash", "agg": "sum", "where": [{"column": "tr_type", "in": [2010, 2011]}],
         "window": {"period": "year", "mode": "full"}},
        {"name": "terms", "agg": "nunique", "value": "term_id", "window": {"period": "year", "mode": "expanding"}}]
    out = gpu_targets.generate(sdsj, {"format": "sdsj2016", "targets": targets}, backend=v2_backend)
    _eq(out["cash"], [-120, -120, -120])
    _eq(out["terms"], [1, 2, 2])
    composite = pd.DataFrame({"client": [1, 1, 1], "card": [2, 2, 3], "timestamp": [0, 1, 2],
                              "amount": [1.0, 2.0, 4.0], "mcc": [1, 1, 1], "tr_type": [1, 2, 1]})
    out = gpu_targets.generate(composite, {"time_unit": "D", "columns": {"user": ["client", "card"]}, "targets": [
        {"name": "n", "agg": "count", "where": [{"column": "tr_type", "eq": 1}],
         "window": {"period": "year", "mode": "full"}}]}, backend=v2_backend)
    _eq(out["n"], [1, 1, 1])


def test_quantiles_and_nunique_on_a_long_history_match_the_reference():
    """The cpu engine's bit set of ranks with a cursor on wide windows (ties, -0.0, whole
    windows replaced at a month's end, q = 0 and 1, three order statistics sharing one V's
    ranks) and its sorted windows on narrow ones (at most SORTED_WINDOW_MAX values: the
    last 50 rows, 5 days after a gap) in one config; amounts that are not small integers
    take the sorted ids of nunique."""
    from conftest import assert_matches_reference

    rng = np.random.default_rng(7)
    n = 700
    frame = pd.DataFrame({"user_id": 1, "timestamp": np.sort(rng.integers(0, 300, n)),
                          "amount": rng.choice([-2.5, 0.0, -0.0, 1.25, 3.0, 1e6], n) * rng.integers(1, 4, n),
                          "mcc": rng.choice([5411, 6011], n)})
    targets = [
        {"name": "med", "agg": "median", "window": {"period": "year", "mode": "expanding", "periods": 2}},
        {"name": "q9", "agg": "quantile", "q": 0.9, "window": {"rows": 600, "mode": "trailing"}},
        {"name": "q0", "agg": "quantile", "q": 0.0, "sign": "negative", "window": {"rows": 600, "mode": "forward"}},
        {"name": "nu", "agg": "nunique", "window": {"duration": "200d", "mode": "trailing", "offset": "1d"}},
        {"name": "mfull", "agg": "median", "window": {"period": "month", "mode": "full"}},
        {"name": "q1", "agg": "quantile", "q": 1.0, "window": {"duration": "100d", "mode": "forward", "offset": "3d"}},
        {"name": "q3", "agg": "quantile", "q": 0.3, "window": {"period": "month", "mode": "previous", "periods": 2}},
        {"name": "m50", "agg": "median", "window": {"rows": 50, "mode": "trailing"}},
        {"name": "q7", "agg": "quantile", "q": 0.7, "sign": "positive", "window": {"duration": "5d", "mode": "forward", "offset": "2d"}},
    ]
    assert_matches_reference(frame, {"time_unit": "D", "targets": targets}, "cpu")


def test_windows_shared_by_targets_of_different_values_are_cached_per_user(v2_backend):
    """Targets of one window but different V (filters, where:, value:) sit apart in plan
    order (V first): the cpu driver computes such a window once per user into a cache
    slot (``Plan.wslot``) and reads it back for the later targets; every engine matches
    the reference, two users so the cache is refilled per user."""
    from conftest import assert_matches_reference

    from gpu_targets.engines.plan import compile_plan

    rng = np.random.default_rng(12)
    n = 400
    frame = pd.DataFrame({"user_id": np.repeat([1, 2], n // 2), "timestamp": np.sort(rng.integers(0, 200, n)),
                          "amount": rng.normal(0, 50, n).round(1), "mcc": rng.choice([5411, 6011, 5912], n),
                          "tr_type": rng.integers(0, 3, n)})
    frame = frame.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    month = {"period": "month", "mode": "previous", "periods": 2}
    days = {"duration": "20d", "mode": "trailing", "offset": "2d"}
    targets = [
        {"name": "s_all_month", "agg": "sum", "window": month},
        {"name": "s_all_days", "agg": "mean", "window": days},
        {"name": "c_atm_month", "agg": "count", "mcc": [6011], "window": month},
        {"name": "m_atm_days", "agg": "median", "mcc": [6011], "window": days},
        {"name": "n_type_days", "agg": "nunique", "value": "tr_type", "window": days},
        {"name": "l_type_month", "agg": "last", "where": [{"column": "tr_type", "eq": 1}], "window": month},
    ]
    config = load_config({"time_unit": "D", "targets": targets})
    plan = compile_plan(config)
    assert (plan.wslot >= 0).sum() >= 4 and len(set(plan.wslot[plan.wslot >= 0])) == 2
    assert_matches_reference(frame, config, v2_backend)


def test_the_quantile_cursor_on_narrow_and_wide_windows_over_a_long_history():
    """engines/cpu/ranges.py's order statistics straight from the kernel, on sampled rows:
    20,000 values (five words of the second bit level), windows of 2 rows
    (the cursor crosses thousands of empty ranks), 300 and 12,000 rows, emptied and
    refilled, with ties, -0.0 and infinities; the reference engine's formula on each
    window sorted."""
    from gpu_targets.engines.cpu.ranges import _range_quantile, _v_ranks
    from gpu_targets.engines.reference import _quantile
    from gpu_targets.engines.plan import MEDIAN, QUANTILE

    rng = np.random.default_rng(11)
    nv = 20_000
    vv = rng.choice([-np.inf, -3.0, -0.0, 0.0, 1.5, np.inf], nv) * rng.integers(1, 4, nv)
    vv[::7] = rng.normal(0, 1e3, len(vv[::7]))
    idx = np.arange(nv, dtype=np.int64)
    blocks = (idx // 10) * 10  # windows emptied at each block's start, then refilled (bounds never decrease)
    for vlo, vhi in ((np.clip(idx - 1, 0, nv), idx + 1), (np.clip(idx - 299, 0, nv), idx + 1),
                     (np.clip(idx - 11_999, 0, nv), idx + 1), (blocks, np.maximum(blocks, idx - 4))):
        width = int((vhi - vlo).max())
        for agg, q in ((MEDIAN, 0.5), (QUANTILE, 0.0), (QUANTILE, 1.0), (QUANTILE, 0.3)):
            dst = np.empty(nv, dtype=np.float64)
            rank, sorted_vals = np.empty(nv, dtype=np.int64), np.empty(nv)
            _v_ranks(vv, nv, rank, sorted_vals)
            _range_quantile(vv, idx, idx, nv, vlo, vhi, idx, 1e-9, agg, q, 1, np.nan, dst, dst[None, :], rank, sorted_vals)
            for r in rng.choice(nv, 150, replace=False):
                w = np.sort(vv[vlo[r]:vhi[r]])
                want = np.nan if len(w) == 0 else _quantile(w, q, agg == MEDIAN)
                np.testing.assert_allclose(dst[r], want, rtol=1e-12, equal_nan=True, err_msg=f"{width} {q} {r}")


def test_the_sorted_window_quantiles_equal_the_cursor_bit_for_bit():
    """engines/cpu/ranges.py's order statistics of narrow ranges (a sorted window of int64
    keys, stepped eight keys at a time) against its bit set of ranks, bit for bit, on
    20,000 values with ties, -0.0 next to 0.0 and infinities: windows of 1, 2, 50 and 64
    values, emptied and refilled, jumping ahead with no value kept, empty ranges, and
    the reference engine's formula on sampled rows."""
    from gpu_targets.engines.cpu.ranges import SORTED_WINDOW_MAX, _range_quantile, _range_quantile_sorted, _range_width, _v_ranks
    from gpu_targets.engines.plan import MEDIAN, QUANTILE
    from gpu_targets.engines.reference import _quantile

    rng = np.random.default_rng(5)
    nv = 20_000
    vv = rng.choice([-np.inf, -3.0, -0.0, 0.0, 1.5, np.inf], nv) * rng.integers(1, 4, nv)
    vv[::7] = rng.normal(0, 1e3, len(vv[::7]))
    idx = np.arange(nv, dtype=np.int64)
    blocks = (idx // 10) * 10
    jumps = np.minimum((idx // 37) * 37 + 20, nv)  # 17 values, then a range with none of them
    rank, sorted_vals = np.empty(nv, dtype=np.int64), np.empty(nv)
    _v_ranks(vv, nv, rank, sorted_vals)
    widths = []
    for vlo, vhi in ((idx, idx + 1), (np.clip(idx - 1, 0, nv), idx + 1), (np.clip(idx - 49, 0, nv), idx + 1),
                     (np.clip(idx - 63, 0, nv), idx + 1), (blocks, np.maximum(blocks, idx - 4)),
                     (jumps, np.minimum(jumps + 17, nv)), (idx, idx), (np.minimum(idx + 3, nv), np.minimum(idx + 40, nv))):
        width = _range_width(vlo, vhi)
        widths.append(width)
        for agg, q in ((MEDIAN, 0.5), (QUANTILE, 0.0), (QUANTILE, 1.0), (QUANTILE, 0.3)):
            want = np.empty(nv)
            got = np.empty(nv)
            _range_quantile(vv, idx, idx, nv, vlo, vhi, idx, 1e-9, agg, q, 1, np.nan, want, want[None, :], rank, sorted_vals)
            _range_quantile_sorted(vv, idx, idx, nv, vlo, vhi, idx, 1e-9, agg, q, 1, np.nan, got, got[None, :], width)
            np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64), err_msg=f"{width} {q}")
            for r in rng.choice(nv, 50, replace=False):
                w = np.sort(vv[vlo[r]:vhi[r]])
                np.testing.assert_allclose(got[r], np.nan if len(w) == 0 else _quantile(w, q, agg == MEDIAN),
                                           rtol=1e-12, equal_nan=True)
    assert widths == [1, 2, 50, 64, 5, 17, 0, 37] and max(widths) == SORTED_WINDOW_MAX


def test_where_in_takes_equality_passes_with_the_answer_of_pandas_isin():
    """where.py's in/not_in/eq/ne on a plain numeric column compare number by number;
    the answer is pandas' isin's: integers above 2^53 exactly, floats (float32 and
    float16 compared in float64: 0.1 is not float32's 0.1), other kinds never equal;
    nullable columns keep isin (a null fails). Order comparisons widen narrow floats too."""
    from gpu_targets.spec import Where
    from gpu_targets.where import where_mask

    rng = np.random.default_rng(0)
    columns = [pd.Series(rng.integers(-5, 5, 500)), pd.Series(rng.normal(0, 2, 500).round()),
               pd.Series(rng.integers(0, 2**62, 500, dtype=np.int64)), pd.Series(rng.integers(0, 5, 500).astype(np.uint8)),
               pd.Series(pd.array(rng.integers(0, 3, 500), dtype="Int64")),
               pd.Series(np.array([0.1, 1.0, 16777216.0] * 20, dtype=np.float32)),
               pd.Series(np.array([2048.0, 0.1] * 20, dtype=np.float16))]
    target = load_config({"targets": [{"name": "t", "agg": "count", "window": {"rows": 1, "mode": "trailing"}}]}).targets[0]
    for col in columns:
        first = int(col.iloc[0])
        frame = pd.DataFrame({"c": col})
        for values in ([1, 2], [1.0, 2.5], [-3], [first + 1, first], [np.int64(3)], ["a"], [0.1],
                       [16777217], [2049]):
            wide = col.astype(np.float64) if col.dtype in (np.float32, np.float16) else col  # pandas: no float16 isin
            want = np.asarray(wide.isin(values).to_numpy(dtype=bool, na_value=False))
            got = where_mask(frame, [Where(**{"column": "c", "in": values})], target)
            np.testing.assert_array_equal(got, want, err_msg=f"{col.dtype} {values}")
            got = where_mask(frame, [Where(**{"column": "c", "not_in": values})], target)
            np.testing.assert_array_equal(got, ~want & col.notna().to_numpy(), err_msg=f"not_in {col.dtype} {values}")
            if len(values) == 1:
                got = where_mask(frame, [Where(column="c", eq=values[0])], target)
                np.testing.assert_array_equal(got, want, err_msg=f"eq {col.dtype} {values}")
    from gpu_targets.spec import Where
    from gpu_targets.where import where_mask

    f32 = pd.DataFrame({"f": np.array([0.1, 0.2], dtype=np.float32)})
    target = load_config({"targets": [{"name": "t", "agg": "count", "window": {"rows": 1, "mode": "trailing"}}]}).targets[0]
    assert where_mask(f32, [Where(column="f", gt=0.1)], target).tolist() == [True, True]  # float32(0.1) > 0.1
    assert where_mask(f32, [Where(column="f", eq=0.1)], target).tolist() == [False, False]


def test_the_radix_argsort_of_the_cpu_quantiles_orders_every_float():
    """engines/cpu/ranges.py's ranks: sorted values equal numpy's sort (extremes, -0.0
    next to 0.0, subnormals, ties), equal bit patterns keep their order (stable); the
    permutation is numpy's stable argsort of the order-preserving integer keys, also
    for values a few ulps apart (equal in the sorted upper bits, ordered by the full
    keys afterwards: by insertion in a short group, by merge sort in a long one)."""
    from gpu_targets.engines.cpu.ranges import _radix_argsort

    def keys(v):
        b = v.view(np.uint64)
        top = np.uint64(1) << np.uint64(63)
        return np.where(b & top, ~b, b | top)

    rng = np.random.default_rng(3)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 1e308, -1e308, 5e-324, -5e-324, 1.0, 1.0, -2.5, -2.5])
    ulps = 1.0 + np.finfo(float).eps * rng.integers(-40, 40, 3000)  # groups of a few ulps among 3,000
    subnormal = np.nextafter(0.0, 1.0) * rng.integers(-2000, 2000, 5000)  # one long group of distinct keys
    for vv in (special, rng.normal(0, 1e5, 3000).round(2), rng.choice(special, 500), ulps, subnormal,
               rng.normal(0, 1, 70_000)):
        perm = _radix_argsort(vv, len(vv))
        np.testing.assert_array_equal(vv[perm], np.sort(vv))
        same = vv[perm][1:].view(np.uint64) == vv[perm][:-1].view(np.uint64)
        assert np.all(perm[1:][same] > perm[:-1][same])
        np.testing.assert_array_equal(perm, np.argsort(keys(vv), kind="stable"))
    assert len(_radix_argsort(np.empty(0), 0)) == 0


def test_describe_gives_time_targets_in_hours_with_censored_rows_apart():
    from gpu_targets.describe import target_summary

    rows = _tx([0, 1, 3], [1.0, 2.0, 4.0], [6011, 5411, 6011])
    cfg = {"time_unit": "D", "targets": [
        {"name": "to_atm", "agg": "time_to_next", "mcc": [6011], "window": {"duration": "7d", "mode": "forward"}}]}
    frame = pd.DataFrame(rows).assign(user_id=1)
    out = gpu_targets.generate(frame, cfg, backend="reference")
    table = target_summary(out, cfg)
    assert table["column"].tolist() == ["to_atm [h]"]
    assert table["rate"].iloc[0] == pytest.approx(2 / 3)  # the last row has no later ATM row: censored
    assert table["max"].iloc[0] == pytest.approx(72.0) and table["min"].iloc[0] == pytest.approx(48.0)
