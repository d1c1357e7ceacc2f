"""Property-based tests: every engine agrees with the reference engine on random tables.

Tables: 1-4 users (integer or string ids), 0-40 rows each, interleaved; times drawn
from a small pool around a period boundary / DST change / 1970, so ties and boundary
crossings are frequent; amounts in cents within +-1e4 with NaN and zeros; MCC from a
small set with nulls. Configs: random targets over every window kind, period,
duration unit and aggregation (topk k 1..6: both sides of the cpu engine's k <= 4
register path), MCC and sign filters, abs, fill (incl. NaN), a time zone from UTC,
Moscow, Kolkata, New York, Sao Paulo, and time given as datetime64 (several units) or
integers with ``time_unit``.

Run more examples with ``HYPOTHESIS_PROFILE=dev pytest tests/test_properties.py``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
from hypothesis import given, note, settings
from hypothesis import strategies as st

from conftest import RTOL, RTOL_STD, assert_close, assert_matches_reference, run, std_columns
from gpu_targets.spec import AGGREGATIONS, PERIODS, load_config

nan = float("nan")

def _utc_seconds(*texts: str) -> list[int]:
    return [int(pd.Timestamp(t).value // 10**9) for t in texts]


#: UTC instants (seconds) on calendar boundaries and DST changes of each zone's local
#: time; a table's times are anchor + i * step for a few small integers i.
ANCHORS = {
    "UTC": _utc_seconds(
        "2024-01-01 00:00:00",  # year, quarter, month and (Monday) week boundary
        "1970-01-01 00:00:00",  # the epoch
        "1969-12-29 00:00:00",  # a Monday before 1970 (negative times)
        "1968-01-01 00:00:00",  # a year boundary before 1970
    ),
    "Europe/Moscow": _utc_seconds(
        "2023-12-31 21:00:00",  # local 2024-01-01 00:00 (+03)
        "2024-03-31 21:00:00",  # local 2024-04-01 00:00: month, quarter, Monday
        "1969-12-31 21:00:00",  # local 1970-01-01 00:00
        "2014-10-25 22:00:00",  # +04 -> +03
    ),
    "Asia/Kolkata": _utc_seconds(
        "2024-06-30 18:30:00",  # local 2024-07-01 00:00 (+05:30)
        "2023-12-31 18:30:00",
        "1969-12-31 18:30:00",
    ),
    "America/New_York": _utc_seconds(
        "2024-03-10 07:00:00",  # spring forward: local 02:00 -> 03:00
        "2024-11-03 06:00:00",  # fall back: local 02:00 -> 01:00
        "2024-01-01 05:00:00",  # local 2024-01-01 00:00
        "1970-01-01 05:00:00",
    ),
    "America/Sao_Paulo": _utc_seconds(
        "2018-02-18 02:00:00",  # DST end at midnight: local 23:00-24:00 of the 17th repeats
        "2018-11-04 03:00:00",  # DST start at midnight: local 00:00-01:00 is skipped
        "2018-01-01 02:00:00",  # local 2018-01-01 00:00 (-02)
        "2018-07-01 03:00:00",  # local 2018-07-01 00:00 (-03)
    ),
}
TIMEZONES = list(ANCHORS)
ALL_ANCHORS = sorted({a for anchors in ANCHORS.values() for a in anchors})
STEPS = [1, 59, 1800, 3600, 5 * 3600, 86400, 3 * 86400, 10 * 86400]

TIME_FORMATS = ["datetime64[ns]", "datetime64[us]", "datetime64[s]", "tz-aware", "int-s", "int-ms", "int-us", "int-D"]

cents = st.integers(-1_000_000, 1_000_000).map(lambda c: c / 100)
amounts = st.one_of(cents, cents, cents, cents, st.just(nan), st.just(0.0))
mccs = st.sampled_from([5411, 5411, 5812, 6011, 4829, None])


@st.composite
def transactions(draw, *, allow_null_ids: bool = False):
    """(frame, top-level config keys, time step in seconds) of a random transactions table."""
    n_users = draw(st.integers(1, 4))
    if draw(st.booleans()):
        ids = draw(st.lists(st.sampled_from(["a", "bb", "user_3", "ü", "10"]), min_size=n_users,
                            max_size=n_users, unique=True))
    else:
        ids = draw(st.lists(st.sampled_from([-3, 0, 1, 7, 2**40]), min_size=n_users, max_size=n_users, unique=True))
    timezone = draw(st.sampled_from(TIMEZONES))
    own = st.sampled_from(ANCHORS[timezone])
    anchor = draw(st.one_of(own, own, st.sampled_from(ALL_ANCHORS)))  # mostly this zone's boundaries
    step = draw(st.sampled_from(STEPS))
    pool = draw(st.lists(st.integers(-12, 12), min_size=1, max_size=8, unique=True))
    rows = []
    for u in range(n_users):
        n = draw(st.integers(1 if u == 0 else 0, 40))
        for _ in range(n):
            rows.append((ids[u], anchor + draw(st.sampled_from(pool)) * step, draw(amounts), draw(mccs)))
    order = draw(st.permutations(range(len(rows))))  # users interleaved, times unsorted
    rows = [rows[i] for i in order]
    user, seconds, amount, mcc = (list(c) for c in zip(*rows))
    seconds = np.asarray(seconds, dtype=np.int64)

    top: dict = {"timezone": timezone}
    fmt = draw(st.sampled_from(TIME_FORMATS))
    if fmt.startswith("datetime64"):
        time = pd.Series(seconds.astype("datetime64[s]").astype(fmt))
    elif fmt == "tz-aware":
        time = pd.Series(pd.to_datetime(seconds, unit="s")).dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo")
    else:
        unit = fmt.split("-")[1]
        top["time_unit"] = unit
        time = {"s": seconds, "ms": seconds * 1000, "us": seconds * 10**6, "D": np.floor_divide(seconds, 86400)}[unit]

    if any(m is None for m in mcc):
        if draw(st.booleans()):
            mcc_col = pd.array(mcc, dtype="Int64")
        else:
            mcc_col = np.array([nan if m is None else float(m) for m in mcc])
    else:
        mcc_col = np.array(mcc, dtype=draw(st.sampled_from([np.int64, np.int32])))

    if allow_null_ids and len(rows) > 1 and draw(st.booleans()):
        # a null user in the first chosen row, null times in the others: on_invalid: drop
        # (at least one row is kept)
        bad = draw(st.lists(st.integers(0, len(rows) - 1), min_size=1, max_size=min(3, len(rows) - 1), unique=True))
        user = pd.Series(user, dtype="Int64" if isinstance(user[0], int) else object)
        user.iloc[bad[:1]] = None
        time = pd.Series(time)
        if time.dtype.kind in "iu":
            time = time.astype("Int64")
        time.iloc[bad[1:]] = pd.NA if isinstance(time.dtype, pd.Int64Dtype) else pd.NaT
        top["on_invalid"] = "drop"

    n_rows = len(rows)
    frame = pd.DataFrame({
        "user_id": user,
        "timestamp": time,
        "amount": np.asarray(amount, dtype=np.float64),
        "mcc": mcc_col,
        "row_id": np.arange(n_rows),
        # [v2] columns for where: and value: (nulls, -0.0, integers above 2^53, strings)
        "tr_type": pd.array(draw(st.lists(st.sampled_from([1010, 2010, 2011, 7070, None]), min_size=n_rows,
                                          max_size=n_rows)), dtype="Int64"),
        "city": pd.Series(draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n_rows, max_size=n_rows)),
                          dtype=object),
        "score": np.asarray(draw(st.lists(st.sampled_from([-1.5, 0.0, -0.0, 2.0, 3.25, 1e300, nan]), min_size=n_rows,
                                          max_size=n_rows)), dtype=np.float64),
        "term": pd.array(draw(st.lists(st.sampled_from([2**60, 2**60 + 1, 5, None]), min_size=n_rows,
                                       max_size=n_rows)), dtype="Int64"),
    })
    return frame, top, step


periods = st.sampled_from(PERIODS)
duration_modes = st.sampled_from(["trailing", "forward"])


def windows(step: int):
    """Period windows, durations in every unit, and durations of a few time steps (so that
    rows fall exactly on the bounds of (t - D, t] and (t, t + D])."""
    period_windows = st.builds(
        lambda p, m: {"period": p, "mode": m}, periods, st.sampled_from(["expanding", "full", "next"])
    )
    return st.one_of(
        period_windows,
        period_windows,
        st.builds(
            lambda v, u, m: {"duration": f"{v}{u}", "mode": m},
            st.integers(1, 48), st.sampled_from(["s", "min", "h", "d", "w"]), duration_modes,
        ),
        st.builds(lambda v, m: {"duration": f"{v * step}s", "mode": m}, st.integers(1, 4), duration_modes),
    )


@st.composite
def targets(draw, name: str, step: int) -> dict:
    agg = draw(st.sampled_from(AGGREGATIONS[:8]))  # SPEC version 1 (v2: test_engine_matches_reference_v2)
    t = {"name": name, "agg": agg, "window": draw(windows(step))}
    if agg == "topk":
        t["k"] = draw(st.integers(1, 6))
    if draw(st.booleans()):
        t["mcc"] = draw(st.lists(st.sampled_from([5411, 5812, 6011, 1234]), min_size=1, max_size=3, unique=True))
    sign = draw(st.sampled_from(["any", "any", "negative", "positive", None]))
    if sign is not None:
        t["sign"] = sign
    if draw(st.booleans()):
        t["abs"] = True
    fill = draw(st.sampled_from([None, 0.0, -1.0, nan, 2.5]))
    if fill is not None:
        t["fill"] = fill
    return t


@st.composite
def configs(draw, top: dict, step: int) -> dict:
    n = draw(st.integers(1, 4))
    return {
        **top,
        "targets": [draw(targets(f"t{i}", step)) for i in range(n)],
    }


@st.composite
def cases(draw, *, allow_null_ids: bool = False):
    frame, top, step = draw(transactions(allow_null_ids=allow_null_ids))
    config = draw(configs(top, step))
    note(f"config = {config!r}")
    note(f"frame =\n{frame.to_string()}")
    return frame, config


# --------------------------------------------------------------------------- SPEC v2 targets
V2_WHERE = [
    {"column": "tr_type", "in": [2010, 2011]}, {"column": "tr_type", "not_in": [7070]},
    {"column": "city", "eq": "a"}, {"column": "city", "ne": "b"}, {"column": "amount", "lt": 0},
    {"column": "score", "ge": 0, "lt": 3}, {"column": "term", "eq": 2**60 + 1}, {"column": "mcc", "in": [5411]},
]


def v2_windows(step: int):
    """Every v2 window kind: periods N and previous, durations with offsets (some on the
    time steps, so rows fall on the bounds), rows windows with offsets."""
    return st.one_of(
        st.builds(lambda p, m, n: {"period": p, "mode": m, **({"periods": n} if n else {})},
                  periods, st.sampled_from(["expanding", "full", "next", "previous"]), st.sampled_from([None, 1, 2, 3])),
        st.builds(lambda d, m, g: {"duration": f"{d * step}s", "mode": m, **({"offset": f"{g * step}s"} if g is not None
                                                                               else {})},
                  st.integers(1, 4), duration_modes, st.sampled_from([None, 0, 1, 2])),
        st.builds(lambda d, u, m, g: {"duration": f"{d}{u}", "mode": m, "offset": f"{g}{u}"},
                  st.integers(1, 30), st.sampled_from(["min", "h", "d"]), duration_modes, st.integers(0, 5)),
        st.builds(lambda n, m, k: {"rows": n, "mode": m, **({"offset": k} if k is not None else {})},
                  st.integers(1, 5), duration_modes, st.sampled_from([None, 0, 1, 3])),
    )


@st.composite
def v2_targets(draw, name: str, step: int) -> dict:
    window = draw(v2_windows(step))
    aggs = [a for a in AGGREGATIONS
            if not (a == "time_to_next" and window["mode"] not in ("next", "forward"))
            and not (a == "time_since_last" and window["mode"] not in ("expanding", "previous", "trailing"))]
    agg = draw(st.sampled_from(aggs))
    t = {"name": name, "agg": agg, "window": window}
    if agg == "topk":
        t["k"] = draw(st.integers(1, 5))
    if agg == "quantile":
        t["q"] = draw(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]))
    if draw(st.booleans()):
        t["mcc"] = draw(st.lists(st.sampled_from([5411, 5812, 6011]), min_size=1, max_size=2, unique=True))
    if draw(st.booleans()):
        t["sign"] = draw(st.sampled_from(["negative", "positive"]))
    if draw(st.booleans()):
        t["where"] = draw(st.lists(st.sampled_from(V2_WHERE), min_size=1, max_size=2))
    values = [None, None, "score", "tr_type", "term"] + (["city"] if agg in ("count", "any", "nunique") else [])
    value = draw(st.sampled_from(values))
    if value is not None:
        t["value"] = value
    if draw(st.booleans()):
        t["abs"] = True
    fill = draw(st.sampled_from([None, 0.0, -1.0, nan]))
    if fill is not None:
        t["fill"] = fill
    return t


@st.composite
def v2_cases(draw):
    frame, top, step = draw(transactions(allow_null_ids=draw(st.booleans())))
    targets_ = [draw(v2_targets(f"t{i}", step)) for i in range(draw(st.integers(1, 4)))]
    columns = [c for t in targets_ for c in load_config({"targets": [t]}).output_columns]
    if len(columns) >= 2 and draw(st.booleans()):
        a, b = draw(st.lists(st.sampled_from(columns), min_size=2, max_size=2))
        targets_.append(draw(st.sampled_from([
            {"name": "ratio", "derive": "ratio", "of": [a, b]},
            {"name": "lin", "derive": "linear", "of": [a, b], "coef": [1.0, -0.5], "fill": -7.0}])))
    config = {**top, "targets": targets_}
    note(f"config = {config!r}")
    note(f"frame =\n{frame.to_string()}")
    return frame, config


def _local_period_goes_back(frame: pd.DataFrame, config: dict) -> bool:
    """Whether some user's local period index (of a v2 period window's period) decreases
    along its rows in (time, row) order: a DST fall-back across a period boundary."""
    from gpu_targets.calendar import local_wall_clock_ns, period_indices
    from gpu_targets.formats import to_roles
    from gpu_targets.transactions import extract

    cfg = load_config(config)
    roles, role_cfg = to_roles(frame, cfg)
    tx = extract(roles, role_cfg)
    local = local_wall_clock_ns(tx.time_ns, cfg.timezone)
    order = np.lexsort((np.arange(len(tx)), tx.time_ns, tx.user))
    for t in cfg.aggregated:
        if t.window.kind == "period" and not t.is_v1:
            p = period_indices(local, t.window.period)[order]
            u = tx.user[order]
            if np.any((p[1:] < p[:-1]) & (u[1:] == u[:-1])):
                return True
    return False


@settings(max_examples=max(settings.default.max_examples // 3, 1))  # each new kernel mix compiles (seconds)
@given(case=v2_cases())
def test_engine_matches_reference_v2(engine, case):
    """SPEC v2 targets (every window kind, aggregation, where:, value:, derived targets):
    each engine's range path against the reference (cuda under the simulator:
    tests/test_cuda_sim.py, on smaller frames). A v2 period window whose local periods go
    back in time (DST fall-back) is refused, and only then."""
    frame, config = case
    try:
        assert_matches_reference(frame, config, engine)
    except ValueError as err:
        if "DST fall-back" not in str(err):
            raise
        assert _local_period_goes_back(frame, config), f"the {engine} engine refused a window it can compute"


# --------------------------------------------------------------------------- properties


@given(case=cases())
def test_engine_matches_reference(engine, case):
    frame, config = case
    assert_matches_reference(frame, config, engine)


@given(case=cases(allow_null_ids=True))
def test_engine_matches_reference_with_dropped_rows(engine, case):
    frame, config = case
    assert_matches_reference(frame, config, engine)


def tie_preserving(perm: list[int], keys: list) -> list[int]:
    """``perm`` changed so that rows with equal key keep their relative input order.

    SPEC.md orders tied rows (same user and time) by input position, so only such a
    shuffle must permute the output the same way.
    """
    slots = defaultdict(list)
    for new, old in enumerate(perm):
        slots[keys[old]].append(new)
    out = list(perm)
    for positions in slots.values():
        for new, old in zip(positions, sorted(perm[p] for p in positions)):
            out[new] = old
    return out


def assert_same_targets(got: pd.DataFrame, expected: pd.DataFrame, config, label: str) -> None:
    stds = std_columns(config)
    for c in load_config(config).output_columns:
        assert_close(got[c].to_numpy(), expected[c].to_numpy(), rtol=RTOL_STD if c in stds else RTOL,
                     label=f"{label}, column {c!r}")


@given(case=cases(), data=st.data())
def test_shuffling_rows_permutes_the_output(backend, case, data):
    frame, config = case
    keys = list(zip(frame["user_id"].tolist(), frame["timestamp"].tolist()))
    perm = tie_preserving(data.draw(st.permutations(range(len(frame))), label="perm"), keys)
    shuffled = frame.iloc[perm].reset_index(drop=True)
    out = run(frame, config, backend)
    out_shuffled = run(shuffled, config, backend)
    expected = out.iloc[perm].reset_index(drop=True)
    pd.testing.assert_frame_equal(out_shuffled[list(frame.columns)], expected[list(frame.columns)])
    assert_same_targets(out_shuffled, expected, config, f"{backend}: shuffled vs original")


@given(case=cases())
def test_sorted_and_unsorted_input_agree(backend, case):
    frame, config = case
    order = frame.sort_values(["user_id", "timestamp"], kind="mergesort").index.to_numpy()
    sorted_frame = frame.iloc[order].reset_index(drop=True)  # stable: ties keep their order
    out = run(frame, config, backend)
    out_sorted = run(sorted_frame, config, backend)
    expected = out.iloc[order].reset_index(drop=True)
    pd.testing.assert_frame_equal(out_sorted[list(frame.columns)], expected[list(frame.columns)])
    assert_same_targets(out_sorted, expected, config, f"{backend}: sorted vs unsorted")


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(-3, 3), st.booleans()), min_size=1, max_size=300),
    st.booleans(),
)
def test_user_time_scan_matches_numpy(rows, sort):
    """The parallel scan behind ``Transactions.ordered`` and the time range check, on
    tables around its 64 chunk boundaries: nulls, ties, out-of-order pairs anywhere."""
    from gpu_targets.transactions import _NAT, _scan_user_time

    if sort:
        rows = sorted(rows, key=lambda r: (r[0], r[1]))
    user = np.array([r[0] for r in rows], dtype=np.int64)
    time = np.array([_NAT if r[2] and r[1] == 0 else r[1] for r in rows], dtype=np.int64)
    lo, hi, n_nat, ordered = _scan_user_time(user, time, _NAT)
    valid = time[time != _NAT]
    assert n_nat == len(time) - len(valid)
    if len(valid):
        assert (lo, hi) == (valid.min(), valid.max())
    expected = bool(np.all((user[1:] > user[:-1]) | ((user[1:] == user[:-1]) & (time[1:] >= time[:-1]))))
    assert ordered == expected


@given(
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300)
    | st.lists(st.integers(-3, 3), max_size=300)
    | st.lists(st.integers(0, 2**40), max_size=300)
)
def test_stable_argsort_matches_numpy(values):
    """The radix argsort of the time sort inside users: numpy's stable argsort, for ties,
    negative times, one pass or many, and ranges that overflow int64."""
    from gpu_targets.engines.grouping import _stable_argsort

    t = np.array(values, dtype=np.int64)
    np.testing.assert_array_equal(_stable_argsort(t), np.argsort(t, kind="stable"))
