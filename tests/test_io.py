"""gpu_targets.io: Parquet/CSV reading (file, directory, glob) and all-or-nothing writes."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_targets.io import read_transactions, write_parquet
from gpu_targets.transactions import DataError


def _frame(users=(1, 1, 2), start=0) -> pd.DataFrame:
    n = len(users)
    return pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=np.int64),
            "timestamp": pd.to_datetime(["2021-01-01 10:00", "2021-01-02 11:30", "2021-01-02 12:00"][:n]),
            "amount": np.arange(start, start + n, dtype=np.float64) - 0.5,
            "mcc": np.asarray([5411, 5912, 6011][:n], dtype=np.int32),
            "note": [f"row{start + i}" for i in range(n)],
        }
    )


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    for c in ["user_id", "amount", "mcc"]:
        assert got[c].dtype == want[c].dtype, c
        np.testing.assert_array_equal(got[c].to_numpy(), want[c].to_numpy())
    np.testing.assert_array_equal(
        got["timestamp"].to_numpy().astype("datetime64[ns]"), want["timestamp"].to_numpy().astype("datetime64[ns]")
    )
    assert got["note"].tolist() == want["note"].tolist()


def test_parquet_file_round_trip_keeps_dtypes(tmp_path):
    frame = _frame()
    path = tmp_path / "tx.parquet"
    write_parquet(frame.set_index("note", drop=False), path)  # the index is not written
    got = read_transactions(path)
    _assert_same(got, frame)
    assert got["timestamp"].dtype.kind == "M"


def test_float32_columns_stay_float32(tmp_path):
    frame = pd.DataFrame({"a": np.array([1.5, np.nan], dtype=np.float32)})
    write_parquet(frame, tmp_path / "t.parquet")
    assert read_transactions(tmp_path / "t.parquet")["a"].dtype == np.float32


def test_directory_is_read_in_sorted_file_order_skipping_hidden_files(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    write_parquet(_frame((3, 3, 4), start=10), d / "part-1.parquet")
    write_parquet(_frame((1, 1, 2), start=0), d / "part-0.parquet")
    (d / ".part-2.parquet.tmp-123").write_bytes(b"half a file")
    (d / "_SUCCESS").write_bytes(b"")
    got = read_transactions(d)
    assert got["user_id"].tolist() == [1, 1, 2, 3, 3, 4]
    assert got["note"].tolist() == ["row0", "row1", "row2", "row10", "row11", "row12"]


def test_glob_pattern_concatenates_matches_in_order(tmp_path):
    write_parquet(_frame((2, 2, 2), start=5), tmp_path / "b.parquet")
    write_parquet(_frame((1, 1, 1), start=0), tmp_path / "a.parquet")
    write_parquet(_frame((9, 9, 9)), tmp_path / "other.pq")
    got = read_transactions(str(tmp_path / "[ab].parquet"))
    assert got["user_id"].tolist() == [1, 1, 1, 2, 2, 2]


def test_glob_matching_nothing_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.parquet")
    with pytest.raises(DataError, match="no file matches the pattern .*nothing-"):
        read_transactions(pattern)


@pytest.mark.parametrize("name", ["tx.csv", "tx.csv.gz"])
def test_csv_round_trip_infers_timestamps(tmp_path, name):
    text = (
        "user_id,timestamp,amount,mcc,note\n"
        "1,2021-01-01 10:00:00,-0.5,5411,row0\n"
        "1,2021-01-02 11:30:00,0.5,5912,row1\n"
        "2,2021-01-02 12:00:00,1.5,6011,row2\n"
    )
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    got = read_transactions(path)
    assert got["timestamp"].dtype.kind == "M"
    assert got["user_id"].dtype == np.int64 and got["amount"].dtype == np.float64
    assert got["mcc"].tolist() == [5411, 5912, 6011]
    assert got["note"].tolist() == ["row0", "row1", "row2"]
    assert got["timestamp"].iloc[1] == pd.Timestamp("2021-01-02 11:30")


def test_file_format_overrides_the_suffix(tmp_path):
    write_parquet(_frame(), tmp_path / "tx.parquet")
    os.rename(tmp_path / "tx.parquet", tmp_path / "tx.dat")
    with pytest.raises(DataError, match=r"cannot tell the format of .*tx\.dat"):
        read_transactions(tmp_path / "tx.dat")
    assert len(read_transactions(tmp_path / "tx.dat", file_format="parquet")) == 3
    with pytest.raises(ValueError, match="file_format"):
        read_transactions(tmp_path / "tx.dat", file_format="json")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"input file .*missing\.parquet.* not found"):
        read_transactions(tmp_path / "missing.parquet")


def test_truncated_parquet_file_is_named(tmp_path):
    path = tmp_path / "broken.parquet"
    write_parquet(_frame(), path)
    _truncate(path)
    with pytest.raises(DataError, match=r"cannot read .*broken\.parquet") as err:
        read_transactions(path)
    assert "\n" not in str(err.value)


def test_bad_file_inside_a_directory_is_named(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    for i in range(3):
        write_parquet(_frame(start=3 * i), d / f"part-{i}.parquet")
    _truncate(d / "part-1.parquet")
    with pytest.raises(DataError, match=r"part-1\.parquet") as err:
        read_transactions(d)
    assert "part-0" not in str(err.value) and "part-2" not in str(err.value)


def test_directory_file_with_a_different_schema_is_named(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    write_parquet(_frame(), d / "part-0.parquet")
    odd = _frame().assign(amount=["a", "b", "c"])  # strings that cannot be cast to the first file's double
    write_parquet(odd, d / "part-1.parquet")
    with pytest.raises(DataError, match=r"part-1\.parquet"):
        read_transactions(d)


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(DataError, match="holds no Parquet files"):
        read_transactions(tmp_path)


def test_write_into_a_missing_directory_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"output directory .*nowhere.* does not exist"):
        write_parquet(_frame(), tmp_path / "nowhere" / "out.parquet")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.parquet"
    write_parquet(_frame(), path)
    before = path.read_bytes()

    def half_then_fail(table, where, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(_frame((5, 5, 5)), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "out.parquet"
    write_parquet(_frame((1, 1, 1)), path)
    write_parquet(_frame((7, 7, 7)), path)
    assert pq.read_table(path).column("user_id").to_pylist() == [7, 7, 7]
    assert pa.types.is_int64(pq.read_schema(path).field("user_id").type)
