"""solve(): argument validation, breakdown reporting, backends, batches, immutability."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc

from ._helpers import dense, eps_of, rel_err, to_numpy

METHODS = ["ksl", "ksl-strang", "bc-psi", "abc-psi", "bug", "ra-bug", "parallel-bug"]


def _setup(m=12, n=9, r=3, seed=0):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((m, n))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((m, n)), rank=r)
    return lc.MatrixODE(lambda t, Y: B - Y), Y0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"dt": 0.0}, ValueError, "`dt` must be positive"),
        ({"dt": -0.1}, ValueError, "`dt` must be positive"),
        ({"dt": 2.0}, ValueError, "larger than the time span"),
        ({"dt": "0.1"}, TypeError, "`dt`"),
        ({"t_span": (1.0, 0.0)}, ValueError, "`t_span`"),
        ({"t_span": 1.0}, TypeError, "`t_span`"),
        ({"method": "rk45"}, ValueError, "unknown `method`"),
        ({"method": 3}, TypeError, "`method`"),
        ({"substep": "midpoint"}, ValueError, "unknown `substep`"),
        ({"method": "ksl", "tol": 1e-3}, ValueError, "`tol` was given, but method 'ksl' has fixed rank"),
        ({"method": "bc-psi", "rtol": 1e-3}, ValueError, "`rtol`"),
        ({"method": "ksl", "max_rank": 4}, ValueError, "`max_rank`"),
        ({"method": "abc-psi", "tol": -1.0}, ValueError, "`tol`"),
        ({"method": "abc-psi", "tol": 1e-3, "min_rank": 5, "max_rank": 2}, ValueError, "`max_rank`"),
        ({"method": "abc-psi", "variant": "three-qr"}, ValueError, "`variant`"),
        ({"method": "ra-bug", "variant": "two-qr"}, ValueError, "`variant` applies to 'abc-psi' only"),
        ({"method": "bug", "tol": 1e-3}, ValueError, "fixed rank"),
        ({"method": lc.KSL(), "substep": "euler"}, ValueError, "configure the instance"),
        ({"substep": "exact"}, ValueError, "exact increments"),
        ({"save_every": 0}, ValueError, "`save_every`"),
        ({"save_every": 1.5}, TypeError, "`save_every`"),
        ({"method": "bug", "min_rank": 2}, ValueError, "`min_rank`"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    problem, Y0 = _setup()
    args = {"t_span": (0.0, 1.0), "dt": 0.1, **kwargs}
    with pytest.raises(exc, match=match):
        lc.solve(problem, Y0, **args)


def test_bad_problem_and_state_types():
    problem, Y0 = _setup()
    with pytest.raises(TypeError, match="`problem`"):
        lc.solve(lambda t, Y: Y, Y0, (0, 1), 0.1)
    with pytest.raises(TypeError, match="`Y0` must be a LowRank"):
        lc.solve(problem, Y0.to_dense(), (0, 1), 0.1)


@pytest.mark.parametrize("method", METHODS)
def test_nan_from_f_raises_integration_error_with_time_and_step(method):
    problem, Y0 = _setup()
    B = np.ones((12, 9))

    def f(t, Y):
        return B * np.nan if t >= 0.3 - 1e-12 else B - Y

    with pytest.raises(lc.LowRankIntegrationError) as info:
        lc.solve(lc.MatrixODE(f), Y0, (0.0, 1.0), 0.1, method=method, substep="euler")
    assert info.value.step == 3
    assert info.value.t == pytest.approx(0.3)
    assert "step 3" in str(info.value)


def test_time_grid_ends_exactly_at_t1():
    problem, Y0 = _setup()
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.3, method="ksl")
    assert np.allclose(sol.t, [0.0, 0.3, 0.6, 0.9, 1.0])
    assert sol.t[-1] == 1.0
    assert sol.stats["steps"] == 4
    assert sol.ranks == [3] * 5
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.1, method="ksl", save_every=4)
    assert np.allclose(sol.t, [0.0, 0.4, 0.8, 1.0])
    assert len(sol.Ys) == 4


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_backends_agree_and_keep_namespace_dtype_device(xp, method, dtype):
    """The same problem on every backend: same namespace, dtype and device out, and the
    values agree with NumPy float64 to a tolerance set by the dtype (20 steps, each
    backward stable: 1e3 eps)."""
    rng = np.random.default_rng(5)
    cplx = dtype.startswith("complex")
    A = rng.standard_normal((10, 10)) / 4 + (1j * rng.standard_normal((10, 10)) / 4 if cplx else 0)
    Bm = rng.standard_normal((8, 8)) / 4
    Y0n = rng.standard_normal((10, 8)) + (1j * rng.standard_normal((10, 8)) if cplx else 0)
    dt = getattr(xp, dtype)
    problem = lc.LinearMatrixODE(xp.asarray(A, dtype=dt), xp.asarray(Bm, dtype=dt))
    Y0 = lc.LowRank.from_dense(xp.asarray(Y0n, dtype=dt), rank=3)
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.05, method=method)
    assert type(sol.Y.U) is type(Y0.U)
    assert sol.Y.dtype == dt
    assert sol.Y.device == Y0.device
    ref = lc.solve(lc.LinearMatrixODE(A.astype(complex if cplx else float), Bm.astype(complex if cplx else float)),
                   lc.LowRank.from_dense(Y0n, rank=3), (0.0, 1.0), 0.05, method=method)
    assert rel_err(dense(sol.Y), dense(ref.Y)) <= 1e3 * eps_of(dtype)


@pytest.mark.parametrize("method", METHODS)
def test_batched_solve_equals_separate_solves(method):
    """A stack of independent problems integrated in one call gives the per-problem results."""
    rng = np.random.default_rng(6)
    Bs = rng.standard_normal((4, 12, 9))
    Y0s = rng.standard_normal((4, 12, 9))
    f = lambda t, Y: np.cos(t) * Bs - Y @ np.swapaxes(Y, -1, -2) @ Y / 10  # noqa: E731
    sol = lc.solve(lc.MatrixODE(f), lc.LowRank.from_dense(Y0s, rank=3), (0.0, 1.0), 0.1, method=method)
    for i in range(4):
        fi = lambda t, Y, i=i: np.cos(t) * Bs[i] - Y @ Y.T @ Y / 10  # noqa: E731
        one = lc.solve(lc.MatrixODE(fi), lc.LowRank.from_dense(Y0s[i], rank=3), (0.0, 1.0), 0.1, method=method)
        assert rel_err(dense(sol.Y)[i], dense(one.Y)) < 1e-12


def test_batched_rank_adaptive_shares_the_largest_rank():
    rng = np.random.default_rng(7)
    # member 0 has a rank-2 target, member 1 a rank-5 target
    B = np.stack([lc.LowRank.from_dense(rng.standard_normal((12, 9)), rank=k).to_dense() for k in (2, 5)])
    Y0 = lc.LowRank.from_dense(rng.standard_normal((2, 12, 9)), rank=3)
    sol = lc.solve(lc.MatrixODE(lambda t, Y: B - Y), Y0, (0.0, 20.0), 1.0, method="abc-psi", substep="euler", tol=1e-9)
    assert sol.Y.rank == 5
    assert np.allclose(dense(sol.Y), B, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_caller_arrays_are_never_modified(method):
    """Read-only factors and problem data: any in-place write would raise."""
    rng = np.random.default_rng(8)
    Y0 = lc.LowRank.from_dense(rng.standard_normal((12, 9)), rank=3)
    A = rng.standard_normal((12, 12)) / 4
    B = rng.standard_normal((9, 9)) / 4
    for arr in (Y0.U, Y0.S, Y0.V, A, B):
        arr.setflags(write=False)
    copies = [x.copy() for x in (Y0.U, Y0.S, Y0.V, A, B)]
    lc.solve(lc.LinearMatrixODE(A, B), Y0, (0.0, 1.0), 0.25, method=method)
    for x, c in zip((Y0.U, Y0.S, Y0.V, A, B), copies, strict=True):
        assert np.array_equal(x, c)


@pytest.mark.parametrize("method", METHODS)
def test_zero_rhs_keeps_the_state(method):
    """F = 0: Y is unchanged up to round-off (a dropped or wrong-sign term would move it)."""
    problem = lc.MatrixODE(lambda t, Y: 0.0 * Y)
    _, Y0 = _setup()
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.1, method=method)
    assert rel_err(dense(sol.Y), dense(Y0)) < 1e-13
    assert sol.Y.rank == Y0.rank


def test_integrator_instance_and_manual_stepping():
    problem, Y0 = _setup()
    method = lc.ABCPSI(substep="euler", tol=1e-6, max_rank=6)
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.25, method=method)
    state = method.init(problem, 0.0, Y0)
    Y, c = Y0, lc.Counters()
    for k in range(4):
        Y, state, info = method.step(problem, 0.25 * k, 0.25 * (k + 1), Y, state)
        c.add(info)
    assert np.allclose(to_numpy(Y.to_dense()), dense(sol.Y), atol=1e-13)
    assert c.qr == sol.stats["qr"]
    assert "ABCPSI" in repr(method)
    assert "abc-psi" in lc.METHODS


def test_user_products_are_checked():
    """A structured problem whose F_V returns the wrong shape fails with a clear error."""

    class Broken(lc.AbstractMatrixODE):
        def F_V(self, t, Y, V):
            return V  # (n, k) instead of (m, k)

        def FH_U(self, t, Y, U):
            return U

    _, Y0 = _setup()
    with pytest.raises(ValueError, match="Broken.F_V returned shape"):
        lc.solve(Broken(), Y0, (0.0, 1.0), 0.5, method="ksl")
