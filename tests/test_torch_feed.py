"""The PyTorch feed: batches equal ``generate`` for the same users, shapes and masks,
truncation, worker sharding of the streaming dataset, zero-copy hand-off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from gpu_targets import generate, load_config  # noqa: E402
from gpu_targets.datasets import synthetic_transactions  # noqa: E402
from gpu_targets.torch import IterableSequenceDataset, SequenceDataset, split_features_labels  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED20 = load_config(REPO / "configs" / "seed20.yaml")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    # shuffled rows: the dataset must group and sort them itself
    return synthetic_transactions(12, (5, 90), seed=3, shuffle=True)


def _expected(frame: pd.DataFrame, config, user) -> pd.DataFrame:
    out = generate(frame, config, backend="reference")
    rows = out[out["user_id"] == user]
    order = np.lexsort((rows.index.to_numpy(), rows["timestamp"].to_numpy()))
    return rows.iloc[order]


def test_batch_equals_generate_for_the_same_users(frame):
    ds = SequenceDataset(frame, SEED20)
    batch = next(iter(DataLoader(ds, batch_size=5, collate_fn=ds.collate)))
    assert batch["target_names"] == SEED20.output_columns
    for b, user in enumerate(batch["user"]):
        exp = _expected(frame, SEED20, user)
        n = int(batch["lengths"][b])
        assert n == len(exp)
        got = batch["targets"][b, :n].numpy()
        want = exp[SEED20.output_columns].to_numpy(np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(batch["amount"][b, :n].numpy(), exp["amount"].to_numpy(np.float32))
        np.testing.assert_array_equal(batch["mcc"][b, :n].numpy(), exp["mcc"].to_numpy())
        seconds = exp["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
        np.testing.assert_allclose(batch["time"][b, :n].numpy(), seconds)


def test_shapes_dtypes_masks_and_padding(frame):
    ds = SequenceDataset(frame, SEED20)
    batch = ds.collate([ds[i] for i in range(len(ds))])
    b, t = batch["amount"].shape
    assert b == len(ds) == frame["user_id"].nunique()
    assert batch["targets"].shape == (b, t, len(SEED20.output_columns))
    assert batch["amount"].dtype == torch.float32 and batch["targets"].dtype == torch.float32
    assert batch["mcc"].dtype == torch.int64 and batch["lengths"].dtype == torch.int64
    assert batch["mask"].dtype == torch.bool
    assert t == int(batch["lengths"].max())
    for i in range(b):
        n = int(batch["lengths"][i])
        assert batch["mask"][i, :n].all() and not batch["mask"][i, n:].any()
        assert (batch["targets"][i, n:] == 0).all() and (batch["amount"][i, n:] == 0).all()


def test_max_len_keeps_the_most_recent_and_targets_see_the_whole_history(frame):
    full = SequenceDataset(frame, SEED20)
    cut = SequenceDataset(frame, SEED20, max_len=7)
    items = [full[i] for i in range(len(full))]
    a, c = full.collate(items), cut.collate(items)
    assert c["amount"].shape[1] == 7
    for i in range(len(items)):
        n_full, n_cut = int(a["lengths"][i]), int(c["lengths"][i])
        assert n_cut == min(n_full, 7)
        # the last n_cut rows, with targets computed on the whole history
        torch.testing.assert_close(c["targets"][i, :n_cut], a["targets"][i, n_full - n_cut : n_full])
        torch.testing.assert_close(c["time"][i, :n_cut], a["time"][i, n_full - n_cut : n_full])


def test_labels_are_marked():
    features, labels = split_features_labels(SEED20)
    names = SEED20.output_columns
    assert "grocery_cnt_next_week" in [names[i] for i in labels]
    assert "food_mean_next_7d" in [names[i] for i in labels]
    assert "grocery_max_month" in [names[i] for i in labels]  # full period: includes later rows
    assert "grocery_sum_day" in [names[i] for i in features]
    assert "drug_sum_30d" in [names[i] for i in features]
    ds = SequenceDataset(synthetic_transactions(2, 10), SEED20)
    batch = ds.collate([ds[0], ds[1]])
    assert batch["is_label"].tolist() == [i in labels for i in range(len(names))]


def test_zero_copy_dlpack_hand_off(monkeypatch):
    import gpu_targets.torch_batch as feed

    seen = {}
    real = feed._pad

    def spy(*args):
        seen["buffers"] = args[-5:]
        return real(*args)

    monkeypatch.setattr(feed, "_pad", spy)
    ds = SequenceDataset(synthetic_transactions(3, 20), SEED20)
    batch = ds.collate([ds[i] for i in range(3)])
    for key, arr in zip(("amount", "mcc", "time", "mask", "targets"), seen["buffers"]):
        assert batch[key].data_ptr() == arr.ctypes.data, key  # the tensor is the filled buffer


def test_items_are_views_of_the_table():
    ds = SequenceDataset(synthetic_transactions(4, 30), SEED20)
    item = ds[2]
    assert np.shares_memory(item["amount"], ds._amount)
    assert np.shares_memory(item["time"], ds._time)


def _write_grouped(tmp_path, frame, row_group_size) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "tx.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_yields_every_user_once_across_workers_and_ranks(tmp_path, workers):
    frame = synthetic_transactions(23, (1, 40), seed=5)
    path = _write_grouped(tmp_path, frame, row_group_size=37)  # users straddle row groups
    seen = []
    for rank in range(2):
        ds = IterableSequenceDataset(path, SEED20, rank=rank, world_size=2)
        loader = DataLoader(ds, batch_size=4, collate_fn=ds.collate, num_workers=workers,
                            multiprocessing_context="spawn" if workers else None)
        for batch in loader:
            seen.extend(batch["user"])
            for b, user in enumerate(batch["user"]):
                n = int(batch["lengths"][b])
                assert n == int((frame["user_id"] == user).sum())
    assert sorted(seen) == sorted(frame["user_id"].unique().tolist())


def test_streaming_batches_equal_the_map_style_ones(tmp_path):
    frame = synthetic_transactions(9, (1, 30), seed=8)
    path = _write_grouped(tmp_path, frame, row_group_size=25)
    stream = IterableSequenceDataset(path, SEED20, rank=0, world_size=1)
    mapped = SequenceDataset(frame, SEED20)
    by_user = {mapped[i]["user"]: i for i in range(len(mapped))}
    for item in stream:
        ref = mapped[by_user[item["user"]]]
        np.testing.assert_array_equal(item["time"], ref["time"])
        np.testing.assert_array_equal(item["amount"], ref["amount"])


def test_precomputed_targets_give_the_same_batches(frame):
    fly = SequenceDataset(frame, SEED20, max_len=20)
    pre = SequenceDataset(frame, SEED20, max_len=20, precompute=True)
    a = fly.collate([fly[i] for i in range(len(fly))])
    b = pre.collate([pre[i] for i in range(len(pre))])
    torch.testing.assert_close(a["targets"], b["targets"])


def test_pretrain_example_runs_and_learns():
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "pretrain.py"), "--steps", "30", "--users", "48",
         "--batch-size", "16", "--max-len", "64"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]  # "loss A -> B over N steps"
    first_loss, last_loss = float(last.split()[1]), float(last.split()[3])
    assert last_loss < first_loss, run.stdout


def test_streaming_precomputed_targets_equal_on_the_fly(tmp_path):
    frame = synthetic_transactions(7, (1, 30), seed=9)
    fly_path = _write_grouped(tmp_path, frame, row_group_size=20)
    stored = generate(frame, SEED20, backend="cpu")
    stored_path = tmp_path / "stored.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(stored, preserve_index=False), stored_path, row_group_size=20)
    fly = IterableSequenceDataset(fly_path, SEED20, rank=0, world_size=1)
    pre = IterableSequenceDataset(stored_path, SEED20, rank=0, world_size=1, precomputed=True)
    a = fly.collate(list(fly))
    b = pre.collate(list(pre))
    assert a["user"] == b["user"]
    torch.testing.assert_close(a["targets"], b["targets"])


def test_composite_users_in_the_feed(tmp_path):
    """Each (client, card) pair is one item, named by its tuple; its targets are those of
    generate(); the streaming dataset, which splits by one user column, refuses them."""
    from gpu_targets.io import write_parquet
    from gpu_targets.transactions import DataError

    f = synthetic_transactions(n_users=6, tx_per_user=40, seed=2).rename(columns={"user_id": "client"})
    f["card"] = (np.arange(len(f)) % 2).astype(np.int64)
    cfg = load_config({"columns": {"user": ["client", "card"]}, "targets": [
        {"name": "s", "agg": "sum", "window": {"duration": "7d", "mode": "trailing"}}]})
    ds = SequenceDataset(f, cfg)
    assert len(ds) == f.groupby(["client", "card"]).ngroups == 12
    want = generate(f, cfg, backend="cpu")
    for i in range(len(ds)):
        client, card = ds[i]["user"]
        rows = want[(want["client"] == client) & (want["card"] == card)].sort_values("timestamp", kind="stable")
        batch = ds.collate([ds[i]])
        np.testing.assert_allclose(batch["targets"][0, : len(rows), 0].numpy(), rows["s"].to_numpy(), rtol=1e-6)
    write_parquet(f, tmp_path / "tx.parquet")
    with pytest.raises(DataError, match="composite user"):
        IterableSequenceDataset(tmp_path / "tx.parquet", cfg)


def test_v2_targets_with_where_and_value_columns_in_the_feed(tmp_path):
    """SPEC v2 targets reading other columns (where: tr_type, value: a terminal id) and a
    derived one: the feed carries those columns with each user, on the fly, precomputed
    and streamed, and its batches equal generate() on the same users."""
    base = synthetic_transactions(6, (5, 60), seed=5, shuffle=True)
    rng = np.random.default_rng(5)
    frame = base.assign(tr_type=rng.choice([1010, 2010, 7070], len(base)),
                        term=pd.array(rng.choice([7, 8, 9, None], len(base)), dtype="Int64"))
    cfg = load_config({"targets": [
        {"name": "cash_sum_prev_week", "agg": "sum", "where": [{"column": "tr_type", "eq": 2010}],
         "window": {"period": "week", "mode": "previous"}},
        {"name": "terms_last_5", "agg": "nunique", "value": "term", "window": {"rows": 5, "mode": "trailing"}},
        {"name": "next_amount", "agg": "first", "window": {"rows": 1, "mode": "forward"}},
        {"name": "ratio", "derive": "ratio", "of": ["next_amount", "cash_sum_prev_week"]},
    ]})
    ds = SequenceDataset(frame, cfg, backend="cpu")
    batch = ds.collate([ds[i] for i in range(len(ds))])
    assert batch["is_label"].tolist() == [False, False, True, True]
    pre = SequenceDataset(frame, cfg, backend="cpu", precompute=True)
    np.testing.assert_array_equal(pre.collate([pre[i] for i in range(len(pre))])["targets"].numpy(),
                                  batch["targets"].numpy())
    for b, user in enumerate(batch["user"]):
        exp = _expected(frame, cfg, user)
        n = int(batch["lengths"][b])
        np.testing.assert_allclose(batch["targets"][b, :n].numpy(), exp[cfg.output_columns].to_numpy(np.float64),
                                   rtol=1e-5, atol=1e-6)
    path = _write_grouped(tmp_path, frame.sort_values(["user_id", "timestamp"], kind="stable"), row_group_size=40)
    stream = IterableSequenceDataset(path, cfg, rank=0, world_size=1, backend="cpu")
    items = list(stream)
    got = stream.collate(items)
    order = [batch["user"].index(u) for u in got["user"]]
    np.testing.assert_array_equal(got["targets"].numpy(), batch["targets"].numpy()[order])
