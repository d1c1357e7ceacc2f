"""The engine registry: one protocol, checked results, no silent replacement."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from gpu_targets import engines, load_config
from gpu_targets.datasets import synthetic_transactions
from gpu_targets.formats import to_roles
from gpu_targets.transactions import extract

CFG = load_config({"targets": [{"name": "s", "agg": "sum", "window": {"period": "day", "mode": "expanding"}},
                               {"name": "k", "agg": "topk", "k": 2, "window": {"duration": "7d", "mode": "forward"}}]})


def _tx():
    roles, cfg = to_roles(synthetic_transactions(4, 16, seed=1), CFG)
    return extract(roles, cfg)


def test_a_name_is_never_replaced_by_accident():
    with pytest.raises(ValueError, match="already registered"):
        engines.register("cpu", lambda: None)
    engines.register("cpu_again", engines._REGISTRY["cpu"])
    try:
        engines.register("cpu_again", engines._REGISTRY["cpu"], replace=True)
    finally:
        engines._REGISTRY.pop("cpu_again")


@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_every_engine_has_the_protocol_signature_and_writes_into_out(name):
    engine = engines.get(name)
    params = inspect.signature(engine._module.compute).parameters
    assert list(params)[:3] == ["tx", "config", "progress"] and params["out"].kind is inspect.Parameter.KEYWORD_ONLY
    tx = _tx()
    done = []
    values = engine.compute(tx, CFG, progress=done.append)
    assert values.dtype == np.float32 and values.shape == (3, len(tx)) and sum(done) == len(tx)
    buf = np.full((len(tx), 3), np.nan, dtype=np.float32)
    assert engine.compute(tx, CFG, out=buf.T) is not None
    np.testing.assert_array_equal(buf.T, values)


def test_get_checks_what_an_engine_returns():
    class Wrong:
        @staticmethod
        def compute(tx, config, progress=None, *, out=None):
            return np.zeros((len(config.output_columns), len(tx)), dtype=np.float64)

    engines.register("wrong", lambda: Wrong)
    try:
        with pytest.raises(RuntimeError, match="engine 'wrong' returned float64"):
            engines.get("wrong").compute(_tx(), CFG)
    finally:
        engines._REGISTRY.pop("wrong")


def test_the_checked_engine_copies_and_pickles():
    import copy
    import pickle

    engine = engines.get("cpu")
    assert copy.copy(engine).compute is not None
    again = pickle.loads(pickle.dumps(engine))
    np.testing.assert_array_equal(again.compute(_tx(), CFG), engine.compute(_tx(), CFG))
    assert pickle.loads(pickle.dumps(engine.compute))(_tx(), CFG).shape == (3, 64)
