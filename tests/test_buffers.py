"""The output pool: dropped outputs' memory is reused, memory in use never is."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import gpu_targets
from gpu_targets.buffers import OUTPUT_POOL, OutputPool, parse_bytes
from gpu_targets.datasets import synthetic_transactions


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_dropped_memory_is_reused_only_after_its_last_view_is_gone():
    pool = OutputPool(1 << 20)
    a, fresh = pool.empty((4, 100))
    assert fresh and a.shape == (4, 100) and a.dtype == np.float32 and a.flags.c_contiguous
    address = _address(a)
    row = a[2]  # a view that outlives the array it came from
    row[:] = 7.0
    del a
    gc.collect()
    assert pool.idle_bytes == 0
    b, fresh = pool.empty((4, 100))
    assert fresh and not np.shares_memory(b, row)
    b[:] = -1.0
    assert np.all(row == 7.0)
    del row
    gc.collect()
    assert pool.idle_bytes == 1600
    c, fresh = pool.empty((100, 4))  # same size, other shape
    assert not fresh and _address(c) == address and pool.idle_bytes == 0


def test_a_block_serves_requests_from_half_its_size_to_its_size():
    pool = OutputPool(1 << 20)
    a, _ = pool.empty(1000)
    del a
    gc.collect()
    assert pool.empty(1001)[1]  # larger: new memory
    assert pool.empty(499)[1]  # under half: new memory
    b, fresh = pool.empty(500)
    assert not fresh and b.shape == (500,)


def test_idle_memory_is_capped_oldest_returned_dropped_first():
    pool = OutputPool(10_000)
    a0, a1, a2 = (pool.empty(1000)[0] for _ in range(3))  # 4,000 bytes each
    first = _address(a0)
    del a0
    gc.collect()
    del a1
    gc.collect()
    del a2
    gc.collect()
    assert pool.idle_bytes == 8000  # the third return pushed the first one out
    reused = [pool.empty(1000) for _ in range(3)]
    assert [fresh for _, fresh in reused] == [False, False, True]
    assert first not in {_address(a) for a, fresh in reused if not fresh}


def test_off_and_zero_size_take_plain_memory():
    pool = OutputPool(1 << 20)
    a, _ = pool.empty(100)
    del a
    gc.collect()
    with pool.off():
        b, fresh = pool.empty(100)
        assert fresh and b.base is None  # plain np.empty
    assert pool.empty(100)[1] is False
    assert OutputPool(0).empty(100)[0].base is None
    assert pool.empty((0, 5))[0].shape == (0, 5)


def test_parse_bytes():
    assert parse_bytes("0") == 0
    assert parse_bytes("512M") == 512 << 20
    assert parse_bytes("2GiB") == 2 << 30
    with pytest.raises(ValueError, match="such as 512M"):
        parse_bytes("lots")


def test_generate_results_never_share_memory_while_alive():
    """Two results alive at once have their own memory; a dropped one's memory serves
    the next call, and the values are those of a fresh computation."""
    frame = synthetic_transactions(20, 64, seed=3)
    config = "configs/seed20.yaml"
    first = gpu_targets.generate(frame, config, backend="cpu")
    expected = first.copy(deep=True)
    second = gpu_targets.generate(frame, config, backend="cpu")
    assert not np.shares_memory(first["grocery_sum_day"].to_numpy(), second["grocery_sum_day"].to_numpy())
    column = second["food_sum_7d"].to_numpy()  # keeps the second result's memory alive
    del first, second
    gc.collect()
    reused_before = OUTPUT_POOL.reused
    shuffled = frame.sample(frac=1.0, random_state=0)  # unsorted input: two outputs per call
    third = gpu_targets.generate(shuffled, config, backend="cpu")
    assert OUTPUT_POOL.reused > reused_before
    assert np.array_equal(column, expected["food_sum_7d"].to_numpy(), equal_nan=True)
    with OUTPUT_POOL.off():
        fresh = gpu_targets.generate(shuffled, config, backend="cpu")
    for c in expected.columns:
        np.testing.assert_array_equal(third[c].to_numpy(), fresh[c].to_numpy())
