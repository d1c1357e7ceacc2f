"""The ``cuda`` engine against the reference engine, under numba's CUDA simulator.

Run with ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_sim.py`` (``make test`` does);
on a machine with a GPU, ``pytest -m gpu`` runs them on the device. Without either,
the engine tests here are skipped (the simulator is off and there is no device). Cases
stay small: simulated threads are Python threads.

The ``to_torch`` tests at the end need neither and always run (when torch is installed).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from conftest import RTOL, assert_close, assert_matches_reference
from gpu_targets import engines, generate, load_config

nan = float("nan")


def _cuda_usable() -> bool:
    try:
        engines.get("cuda")
    except ImportError:
        return False
    return True


CUDA = _cuda_usable()
cuda_only = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA, reason="no CUDA device and NUMBA_ENABLE_CUDASIM is not 1"),
]
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")

AGGS = ["count", "sum", "mean", "min", "max", "std", "any", "topk"]
WINDOWS = {
    "expanding": {"period": "day", "mode": "expanding"},
    "full": {"period": "day", "mode": "full"},
    "next": {"period": "day", "mode": "next"},
    "trailing": {"duration": "2d", "mode": "trailing"},
    "forward": {"duration": "1d", "mode": "forward"},
}


def T(name, agg, window, **kw):
    if agg == "topk":
        kw.setdefault("k", 3)
    return {"name": name, "agg": agg, "window": window, **kw}


def _frame(n_users=2, rows=12, seed=0, string_users=False, shuffle=True):
    """A few users with ties, NaN amounts, null MCCs and gaps of several days."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), rows)
    times = np.concatenate([np.sort(rng.choice([0, 0, 1, 1, 1, 2, 4, 5, 5, 8], rows)) for _ in range(n_users)])
    amount = np.round(rng.normal(0, 100, n_users * rows), 2)
    amount[rng.random(n_users * rows) < 0.1] = nan
    mcc = rng.choice([5411, 5812, -1], n_users * rows)
    df = pd.DataFrame({"user_id": users, "timestamp": times, "amount": amount,
                       "mcc": pd.array(np.where(mcc < 0, 0, mcc), dtype="Int64")})
    df.loc[mcc < 0, "mcc"] = pd.NA
    if string_users:
        df["user_id"] = np.array(["alice", "bob", "carol", "dave"])[users]
    if shuffle:
        df = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return df


# --------------------------------------------------------------------------- hand cases


SPEC = pd.DataFrame({
    "user_id": [1] * 10,
    "timestamp": [1, 1, 2, 2, 2, 2, 2, 2, 3, 3],
    "amount": [61.862096, 112.722485, 443.690425, 199.959683, 72.123675, 422.050677, 420.853556,
               211.319643, 258.552511, 30.908352],
    "mcc": [5812, 5942, 5411, 5411, 5411, 5942, 5942, 5942, 5411, 5812],
})


def _cuda(fn):
    """Mark a test gpu and skip it without a device or the simulator."""
    for m in cuda_only:
        fn = m(fn)
    return fn


@_cuda
def test_spec_section5_table():
    config = {"time_unit": "D", "targets": [
        {"name": "grocery_daily_cumsum", "agg": "sum", "mcc": [5411], "window": {"period": "day", "mode": "expanding"}}
    ]}
    out = generate(SPEC, config, backend="cuda")
    expected = [0.0, 0.0, 443.690425, 643.650108, 715.773784, 715.773784, 715.773784, 715.773784,
                258.552511, 258.552511]
    assert out["grocery_daily_cumsum"].dtype == np.float32
    assert_close(out["grocery_daily_cumsum"].to_numpy(), expected, rtol=RTOL)


@_cuda
@pytest.mark.parametrize("window", list(WINDOWS))
def test_every_aggregation_for_each_window(window):
    """Every aggregation x this window kind, with filters, abs, fill; 2 users, shuffled."""
    w = WINDOWS[window]
    targets = [T(f"{a}_all", a, w) for a in AGGS]
    targets += [T(f"{a}_f", a, w, mcc=[5411], sign="positive", fill=nan) for a in AGGS]
    targets += [T(f"{a}_abs", a, w, abs=True, sign="negative", fill=-1.0) for a in ("sum", "max", "topk", "std")]
    assert_matches_reference(_frame(seed=1), {"time_unit": "D", "targets": targets}, "cuda")


@_cuda
def test_derived_targets():
    """Derived targets (SPEC 2.4) over the kernels' float32 outputs, on the device
    (engines/derive.py with CuPy as xp)."""
    targets = [T("s", "sum", WINDOWS["expanding"]), T("c", "count", WINDOWS["next"], mcc=[5411]),
               {"name": "r", "derive": "ratio", "of": ["s", "c"]},
               {"name": "l", "derive": "linear", "of": ["s", "c"], "coef": [2.0, -1.0], "fill": -1.0}]
    assert_matches_reference(_frame(seed=4), {"time_unit": "D", "targets": targets}, "cuda")


def _spec_v2_hand_cases():
    import test_spec_v2

    return sorted(n for n, f in vars(test_spec_v2).items()
                  if n.startswith("test_") and callable(f) and f.__code__.co_varnames[:1] == ("v2_backend",))


@_cuda
@pytest.mark.parametrize("case", _spec_v2_hand_cases())
def test_spec_v2_hand_cases(case):
    """Every hand-written SPEC v2 case of tests/test_spec_v2.py (values worked out from
    SPEC.md's tables) on the cuda engine's range path (engines/cuda/ranges.py)."""
    import test_spec_v2

    getattr(test_spec_v2, case)("cuda")


@_cuda
def test_any_number_of_distinct_filters():
    """132 targets with 132 distinct mcc/sign filters (tests/test_hostile.py's case):
    the range path's filter tables of several 64-filter words, on the device."""
    import test_hostile

    test_hostile.test_any_number_of_distinct_filters("cuda")


@_cuda
def test_v2_period_window_across_a_dst_fall_back_is_refused_with_one_line():
    """A v2 period window whose local periods go back in time (Antarctica/Troll's
    fall-back, 03:00 (+02) -> 01:00 (+00): hours go 2, 1, 2) raises as on the cpu engine;
    the same rows in UTC are computed."""
    from gpu_targets.calendar import local_wall_clock_ns, period_indices

    times = pd.Timestamp("2023-10-29 00:10:00", tz="UTC").value // 10**9 + np.arange(0, 14) * 600
    assert (np.diff(period_indices(local_wall_clock_ns(times * 10**9, "Antarctica/Troll"), "hour")) < 0).any()
    frame = pd.DataFrame({"user_id": [1] * 14, "timestamp": times, "amount": np.arange(1.0, 15.0),
                          "mcc": [5411] * 14})
    config = {"time_unit": "s", "timezone": "Antarctica/Troll",
              "targets": [T("p", "sum", {"period": "hour", "mode": "previous"})]}
    with pytest.raises(ValueError, match="DST fall-back.*cuda engine"):
        generate(frame, config, backend="cuda")
    assert_matches_reference(frame, {**config, "timezone": "UTC"}, "cuda")


@_cuda
@pytest.mark.parametrize("period", ["hour", "day", "week", "month", "quarter", "year"])
def test_every_period(period):
    df = _frame(n_users=1, rows=20, seed=2)
    df["timestamp"] = df["timestamp"] * 11 * 86400 + df.index.to_numpy() * 3000  # spans months
    targets = [T(f"{m}_{a}", a, {"period": period, "mode": m}) for m in ("expanding", "full", "next")
               for a in ("sum", "min", "std", "topk")]
    assert_matches_reference(df, {"time_unit": "s", "targets": targets}, "cuda")


@_cuda
def test_ties_nan_null_mcc_empty_windows_and_fill():
    df = pd.DataFrame({
        "user_id": [7, 7, 7, 7, 7, 7],
        "timestamp": [10, 10, 10, 20, 20, 500],
        "amount": [1.0, nan, 2.0, -3.0, 4.0, 5.0],
        "mcc": pd.array([5411, 5411, None, 5411, 5812, 5411], dtype="Int64"),
    })
    targets = [T("tr", "sum", {"duration": "10s", "mode": "trailing"}),
               T("trc", "count", {"duration": "10s", "mode": "trailing"}, mcc=[5411]),
               T("fw", "mean", {"duration": "10s", "mode": "forward"}, fill=nan),
               T("fwmin", "min", {"duration": "10s", "mode": "forward"}, fill=-7.0),
               T("ex", "topk", {"period": "hour", "mode": "expanding"}, k=4, fill=nan),
               T("nx", "std", {"period": "hour", "mode": "next"}, fill=nan),
               T("any5411", "any", {"period": "day", "mode": "full"}, mcc=[5411], sign="negative")]
    ref = assert_matches_reference(df, {"time_unit": "s", "targets": targets}, "cuda")
    # hand-checked: the first of the tied rows at t=10 does not see the later ones
    assert ref["tr"].tolist()[:3] == [1.0, 1.0, 3.0]


@_cuda
@pytest.mark.parametrize("tz, start, period", [
    ("Antarctica/Troll", "2023-10-29 00:10:00", "hour"),  # 03:00 (+02) -> 01:00 (+00): hours go 2, 1, 2
    ("America/Sao_Paulo", "2018-02-18 01:10:00", "day"),  # fall-back at local midnight
    ("Europe/Moscow", "2014-10-25 21:10:00", "day"),
])
def test_time_zones_and_non_monotone_periods(tz, start, period):
    from gpu_targets.calendar import local_wall_clock_ns, period_indices

    t0 = pd.Timestamp(start, tz="UTC").value // 10**9
    times = t0 + np.arange(0, 14) * 600
    if tz == "Antarctica/Troll":  # the case must reach the non-monotone path
        p = period_indices(local_wall_clock_ns(times * 10**9, tz), period)
        assert (np.diff(p) < 0).any()
    df = pd.DataFrame({"user_id": [1] * 14, "timestamp": times, "amount": np.arange(1.0, 15.0),
                       "mcc": [5411] * 14})
    targets = [T(f"{m}_{a}", a, {"period": period, "mode": m}) for m in ("expanding", "full", "next")
               for a in ("sum", "max", "std", "topk")]
    targets.append(T("week_sum", "sum", {"period": "week", "mode": "expanding"}))
    assert_matches_reference(df, {"time_unit": "s", "timezone": tz, "targets": targets}, "cuda")


@_cuda
def test_unsorted_input_and_string_users():
    df = _frame(n_users=3, rows=10, seed=3, string_users=True, shuffle=True)
    targets = [T("s", "sum", WINDOWS["expanding"]), T("m", "max", WINDOWS["trailing"]),
               T("k", "topk", WINDOWS["forward"], k=2), T("d", "std", WINDOWS["full"])]
    assert_matches_reference(df, {"time_unit": "D", "targets": targets}, "cuda")


@_cuda
def test_users_spanning_several_batches():
    from gpu_targets.engines import cuda as cuda_engine
    from gpu_targets.transactions import extract

    df = _frame(n_users=3, rows=9, seed=4, shuffle=True)
    cfg = load_config({"time_unit": "D", "targets": [T("s", "sum", WINDOWS["trailing"]),
                                                     T("e", "mean", WINDOWS["expanding"])]})
    tx = extract(df, cfg)
    done = []
    got = cuda_engine.compute(tx, cfg, done.append, max_rows_per_batch=10)
    ref = engines.get("reference").compute(tx, cfg)
    assert done == [9, 9, 9]
    assert_close(got, ref)


# --------------------------------------------------------------------------- properties


@_cuda
@settings(max_examples=15)
@given(case=__import__("test_properties").cases())
def test_matches_reference_on_random_tables(case):
    frame, config = case
    if len(frame) > 40:  # keep the simulator quick
        frame = frame.iloc[:40]
    assert_matches_reference(frame, config, "cuda")


@_cuda
@settings(max_examples=12)
@given(case=__import__("test_properties").v2_cases())
def test_matches_reference_on_random_v2_configs(case):
    """Random SPEC v2 configs (every window kind, aggregation, where:, value:, derived
    targets) against the reference, as tests/test_properties.py does for the cpu engine."""
    from test_properties import _local_period_goes_back

    frame, config = case
    frame = frame.iloc[:40]  # keep the simulator quick
    try:
        assert_matches_reference(frame, config, "cuda")
    except ValueError as err:
        if "DST fall-back" not in str(err):
            raise
        assert _local_period_goes_back(frame, config), "the cuda engine refused a window it can compute"


# --------------------------------------------------------------------------- device input


@_cuda
def test_compute_device_on_numba_device_arrays():
    from numba import cuda

    from gpu_targets.engines import cuda as cuda_engine

    df = _frame(n_users=2, rows=8, seed=5, shuffle=True)
    cfg = load_config({"time_unit": "D", "targets": [T("s", "sum", WINDOWS["trailing"]),
                                                     T("k", "topk", WINDOWS["full"], k=2)]})
    from gpu_targets.transactions import extract

    tx = extract(df, cfg)
    out = cuda_engine.compute_device(
        cuda.to_device(tx.user.astype(np.int32)), cuda.to_device(tx.time), cuda.to_device(tx.amount),
        cuda.to_device(tx.mcc), cfg, time_factor=tx.time_factor,
    )
    assert out.shape == (3, len(df)) and np.dtype(out.dtype) == np.float32
    assert isinstance(out, cuda_engine.xp.ndarray)  # CuPy on a GPU, NumPy under the simulator
    assert_close(cuda_engine._asnumpy(out), engines.get("reference").compute(tx, cfg))
    with pytest.raises(TypeError, match="device array"):
        cuda_engine.compute_device(list(tx.user), tx.time, tx.amount, tx.mcc, cfg)
    with pytest.raises(ValueError, match="same length"):
        cuda_engine.compute_device(cuda.to_device(tx.user[:-1]), cuda.to_device(tx.time), cuda.to_device(tx.amount),
                                   cuda.to_device(tx.mcc), cfg, time_factor=tx.time_factor)


@_cuda
@needs_torch
def test_to_torch_of_a_device_result():
    from numba import cuda

    from gpu_targets import to_torch
    from gpu_targets.engines import cuda as cuda_engine

    cfg = load_config({"time_unit": "D", "targets": [T("s", "sum", WINDOWS["full"])]})
    out = cuda_engine.compute_device(cuda.to_device(np.array([1, 1, 2])), cuda.to_device(np.array([0, 0, 1])),
                                     cuda.to_device(np.array([1.0, 2.0, 4.0])),
                                     cuda.to_device(np.array([1, 1, 1], dtype=np.int32)), cfg, time_factor=86400 * 10**9)
    assert to_torch(out, columns=["s"])["s"].tolist() == [3.0, 3.0, 4.0]
    assert tuple(to_torch(out, stacked=True).shape) == (3, 1)


# --------------------------------------------------------------------------- to_torch (CPU, always)


@needs_torch
def test_to_torch_dict_shares_memory_with_the_frame():
    from gpu_targets import to_torch

    out = generate(SPEC, {"time_unit": "D", "targets": [
        T("s", "sum", WINDOWS["expanding"]), T("k", "topk", WINDOWS["full"], k=2)]}, backend="cpu")
    tensors = to_torch(out)
    assert list(tensors) == ["s", "k_1", "k_2"]
    for c, t in tensors.items():
        a = out[c].to_numpy()
        assert t.data_ptr() == a.ctypes.data and t.numpy().base is not None
        assert np.shares_memory(t.numpy(), a)
        assert t.tolist() == a.tolist()


@needs_torch
def test_to_torch_stacked_is_a_view_of_the_target_block():
    import torch

    from gpu_targets import to_torch

    out = generate(SPEC, {"time_unit": "D", "targets": [
        T("s", "sum", WINDOWS["expanding"]), T("c", "count", WINDOWS["full"])]}, backend="cpu")
    x = to_torch(out, stacked=True)
    assert x.dtype == torch.float32 and tuple(x.shape) == (10, 2)
    assert np.shares_memory(x.numpy(), out["s"].to_numpy())
    np.testing.assert_array_equal(x.numpy(), out[["s", "c"]].to_numpy())
    # columns not in one block: a copy with the same values
    y = to_torch(out, stacked=True, columns=["c", "s"])
    np.testing.assert_array_equal(y.numpy(), out[["c", "s"]].to_numpy())


def test_importing_gpu_targets_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, gpu_targets; assert 'torch' not in sys.modules; gpu_targets.to_torch"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_auto_backend_is_cpu_without_a_real_device(caplog):
    caplog.set_level("INFO", logger="gpu_targets")
    assert engines.resolve("auto", data_on_device=True) in ("cpu", "cuda")
    from numba import config

    if config.ENABLE_CUDASIM or not CUDA:
        assert engines.resolve("auto", data_on_device=True) == "cpu"
        assert "backend auto -> cpu" in caplog.text


# --------------------------------------------------------------------------- the cuDF path


def _device_frame_case(seed=0):
    """Role columns of the dtypes a cuDF frame brings: string users, nullable floats
    (null and NaN), nullable MCCs, tz-aware times in microseconds."""
    df = _frame(n_users=3, rows=9, seed=seed, string_users=True, shuffle=True)
    df["amount"] = pd.array(df["amount"], dtype="Float64")
    df.loc[[1, 4], "amount"] = pd.NA  # null beside the NaN already there
    df["timestamp"] = (pd.to_datetime(df["timestamp"] * 86400, unit="s").astype("datetime64[us]")
                       .dt.tz_localize("UTC").dt.tz_convert("Europe/Moscow"))
    df["mcc"] = pd.array(df["mcc"], dtype="UInt16")  # unsigned with nulls: read through float64
    df["note"] = [f"n{i}" for i in range(len(df))]
    return df


@_cuda
@pytest.mark.parametrize("user_dtype", ["object", "str", "category", "Int64"])
def test_device_frame_path_matches_reference(user_dtype):
    """api._generate_on_device (the cuDF path) runs on a pandas frame under the simulator:
    factorized string users, nulls read with na_value, tz-aware times (no KeyError)."""
    from gpu_targets import api

    df = _device_frame_case()
    if user_dtype == "Int64":
        df["user_id"] = pd.array(df["user_id"].map({"alice": 1, "bob": 2, "carol": 2**62}), dtype="Int64")
    else:
        df["user_id"] = df["user_id"].astype(user_dtype)
    cfg = load_config({"timezone": "Europe/Moscow", "targets": [
        T("s", "sum", WINDOWS["expanding"], mcc=[5411]), T("m", "max", WINDOWS["trailing"]),
        T("k", "topk", WINDOWS["forward"], k=2), T("w", "mean", {"period": "week", "mode": "full"})]})
    got = api._generate_on_device(df, cfg)
    ref = generate(df, cfg, backend="reference")
    assert list(got.columns) == list(ref.columns)
    pd.testing.assert_frame_equal(got[list(df.columns)], df)  # input columns untouched
    for c in cfg.output_columns:
        assert got[c].dtype == np.float32
        assert_close(np.asarray(got[c]), ref[c].to_numpy())


@_cuda
def test_device_frame_path_reads_where_and_value_columns():
    """[v2] The cuDF path reads the where:/value: columns (through the host once, with
    narwhals) and passes them to compute_device; a missing one names target and column."""
    from gpu_targets import api
    from gpu_targets.transactions import DataError

    df = _device_frame_case()
    df["kind"] = pd.array(np.arange(len(df)) % 3, dtype="Int64")
    df.loc[2, "kind"] = pd.NA
    df["shop"] = np.array(["a", "b", "a", "c"] * len(df))[: len(df)]
    cfg = load_config({"targets": [
        T("w", "sum", {"rows": 3, "mode": "trailing"}, where=[{"column": "kind", "in": [1, 2]}]),
        T("u", "nunique", WINDOWS["expanding"], value="shop"),
        T("f", "first", {"rows": 2, "mode": "forward", "offset": 1}, value="kind")]})
    got = api._generate_on_device(df, cfg)
    ref = generate(df, cfg, backend="reference")
    for c in cfg.output_columns:
        assert_close(np.asarray(got[c]), ref[c].to_numpy())
    with pytest.raises(DataError, match="target 'u': value column 'shop' is not in the input"):
        api._generate_on_device(df.drop(columns=["shop"]), cfg)


@_cuda
def test_device_frame_path_drops_null_users_and_reads_integer_times():
    from gpu_targets import api
    from gpu_targets.transactions import DataError

    df = _frame(n_users=2, rows=8, seed=6)
    df["amount"] = pd.array(np.round(df["amount"].fillna(0)).astype("int64"), dtype="Int64")
    df.loc[[0, 5], "amount"] = pd.NA  # integer amounts with nulls
    df["user_id"] = pd.array(df["user_id"], dtype="Int64")
    df.loc[3, "user_id"] = pd.NA
    targets = [T("c", "count", WINDOWS["trailing"]), T("sd", "std", WINDOWS["next"])]
    with pytest.raises(DataError, match="null values"):
        api._generate_on_device(df, load_config({"time_unit": "D", "targets": targets}))
    cfg = load_config({"time_unit": "D", "on_invalid": "drop", "targets": targets})
    got = api._generate_on_device(df, cfg)
    ref = generate(df, cfg, backend="reference")
    assert len(got) == len(df) - 1
    for c in cfg.output_columns:
        assert_close(np.asarray(got[c]), ref[c].to_numpy())
    with pytest.raises(ValueError, match="backend 'cuda'"):
        api._generate_on_device(df, cfg, backend="cpu")


@_cuda
def test_device_frame_path_with_a_composite_user():
    from gpu_targets import api

    df = _frame(n_users=3, rows=12, seed=8)
    df["card"] = (np.arange(len(df)) % 2).astype(np.int64)
    cfg = load_config({"columns": {"user": ["user_id", "card"]}, "time_unit": "D", "targets": [
        T("s", "sum", WINDOWS["trailing"]), T("n", "count", WINDOWS["expanding"])]})
    got = api._generate_on_device(df, cfg)
    ref = generate(df, cfg, backend="reference")
    pd.testing.assert_frame_equal(got[list(df.columns)], df)
    for c in cfg.output_columns:
        assert_close(np.asarray(got[c]), ref[c].to_numpy())


# --------------------------------------------------------------------------- torch device feed


@_cuda
@needs_torch
@pytest.mark.parametrize("workers", [0, 2])
def test_torch_feed_computes_cuda_targets_in_the_main_process(workers, monkeypatch):
    """backend="cuda": workers assemble host batches only (engines.get would raise there),
    the main process computes the targets into one [B, T, C] tensor; the batches equal
    the cpu engine's. Under the simulator device="cpu" runs the device lines."""
    import torch
    from torch.utils.data import get_worker_info

    from gpu_targets.torch import SequenceDataset

    real_get = engines.get

    def get_outside_workers(name):
        if get_worker_info() is not None and name == "cuda":
            raise AssertionError("a DataLoader worker asked for the cuda engine")
        return real_get(name)

    monkeypatch.setattr(engines, "get", get_outside_workers)
    df = _frame(n_users=4, rows=9, seed=8, shuffle=True)
    df["kind"] = np.arange(len(df)) % 3
    cfg = {"time_unit": "D", "targets": [T("s", "sum", WINDOWS["expanding"]), T("k", "topk", WINDOWS["forward"], k=2),
                                         T("d", "std", WINDOWS["trailing"], fill=nan),
                                         # [v2] where:/value: columns travel with the batch to the device
                                         T("w", "sum", {"rows": 3, "mode": "trailing"},
                                           where=[{"column": "kind", "eq": 1}]),
                                         T("u", "nunique", {"rows": 4, "mode": "forward"}, value="kind")]}
    ref = SequenceDataset(df, cfg, max_len=6, backend="cpu")
    dev = SequenceDataset(df, cfg, max_len=6, backend="cuda")
    got = list(dev.loader(batch_size=3, num_workers=workers))
    want = list(ref.loader(batch_size=3))
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert "pending" not in g and g["targets"].dtype == torch.float32
        assert g["targets"].shape == w["targets"].shape
        assert_close(g["targets"].numpy(), w["targets"].numpy())
        for k in ("amount", "time", "mask", "lengths", "mcc"):
            assert torch.equal(g[k], w[k]) or torch.allclose(g[k], w[k], equal_nan=True)
    # a worker's batch is host-only until finished
    from gpu_targets.torch import collate_users

    items = [dev[i] for i in range(2)]
    monkeypatch.setattr("gpu_targets.torch_batch.get_worker_info", lambda: object())
    host = collate_users(items, dev.config, backend="cuda")
    assert "targets" not in host
    assert set(host["pending"]) == {"time", "amount", "mcc", "offsets", "time_factor", "columns"}
    done = dev.finish(host)
    assert done["targets"].shape == (2, 9, 6) and "pending" not in done


# --------------------------------------------------------------------------- distributed job


@_cuda
def test_distributed_job_with_the_cuda_engine_matches_reference(tmp_path):
    """The distributed job with backend cuda (pandas partitions: the same lines a cuDF
    partition takes, sort_values on the partition) matches the reference engine."""
    pytest.importorskip("distributed")
    from gpu_targets import distributed as job
    from gpu_targets.io import read_transactions

    df = _frame(n_users=4, rows=10, seed=9, shuffle=True)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="D")
    df["mcc"] = df["mcc"].fillna(-1).astype("int64")
    (tmp_path / "in").mkdir()
    for i in range(3):
        df.iloc[i * 14:(i + 1) * 14].to_parquet(tmp_path / "in" / f"p{i}.parquet", index=False)
    cfg = {"targets": [T("s", "sum", WINDOWS["expanding"]), T("m", "max", WINDOWS["trailing"]),
                       T("d", "std", WINDOWS["forward"], fill=nan)]}
    import dask

    # one partition at a time: the simulator swaps the engine module's ``cuda`` global
    # while a kernel runs, so it supports one launch at a time (numba-cuda's docs)
    with dask.config.set(scheduler="synchronous"):
        out = job.generate(tmp_path / "in", cfg, tmp_path / "out", backend="cuda", partition_rows=15)
    got = read_transactions(out).sort_values(["user_id", "timestamp", "amount"], na_position="first")
    ref = generate(df, cfg, backend="reference").sort_values(["user_id", "timestamp", "amount"],
                                                             na_position="first")
    assert len(got) == len(df)
    for c in ("s", "m", "d"):
        assert_close(got[c].to_numpy(), ref[c].to_numpy())


@_cuda
def test_distributed_warm_up_compiles_the_cuda_kernels_on_every_worker(monkeypatch):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from gpu_targets import distributed as job

    calls = []
    monkeypatch.setattr(job, "_warm_up_kernels", lambda config, backend: calls.append(backend) or backend)
    cfg = load_config({"targets": [T("s", "sum", WINDOWS["expanding"])]})
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            ran = job._warm_up(client, cfg, "cuda")  # a task pinned to each worker
            assert sorted(ran) == sorted(client.scheduler_info()["workers"]) and set(ran.values()) == {"cuda"}
            del calls[:]
            assert job._warm_up(client, cfg, "cpu") is None
            assert calls == ["cpu"]  # in the client, for the shared disk cache


# --------------------------------------------------------------------------- glue details


@_cuda
def test_stable_period_order_by_searchsorted_on_the_offsets():
    """The user of each position comes from the offsets (no cupy.repeat with an array of
    repeats, which needs CuPy >= 14.1); the order equals np.lexsort with np.repeat."""
    from gpu_targets.engines import cuda as cuda_engine

    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 7, 9)
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    key = rng.integers(0, 3, offs[-1]).astype(np.int64)
    xp = cuda_engine.xp
    got = cuda_engine._asnumpy(cuda_engine._stable_period_order(xp.asarray(key), xp.asarray(offs)))
    want = np.lexsort((np.arange(offs[-1]), key, np.repeat(np.arange(len(sizes)), sizes)))
    np.testing.assert_array_equal(got, want)


@_cuda
def test_time_zone_resolved_on_the_device_from_an_offset_table(monkeypatch):
    """compute_device never sends the time column to the host for pandas' conversion."""
    from gpu_targets import calendar
    from gpu_targets.engines import cuda as cuda_engine
    from gpu_targets.transactions import extract

    def no_host_conversion(*args):
        raise AssertionError("the time column went to the host")

    monkeypatch.setattr(calendar, "local_wall_clock_ns", no_host_conversion)
    t0 = pd.Timestamp("2014-10-25 21:10:00", tz="UTC").value // 10**9
    df = pd.DataFrame({"user_id": [1] * 12, "timestamp": t0 + np.arange(12) * 1800, "amount": np.arange(1.0, 13.0),
                       "mcc": [5411] * 12})
    cfg = load_config({"time_unit": "s", "timezone": "Europe/Moscow",
                       "targets": [T("d", "sum", {"period": "day", "mode": "expanding"}),
                                   T("h", "count", {"period": "hour", "mode": "full"})]})
    tx = extract(df, cfg)
    out = cuda_engine.compute_device(tx.user, tx.time, tx.amount, tx.mcc, cfg, time_factor=tx.time_factor)
    monkeypatch.undo()
    assert_close(cuda_engine._asnumpy(out), engines.get("reference").compute(tx, cfg))


@_cuda
def test_device_helpers_are_cuda_device_functions_of_the_shared_source():
    from gpu_targets.engines import cuda as cuda_engine
    from gpu_targets.engines import elementwise
    from gpu_targets.engines.cuda import functions as cuda_functions

    for name in ("row_filter_bits", "dd_add_dd", "moments_result", "period_index"):
        fn = getattr(cuda_functions, name)
        assert getattr(cuda_engine, name, fn) is fn  # the kernels' globals are the device versions
        assert fn is not getattr(elementwise, name, None)
        assert fn.py_func.__code__ is getattr(elementwise if name != "period_index" else
                                              __import__("gpu_targets.calendar").calendar, name).__code__


# --------------------------------------------------------------------------- real GPU only

gpu_only = pytest.mark.skipif(not CUDA or __import__("numba").config.ENABLE_CUDASIM,
                              reason="needs a real CUDA device")


@_cuda
@gpu_only
def test_two_prod_is_exact_on_the_device():
    """cuda.fma gives the exact error of a product; libNVVM's contraction of Dekker's split
    would not (checked against exact rational arithmetic)."""
    from fractions import Fraction

    from numba import cuda

    from gpu_targets.engines.cuda import functions as cuda_functions

    @cuda.jit
    def kernel(a, b, p, e):
        i = cuda.grid(1)
        if i < a.shape[0]:
            p[i], e[i] = cuda_functions.two_prod(a[i], b[i])

    rng = np.random.default_rng(2)
    a = rng.normal(0, 1e3, 4096) * 10.0 ** rng.integers(-20, 20, 4096)
    b = rng.normal(0, 1e3, 4096)
    p, e = np.empty_like(a), np.empty_like(a)
    kernel[32, 128](a, b, p, e)
    for x, y, hi, lo in zip(a, b, p, e):
        assert Fraction(hi) + Fraction(lo) == Fraction(x) * Fraction(y)


@_cuda
@gpu_only
@needs_torch
def test_torch_cuda_tensors_in_on_the_callers_stream_and_zero_copy_out():
    import torch

    from gpu_targets import to_torch
    from gpu_targets.engines import cuda as cuda_engine
    from gpu_targets.transactions import extract

    df = _frame(n_users=3, rows=50, seed=10, shuffle=True)
    cfg = load_config({"time_unit": "D", "targets": [T("s", "sum", WINDOWS["trailing"]),
                                                     T("k", "topk", WINDOWS["full"], k=2)]})
    tx = extract(df, cfg)
    ref = engines.get("reference").compute(tx, cfg)
    devices = range(torch.cuda.device_count())
    for dev in devices:  # inputs on cuda:1 run on cuda:1
        side = torch.cuda.Stream(device=dev)
        with torch.cuda.device(dev), torch.cuda.stream(side):
            ins = [torch.from_numpy(a).to(f"cuda:{dev}", non_blocking=True) for a in (tx.user, tx.time, tx.amount,
                                                                                      tx.mcc)]
            out = cuda_engine.compute_device(*ins, cfg, time_factor=tx.time_factor)
            block = to_torch(out, stacked=True)
            assert block.device == torch.device(f"cuda:{dev}") and block.data_ptr() == out.data.ptr
            got = block.T.cpu()  # ordered after the kernels by the stream, no explicit sync
        assert_close(got.numpy(), ref)


@_cuda
@pytest.mark.parametrize("amounts", [
    [1e16, 1.0, 2.0, 3.0, 4.0],
    [1e300, 1.0, 2.0, 3.0, 4.0],
    [1.0, float("inf"), 2.0, 3.0, -float("inf"), 5.0, 6.0, 7.0],
    [1e308, 1e308, -1e308, -1e308, 5.0, 1.0, 2.0],
])
def test_extreme_amounts_leave_no_trace_in_duration_windows(amounts):
    """A huge or infinite amount that left the window leaves no trace (as on cpu)."""
    df = pd.DataFrame({"user_id": 1, "timestamp": np.arange(len(amounts)), "amount": amounts, "mcc": 5411})
    targets = [T(f"{a}_{d}_{m}", a, {"duration": d, "mode": m}, fill=nan)
               for a in ("sum", "mean", "std") for d in ("2s", "5s") for m in ("trailing", "forward")]
    cfg = load_config({"time_unit": "s", "targets": targets})
    got = generate(df, cfg, backend="cuda")
    ref = generate(df, cfg, backend="reference")
    for c in cfg.output_columns:
        g, r = got[c].to_numpy(np.float64), ref[c].to_numpy(np.float64)
        special = ~np.isfinite(r)
        np.testing.assert_array_equal(g[special], r[special], err_msg=c)
        assert (np.abs(g[~special] - r[~special]) <= 1e-4 * np.maximum(1.0, np.abs(r[~special]))).all(), (c, g, r)


@_cuda
def test_device_frame_path_checks_the_time_range():
    from gpu_targets import api
    from gpu_targets.transactions import DataError

    df = pd.DataFrame({"user_id": [1, 1], "timestamp": pd.to_datetime(["2262-04-10 00:00", "2262-04-10 01:00"]),
                       "amount": [1.0, 2.0], "mcc": [5411, 5411]})
    with pytest.raises(DataError, match=r"column 'timestamp' \(time\).*1678-01-01 \.\. 2261-12-31"):
        api._generate_on_device(df, load_config({"targets": [T("s", "sum", WINDOWS["trailing"])]}))
