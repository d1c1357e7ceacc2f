"""Every engine against the reference on real data: the Sberbank SDSJ 2016 sample and the
TabFormer file (skipped where ``../shared/data`` is absent), and the spec copy in docs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, assert_matches_reference, shared_data_file
from gpu_targets import load_config
from gpu_targets.io import read_transactions

REPO = Path(__file__).resolve().parents[1]


def _sdsj_users(n_users: int) -> pd.DataFrame:
    frame = read_transactions(shared_data_file("sberbank_sdsj2016_transactions_partial.parquet"))
    # a spread of users: small, median and heavy histories (the reference is O(n^2))
    counts = frame["customer_id"].value_counts()
    picked = counts.sort_values().index[np.linspace(0, len(counts) - 40, n_users).astype(int)]
    return frame[frame["customer_id"].isin(picked)].reset_index(drop=True)


@pytest.mark.parametrize("config_name", ["seed20.yaml", "sdsj2016.yaml"])
def test_sdsj2016_matches_reference(engine, config_name):
    frame = _sdsj_users(12)
    config = load_config(REPO / "configs" / config_name).model_copy(update={"format": "sdsj2016"})
    out = assert_matches_reference(frame, config, engine)
    assert list(out.columns[: frame.shape[1]]) == list(frame.columns)
    assert len(out) == len(frame)
    if config_name == "sdsj2016.yaml":  # its SPEC v2 targets (tr_type filters, terminals...) hit real rows
        assert out["secs_since_atm"].notna().any() and out["terminals_nunique_7d"].max() >= 1
        assert out["cash_sum_30d"].max() > 0


def test_sdsj2016_shuffled_rows_give_the_same_targets(engine):
    frame = _sdsj_users(30)
    config = load_config(REPO / "configs" / "sdsj2016.yaml")
    from gpu_targets import generate

    base = generate(frame, config, backend=engine)
    # a random order of the rows that keeps tied rows (same user and time) in their
    # input order: SPEC.md breaks ties by input position, so only those may not move
    ties = frame.groupby(["customer_id", "tr_datetime"], sort=False).ngroup().to_numpy()
    key = np.random.default_rng(0).permutation(ties.max() + 1)[ties]
    perm = np.lexsort((np.arange(len(frame)), key))
    shuffled = generate(frame.iloc[perm].reset_index(drop=True), config, backend=engine)
    cols = config.output_columns
    np.testing.assert_array_equal(shuffled[cols].to_numpy(), base[cols].to_numpy()[perm])


def test_tabformer_matches_reference(engine):
    frame = read_transactions(shared_data_file("tabformer_user0_card_transactions.parquet")).iloc[:3000]
    config = {
        "format": "tabformer",
        "targets": [
            {"name": "grocery_sum_day", "agg": "sum", "mcc": [5411], "window": {"period": "day", "mode": "expanding"}},
            {"name": "drug_any_next_week", "agg": "any", "mcc": [5912], "window": {"period": "week", "mode": "next"}},
            {"name": "spend_max_30d", "agg": "max", "window": {"duration": "30d", "mode": "trailing"}},
            {"name": "refund_cnt_next_90d", "agg": "count", "sign": "negative",
             "window": {"duration": "90d", "mode": "forward"}},
        ],
    }
    assert_matches_reference(frame, config, engine)


@pytest.mark.skipif(not (SHARED_DATA.parent / "SPEC.md").exists(), reason="../shared/SPEC.md is not available")
def test_docs_spec_is_the_contract():
    assert (REPO / "docs" / "spec.md").read_text() == (SHARED_DATA.parent / "SPEC.md").read_text()
