"""The Allen-Cahn problem: factored cubic products, rank convergence, energy decay, size."""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems as P
from lowrank_core.problems.allen_cahn import AllenCahnODE, _cross_symmetric, initial_value

EPS = np.finfo(np.float64).eps
SMALL = dict(N=32, r=8, t_end=0.5)


def _random_point(rng, N, r):
    U, S, V = rng.standard_normal((N, r)), rng.standard_normal((r, r)), rng.standard_normal((N, r))
    return lc.LowRank(U, S, V, check=False), U @ S @ V.T


def test_factored_products_equal_the_dense_rhs():
    """F V, F^T U and U^T F V from the rank-r^3 Khatri-Rao factors of Y⊙Y⊙Y equal the
    dense F (guards against swapping the roles of A and B in F^T U, which is only
    right because the Laplacian is symmetric).  Each entry of the cube sums r^3
    products: relative round-off a small multiple of r^3 eps."""
    rng = np.random.default_rng(0)
    N, r = 30, 4
    Y, D = _random_point(rng, N, r)
    ode = AllenCahnODE(N, 0.01, products="factored")
    F = ode.dense(D)
    W, Z = rng.standard_normal((N, 3)), rng.standard_normal((N, 2))
    tol = 10 * r**3 * EPS
    value = ode.evaluate(0.0, Y)
    for got, want in ((value.F_V(W), F @ W), (value.FH_U(Z), F.T @ Z), (value.UH_F_V(Z, W), Z.T @ F @ W)):
        assert np.linalg.norm(got - want) <= tol * np.linalg.norm(want)


def test_energy_from_the_factors_and_its_gradient():
    """energy(LowRank) equals energy(dense), and F = -grad E / h^2 (directional
    derivative by a central difference, truncation O(delta^2), so rtol 1e-6): guards
    against a wrong sign or factor of the gradient term."""
    p = P.allen_cahn(**SMALL)
    rng = np.random.default_rng(1)
    Y, D = _random_point(rng, 32, 3)
    D = D / np.abs(D).max()
    Y = lc.LowRank.from_dense(D, 3)
    assert p.energy(Y) == pytest.approx(p.energy(D), rel=1e-12)
    E = rng.standard_normal(D.shape)
    delta = 1e-5
    dE = (p.energy(D + delta * E) - p.energy(D - delta * E)) / (2 * delta)
    assert dE == pytest.approx(-(p.h**2) * float(np.sum(p.problem.dense(D) * E)), rel=1e-6)


def test_dlra_error_decreases_with_the_rank_and_energy_decreases():
    """KSL converges to the full-rank reference as r grows (within a small factor of the
    best rank-r error), and the energy decreases along every solve and along the
    reference (gradient flow; the DLRA flow is a gradient flow on the manifold)."""
    errors = []
    for r in (2, 4, 8):
        p = P.allen_cahn(**{**SMALL, "r": r})
        sol = lc.solve(p.problem, p.Y0, p.t_span, dt=p.suggested_dt, method="ksl", save_every=1)
        t1 = p.t_span[1]
        errors.append(p.error(sol.Y, t1))
        assert errors[-1] <= 4 * p.best_error(t1, r) + 1e-12
        energies = [p.energy(Y) for Y in sol.Ys]
        assert np.all(np.diff(energies) < 0)
    assert errors[0] > errors[1] > errors[2]
    ref = [p.energy(p.reference(t)) for t in np.linspace(0.0, p.t_span[1], 6)]
    assert np.all(np.diff(ref) < 0)
    assert p.conserved == {}


def test_cross_approximation_is_close_to_the_best():
    """The cross approximation used for Y0 at large N is within 5 % of the best rank-r
    error at N = 64 (guards against a wrong skeleton C W^+ C^T)."""
    N, r = 64, 8
    grid = np.arange(N) * 2 * np.pi / N
    X = initial_value(grid[:, None], grid[None, :])
    Pm, lam = _cross_symmetric(grid, r)
    s = np.linalg.svd(X, compute_uv=False)
    best = np.sqrt(np.sum(s[r:] ** 2))
    assert np.linalg.norm((Pm * lam) @ Pm.T - X) <= 1.05 * best
    np.testing.assert_allclose(Pm.T @ Pm, np.eye(r), atol=1e-12)


def test_quick_default_and_pickling():
    """The default builds quickly and round-trips through pickle with the same reference."""
    p = P.get("allen-cahn")
    assert p.shape == (64, 64)
    assert p.symmetric
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q.reference(0.5), p.reference(0.5))
    assert repr(pickle.loads(pickle.dumps(p.problem))) == repr(p.problem)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: P.allen_cahn(N=2), ValueError, "`N`"),
        (lambda: P.allen_cahn(eps=-0.1), ValueError, "`eps`"),
        (lambda: P.allen_cahn(N=8, r=9), ValueError, "`r`"),
        (lambda: P.allen_cahn(t_end="1"), TypeError, "`t_end`"),
        (lambda: P.allen_cahn(dtype=np.complex64), TypeError, "`dtype`"),
        (lambda: AllenCahnODE(8, 0.1, products=3), TypeError, "`products`"),
        (lambda: P.allen_cahn(N=256, r=4).reference(0.1), ValueError, "smaller `N`"),
    ],
)
def test_bad_input_is_named(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_large_sizes_never_form_n_by_n():
    """N = 1e5 per dimension (1e10 unknowns), rank 5, two KSL steps with Euler substeps:
    Y0 from the cross approximation and the rank-125 cubic products in row blocks keep
    the traced peak a small multiple of the factors (N x r float64 = 4 MB), far below
    one N x N matrix (80 GB).  Guards against a dense fallback at large sizes."""
    N, r = 100_000, 5
    tracemalloc.start()
    try:
        p = P.allen_cahn(N=N, r=r)
        factor = p.Y0.U.nbytes
        sol = lc.solve(p.problem, p.Y0, (0.0, 2e-9), 1e-9, method="ksl", substep="euler")
        energy = p.energy(sol.Y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.isfinite(sol.Y.S).all()
    assert energy <= p.energy(p.Y0)
    assert peak <= 40 * factor, f"peak {peak / 1e6:.0f} MB against factors of {factor / 1e6:.1f} MB"
