"""Wall time (and peak memory) of the distributed job on a local CPU cluster.

    python benchmarks/bench_distributed.py                      # (a) 1 vs 2 workers, 20M rows of seed20
    python benchmarks/bench_distributed.py --rows 200_000_000   # (b) one run, 2 workers, peak RSS

The input is synthetic (``synthetic_transactions``, 512 transactions per user), written
to a temporary directory as Parquet files each holding whole users (chunk by chunk, so
memory stays bounded), and read with ``partitioned_by_user=True``. Peak memory is the
largest sum of RSS over this process and its children (the workers), sampled every 0.5 s.
The data is deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from gpu_targets import distributed as job
from gpu_targets.datasets import synthetic_transactions

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "seed20.yaml"
TX_PER_USER = 512


def write_input(directory: Path, rows: int, users_per_file: int) -> int:
    """Synthetic transactions as files of whole users; returns the number of rows written."""
    directory.mkdir(parents=True)
    n_users = max(1, rows // TX_PER_USER)
    written = 0
    for k, first in enumerate(range(0, n_users, users_per_file)):
        n = min(users_per_file, n_users - first)
        frame = synthetic_transactions(n, TX_PER_USER, seed=k, user_id_start=first)
        frame.to_parquet(directory / f"users-{k:05d}.parquet", index=False)
        written += len(frame)
    return written


class PeakRSS:
    """Largest sum of RSS over this process tree, sampled in a thread."""

    def __init__(self, every: float = 0.5):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(input_dir: Path, output: Path, workers: int) -> tuple[float, int]:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(lambda: __import__("gpu_targets.engines.cpu"))  # imports out of the timing
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            job.generate(input_dir, CONFIG, output, client=client, backend="cpu", partitioned_by_user=True)
            seconds = time.perf_counter() - t0
    shutil.rmtree(output)
    return seconds, peak.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=None,
                        help="(b): one run of this many rows on 2 workers; default (a): 20M rows, 1 vs 2 workers")
    parser.add_argument("--users-per-file", type=int, default=4000)
    parser.add_argument("--dir", default=None, help="where to write the data (default: a temporary directory)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-distributed-", dir=args.dir))
    try:
        rows = args.rows or 20_000_000
        t0 = time.perf_counter()
        n = write_input(root / "in", rows, args.users_per_file)
        print(f"wrote {n:,} rows in {time.perf_counter() - t0:.1f} s to {root / 'in'}", flush=True)
        for workers in ([2] if args.rows else [1, 2]):
            seconds, peak = run(root / "in", root / "out", workers)
            print(f"{n:,} rows, {workers} worker(s): {seconds:.1f} s ({n / seconds / 1e6:.2f} M rows/s), "
                  f"peak RSS {peak / 2**30:.2f} GiB", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
