"""Engine registry: name -> loader of a module with ``compute(tx, config, progress=None)``.

An engine turns :class:`~gpu_targets.transactions.Transactions` and a
:class:`~gpu_targets.spec.Config` into a ``float32 [n_target_columns, n]`` array in
input row order. Engines are imported lazily, so a missing optional dependency of one
engine (numba.cuda, CuPy) never breaks another. A new engine joins every
backend-parametrised test by registering here.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Callable

__all__ = ["available", "get", "register", "resolve"]

log = logging.getLogger("gpu_targets")

_REGISTRY: dict[str, Callable[[], ModuleType]] = {}


def register(name: str, loader: Callable[[], ModuleType]) -> None:
    """Register an engine under ``name``; ``loader()`` returns its module."""
    _REGISTRY[name] = loader


def available() -> list[str]:
    """Names of the registered engines."""
    return sorted(_REGISTRY)


def get(name: str) -> ModuleType:
    """The engine module registered as ``name``.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones).
    ImportError
        The engine's optional dependencies are missing (the message names the extra).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known: auto, {', '.join(available())}")
    return _REGISTRY[name]()


def resolve(name: str) -> str:
    """Turn ``"auto"`` into a concrete engine name and log why; other names pass through.

    ``auto`` picks ``cpu`` (the ``cuda`` engine is not registered in this version).
    """
    if name != "auto":
        get(name)  # fail early on an unknown name
        return name
    if "cuda" in _REGISTRY:
        try:
            from numba import cuda

            if cuda.is_available():
                log.info("backend auto -> cuda: a CUDA device is usable")
                return "cuda"
            reason = "no usable CUDA device"
        except ImportError:
            reason = "numba.cuda is not installed"
    else:
        reason = "the cuda engine is not registered"
    log.info("backend auto -> cpu: %s", reason)
    return "cpu"


register("reference", lambda: importlib.import_module(".reference", __name__))
register("cpu", lambda: importlib.import_module(".cpu", __name__))
