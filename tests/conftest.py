"""Shared fixtures: the array backends every public test runs on, and hypothesis profiles."""

from __future__ import annotations

import importlib.util
import os
import time

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


# ---------------------------------------------------------------- kernel warm-up
# The Numba kernels compile lazily, once per driver and dtype, and are cached on disk in
# NUMBA_CACHE_DIR.  Compiled inside the first test that happens to reach them, the
# compilation (tens of seconds cold, a few seconds to load from a warm cache) was charged
# to that test's duration.  The fixture below compiles or loads every CPU driver once, up
# front; ``--durations`` shows it as the setup of the session's first test and the summary
# prints it on its own line, so the per-test durations are those of the tests.
_WARMUP: dict[str, float] = {}


def _warm_kernels() -> None:
    """Call every CPU driver of ``lowrank_kernels`` once per dtype, on shapes that select
    the serial and the parallel drivers, each algorithm, the tall-SVD path through the
    stacked QR, the row-parallel CholeskyQR2 and the batched product."""
    import numpy as np

    import lowrank_kernels as lk

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64, np.complex64, np.complex128):
        real = np.dtype(dtype).kind == "f"

        def draw(*shape, real=real, dtype=dtype):
            x = rng.standard_normal(shape)
            return (x if real else x + 1j * rng.standard_normal(shape)).astype(dtype)

        # one matrix: the serial driver; a stack with B m k^2 above the serial limit: the
        # parallel one
        big_qr = int(lk.SERIAL_MAX_WORK // (64 * 8 * 8)) + 1
        for shape in ((1, 12, 4), (big_qr, 64, 8)):
            for algorithm in ("householder", "cholqr2"):
                lk.batched_qr(draw(*shape), algorithm=algorithm)
        big_svd = int(lk.SVD_SERIAL_MAX_WORK // (8 * 4 * 4)) + 1
        tall = int(lk.SVD_TALL_QR_MIN_WORK // (512 * 8 * 8)) + 1  # real: via the stacked QR
        for shape in ((1, 6, 6), (big_svd, 8, 4), (tall, 512, 8)):
            for algorithm in ("jacobi", "lapack"):
                lk.batched_svd(draw(*shape), algorithm=algorithm)
        n = 16
        stack = int(lk.MATMUL_MIN_WORK // n**3) + 1
        a, b = draw(stack, n, n), draw(stack, n, n)
        lk.batched_matmul(a, b)
        lk.batched_matmul(np.swapaxes(a, -1, -2), b)  # transposed operand, passed as is
        if real:  # one tall matrix above QR_ROWS_PARALLEL_MIN_WORK: rows split over threads
            lk.batched_qr(draw(int(lk.QR_ROWS_PARALLEL_MIN_WORK // 64**2) + 1, 64))


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernels():
    """Compile (or load from the cache) the kernels once per session, before any test."""
    start = time.perf_counter()
    _warm_kernels()
    _WARMUP["seconds"] = time.perf_counter() - start


def pytest_terminal_summary(terminalreporter):
    if "seconds" in _WARMUP:
        terminalreporter.write_line(
            f"kernel warm-up (Numba compilation or cache load, once per session, before the first test): "
            f"{_WARMUP['seconds']:.1f} s"
        )
