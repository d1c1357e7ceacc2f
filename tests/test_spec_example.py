"""SPEC.md section 5: the worked example, for the reference engine and every engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import assert_close, assert_matches_reference, run

# amount, mcc, day, grocery_daily_cumsum: the table of SPEC.md section 5, verbatim
SPEC_TABLE = [
    (61.862096, 5812, 1, 0.000000),
    (112.722485, 5942, 1, 0.000000),
    (443.690425, 5411, 2, 443.690425),
    (199.959683, 5411, 2, 643.650108),
    (72.123675, 5411, 2, 715.773784),
    (422.050677, 5942, 2, 715.773784),
    (420.853556, 5942, 2, 715.773784),
    (211.319643, 5942, 2, 715.773784),
    (258.552511, 5411, 3, 258.552511),
    (30.908352, 5812, 3, 258.552511),
]

CONFIG = {
    "time_unit": "D",
    "targets": [
        {"name": "grocery_daily_cumsum", "agg": "sum", "mcc": [5411], "window": {"period": "day", "mode": "expanding"}}
    ],
}


def spec_frame() -> pd.DataFrame:
    amount, mcc, day, _ = zip(*SPEC_TABLE)
    return pd.DataFrame(
        {
            "user_id": np.ones(len(SPEC_TABLE), dtype=np.int64),
            "timestamp": np.asarray(day, dtype=np.int64),
            "amount": np.asarray(amount, dtype=np.float64),
            "mcc": np.asarray(mcc, dtype=np.int64),
        }
    )


def test_spec_worked_example(backend):
    out = run(spec_frame(), CONFIG, backend)
    assert list(out.columns) == ["user_id", "timestamp", "amount", "mcc", "grocery_daily_cumsum"]
    assert out["grocery_daily_cumsum"].dtype == np.float32
    expected = [row[3] for row in SPEC_TABLE]
    assert_close(out["grocery_daily_cumsum"].to_numpy(), expected, label=backend)
    # the input columns come back untouched
    pd.testing.assert_frame_equal(out.iloc[:, :4], spec_frame())


def test_spec_worked_example_from_shipped_config(backend):
    """The same table through the YAML config shipped in configs/ (when present)."""
    path = Path(__file__).resolve().parents[1] / "configs" / "seed_daily_5411.yaml"
    if not path.exists():
        pytest.skip(f"{path} not present")
    out = run(spec_frame(), path, backend)
    assert_close(out["grocery_daily_cumsum"].to_numpy(), [row[3] for row in SPEC_TABLE], label=backend)


def test_spec_worked_example_matches_reference(engine):
    assert_matches_reference(spec_frame(), CONFIG, engine)
