"""Shared fixtures: every registered engine is checked against the reference engine.

* ``engine``: parametrised over every registered engine except ``"reference"``, so a
  new engine joins every test by registering in :mod:`gpu_targets.engines`.
* ``backend``: ``"reference"`` and every engine, for hand-written cases whose expected
  numbers are written in the test (they check the oracle too).
* :func:`assert_matches_reference`: runs :func:`gpu_targets.generate` with the
  reference engine and with a backend and compares every target column with SPEC.md's
  tolerance ``|x - ref| <= 1e-5 * max(1, |ref|)`` (std targets: ``1e-4``), NaN == NaN.
* Hypothesis profile ``ci`` (loaded by default, deterministic): ``deadline=None``,
  ``derandomize=True``. Choose another with ``HYPOTHESIS_PROFILE=dev`` (more examples,
  random seeds).
* ``SHARED_DATA`` and :data:`needs_shared_data`: the real datasets of ``/work/shared/data``
  (``../shared/data`` next to the repository), skipped where they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings

from gpu_targets import engines, generate, load_config
from gpu_targets.spec import Derived

# --------------------------------------------------------------------------- hypothesis

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=100,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=500,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# --------------------------------------------------------------------------- data

#: ``<parent of the repository>/shared/data``: the real datasets (Sberbank SDSJ 2016, TabFormer).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data_file(name: str) -> Path:
    """Path of ``SHARED_DATA / name``; skips the calling test when the file is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared dataset {path} is not available on this machine")
    return path


#: Marker for tests that need the shared data directory at all.
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared data directory {SHARED_DATA} is not available"
)

# --------------------------------------------------------------------------- engines

#: Every registered engine except the oracle.
ENGINES = [name for name in engines.available() if name != "reference"]
#: The oracle and every engine.
BACKENDS = ["reference", *ENGINES]


def _usable(name: str) -> str:
    try:
        engines.get(name)
    except ImportError as err:  # an optional engine whose extra is not installed
        pytest.skip(f"engine {name!r} is not usable here: {err}")
    return name


@pytest.fixture(params=ENGINES, scope="session")
def engine(request) -> str:
    """Name of an engine under test (every registered one except ``reference``)."""
    return _usable(request.param)


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request) -> str:
    """Name of a backend for hand-written cases: ``reference`` and every engine."""
    return _usable(request.param)


# --------------------------------------------------------------------------- comparison

RTOL = 1e-5
RTOL_STD = 1e-4


def std_columns(config) -> set[str]:
    """Output columns of the config's ``std`` targets (compared with ``RTOL_STD``)."""
    cfg = load_config(config)
    return {c for t in cfg.aggregated if t.agg == "std" for c in t.output_columns}


def assert_close(actual, expected, *, rtol: float = RTOL, label: str = "") -> None:
    """``|actual - expected| <= rtol * max(1, |expected|)`` elementwise, NaN == NaN.

    ``expected`` is the float64 (or float32) truth; ``actual`` any numeric array.
    The message lists the first offending rows.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{label}: shape {a.shape} != {e.shape}"
    a_nan, e_nan = np.isnan(a), np.isnan(e)
    both = ~a_nan & ~e_nan
    ok = (a_nan == e_nan)
    with np.errstate(invalid="ignore"):  # equal infinities are equal (their difference is NaN)
        ok[both] = (a[both] == e[both]) | (np.abs(a[both] - e[both]) <= rtol * np.maximum(1.0, np.abs(e[both])))
    if not ok.all():
        bad = np.flatnonzero(~ok)
        rows = ", ".join(f"row {i}: got {a[i]!r}, expected {e[i]!r}" for i in bad[:8])
        raise AssertionError(f"{label}: {bad.size} of {a.size} values differ ({rows})")


def run(frame: pd.DataFrame, config, backend: str) -> pd.DataFrame:
    """``generate`` on a copy of the frame (an engine must not depend on, or change, the input)."""
    return generate(frame.copy(), config, backend=backend)


def assert_matches_reference(frame: pd.DataFrame, config, backend: str) -> pd.DataFrame:
    """Run ``generate`` with ``"reference"`` and with ``backend`` and compare.

    Checks: same columns in the same order (input columns, the columns the format adds,
    then the targets in config order), the input columns unchanged, every target column float32, and every target
    value within SPEC.md's tolerance of the reference (std targets: 1e-4), NaN == NaN.

    Returns
    -------
    pandas.DataFrame
        The reference result.
    """
    cfg = load_config(config)
    before = frame.copy()
    ref = run(frame, cfg, "reference")
    got = run(frame, cfg, backend)
    pd.testing.assert_frame_equal(frame, before)  # input not modified
    targets = cfg.output_columns
    from gpu_targets.formats import added_fields

    added = [name for name, _ in added_fields(cfg)]
    assert list(got.columns) == list(ref.columns) == [*frame.columns, *added, *targets]
    for c in added:
        pd.testing.assert_series_equal(got[c], ref[c])
    pd.testing.assert_frame_equal(
        got[list(frame.columns)], ref[list(frame.columns)], check_exact=True
    )
    stds = std_columns(cfg)
    derived = {t.name: t for t in cfg.targets if isinstance(t, Derived)}
    for c in targets:
        assert got[c].dtype == np.float32, f"{backend}: column {c} has dtype {got[c].dtype}"
        if c in derived:  # its inputs are checked against the reference; it must follow from them
            assert_close(got[c].to_numpy(), _derived_value(derived[c], got), rtol=1e-6,
                         label=f"{backend}: derived column {c!r} from its own inputs")
            assert_close(_derived_value(derived[c], ref), ref[c].to_numpy(), rtol=1e-6,
                         label=f"reference: derived column {c!r} from its own inputs")
            continue
        assert_close(
            got[c].to_numpy(), ref[c].to_numpy(), rtol=RTOL_STD if c in stds else RTOL,
            label=f"{backend} vs reference, column {c!r}",
        )
    return ref


def _derived_value(t, frame: pd.DataFrame) -> np.ndarray:
    """SPEC.md 2.4 written out: the derived target from the frame's float32 input columns."""
    x = [frame[c].to_numpy(np.float64) for c in t.of]
    with np.errstate(all="ignore"):
        r = x[0] / x[1] if t.derive == "ratio" else sum(c * v for c, v in zip(t.coefficients, x))
        return np.where(np.isfinite(r), r, t.fill).astype(np.float32)


# --------------------------------------------------------------------------- progress


def pytest_collection_finish(session):
    """Say up front why the first tests are slow on a fresh checkout: they compile the
    Numba kernels (about a minute on 2 cores; loaded from the disk cache afterwards)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.items:
        reporter.write_line(f"{len(session.items)} tests; the first ones compile the Numba kernels on a fresh "
                            "checkout (about a minute on 2 cores, cached on disk afterwards)")
