"""gpu_targets: synthetic targets from bank-transaction data.

For every transaction, an aggregate of the user's amounts over a calendar period or a
time window, filtered by merchant category code (MCC): see ``SPEC.md`` and
:func:`generate`.
"""

from . import kernel_cache

kernel_cache.install()  # before any kernel is defined: the cache is keyed on every engine source

from .api import compute_targets, generate  # noqa: E402
from .spec import Config, ConfigError, Target, Window, load_config  # noqa: E402
from .transactions import DataError  # noqa: E402

__all__ = [
    "Config", "ConfigError", "DataError", "Target", "Window", "compute_targets", "generate", "load_config", "to_torch",
]
__version__ = "0.1.0"


def __getattr__(name):
    # lazy: importing gpu_targets never imports torch (nor the dlpack module)
    if name == "to_torch":
        from .dlpack import to_torch

        return to_torch
    raise AttributeError(f"module 'gpu_targets' has no attribute {name!r}")
