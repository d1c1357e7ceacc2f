"""The cuda engine's array namespace, device memory, devices and streams.

``xp`` is **CuPy** on a GPU and **NumPy** under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), so the host glue written against ``xp`` runs in CPU CI. Here
too: RMM (:func:`use_rmm`), free device memory, the device and stream of the caller's
arrays (:func:`_on_device_of`) and the conversion of device arrays from other libraries
(:func:`_as_xp`: ``__cuda_array_interface__``, DLPack). Lines only a GPU takes are marked
``# gpu`` and listed in docs/cuda.md. Importing this module on a machine without a
usable device raises ImportError with one line naming the fix.
"""

from __future__ import annotations

import contextlib

import numpy as np

try:
    from numba import config as _numba_config
    from numba import cuda
except ImportError as err:  # pragma: no cover - numba is a base dependency
    raise ImportError(f"numba.cuda is not installed ({err}); pip install 'gpu_targets[cu12]'") from None

__all__ = ["SIMULATOR", "xp", "use_rmm"]

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)
if SIMULATOR:
    xp = np
else:  # gpu
    if not cuda.is_available():
        raise ImportError(
            "the cuda engine found no usable CUDA device (no NVIDIA GPU or driver); use --backend cpu "
            "(backend='cpu') here, or NUMBA_ENABLE_CUDASIM=1 for Numba's CUDA simulator (slow, for tests)"
        )
    try:
        import cupy as xp
    except ImportError:
        raise ImportError("the cuda engine needs CuPy on a GPU: pip install 'gpu_targets[cu12]' "
                          "(or [cu13])") from None

# host copy of an xp array: cupy.asnumpy (CuPy >= 1.0); NumPy arrays are already there
_asnumpy = getattr(xp, "asnumpy", np.asarray)


def use_rmm(pool_size=None) -> bool:
    """Allocate CuPy's and Numba's device memory from RMM, as dask-cuda does.

    With ``pool_size`` (bytes, or a string such as ``"40GB"``) RMM is first re-initialised
    with a pool of that size. CuPy's allocator becomes ``rmm_cupy_allocator`` and Numba's
    memory manager RMM's EMM plugin (for contexts made after this call), so the engine's
    scratch memory, cuDF's columns and anything Numba allocates come from one pool that
    every library sees. Returns False (and changes nothing) without RMM.

    When the engine loads on a GPU it calls this (without ``pool_size``) only if RMM is
    installed *and* already configured with something other than plain ``cudaMalloc``
    (a pool set by ``rmm.reinitialize`` or dask-cuda's ``--rmm-pool-size``): routing
    CuPy through an unpooled RMM would make every allocation a ``cudaMalloc``/``cudaFree``.
    Otherwise the engine allocates through CuPy's own pool.
    """
    if SIMULATOR:
        return False
    try:  # gpu (this function below this line)
        import rmm
        from rmm.allocators.cupy import rmm_cupy_allocator
        from rmm.allocators.numba import RMMNumbaManager
    except ImportError:
        return False
    if pool_size is not None:
        rmm.reinitialize(pool_allocator=True, initial_pool_size=pool_size)
    xp.cuda.set_allocator(rmm_cupy_allocator)
    cuda.set_memory_manager(RMMNumbaManager)
    return True


def _rmm_pool_configured() -> bool:
    """True when RMM is installed and its current resource is not plain cudaMalloc."""
    if SIMULATOR:
        return False
    try:  # gpu
        import rmm.mr
    except ImportError:
        return False
    return not isinstance(rmm.mr.get_current_device_resource(), rmm.mr.CudaMemoryResource)  # gpu


if _rmm_pool_configured():  # gpu
    use_rmm()


def _free_device_bytes():
    """Device memory the allocator in use can still hand out (None under the simulator).

    The driver's free memory plus what CuPy's default pool holds unused (0 when RMM or
    another allocator is in use; RMM's own pool counts as used by the driver).
    """
    if SIMULATOR:
        return None
    free, _ = xp.cuda.runtime.memGetInfo()  # gpu
    return int(free) + int(xp.get_default_memory_pool().free_bytes())  # gpu


def _dlpack_device(x):
    """``(device type, id)`` of an array: 1 = host, 2 = CUDA (DLPack's codes)."""
    if hasattr(x, "__dlpack_device__"):
        kind, dev = x.__dlpack_device__()
        return int(kind), int(dev)
    if hasattr(x, "__cuda_array_interface__"):  # gpu: a numba device array (no DLPack)
        return 2, int(cuda.get_current_device().id)
    return 0, 0


#: The DLPack device type of ``xp``'s arrays: CUDA (2) for CuPy, host (1) for NumPy.
_XP_DEVICE = 1 if SIMULATOR else 2


def _as_xp(x, dtype, name: str):
    """``x`` as a 1-d ``xp`` array of ``dtype`` (a view, or a converted copy on the device).

    Accepts ``xp`` arrays, objects with ``__cuda_array_interface__`` (numba device
    arrays, cuDF/torch CUDA buffers) and ``__dlpack__`` objects on ``xp``'s device (torch
    CUDA tensors; under the simulator also NumPy/torch CPU arrays and simulated device
    arrays, which are its device memory).
    """
    if not isinstance(x, xp.ndarray):
        if hasattr(x, "__dlpack__") and _dlpack_device(x)[0] == _XP_DEVICE:
            x = xp.from_dlpack(x)
        elif hasattr(x, "__cuda_array_interface__"):  # gpu
            x = xp.asarray(x)
        else:
            raise TypeError(
                f"{name}: expected a device array (__cuda_array_interface__ or a CUDA __dlpack__), "
                f"got {type(x).__name__} in host memory; use compute() for host data"
            )
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, got shape {x.shape}")
    # CuPy arrays are always writable (CuPy's flags have no ``writeable``); the simulator
    # copies every kernel argument back after a launch, which a read-only array refuses
    if not getattr(x.flags, "writeable", True):
        return xp.array(x, dtype=dtype)
    return xp.asarray(x, dtype=dtype)


def _as_xp_2d(x):
    """A 2-d device array (``xp`` array, or a ``__dlpack__`` object on ``xp``'s device) as ``xp``."""
    return x if isinstance(x, xp.ndarray) else xp.from_dlpack(x)


def _caller_stream(inputs, device: int):
    """``(xp stream context, numba stream)`` of the caller: torch's current stream when an
    input is a torch tensor, else CuPy's current stream; the default stream under the
    simulator (which has no external streams)."""
    if SIMULATOR:
        return contextlib.nullcontext(), cuda.default_stream()
    ptr = None  # gpu (this function below this line)
    for x in inputs:
        if type(x).__module__.startswith("torch"):
            import torch

            ptr = torch.cuda.current_stream(device).cuda_stream
            break
    if ptr is None:
        ptr = xp.cuda.get_current_stream().ptr
    if ptr == 0:  # the legacy default stream (CuPy's Stream.null, torch's stream 0)
        return xp.cuda.Stream.null, cuda.legacy_default_stream()
    return xp.cuda.ExternalStream(ptr), cuda.external_stream(ptr)


@contextlib.contextmanager
def _on_device_of(inputs):
    """Run on the device holding ``inputs`` (same for all) and on the caller's stream.

    Yields the numba stream every kernel is launched on. Raises ValueError when the
    inputs lie on different devices.
    """
    devices = {_dlpack_device(x)[1] for x in inputs}
    if len(devices) != 1:
        raise ValueError(f"inputs lie on different devices {sorted(devices)}; move them to one")
    (device,) = devices
    device_context = contextlib.nullcontext() if SIMULATOR else xp.cuda.Device(device)
    with cuda.gpus[device], device_context:
        stream_context, stream = _caller_stream(inputs, device)
        with stream_context:
            yield stream
