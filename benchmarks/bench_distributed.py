"""Wall time (and peak memory) of the distributed job on a local CPU cluster.

    python benchmarks/bench_distributed.py                      # (a) 1 vs 2 workers, 20M rows of seed20
    python benchmarks/bench_distributed.py --rows 200_000_000   # (b) one run, 2 workers, peak RSS
    python benchmarks/bench_distributed.py --shuffle --memory-limit 1GB --rows 80_000_000
                                                                # (c) the user shuffle, input > workers' memory
    python benchmarks/bench_distributed.py --allocators         # (d) pyarrow's allocators: time, RSS left

The input is synthetic (``synthetic_transactions``, 512 transactions per user), written
to a temporary directory chunk by chunk (so memory stays bounded): by default Parquet
files each holding whole users, read with ``partitioned_by_user=True``; with
``--shuffle`` every chunk's rows in random order spread over 8 files (each user in every
file), read with the user shuffle. Peak memory is the largest sum of RSS over this
process and its children (the workers), sampled every 0.5 s, and the largest RSS of one
worker; a worker the nanny restarted (out of memory) is reported. (d) runs, in a fresh
process per allocator (with Dask's ``MALLOC_TRIM_THRESHOLD_=65536``), what a worker's
pyarrow does to each file of a shuffled input of 16M rows: read it, sort it by user,
serialize it to Arrow IPC and back, convert it to pandas, free it all; it reports the
seconds, the peak RSS and the RSS left when everything is freed. The data is deleted at
the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from gpu_targets import distributed as job
from gpu_targets.datasets import synthetic_transactions

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "seed20.yaml"
TX_PER_USER = 512
#: (d): name -> environment of the process; GPU_TARGETS_BENCH_POOL picks pyarrow's pool in it
ALLOCATORS = {
    "mimalloc (pyarrow's default)": {},
    "mimalloc, MIMALLOC_PURGE_DELAY=0": {"MIMALLOC_PURGE_DELAY": "0"},
    "jemalloc, no decay (the job's plugin)": {"GPU_TARGETS_BENCH_POOL": "plugin"},
    "C allocator (pa.system_memory_pool)": {"GPU_TARGETS_BENCH_POOL": "system"},
}


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


def write_shuffled_input(directory: Path, rows: int, users_per_chunk: int, n_files: int = 8) -> int:
    """Synthetic transactions in random row order, every chunk of users spread over all
    ``n_files`` files (one row group per chunk and file); returns the number of rows."""
    directory.mkdir(parents=True)
    n_users = max(1, rows // TX_PER_USER)
    written, writers = 0, [None] * n_files
    try:
        for k, first in enumerate(range(0, n_users, users_per_chunk)):
            n = min(users_per_chunk, n_users - first)
            chunk = pa.Table.from_pandas(
                synthetic_transactions(n, TX_PER_USER, seed=k, user_id_start=first, shuffle=True),
                preserve_index=False)
            bounds = np.linspace(0, len(chunk), n_files + 1).astype(int)
            for i in range(n_files):
                if writers[i] is None:
                    writers[i] = pq.ParquetWriter(directory / f"part-{i:03d}.parquet", chunk.schema)
                writers[i].write_table(chunk.slice(bounds[i], bounds[i + 1] - bounds[i]))
            written += len(chunk)
    finally:
        for w in writers:
            if w is not None:
                w.close()
    return written


class PeakRSS:
    """Largest sum of RSS over this process tree, and largest RSS of each process, sampled in a thread."""

    def __init__(self, every: float = 0.5):
        self.every, self.peak, self.peaks, self._stop = every, 0, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    continue
                total += rss
                self.peaks[p.pid] = max(self.peaks.get(p.pid, 0), rss)
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(input_dir: Path, output: Path, workers: int, shuffle: bool = False,
        memory_limit: str = "auto", worker_env: Optional[dict] = None) -> tuple[float, int, int, int]:
    """Seconds, peak RSS of the tree, peak RSS of one worker, and how many workers died (were replaced)."""
    import dask
    from distributed import Client, LocalCluster

    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **(worker_env or {})}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}), \
            LocalCluster(n_workers=workers, threads_per_worker=1, memory_limit=memory_limit,
                         dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(lambda: __import__("gpu_targets.engines.cpu"))  # imports out of the timing
        pids = client.run(os.getpid)
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            job.generate(input_dir, CONFIG, output, client=client, backend="cpu", partitioned_by_user=not shuffle)
            seconds = time.perf_counter() - t0
        after = client.run(os.getpid)
        worker_pids = set(pids.values()) | set(after.values())
        died = len(set(pids.items()) - set(after.items()))
    shutil.rmtree(output)
    return seconds, peak.peak, max((v for k, v in peak.peaks.items() if k in worker_pids), default=0), died


def allocator_run(input_dir: Path) -> None:
    """(d), in a fresh process: each file read, sorted, through Arrow IPC and to pandas, then freed."""
    pool = os.environ.get("GPU_TARGETS_BENCH_POOL")
    if pool == "plugin":
        job._release_freed_memory()  # what the job's worker plugin runs
    elif pool == "system":
        pa.set_memory_pool(pa.system_memory_pool())
    me = psutil.Process()
    start = me.memory_info().rss
    with PeakRSS(every=0.005) as peak:
        t0 = time.perf_counter()
        for path in sorted(input_dir.iterdir()):
            table = pq.read_table(path).sort_by("user_id")
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            del table
            frame = pa.ipc.open_stream(sink.getvalue()).read_all().to_pandas()
            del sink, frame
        seconds = time.perf_counter() - t0
    print(json.dumps({"pool": pa.default_memory_pool().backend_name, "seconds": seconds, "start": start,
                      "peak": peak.peak, "end": me.memory_info().rss}))


def compare_allocators(input_dir: Path) -> None:
    for name, env in ALLOCATORS.items():
        child = subprocess.run([sys.executable, __file__, "--allocator-run", str(input_dir)], check=True,
                               capture_output=True, text=True,
                               env={**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536", **env})
        r = json.loads(child.stdout.strip().splitlines()[-1])
        start, peak, end = (f"{r[k] / 2**20:.0f} MiB" for k in ("start", "peak", "end"))
        print(f"{name:40s} ({r['pool']}): {r['seconds']:.2f} s, RSS {start} at start, "
              f"peak {peak}, {end} when all is freed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=None,
                        help="(b): one run of this many rows on 2 workers; default (a): 20M rows, 1 vs 2 workers")
    parser.add_argument("--users-per-file", type=int, default=4000)
    parser.add_argument("--shuffle", action="store_true",
                        help="(c): users split across files, read with the user shuffle, 2 workers")
    parser.add_argument("--memory-limit", default="auto", help="memory limit of each worker (e.g. 1GB; default: Dask's)")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the worker processes (Dask's distributed.nanny.pre-spawn-environ), "
                             "e.g. MIMALLOC_PURGE_DELAY=0")
    parser.add_argument("--allocators", action="store_true",
                        help="(d): pyarrow's allocators on what a worker does to each file of a shuffled input")
    parser.add_argument("--allocator-run", type=Path, help=argparse.SUPPRESS)  # (d)'s child process
    parser.add_argument("--dir", default=None, help="where to write the data (default: a temporary directory)")
    args = parser.parse_args()
    if args.allocator_run:
        return allocator_run(args.allocator_run)
    root = Path(tempfile.mkdtemp(prefix="bench-distributed-", dir=args.dir))
    try:
        rows = args.rows or (16_000_000 if args.allocators else 20_000_000)
        t0 = time.perf_counter()
        write = write_shuffled_input if args.shuffle or args.allocators else write_input
        n = write(root / "in", rows, args.users_per_file)
        in_memory = n * synthetic_transactions(1, TX_PER_USER).memory_usage(deep=True).sum() / TX_PER_USER
        print(f"wrote {n:,} rows ({in_memory / 2**30:.2f} GiB as a pandas frame) in {time.perf_counter() - t0:.1f} s "
              f"to {root / 'in'}", flush=True)
        if args.allocators:
            return compare_allocators(root / "in")
        for workers in ([2] if args.rows or args.shuffle else [1, 2]):
            seconds, peak, worker_peak, died = run(root / "in", root / "out", workers, args.shuffle,
                                                   args.memory_limit, dict(kv.split("=", 1) for kv in args.worker_env))
            setting = "".join([f" of {args.memory_limit}" if args.memory_limit != "auto" else "",
                               ", shuffled" if args.shuffle else "", *(f", {kv}" for kv in args.worker_env)])
            print(f"{n:,} rows, {workers} worker(s){setting}: {seconds:.1f} s ({n / seconds / 1e6:.2f} M rows/s), "
                  f"peak RSS {peak / 2**30:.2f} GiB (one worker {worker_peak / 2**30:.2f} GiB), "
                  f"workers died: {died}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
