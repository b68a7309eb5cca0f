"""Shared fixtures: the array backends every public test runs on, and hypothesis profiles."""

from __future__ import annotations

import importlib.util
import os

# The CUDA kernels are tested under numba's CUDA simulator unless the caller chose
# otherwise (NUMBA_ENABLE_CUDASIM=0 on a machine with a GPU).  This must happen before
# anything imports numba.cuda.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles.  ``ci`` (the default) is deterministic; ``thorough`` draws more and
# fresh examples.  Choose one with ``HYPOTHESIS_PROFILE=thorough`` or with hypothesis' own
# pytest option ``--hypothesis-profile=thorough`` (which wins): this conftest is an initial
# conftest, imported before the plugin's ``pytest_configure`` loads the named profile, so
# the names are registered in time.  tests/theory/strategies.py ``scaled`` sizes the
# expensive properties as a fraction of the active profile.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ["numpy", "array_api_strict"]
if importlib.util.find_spec("torch") is not None:
    BACKENDS.append("torch")
if importlib.util.find_spec("cupy") is not None:
    BACKENDS.append("cupy")


def _namespace(name: str):
    if name == "numpy":
        import array_api_compat.numpy as xp

        return xp
    if name == "array_api_strict":
        import array_api_strict as xp

        return xp
    if name == "torch":
        import array_api_compat.torch as xp

        return xp
    if name == "cupy":
        cupy = pytest.importorskip("cupy")
        try:
            if cupy.cuda.runtime.getDeviceCount() == 0:
                pytest.skip("CuPy is installed but no CUDA device is visible")
        except Exception:
            pytest.skip("CuPy is installed but no CUDA device is visible")
        import array_api_compat.cupy as xp

        return xp
    raise ValueError(name)


@pytest.fixture(params=BACKENDS)
def xp(request):
    """Array namespace of one backend (NumPy, array-api-strict, PyTorch CPU, CuPy)."""
    return _namespace(request.param)


@pytest.fixture
def np_xp():
    """The NumPy namespace only (for tests of numerical theory that are backend-independent)."""
    return _namespace("numpy")
