"""The stochastic Burgers problem: factored products, rank convergence, mass, statistics, size."""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems as P
from lowrank_core.problems.burgers import BurgersODE, hadamard_power_product

EPS = np.finfo(np.float64).eps
SMALL = dict(m=64, n=16, r=6, nu=0.01, t_end=0.2)


def _random_point(rng, m, n, r):
    U, S, V = rng.standard_normal((m, r)), rng.standard_normal((r, r)), rng.standard_normal((n, r))
    return lc.LowRank(U, S, V, check=False), U @ S @ V.T


def test_factored_products_equal_the_dense_rhs():
    """F V, F^T U and U^T F V from the factors (Khatri-Rao Y⊙Y) equal the dense F.
    Guards against a wrong transpose of the stencils (D^T = -D) or of the Khatri-Rao
    factors.  Round-off: each entry sums O(r^2) products and a stencil of 1/h, so the
    relative error is a small multiple of r^2 eps."""
    rng = np.random.default_rng(0)
    m, n, r = 40, 13, 5
    Y, D = _random_point(rng, m, n, r)
    ode = BurgersODE(m, 0.01, products="factored")
    F = ode.dense(D)
    W, Z = rng.standard_normal((n, 3)), rng.standard_normal((m, 4))
    tol = 10 * r**2 * EPS
    value = ode.evaluate(0.0, Y)
    for got, want in ((value.F_V(W), F @ W), (value.FH_U(Z), F.T @ Z), (value.UH_F_V(Z, W), Z.T @ F @ W)):
        assert np.linalg.norm(got - want) <= tol * np.linalg.norm(want)
    # the dense path and the Khatri-Rao helper agree too
    np.testing.assert_allclose(
        BurgersODE(m, 0.01, products="dense").F_V(0.0, Y, W), F @ W, rtol=0, atol=tol * np.abs(F @ W).max()
    )
    np.testing.assert_allclose(
        hadamard_power_product(Y.U @ Y.S, Y.V, W, 2), (D * D) @ W, rtol=0, atol=tol * np.abs((D * D) @ W).max()
    )


def test_dlra_error_decreases_with_the_rank():
    """KSL at the suggested step converges to the full-rank reference as r grows, and
    stays within a small factor of the best rank-r error (guards against a wrong
    nonlinear term: the error would then stall at the model error, not follow eps_r)."""
    errors = []
    for r in (2, 4, 8):
        p = P.stochastic_burgers(**{**SMALL, "r": r})
        sol = lc.solve(p.problem, p.Y0, p.t_span, dt=p.suggested_dt, method="ksl")
        t1 = p.t_span[1]
        errors.append(p.error(sol.Y, t1))
        assert errors[-1] <= 3 * p.best_error(t1, r) + 1e-12
    assert errors[0] > errors[1] > errors[2]


def test_mass_of_each_sample_is_conserved():
    """Every column of F sums to zero for any Y (conservative form (u^2)_x, periodic
    stencils), so the reference keeps each sample's mass to its tolerance, and a
    full-rank KSL solve (m = n = r: the projections are the identity) keeps it to
    round-off per step.  Guards against a stencil whose weights do not sum to zero
    (a wrong diagonal in L, a one-sided wrap), which makes the column sums O(||Y|| / h^2)."""
    p = P.stochastic_burgers(m=16, n=16, r=16, nu=0.05, t_end=0.1)
    rng = np.random.default_rng(1)
    Y, D = _random_point(rng, 16, 16, 4)
    F = p.problem.dense(D)
    assert np.abs(F.sum(axis=0)).max() <= 50 * EPS * np.abs(F).max() * 16
    m0 = p.masses(p.Y0)
    m1 = p.masses(p.reference(p.t_span[1]))
    # DOP853 with rtol = atol = 1e-10 on each entry: the sum of m entries times h
    assert np.abs(m1 - m0).max() <= 1e-10 * 16 * p.h * 10
    steps = 20
    sol = lc.solve(p.problem, p.Y0, p.t_span, dt=p.t_span[1] / steps, method="ksl")
    # each of the 3 substeps x 4 RK stages per step adds O(m eps ||Y||) to a column sum
    scale = float(np.abs(p.reference(0.0)).max()) * p.h * 16
    assert np.abs(p.masses(sol.Y) - m0).max() <= steps * 12 * 16 * EPS * scale * 10
    assert p.conserved["mass"](sol.Y) == pytest.approx(float(np.mean(m0)), abs=1e-12)


def test_statistics_from_the_factors_equal_the_dense_ones():
    """mean, variance and masses of a LowRank (from the factors) equal those of its dense
    matrix (guards against a missing centring of B in the variance)."""
    p = P.stochastic_burgers(**SMALL)
    Y = p.Y0
    dense = Y.to_dense()
    np.testing.assert_allclose(p.mean(Y), dense.mean(axis=1), atol=1e-14)
    np.testing.assert_allclose(p.variance(Y), dense.var(axis=1, ddof=1), atol=1e-14)
    np.testing.assert_allclose(p.masses(Y), dense.sum(axis=0) * p.h, atol=1e-14)
    assert p.mass(Y) == pytest.approx(p.mass(dense), abs=1e-15)


def test_quick_default_and_pickling():
    """The default problem builds and solves in well under a second of work, and
    round-trips through pickle (rebuilt from its seeded call) with the same reference."""
    p = P.get("stochastic-burgers")
    assert p.shape == (128, 64)
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q.reference(0.1), p.reference(0.1))
    np.testing.assert_array_equal(q.xi, p.xi)
    ode = pickle.loads(pickle.dumps(p.problem))
    assert repr(ode) == repr(p.problem)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: P.stochastic_burgers(m=2), ValueError, "`m`"),
        (lambda: P.stochastic_burgers(nu=0.0), ValueError, "`nu`"),
        (lambda: P.stochastic_burgers(sigma=-1.0), ValueError, "`sigma`"),
        (lambda: P.stochastic_burgers(d=1.5), TypeError, "`d`"),
        (lambda: P.stochastic_burgers(m=8, n=4, r=5), ValueError, "`r`"),
        (lambda: P.stochastic_burgers(dtype=np.complex128), TypeError, "`dtype`"),
        (lambda: BurgersODE(8, 0.1, products="sparse"), ValueError, "`products`"),
        (lambda: P.stochastic_burgers(m=512, n=256).reference(0.1), ValueError, "`m` or `n`"),
    ],
)
def test_bad_input_is_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_state_of_the_wrong_shape_is_refused():
    ode = BurgersODE(8, 0.1)
    Y = lc.LowRank.from_dense(np.ones((6, 4)), 1)
    with pytest.raises(ValueError, match="`Y0` must have shape"):
        lc.solve(ode, Y, (0.0, 0.1), 0.05, method="ksl")


def test_large_sizes_never_form_m_by_n():
    """m = 1e5 points x n = 1e4 samples, rank 6, two KSL steps with Euler substeps: the
    peak of traced allocations stays a small multiple of the factors (m x r float64 =
    4.8 MB) and of the Khatri-Rao row blocks (2 MiB), far below one m x n matrix
    (8 GB).  Guards against a fallback to the dense F at large sizes."""
    m, n, r = 100_000, 10_000, 6
    p = P.stochastic_burgers(m=m, n=n, r=r)
    factor = p.Y0.U.nbytes
    tracemalloc.start()
    try:
        sol = lc.solve(p.problem, p.Y0, (0.0, 2e-5), 1e-5, method="ksl", substep="euler")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.isfinite(sol.Y.S).all()
    assert abs(p.mass(sol.Y) - p.mass(p.Y0)) <= 1e-6 * abs(p.mass(p.Y0))
    assert peak <= 40 * factor, f"peak {peak / 1e6:.0f} MB against factors of {factor / 1e6:.1f} MB"
