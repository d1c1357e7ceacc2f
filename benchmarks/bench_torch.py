"""DataLoader throughput of the PyTorch feed: targets on the fly vs precomputed.

For ``--users`` synthetic users of ``--tx-per-user`` transactions (seed 0) and
``configs/seed20.yaml``, iterates one epoch of a
``DataLoader(SequenceDataset(...), batch_size, collate_fn=dataset.collate)`` and reports
users/s and ms per batch for:

* in memory (``SequenceDataset``), on the fly: the collate function computes the
  batch's targets with the cpu engine;
* in memory, precomputed: ``SequenceDataset(..., precompute=True)`` computed every
  target once before the epoch (not timed) and the collate function only slices them
  (the most favourable baseline: all targets held in RAM);
* streamed from Parquet (``IterableSequenceDataset``, row groups of ``--row-group``
  rows), on the fly: the input file (zstd) is read and the targets computed per batch;
* streamed from Parquet, precomputed: the output of ``gpu_targets.generate`` written
  once (not timed) is read, targets included (``precomputed=True``): "loading
  precomputed targets".

All pad the same [B, T] / [B, T, C] tensors. Workers are forked (``--workers``; the table is shared, not copied) and
run the engine on one thread each. Medians of ``--repeats`` epochs, after one warm-up
batch.

Usage::

    python benchmarks/bench_torch.py --users 1024 --workers 0 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch.utils.data import DataLoader

from gpu_targets.datasets import synthetic_transactions
from gpu_targets.torch import SequenceDataset


def epoch_seconds(dataset, batch_size: int, workers: int) -> tuple[float, int]:
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=dataset.collate, num_workers=workers,
                        multiprocessing_context="fork" if workers else None, persistent_workers=False)
    t0 = time.perf_counter()
    batches = 0
    for batch in loader:
        batches += 1
        assert batch["targets"].shape[0] > 0
    return time.perf_counter() - t0, batches


def main() -> None:
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpu_targets import generate
    from gpu_targets.torch import IterableSequenceDataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=512)
    parser.add_argument("--tx-per-user", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--row-group", type=int, default=131072)
    parser.add_argument("--config", default="configs/seed20.yaml")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}")
    frame = synthetic_transactions(args.users, args.tx_per_user, seed=0)
    tmp = tempfile.TemporaryDirectory()
    raw_path, stored_path = os.path.join(tmp.name, "tx.parquet"), os.path.join(tmp.name, "targets.parquet")
    for data, path in ((frame, raw_path), (generate(frame, args.config, backend="cpu"), stored_path)):
        pq.write_table(pa.Table.from_pandas(data, preserve_index=False), path, compression="zstd",
                       row_group_size=args.row_group)
    datasets = {
        ("in memory", "on the fly"): SequenceDataset(frame, args.config),
        ("in memory", "precomputed"): SequenceDataset(frame, args.config, precompute=True),
        ("Parquet stream", "on the fly"): IterableSequenceDataset(raw_path, args.config, rank=0, world_size=1),
        ("Parquet stream", "precomputed"): IterableSequenceDataset(stored_path, args.config, rank=0, world_size=1,
                                                                   precomputed=True),
    }
    rows = []
    for workers in args.workers:
        for (source, name), ds in datasets.items():
            epoch_seconds(ds, args.batch_size, 0) if source != "in memory" else ds.collate([ds[0]])  # warm-up
            runs = [epoch_seconds(ds, args.batch_size, workers) for _ in range(args.repeats)]
            seconds = statistics.median(r[0] for r in runs)
            batches = runs[0][1]
            rows.append((workers, source, name, seconds, args.users / seconds, 1e3 * seconds / batches))
    print(f"{args.users} users x {args.tx_per_user} tx, {args.config}, batch {args.batch_size}, "
          f"median of {args.repeats} epochs")
    print(f"{'workers':>7}  {'source':15}  {'targets':12}  {'epoch s':>8}  {'users/s':>9}  {'ms/batch':>9}  "
          "vs precomputed")
    for workers, source, name, seconds, ups, ms in rows:
        base = next(r for r in rows if r[0] == workers and r[1] == source and r[2] == "precomputed")
        print(f"{workers:>7}  {source:15}  {name:12}  {seconds:8.3f}  {ups:9.1f}  {ms:9.1f}  {seconds / base[3]:.2f}x")
    tmp.cleanup()


if __name__ == "__main__":
    main()
