"""The distributed job (:mod:`gpu_targets.distributed`) on a CPU LocalCluster.

Every result is compared with the single-machine :func:`gpu_targets.generate` after
sorting both by (user, time, input row position): the distributed output groups rows by
user (SPEC.md section 3).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("distributed")
pytest.importorskip("dask.dataframe")

from click.testing import CliRunner  # noqa: E402
from distributed import Client, LocalCluster, WorkerPlugin  # noqa: E402

from gpu_targets import engines, generate, load_config  # noqa: E402
from gpu_targets import distributed as job  # noqa: E402
from gpu_targets.cli import main  # noqa: E402
from gpu_targets.datasets import synthetic_transactions  # noqa: E402
from gpu_targets.io import read_transactions  # noqa: E402
from gpu_targets.transactions import DataError  # noqa: E402

from conftest import SHARED_DATA, assert_close, std_columns  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "seed20.yaml"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        with Client(cluster) as c:
            yield c


def write_files(frame: pd.DataFrame, directory: Path, n_files: int) -> Path:
    """The frame as ``n_files`` Parquet files (rows in order, users split across files)."""
    directory.mkdir()
    bounds = np.linspace(0, len(frame), n_files + 1).astype(int)
    for i in range(n_files):
        frame.iloc[bounds[i]:bounds[i + 1]].to_parquet(directory / f"part-{i:03d}.parquet", index=False)
    return directory


def by_user(frame: pd.DataFrame, user: str, time_col: str, position=None) -> pd.DataFrame:
    """Rows sorted by (user, time, input position); ``position`` None: the current order."""
    frame = frame.reset_index(drop=True)
    pos = np.arange(len(frame)) if position is None else position
    key = pd.DataFrame({"u": frame[user].to_numpy(), "t": frame[time_col].to_numpy(), "p": pos})
    return frame.iloc[key.sort_values(["u", "t", "p"]).index.to_numpy()].reset_index(drop=True)


def assert_same(got: pd.DataFrame, ref: pd.DataFrame, config, user="user_id", time_col="timestamp") -> None:
    """Same columns, same rows (each exactly once), targets within SPEC.md's tolerance."""
    cfg = load_config(config)
    assert list(got.columns) == list(ref.columns)
    assert len(got) == len(ref)
    got = by_user(got, user, time_col)  # each user's rows are already in (time, input row) order
    ref = by_user(ref, user, time_col)
    inputs = [c for c in ref.columns if c not in cfg.output_columns]
    pd.testing.assert_frame_equal(got[inputs], ref[inputs], check_exact=True)
    stds = std_columns(cfg)
    for c in cfg.output_columns:
        assert got[c].dtype == np.float32
        assert_close(got[c].to_numpy(), ref[c].to_numpy(), rtol=1e-4 if c in stds else 1e-6, label=c)


@pytest.fixture(scope="module")
def random_input(tmp_path_factory) -> Path:
    tx = synthetic_transactions(40, (20, 150), seed=3, shuffle=True)
    tx["timestamp"] = tx["timestamp"].dt.floor("h")  # many ties in time: input order decides
    return write_files(tx, tmp_path_factory.mktemp("random") / "in", 5)


@pytest.mark.parametrize("partition_rows", [None, 700])
def test_matches_single_machine(client, random_input, tmp_path, partition_rows):
    out = job.generate(random_input, CONFIG, tmp_path / "out", client=client, backend="cpu",
                       partition_rows=partition_rows)
    assert out == tmp_path / "out" and out.is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left
    got = read_transactions(out)
    ref = generate(random_input, CONFIG, backend="cpu")
    assert_same(got, ref, CONFIG)
    # each part holds whole users, each user's rows in (time, input row) order
    parts = [read_transactions(p) for p in sorted(out.glob("*.parquet"))]
    if partition_rows == 700:
        assert len(parts) > 1
    owners = {}
    for i, part in enumerate(parts):
        for u in part["user_id"].unique():
            assert owners.setdefault(u, i) == i, f"user {u} is in two parts"


def test_partitioned_by_user(client, tmp_path):
    tx = synthetic_transactions(30, (20, 120), seed=4, shuffle=True)
    tx["timestamp"] = tx["timestamp"].dt.floor("D")
    (tmp_path / "in").mkdir()
    for k, users in enumerate(np.array_split(np.arange(30), 4)):  # each file holds whole users
        tx[tx["user_id"].isin(users)].to_parquet(tmp_path / "in" / f"users-{k}.parquet", index=False)
    out = job.generate(tmp_path / "in", CONFIG, tmp_path / "out", client=client, backend="cpu",
                       partitioned_by_user=True, partition_rows=1000)
    assert_same(read_transactions(out), generate(tmp_path / "in", CONFIG, backend="cpu"), CONFIG)


def test_spec_v2_targets_read_their_columns_on_the_workers(client, tmp_path):
    """where:/value: columns reach the partitions (and the workers' warm-up) and derived
    targets follow: the job equals the reference engine on one machine."""
    tx = synthetic_transactions(10, (10, 60), seed=6, shuffle=True)
    tx["tr_type"] = np.random.default_rng(6).choice([1010, 2010], len(tx))
    config = {"targets": [
        {"name": "cash_last_5", "agg": "count", "where": [{"column": "tr_type", "eq": 2010}],
         "window": {"rows": 5, "mode": "trailing"}},
        {"name": "types_prev_week", "agg": "nunique", "value": "tr_type", "window": {"period": "week", "mode": "previous"}},
        {"name": "median_2w", "agg": "median", "window": {"duration": "14d", "mode": "trailing", "offset": "1d"}},
        {"name": "r", "derive": "ratio", "of": ["median_2w", "cash_last_5"]}]}
    src = write_files(tx, tmp_path / "in", 3)
    out = job.generate(src, config, tmp_path / "out", client=client, backend="cpu", partition_rows=300)
    assert_same(read_transactions(out), generate(src, config, backend="reference"), config)


def test_partition_on_user_directory(client, tmp_path):
    """Input written with ``to_parquet(partition_on=[user])``: the user column comes from the path."""
    tx = synthetic_transactions(6, 50, seed=5, shuffle=True)
    tx.to_parquet(tmp_path / "in", partition_cols=["user_id"], index=False)
    out = job.generate(tmp_path / "in", CONFIG, tmp_path / "out", client=client, backend="cpu",
                       partitioned_by_user=True)
    assert_same(read_transactions(out), generate(tmp_path / "in", CONFIG, backend="cpu"), CONFIG)


def test_real_sdsj(client, tmp_path):
    path = SHARED_DATA / "sberbank_sdsj2016_transactions_partial.parquet"
    if not path.exists():
        pytest.skip(f"shared dataset {path} is not available on this machine")
    frame = read_transactions(path)
    users = np.sort(frame["customer_id"].unique())[::6]  # about 95 users keeps it fast
    frame = frame[frame["customer_id"].isin(users)].reset_index(drop=True)
    write_files(frame, tmp_path / "in", 3)
    cfg = load_config(CONFIG).model_copy(update={"format": "sdsj2016"})
    out = job.generate(tmp_path / "in", cfg, tmp_path / "out", client=client, backend="cpu", partition_rows=10_000)
    ref = generate(tmp_path / "in", cfg, backend="cpu")
    # tr_datetime ("day HH:MM:SS") is not sortable as text: order by its seconds
    secs = lambda f: f.assign(t=f["tr_datetime"].str.split(" ").map(lambda p: int(p[0]) * 86400) +  # noqa: E731
                              pd.to_timedelta(f["tr_datetime"].str.split(" ").str[1]).dt.total_seconds())
    got = secs(read_transactions(out))
    ref = secs(ref)
    cols = [*ref.columns]
    assert_same(got[cols], ref, cfg, user="customer_id", time_col="t")


# --------------------------------------------------------------------------- faults
def test_bad_file_in_directory(client, random_input, tmp_path):
    bad_dir = tmp_path / "in"
    bad_dir.mkdir()
    for f in sorted(random_input.iterdir()):
        (bad_dir / f.name).write_bytes(f.read_bytes())
    truncated = bad_dir / "part-002.parquet"
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(DataError, match="part-002.parquet"):
        job.generate(bad_dir, CONFIG, tmp_path / "out", client=client, backend="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_failure_during_job_leaves_nothing(client, tmp_path):
    tx = synthetic_transactions(10, 40, seed=6)
    tx.loc[57, "timestamp"] = pd.NaT  # a null time: the engine raises in one partition, on a worker
    write_files(tx, tmp_path / "in", 2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part.00000.parquet").write_bytes(b"previous output")  # an earlier output
    (tmp_path / "out" / job.OUTPUT_MARKER).write_text("")
    with pytest.raises(DataError, match="null"):
        job.generate(tmp_path / "in", CONFIG, tmp_path / "out", client=client, backend="cpu", partition_rows=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no temporary directory
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [job.OUTPUT_MARKER, "part.00000.parquet"]
    assert (tmp_path / "out" / "part.00000.parquet").read_bytes() == b"previous output"


class _SlowEngine:
    """The cpu engine, 0.3 s slower per partition: gives a test time to kill a worker mid-job."""

    @staticmethod
    def compute(tx, config, progress=None):
        time.sleep(0.3)
        return engines.get("cpu").compute(tx, config, progress=progress)


def _register_slow():
    import sys

    engines.register("slow_cpu", lambda: sys.modules[__name__]._SlowEngine, replace=True)  # restarted workers too


class _RegisterSlow(WorkerPlugin):
    """Registers the slow engine on every worker, restarted ones included."""

    def setup(self, worker):
        _register_slow()


@pytest.fixture
def slow_engine():
    _register_slow()
    yield "slow_cpu"
    engines._REGISTRY.pop("slow_cpu", None)


def _register_worker_only():
    import importlib

    engines.register("worker_only_cpu", lambda: importlib.import_module("gpu_targets.engines.cpu"), replace=True)


def test_backend_is_resolved_on_the_workers(client, random_input, tmp_path):
    # an engine the workers have and the client does not (as cuda on GPU workers driven
    # from a laptop): the job runs it instead of failing on the client
    assert "worker_only_cpu" not in engines.available()
    client.run(_register_worker_only)
    try:
        out = job.generate(random_input, CONFIG, tmp_path / "out", client=client, backend="worker_only_cpu")
        assert_same(read_transactions(out), generate(random_input, CONFIG, backend="cpu"), CONFIG)
        with pytest.raises(ValueError, match="unknown backend 'no_such_engine'"):
            job.generate(random_input, CONFIG, tmp_path / "out2", client=client, backend="no_such_engine")
        assert not (tmp_path / "out2").exists()
    finally:
        client.run(lambda: engines._REGISTRY.pop("worker_only_cpu", None))


def test_worker_killed_mid_job(slow_engine, tmp_path):
    tx = synthetic_transactions(60, (20, 80), seed=7, shuffle=True)
    write_files(tx, tmp_path / "in", 6)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        c.register_plugin(_RegisterSlow())
        box = {}

        def run():
            try:
                box["out"] = job.generate(tmp_path / "in", CONFIG, tmp_path / "out", client=c,
                                          backend=slow_engine, partition_rows=150)  # ~20 partitions
            except BaseException as err:  # pragma: no cover - reported below
                box["error"] = err

        thread = threading.Thread(target=run)
        thread.start()

        def finished_targets(dask_scheduler):
            return sum(ts.state == "memory" and "targets_of_partition" in ts.key[0]
                       for ts in dask_scheduler.tasks.values() if isinstance(ts.key, tuple))

        deadline = time.monotonic() + 60
        while c.run_on_scheduler(finished_targets) < 2:
            assert time.monotonic() < deadline and thread.is_alive(), "the job did not start"
            time.sleep(0.05)
        pids = c.run(os.getpid)
        victim = sorted(pids)[0]
        os.kill(pids[victim], signal.SIGKILL)
        assert thread.is_alive()  # killed mid-job: ~20 partitions at >= 0.3 s each on 2 workers
        thread.join(120)
        assert not thread.is_alive()
        assert "error" not in box, box.get("error")
        assert victim not in c.scheduler_info()["workers"]  # the killed worker is gone (a new one replaced it)
    got = read_transactions(box["out"])
    ref = generate(tmp_path / "in", CONFIG, backend="cpu")
    assert_same(got, ref, CONFIG)  # every row exactly once


def write_wide(directory: Path, n_users: int, tx_per_user: int, note_bytes: int, n_files: int) -> int:
    """Transactions plus a ``note`` column of ``note_bytes``-character strings, in random
    row order over ``n_files`` files (users split across files); returns the bytes in memory.

    64 distinct notes: the files stay small (dictionary-encoded) while the frame is large.
    """
    tx = pa.Table.from_pandas(synthetic_transactions(n_users, tx_per_user, seed=8, shuffle=True),
                              preserve_index=False)
    notes = pa.array([f"{k:02d}".ljust(note_bytes, "n") for k in range(64)])
    which = np.random.default_rng(8).integers(0, 64, len(tx))
    directory.mkdir()
    nbytes = 0
    bounds = np.linspace(0, len(tx), n_files + 1).astype(int)
    for i in range(n_files):
        part = tx.slice(bounds[i], bounds[i + 1] - bounds[i])
        part = part.append_column("note", notes.take(which[bounds[i]:bounds[i + 1]]))
        pq.write_table(part, directory / f"part-{i:03d}.parquet", row_group_size=5_000)
        nbytes += part.nbytes
    return nbytes


def test_shuffle_input_larger_than_worker_memory(tmp_path):
    """The user shuffle of an input twice a worker's memory limit completes, no worker dies.

    2 worker processes of 1 GB shuffle 1.9 GiB (in memory form; more than both limits
    together) with partitions sized from the limit. Before the fix the workers were
    killed in the shuffle: pyarrow's default allocator kept every freed copy resident, and
    the partitions ignored the ~300 MiB a worker holds before its first partition
    (docs/distributed.md, "Memory"). With a cold Numba cache the workers compiled the
    kernels inside their limit and stayed paused for good; the job now compiles them in
    the client first (the workers load them from the shared cache), and fails after
    ``paused_timeout`` instead of hanging. Workers of 600 MB were too small on a fresh
    install: there a worker's baseline RSS was 325-365 MiB instead of 225-280 (the pages
    of just-written libraries, libllvmlite's 96 MiB instead of 36), above what a 458 MiB
    pause threshold leaves for a shuffle.
    """
    limit = 1e9
    nbytes = write_wide(tmp_path / "in", 2000, 250, 4000, 8)
    assert nbytes > 1.9 * limit
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, memory_limit=limit,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        workers = c.run(os.getpid)  # address -> pid: a worker killed and restarted changes both
        out = job.generate(tmp_path / "in", CONFIG, tmp_path / "out", client=c, backend="cpu")
        assert c.run(os.getpid) == workers, "a worker died"
    assert len(list(out.glob("*.parquet"))) > 8 * nbytes / limit  # partitions sized from the limit

    def read(files):  # notes as categories: this process holds no GiB of strings
        table = pa.concat_tables(pq.read_table(f, read_dictionary=["note"]) for f in sorted(files))
        return table.to_pandas().assign(note=lambda f: f["note"].astype(object))

    ref = generate(read((tmp_path / "in").iterdir()), CONFIG, backend="cpu")
    assert_same(read(out.glob("*.parquet")), ref, CONFIG)  # the part files (not the output marker)


def test_workers_paused_for_good_fail_the_job(tmp_path):
    """A job whose only worker stays above its pause threshold fails with a MemoryError
    after ``paused_timeout`` instead of waiting for ever, and leaves no output."""
    synthetic_transactions(50, 200, seed=0).to_parquet(tmp_path / "in.parquet")
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, memory_limit="1GB",
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        # memory the worker cannot free, up to 87% of its limit: above the pause
        # threshold (80%), below the nanny's 95%
        limit = next(iter(c.scheduler_info()["workers"].values()))["memory_limit"]

        def hold(limit=limit):
            import numpy as np
            import psutil

            import gpu_targets  # imported before measuring: it is most of a worker's memory

            need = int(0.87 * limit - psutil.Process().memory_info().rss)
            gpu_targets._ballast = np.ones(max(need, 0) // 8)  # touched pages: resident

        c.run(hold)
        t0 = time.monotonic()
        with pytest.raises(MemoryError, match="has been paused above its memory pause threshold for 5 s"):
            job.generate(tmp_path / "in.parquet", CONFIG, tmp_path / "out", client=c, backend="cpu",
                         partition_rows=2000, paused_timeout=5)
        assert time.monotonic() - t0 < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]  # no output, no temporary


def test_default_partition_rows(client):
    """Pause fraction of the limit, less the worker's baseline, over 8 copies of a row.

    One snapshot of the scheduler's view: a worker's memory metric moves with every
    heartbeat, so two reads of it can differ (a fresh-clone CI run saw 9469201 vs 9472421)."""
    import copy

    info = copy.deepcopy(client.scheduler_info(n_workers=-1))  # the client updates its dict in place

    class Snapshot:
        def scheduler_info(self, **kwargs):
            return info

    # the smallest budget decides (workers of one limit differ in the memory they hold)
    budget = min(w["memory_limit"] * 0.8 - max(w["metrics"]["memory"], job.WORKER_BASELINE)
                 for w in info["workers"].values())
    assert job.default_partition_rows(Snapshot(), 22) == int(budget / (8 * (40 + 88)))
    assert job.default_partition_rows(Snapshot(), 22, 1000) == int(budget / (8 * (1000 + 88)))
    assert job.default_partition_rows(None, 22) == job.FALLBACK_PARTITION_ROWS


# --------------------------------------------------------------------------- CLI
def test_cli_scheduler_local(random_input, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["generate", str(random_input), "-c", str(CONFIG), "-o", str(out), "--backend", "cpu",
               "--scheduler", "local", "--workers", "2"],
        standalone_mode=False, catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "dashboard" in result.output
    assert_same(read_transactions(out), generate(random_input, CONFIG, backend="cpu"), CONFIG)


def test_cli_workers_needs_scheduler(random_input, tmp_path):
    result = CliRunner().invoke(main, ["generate", str(random_input), "-c", str(CONFIG), "-o",
                                       str(tmp_path / "o.parquet"), "--workers", "2"])
    assert result.exit_code == 2
    assert "--scheduler" in result.output




def test_partition_rows_from_device_memory_of_gpu_workers():
    """GPU workers (the free device memory their warm-up reported) bound the partition
    size too: half of it over DEVICE_PARTITION_COPIES partitions of input + targets +
    scratch bytes per row; the smaller of the host and device bounds wins."""
    host = job.default_partition_rows(None, 2, 40)
    assert host == job.FALLBACK_PARTITION_ROWS
    per_row = 40 + 4 * 2 + job.DEVICE_SCRATCH_ROW_BYTES
    one_gb = job.default_partition_rows(None, 2, 40, device_free_bytes=10**9)
    assert one_gb == int(10**9 * 0.5 / (job.DEVICE_PARTITION_COPIES * per_row)) < host
    assert job.default_partition_rows(None, 2, 40, device_free_bytes=10**12) == host
    assert job.default_partition_rows(None, 2, 40, device_free_bytes=10**5) == 1_000


TIES_CONFIG = {"time_unit": "D", "targets": [
    {"name": "so_far", "agg": "sum", "window": {"period": "day", "mode": "expanding"}},
    {"name": "first_of_day", "agg": "count", "window": {"period": "day", "mode": "expanding"}},
]}


def tied_files(directory: Path) -> Path:
    """Three files whose sorted order (part1, part10, part2) is not Dask's natural order
    (part1, part2, part10); each holds the same two users at the same times, so only the
    input row position orders their rows. Ids above 2^53 (one column with nulls) and a
    string column with nulls must come through unchanged."""
    directory.mkdir()
    big = 2**60 + 1
    for k, name in enumerate(["part1", "part10", "part2"]):
        pd.DataFrame({
            "user_id": np.array([7, big, 7, big], dtype=np.int64),
            "timestamp": pd.to_datetime(["2024-01-01 10:00"] * 2 + ["2024-01-02 10:00"] * 2),
            "amount": np.array([1.0, 2.0, 3.0, 4.0]) * 10.0 ** k,
            "mcc": np.int32(5411),
            "card": pd.array([big + k, None, big, k], dtype="Int64"),
            "note": [f"f{k}", None, "x", "y"],
        }).to_parquet(directory / f"{name}.parquet", index=False)
    return directory


@pytest.mark.parametrize("reader", ["dask.dataframe.read_parquet", "from_map"])
def test_readers_keep_input_order_for_ties_and_every_value(tmp_path, monkeypatch, caplog, reader):
    """Both readers give the single-machine result: ties in time follow the sorted file
    order (not Dask's natural order), values come through exactly."""
    src = tied_files(tmp_path / "in")
    if reader == "from_map":
        monkeypatch.setattr(job.dask_input, "read_parquet_frame", lambda *a, **k: None)
    with caplog.at_level("INFO", logger="gpu_targets"):
        out = job.generate(src, TIES_CONFIG, tmp_path / "out", backend="cpu")
    assert any(reader in r.getMessage() for r in caplog.records if "read with" in r.getMessage())
    got, ref = read_transactions(out), generate(src, TIES_CONFIG, backend="cpu")
    # the rows of a tie, in input order: 1 then 10 then 100 (files part1, part10, part2)
    user7_day1 = by_user(got, "user_id", "timestamp").query("user_id == 7").head(3)
    assert user7_day1["so_far"].tolist() == [1.0, 11.0, 111.0]
    assert_same(got, ref, TIES_CONFIG)
    written = pq.read_table(out)
    assert written.schema.field("card").type == pa.int64()
    cards = pq.read_table(src, columns=["card"])["card"].to_pylist()  # ids above 2^53, exact
    assert sorted(written["card"].to_pylist(), key=str) == sorted(cards, key=str)


def test_reader_choice_follows_the_schema_rule(tmp_path, caplog):
    """Files that differ in columns are read by the job's reader (every column of any
    file, nulls where a file lacks it); Dask's reader would drop the columns the first
    file lacks."""
    src = tied_files(tmp_path / "in")
    extra = pd.read_parquet(src / "part2.parquet").assign(branch=["a", "b", "c", "d"])
    extra.to_parquet(src / "part2.parquet", index=False)
    with caplog.at_level("INFO", logger="gpu_targets"):
        out = job.generate(src, TIES_CONFIG, tmp_path / "out", backend="cpu")
    assert any("from_map" in r.getMessage() for r in caplog.records if "read with" in r.getMessage())
    got = read_transactions(out)
    assert got["branch"].notna().sum() == 4
    assert_same(got, generate(src, TIES_CONFIG, backend="cpu"), TIES_CONFIG)


def test_a_partition_that_is_not_its_file_is_an_error():
    """Dask reading files in an order other than the one the row positions assume fails
    loudly instead of ordering ties wrongly."""
    part = pd.DataFrame({"a": [1, 2, 3]})
    pieces = [("a.parquet", 0, 3), ("b.parquet", 3, 2)]
    ok = job.dask_input._with_row_positions(part, pieces, partition_info={"number": 0})
    assert ok[job.ROW].tolist() == [0, 1, 2] and "a" in ok
    with pytest.raises(DataError, match="b.parquet.*3 rows in its partition, 2 in the file"):
        job.dask_input._with_row_positions(part, pieces, partition_info={"number": 1})
