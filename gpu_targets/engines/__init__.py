"""Engine registry: name -> loader of a module with ``compute(tx, config, progress=None)``.

An engine turns :class:`~gpu_targets.transactions.Transactions` and a
:class:`~gpu_targets.spec.Config` into a ``float32 [n_target_columns, n]`` array in
input row order. Engines are imported lazily, so a missing optional dependency of one
engine (numba.cuda, CuPy) never breaks another. A new engine joins every
backend-parametrised test by registering here.
"""

from __future__ import annotations

import importlib
import importlib.util
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


def resolve(name: str, data_on_device: bool = False) -> str:
    """Turn ``"auto"`` into a concrete engine name and log why; other names pass through.

    ``auto`` picks ``cuda`` when a real CUDA device is usable (numba's simulator does not
    count) and the data is on the device (``data_on_device``) or cuDF is installed;
    otherwise ``cpu``.
    """
    if name != "auto":
        get(name)  # fail early on an unknown name
        return name
    reason = _cuda_unusable()
    if reason is None:
        if data_on_device:
            log.info("backend auto -> cuda: a CUDA device is usable and the data is on it")
            return "cuda"
        if importlib.util.find_spec("cudf") is not None:
            log.info("backend auto -> cuda: a CUDA device is usable and cuDF is installed")
            return "cuda"
        reason = "the data is in host memory and cuDF is not installed"
    log.info("backend auto -> cpu: %s", reason)
    return "cpu"


def _cuda_unusable():
    """Why the cuda engine cannot run on a real device, or None when it can."""
    if "cuda" not in _REGISTRY:
        return "the cuda engine is not registered"
    try:
        from numba import config, cuda
    except ImportError:
        return "numba.cuda is not installed"
    if config.ENABLE_CUDASIM:
        return "NUMBA_ENABLE_CUDASIM=1 (the simulator is for tests, not speed)"
    if not cuda.is_available():
        return "no usable CUDA device"
    try:
        get("cuda")
    except ImportError as err:
        return str(err)
    return None


register("reference", lambda: importlib.import_module(".reference", __name__))
register("cpu", lambda: importlib.import_module(".cpu", __name__))
# raises ImportError (one line naming the fix) without numba.cuda or a usable device,
# unless numba's simulator is on (NUMBA_ENABLE_CUDASIM=1)
register("cuda", lambda: importlib.import_module(".cuda", __name__))
