"""GPU glue that needs no simulator: package floors, the UTC-offset table, the kernels'
compile options. (The glue that runs kernels is in tests/test_cuda_sim.py.)"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from packaging.requirements import Requirement

from gpu_targets.calendar import local_wall_clock_ns, utc_offset_table

REPO = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


@pytest.mark.parametrize("extra", ["cu12", "cu13"])
def test_gpu_extras_have_the_floors_cudf_26_needs(extra):
    """cupy.repeat with an array of repeats (once used) needs CuPy >= 14.1; cuDF 26.x pins
    numba-cuda 0.22.2..0.30 and CuPy 14.1.1 (14.1.0 broken)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra]
    reqs = {Requirement(d).name: Requirement(d) for d in deps}
    cupy = reqs[f"cupy-cuda{extra[2:]}x"]
    assert not cupy.specifier.contains("14.0.1") and not cupy.specifier.contains("14.1.0")
    assert cupy.specifier.contains("14.1.1")
    numba_cuda = reqs["numba-cuda"]
    assert numba_cuda.extras == {extra}
    assert [numba_cuda.specifier.contains(v) for v in ("0.22.1", "0.22.2", "0.30.4", "0.31.0")] == [
        False, True, True, False]
    assert not reqs[f"cudf-{extra}"].specifier.contains("25.10") and reqs[f"cudf-{extra}"].specifier.contains("26.2")
    assert f"dask-cudf-{extra}" in reqs and "dask-cuda" in reqs


@pytest.mark.parametrize("tz", ["Europe/Moscow", "America/Sao_Paulo", "Antarctica/Troll", "Australia/Lord_Howe",
                                "Asia/Kolkata", "UTC"])
def test_utc_offset_table_gives_the_tz_database_local_time(tz):
    """The table the cuda engine applies on the device equals pandas' conversion, at random
    instants and at (and 1 ns around) every change of offset."""
    lo, hi = pd.Timestamp("1950-01-01").value, pd.Timestamp("2040-01-01").value
    start, offset = utc_offset_table(tz, lo, hi)
    assert start[0] == np.iinfo(np.int64).min and np.all(start[2:] > start[1:-1])
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.integers(lo, hi, 20_000), [lo, hi], start[1:], start[1:] - 1, start[1:] + 1])
    local = t + offset[np.searchsorted(start, t, side="right") - 1]
    np.testing.assert_array_equal(local, local_wall_clock_ns(t, tz))


def test_every_cuda_kernel_is_cached_and_every_helper_a_device_function():
    """Kernels are compiled once and cached on disk (cache=True); helpers are
    cuda.jit(device=True) functions (the simulator ignores both options, so the source
    is what can be checked without a GPU)."""
    kernels = 0
    for node in (n for f in ("kernels.py", "ranges.py")
                 for n in ast.parse((REPO / "gpu_targets" / "engines" / "cuda" / f).read_text()).body):
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            if "cuda.jit" not in ast.unparse(dec):
                continue
            options = {k.arg: ast.unparse(k.value) for k in getattr(dec, "keywords", [])}
            if options.get("device") == "True":
                assert options.get("inline") == "'always'", node.name
            else:
                kernels += 1
                assert options.get("cache") == "True", f"kernel {node.name} is not cached"
    assert kernels >= 10


def test_cuda_device_helpers_use_fma_and_not_the_cpu_overloads():
    source = (REPO / "gpu_targets" / "engines" / "cuda" / "functions.py").read_text()
    tree = ast.parse(source)
    two_prod = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_two_prod_fma")
    assert "cuda.fma(a, b, -p)" in ast.unparse(two_prod)
    assert "import register_jitable" not in source and "cuda.jit(device=True" in source
    engine = "".join((REPO / "gpu_targets" / "engines" / "cuda" / f).read_text()
                     for f in ("__init__.py", "kernels.py", "ranges.py", "device.py"))
    assert "from .functions import" in engine and "from .elementwise import" not in engine
    assert "from ..elementwise import" not in engine
    assert "from ..calendar import period_index" not in engine
    assert "xp.repeat(" not in engine and "cupy.repeat(" not in engine  # needs CuPy >= 14.1
