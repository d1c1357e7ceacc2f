"""Config errors of SPEC.md section 4, as the user reads them, and the ways to load a config.

Every error is a :class:`ConfigError` whose message holds the key path
(``targets[1].window.duration``) and names the target; nothing is computed.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from gpu_targets import Config, ConfigError, Target, Window, generate, load_config


def target(**changes) -> dict:
    t = {"name": "a", "agg": "sum", "window": {"period": "day", "mode": "expanding"}}
    t.update(changes)
    return {k: v for k, v in t.items() if v is not _DROP}


_DROP = object()


def two_targets(bad: dict) -> dict:
    """A config whose second target (index 1) is ``bad``."""
    return {"targets": [target(name="ok"), bad]}


def raises_at(path: str, *, name: str | None = None, also: str = ""):
    """pytest.raises(ConfigError) whose message holds ``path``, the target's ``name`` and ``also``."""
    pattern = re.escape(path)
    if name is not None:
        pattern += r".*" + re.escape(repr(name))
    if also:
        pattern += r"(?s:.*)" + also
    return pytest.raises(ConfigError, match=pattern)


# --------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key():
    with raises_at("colums", also="unknown key"):
        load_config({"colums": {"user": "u"}, "targets": [target()]})


def test_unknown_key_in_target():
    with raises_at("targets[1].windw", name="b", also="unknown key"):
        load_config(two_targets(target(name="b", windw={"period": "day"})))


def test_misspelt_required_key_is_reported_as_the_unknown_key_with_the_fix():
    bad = target(name="b", windw={"period": "day", "mode": "full"}, window=_DROP)
    with raises_at("targets[1].windw", name="b", also="unknown key.*did you mean 'window'"):
        load_config(two_targets(bad))


def test_unknown_key_in_window():
    with raises_at("targets[1].window.size", name="b", also="unknown key"):
        load_config(two_targets(target(name="b", window={"period": "day", "mode": "full", "size": 3})))


def test_unknown_key_in_columns():
    with raises_at("columns.usr", also="unknown key"):
        load_config({"columns": {"usr": "client"}, "targets": [target()]})


# --------------------------------------------------------------------------- missing keys


def test_missing_name_names_the_index():
    bad = target(name=_DROP)
    with raises_at("targets[1].name", also="missing"):
        load_config(two_targets(bad))


@pytest.mark.parametrize("key", ["agg", "window"])
def test_missing_target_key(key):
    with raises_at(f"targets[1].{key}", name="b", also="missing"):
        load_config(two_targets(target(name="b", **{key: _DROP})))


def test_missing_mode():
    with raises_at("targets[1].window.mode", name="b", also="missing"):
        load_config(two_targets(target(name="b", window={"period": "day"})))


def test_missing_targets():
    with raises_at("targets", also="missing"):
        load_config({"timezone": "UTC"})


def test_empty_targets():
    with raises_at("targets", also="at least 1"):
        load_config({"targets": []})


# --------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(
    "changes, path, bad",
    [
        ({"agg": "topk", "k": "3"}, "targets[1].k", "'3'"),
        ({"agg": "topk", "k": 2.5}, "targets[1].k", "2.5"),
        ({"abs": "yes"}, "targets[1].abs", "'yes'"),
        ({"abs": "true"}, "targets[1].abs", "'true'"),
        ({"mcc": "5411"}, "targets[1].mcc", "'5411'"),
        ({"mcc": ["5411"]}, "targets[1].mcc", "'5411'"),
        ({"fill": "zero"}, "targets[1].fill", "'zero'"),
        ({"window": {"duration": 7, "mode": "trailing"}}, "targets[1].window.duration", "7"),
    ],
    ids=["k-str", "k-float", "abs-str", "abs-str-true", "mcc-str", "mcc-list-of-str", "fill-str", "duration-int"],
)
def test_wrong_type(changes, path, bad):
    # the message holds the key path, the target's name and the bad value
    with raises_at(path, name="b", also=re.escape(bad)):
        load_config(two_targets(target(name="b", **changes)))


def test_wrong_type_of_name():
    with raises_at("targets[1].name", also="string"):
        load_config(two_targets(target(name=5)))


def test_targets_not_a_list():
    with raises_at("targets", also="list"):
        load_config({"targets": {"name": "a"}})


def test_config_not_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        load_config("- just\n- a list\n")


@pytest.mark.parametrize("mcc", [[], [12345], [-1]])
def test_bad_mcc_list(mcc):
    with raises_at("targets[1].mcc", name="b"):
        load_config(two_targets(target(name="b", mcc=mcc)))


# --------------------------------------------------------------------------- duplicates


def test_duplicate_name():
    with raises_at("targets[1].name", name="a", also="duplicate"):
        load_config({"targets": [target(name="a"), target(name="a", agg="count")]})


def test_duplicate_from_topk_expansion():
    """A topk target ``a`` with k=2 makes ``a_1, a_2``: a target named ``a_1`` clashes."""
    with raises_at("targets[1].name", name="a_1", also="duplicate.*'a_1'"):
        load_config({"targets": [target(name="a", agg="topk", k=2), target(name="a_1")]})


def test_duplicate_from_topk_expansion_other_order():
    with raises_at("targets[1].name", name="a", also="duplicate.*'a_1'"):
        load_config({"targets": [target(name="a_1"), target(name="a", agg="topk", k=2)]})


def test_topk_expansion_without_clash_is_fine():
    cfg = load_config({"targets": [target(name="a", agg="topk", k=2), target(name="a_3")]})
    assert cfg.output_columns == ["a_1", "a_2", "a_3"]


# --------------------------------------------------------------------------- k and topk


def test_k_without_topk():
    with raises_at("targets[1].k", name="b", also="topk"):
        load_config(two_targets(target(name="b", agg="sum", k=2)))


@pytest.mark.parametrize("k", [_DROP, 0, -1], ids=["missing", "0", "-1"])
def test_topk_without_k_at_least_1(k):
    with raises_at("targets[1].k", name="b", also="k >= 1"):
        load_config(two_targets(target(name="b", agg="topk", k=k)))


# --------------------------------------------------------------------------- windows


def test_both_period_and_duration():
    window = {"period": "day", "duration": "7d", "mode": "expanding"}
    with raises_at("targets[1].window", name="b", also="period.*duration"):
        load_config(two_targets(target(name="b", window=window)))


def test_neither_period_nor_duration():
    with raises_at("targets[1].window", name="b", also="period.*duration"):
        load_config(two_targets(target(name="b", window={"mode": "expanding"})))


@pytest.mark.parametrize(
    "window",
    [
        {"period": "day", "mode": "trailing"},
        {"period": "week", "mode": "forward"},
        {"duration": "7d", "mode": "expanding"},
        {"duration": "1h", "mode": "full"},
        {"duration": "2w", "mode": "next"},
    ],
    ids=["trailing-on-period", "forward-on-period", "expanding-on-duration", "full-on-duration", "next-on-duration"],
)
def test_mode_not_of_the_window_kind(window):
    with raises_at("targets[1].window.mode", name="b", also=re.escape(repr(window["mode"]))):
        load_config(two_targets(target(name="b", window=window)))


@pytest.mark.parametrize("duration", ["0d", "0s", "-3h", "-1w", "7days", "7", "d", "1.5h", "7 d x", "", "1y"])
def test_bad_duration(duration):
    window = {"duration": duration, "mode": "trailing"}
    with raises_at("targets[1].window.duration", name="b", also=re.escape(repr(duration))):
        load_config(two_targets(target(name="b", window=window)))


def test_bad_period():
    with raises_at("targets[1].window.period", name="b", also="fortnight(?s:.*)hour, day, week"):
        load_config(two_targets(target(name="b", window={"period": "fortnight", "mode": "full"})))


def test_bad_mode():
    with raises_at("targets[1].window.mode", name="b", also="rolling"):
        load_config(two_targets(target(name="b", window={"period": "day", "mode": "rolling"})))


# --------------------------------------------------------------------------- other values


def test_bad_agg():
    with raises_at("targets[1].agg", name="b", also="medain(?s:.*)count, sum, mean"):
        load_config(two_targets(target(name="b", agg="medain")))


def test_bad_sign():
    with raises_at("targets[1].sign", name="b", also="neg"):
        load_config(two_targets(target(name="b", sign="neg")))


def test_bad_timezone():
    with raises_at("timezone", also="Mars/Olympus"):
        load_config({"timezone": "Mars/Olympus", "targets": [target()]})


def test_bad_time_unit():
    with raises_at("time_unit", also="'h'(?s:.*)s, ms, us, ns, D"):
        load_config({"time_unit": "h", "targets": [target()]})


def test_bad_on_invalid():
    with raises_at("on_invalid", also="skip"):
        load_config({"on_invalid": "skip", "targets": [target()]})


@pytest.mark.parametrize("name", ["1abc", "my col", "a-b", "", "naïve"])
def test_name_not_an_identifier(name):
    with raises_at("targets[1].name", also=re.escape(repr(name))):
        load_config(two_targets(target(name=name)))


def test_role_columns_must_be_distinct():
    with raises_at("columns", also="distinct"):
        load_config({"columns": {"user": "x", "time": "x"}, "targets": [target()]})


def test_config_error_is_a_value_error_with_path_and_value():
    with pytest.raises(ValueError) as info:
        load_config(two_targets(target(name="b", window={"duration": "0d", "mode": "trailing"})))
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.path.startswith("targets[1].window.duration")
    assert err.value == "0d"
    assert "7d" in err.allowed


# --------------------------------------------------------------------------- loading

YAML = """\
time_unit: D
timezone: Europe/Moscow
on_invalid: drop
columns: {user: client, time: day, amount: value, mcc: mcc_code}
targets:
  - {name: grocery_daily_cumsum, agg: sum, mcc: [5411], window: {period: day, mode: expanding}}
  - {name: top_week, agg: topk, k: 2, sign: negative, abs: true, fill: .nan, window: {period: week, mode: next}}
  - name: spend_sum_next_7d
    agg: sum
    window: {duration: 7d, mode: forward}
"""


def check_loaded(cfg: Config) -> None:
    assert cfg.time_unit == "D" and cfg.timezone == "Europe/Moscow" and cfg.on_invalid == "drop"
    assert (cfg.columns.user, cfg.columns.time, cfg.columns.amount, cfg.columns.mcc) == (
        "client", "day", "value", "mcc_code",
    )
    assert cfg.output_columns == ["grocery_daily_cumsum", "top_week_1", "top_week_2", "spend_sum_next_7d"]
    t0, t1, t2 = cfg.targets
    assert t0.mcc_codes == (5411,) and t0.window.period == "day" and t0.window.mode == "expanding"
    assert t1.k == 2 and t1.sign == "negative" and t1.abs and math.isnan(t1.fill)
    assert t2.window.kind == "duration" and t2.window.duration_ns == 7 * 86400 * 10**9


def test_load_from_yaml_file(tmp_path):
    path = tmp_path / "targets.yaml"
    path.write_text(YAML)
    check_loaded(load_config(path))
    check_loaded(load_config(str(path)))


def test_load_from_yaml_string():
    check_loaded(load_config(YAML))


def test_load_from_dict():
    import yaml

    check_loaded(load_config(yaml.safe_load(YAML)))


def test_load_from_python_objects():
    cfg = Config(
        time_unit="D",
        timezone="Europe/Moscow",
        on_invalid="drop",
        columns={"user": "client", "time": "day", "amount": "value", "mcc": "mcc_code"},
        targets=[
            Target(name="grocery_daily_cumsum", agg="sum", mcc=[5411], window=Window(period="day", mode="expanding")),
            Target(name="top_week", agg="topk", k=2, sign="negative", abs=True, fill=float("nan"),
                   window=Window(period="week", mode="next")),
            Target(name="spend_sum_next_7d", agg="sum", window=Window(duration="7d", mode="forward")),
        ],
    )
    assert load_config(cfg) is cfg
    check_loaded(cfg)


def test_python_objects_are_validated_too():
    with pytest.raises(ValueError, match="topk"):
        Target(name="a", agg="sum", k=3, window=Window(period="day", mode="full"))
    with pytest.raises(ValueError, match="positive"):
        Window(duration="0s", mode="trailing")


@pytest.mark.parametrize("as_path", [True, False], ids=["Path", "str"])
def test_missing_config_file_names_the_file(tmp_path, as_path):
    path = tmp_path / "no_such_targets.yaml"
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*not found"):
        load_config(path if as_path else str(path))


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("targets:\n  - {name: a, agg: sum\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r" line \d+.*YAML"):
        load_config(path)


def test_error_in_yaml_file_has_key_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(YAML.replace("duration: 7d", "duration: 0d"))
    with raises_at("targets[2].window.duration", name="spend_sum_next_7d"):
        load_config(path)


# --------------------------------------------------------------------------- nothing is computed


class ExplodingFrame(pd.DataFrame):
    """A frame that fails the test if anything reads it."""

    def __getattribute__(self, name):
        if name.startswith("__") or name in ("_mgr", "_flags", "_metadata", "_item_cache", "attrs"):
            return super().__getattribute__(name)
        raise AssertionError(f"the data was touched ({name}) although the config is invalid")

    def __getitem__(self, key):
        raise AssertionError("the data was read although the config is invalid")

    def __len__(self):
        raise AssertionError("the data was read although the config is invalid")


BAD_CONFIG = two_targets(target(name="b", window={"duration": "0d", "mode": "trailing"}))


@pytest.mark.parametrize("backend_name", ["auto", "reference", "cpu"])
def test_nothing_is_computed_with_a_bad_config(backend_name):
    frame = ExplodingFrame({"user_id": [1], "timestamp": [0], "amount": [1.0], "mcc": [5411]})
    with raises_at("targets[1].window.duration", name="b"):
        generate(frame, BAD_CONFIG, backend=backend_name)


def test_bad_config_is_reported_before_the_input_is_looked_at():
    # a nonsense "frame" (not a table, not a path) would raise something else if read
    with raises_at("targets[1].window.duration", name="b"):
        generate(object(), BAD_CONFIG, backend="reference")
    with raises_at("targets[1].window.duration", name="b"):
        generate("/no/such/transactions.parquet", BAD_CONFIG, backend="reference")


def test_bad_config_file_is_reported_before_the_input(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        generate(object(), tmp_path / "missing.yaml", backend="reference")


def test_valid_config_still_runs():
    frame = pd.DataFrame({"user_id": [1, 1], "timestamp": [0, 1], "amount": [1.0, 2.0], "mcc": [5411, 5411]})
    out = generate(frame, {"time_unit": "D", "targets": [target(name="s")]}, backend="reference")
    np.testing.assert_array_equal(out["s"].to_numpy(), np.array([1.0, 2.0], dtype=np.float32))
