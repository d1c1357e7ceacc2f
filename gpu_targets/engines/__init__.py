"""Engine registry: name -> loader of a module implementing :class:`Engine`.

An engine turns :class:`~gpu_targets.transactions.Transactions` and a
:class:`~gpu_targets.spec.Config` into a ``float32 [n_target_columns, n]`` array in
input row order (:class:`Engine`). Engines are imported lazily, so a missing optional
dependency of one engine (numba.cuda, CuPy) never breaks another. A new engine joins
every backend-parametrised test by registering here; :func:`get` checks what its
``compute`` returns.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any, Callable, Optional, Protocol

import numpy as np

__all__ = ["Engine", "available", "get", "register", "resolve"]

log = logging.getLogger("gpu_targets")

_REGISTRY: dict[str, Callable[[], Any]] = {}


class Engine(Protocol):
    """What every engine module provides (``reference``, ``cpu``, ``cuda``)."""

    def compute(self, tx, config, progress: Optional[Callable[[int], None]] = None, *,
                out: Optional[np.ndarray] = None) -> np.ndarray:
        """Targets of ``config`` for ``tx``: ``float32 [len(config.output_columns), len(tx)]``
        in input row order (``out`` when given: written there and returned); ``progress``
        is called with the number of transactions finished."""


def register(name: str, loader: Callable[[], Any], *, replace: bool = False) -> None:
    """Register an engine under ``name``; ``loader()`` returns its module (an :class:`Engine`).

    Raises
    ------
    ValueError
        ``name`` is already registered and ``replace`` is not set (an engine is never
        replaced by accident).
    """
    if name in _REGISTRY and not replace:
        raise ValueError(f"an engine named {name!r} is already registered; pass replace=True to replace it")
    _REGISTRY[name] = loader


class _Checked:
    """An engine module whose ``compute`` results are checked (dtype, shape); every other
    attribute is the module's own."""

    def __init__(self, name: str, module):
        self._name, self._module = name, module

    def __getattr__(self, attr):
        if attr.startswith("__") or attr in ("_name", "_module"):  # copy/pickle probe a bare instance
            raise AttributeError(attr)
        return getattr(self._module, attr)

    def __reduce__(self):  # by name: the receiving process looks the engine up in its own registry
        return get, (self._name,)

    def compute(self, tx, config, *args, **kwargs):
        result = self._module.compute(tx, config, *args, **kwargs)
        want = (len(config.output_columns), len(tx))
        if getattr(result, "dtype", None) != np.float32 or tuple(getattr(result, "shape", ())) != want:
            raise RuntimeError(f"engine {self._name!r} returned {getattr(result, 'dtype', type(result).__name__)} "
                               f"{tuple(getattr(result, 'shape', ()))}; an engine returns float32 {want}")
        return result

    def __repr__(self) -> str:
        return f"<engine {self._name!r}: {self._module!r}>"


def available() -> list[str]:
    """Names of the registered engines."""
    return sorted(_REGISTRY)


def get(name: str):
    """The engine registered as ``name``: its module, whose ``compute`` results are
    checked (``float32 [n_target_columns, n]``, else RuntimeError naming the engine).

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones).
    ImportError
        The engine's optional dependencies are missing (the message names the extra).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known: auto, {', '.join(available())}")
    return _Checked(name, _REGISTRY[name]())


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
