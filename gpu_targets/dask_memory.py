"""Memory of the distributed job's workers: how many rows a partition may hold, and a
worker plugin that makes pyarrow return freed memory to the OS.

Partition sizes come from each worker's memory limit (host) and, for GPU workers, from
the device memory its allocator can still hand out; docs/distributed.md ("Memory") has
the measurements behind the constants.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import pyarrow as pa

log = logging.getLogger("gpu_targets")

__all__ = ["default_partition_rows", "BYTES_PER_ROW", "FALLBACK_PARTITION_ROWS"]

#: Smallest in-memory bytes counted per input row.
BYTES_PER_ROW = 40
#: Host memory a CPU worker holds besides its partitions: Python, Dask, pandas, pyarrow,
#: Numba, the compiled engine, Dask's own state (measured 250-270 MiB before a shuffled
#: job, 330-345 MiB after one, on this project's development machine).
WORKER_BASELINE = 340 * 2**20
#: A worker's peak memory above ``WORKER_BASELINE``, in partitions (in memory form):
#: Dask's p2p shuffle splits and serializes a partition while it receives and re-splits
#: the other workers' shards (measured 4.5-7 times, docs/distributed.md "Memory").
PARTITION_COPIES = 8
#: Partition size when the cluster reports no memory limit.
FALLBACK_PARTITION_ROWS = 2_000_000

#: A GPU worker's peak device memory, in partitions: the cuDF partition, its shuffled
#: copy, the output columns and the engine's scratch (an estimate, not yet measured).
DEVICE_PARTITION_COPIES = 4
#: Device bytes per row of the engine's scratch (scan state and period keys).
DEVICE_SCRATCH_ROW_BYTES = 96


def default_partition_rows(client, n_targets: int, bytes_per_row: float = BYTES_PER_ROW,
                           device_free_bytes: Optional[int] = None) -> int:
    """Rows per partition so that a worker's peak memory stays below its pause threshold.

    A worker's budget is its ``memory_limit`` times Dask's pause fraction
    (``distributed.worker.memory.pause``, 0.8 by default) less what it holds besides the
    partitions: its process memory as the scheduler last saw it, at least
    ``WORKER_BASELINE`` (340 MiB). A partition of ``n`` rows counts
    ``n * (bytes_per_row + 4 * n_targets)`` bytes (the input row in memory form, at least
    ``BYTES_PER_ROW``, plus the float32 targets) and a worker holds up to
    ``PARTITION_COPIES`` (8) times that at its peak. The smallest budget decides.

    GPU workers (``device_free_bytes``: the smallest free device memory a worker
    reported, see :func:`_warm_up`): half of it over ``DEVICE_PARTITION_COPIES`` (4)
    partitions of ``n * (bytes_per_row + 4 * n_targets + DEVICE_SCRATCH_ROW_BYTES)``
    bytes also bounds the size (the smaller of the two wins).

    Returns ``FALLBACK_PARTITION_ROWS`` when no worker reports a memory limit, and at
    least 1,000 rows (with a logged warning when the budget is smaller than that).
    """
    rows = _host_partition_rows(client, n_targets, bytes_per_row)
    if device_free_bytes:
        per_row = max(bytes_per_row, BYTES_PER_ROW) + 4 * n_targets + DEVICE_SCRATCH_ROW_BYTES
        rows = min(rows, max(1_000, int(device_free_bytes * 0.5 / (DEVICE_PARTITION_COPIES * per_row))))
    return rows


def _host_partition_rows(client, n_targets: int, bytes_per_row: float) -> int:
    import dask

    workers = client.scheduler_info(n_workers=-1).get("workers", {}) if client is not None else {}
    workers = [w for w in workers.values() if (w.get("memory_limit") or 0) > 0]
    if not workers:
        return FALLBACK_PARTITION_ROWS
    pause = (dask.config.get("distributed.worker.memory.pause")
             or dask.config.get("distributed.worker.memory.terminate") or 0.95)
    budget = min(
        w["memory_limit"] * pause - max((w.get("metrics") or {}).get("memory") or 0, WORKER_BASELINE)
        for w in workers
    )
    rows = int(budget / (PARTITION_COPIES * (max(bytes_per_row, BYTES_PER_ROW) + 4 * n_targets)))
    if rows < 1_000:
        log.warning("distributed: the workers' memory limits leave %.0f MiB for partitions; "
                    "partitions of 1,000 rows may not fit", budget / 2**20)
        return 1_000
    return rows


def _release_freed_memory() -> None:
    """Make pyarrow hand freed memory back to the OS at once (a worker plugin's set-up).

    pyarrow's default pool, mimalloc, keeps freed pages resident: every partition read,
    split, serialized or unpacked by the shuffle ratchets the worker's RSS, which Dask
    counts as unmanaged memory against ``memory_limit`` (the nanny kills the worker at
    95%; a paused worker that cannot free it waits forever). Unless the worker runs with
    ``MIMALLOC_PURGE_DELAY=0`` (mimalloc then frees at once too, and is the faster), the
    default pool becomes jemalloc with no decay, or the C allocator where pyarrow has no
    jemalloc (Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` for it).
    """
    if pa.default_memory_pool().backend_name != "mimalloc" or os.environ.get("MIMALLOC_PURGE_DELAY") == "0":
        return
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:  # a pyarrow built without jemalloc
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)


def _release_memory_plugin():
    """A worker plugin that runs :func:`_release_freed_memory` on every worker, restarted ones too."""
    from distributed import WorkerPlugin

    class ReleaseFreedMemory(WorkerPlugin):
        name = "gpu_targets-release-freed-memory"
        idempotent = True  # registered once per cluster

        def setup(self, worker):
            _release_freed_memory()

    return ReleaseFreedMemory()
