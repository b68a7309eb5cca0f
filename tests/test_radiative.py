"""The plane source of radiative transfer in P_N moments (lowrank_core.problems.radiative)."""

from __future__ import annotations

import math
import pickle
import tracemalloc

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems as P
from lowrank_core.problems.radiative import _abs_flux, _periodic_stencils, pn_flux_matrix

EPS = np.finfo(np.float64).eps


def _dense_rhs(p: P.PlaneSourceProblem, Y: np.ndarray) -> np.ndarray:
    """F(Y) assembled from dense matrices written out here, independently of the module."""
    nx, n = Y.shape
    dx = p.dx
    S = np.roll(np.eye(nx), 1, axis=1)  # (S u)_i = u_{i+1}, periodic
    Dx = (S - S.T) / (2 * dx)
    Dxx = (S + S.T - 2 * np.eye(nx)) / (2 * dx)
    mu, w = np.polynomial.legendre.leggauss(2 * n + 2)
    Pt = np.stack([np.sqrt((2 * ell + 1) / 2) * np.polynomial.legendre.Legendre.basis(ell)(mu) for ell in range(n)])
    A = (Pt * w * mu) @ Pt.T  # A_lk = int mu P_l P_k dmu
    lam, V = np.linalg.eigh(A)
    absA = (V * np.abs(lam)) @ V.T
    G = np.diag([0.0] + [1.0] * (n - 1))
    return -Dx @ Y @ A.T + Dxx @ Y @ absA.T - Y @ (p.sigma_a * np.eye(n) + p.sigma_s * G)


def _F(p: P.PlaneSourceProblem, Y: np.ndarray) -> np.ndarray:
    """F(Y) through the problem's product interface (Y held exactly at full rank)."""
    Ylr = lc.LowRank.from_dense(Y, min(Y.shape))
    return np.asarray(p.problem.evaluate(0.0, Ylr).F_V(np.eye(Y.shape[1])))


def test_operators_equal_a_dense_assembly():
    """F(Y) = -D_x Y A^T + D_xx Y |A|^T - Y (sigma_a I + sigma_s G), with A the Legendre
    moment matrix int mu P_l P_k computed here by quadrature: guards against a wrong P_N
    coefficient, a sign of the upwind term, a missing periodic wrap or a scattering matrix
    that removes the zeroth moment.  Tolerance: a few hundred eps times ||F|| (sums of
    O(n) products, and |A| from two different eigensolvers)."""
    p = P.plane_source(nx=24, n_moments=7, r=3, sigma_a=0.3)
    Y = np.random.default_rng(0).standard_normal((24, 7))
    ref = _dense_rhs(p, Y)
    assert np.linalg.norm(_F(p, Y) - ref) <= 500 * EPS * np.linalg.norm(ref)
    # the wave speeds are the Gauss-Legendre nodes
    nodes = np.polynomial.legendre.leggauss(7)[0]
    np.testing.assert_allclose(np.linalg.eigvalsh(pn_flux_matrix(7).toarray()), nodes, atol=50 * EPS)
    assert p.max_speed == pytest.approx(nodes.max(), abs=50 * EPS)


def test_reference_is_the_exact_semi_discrete_solution():
    """reference(t) solves dY/dt = F(Y) from the rank-1 initial value: compared with a
    DOP853 solve at rtol = atol = 1e-12 of the dense system (guards against a wrong sign
    of the Fourier symbols or a transposed eigenvector solve); the difference is that
    solver's tolerance, so 1e-9 relative."""
    from scipy.integrate import solve_ivp

    p = P.plane_source(nx=32, n_moments=6, r=3, t_end=0.4)
    Y0 = p.reference.host(0.0)
    sol = solve_ivp(
        lambda t, y: _dense_rhs(p, y.reshape(32, 6)).ravel(),
        (0, 0.4),
        Y0.ravel(),
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
    )
    ref = p.reference.host(0.4)
    assert np.linalg.norm(sol.y[:, -1].reshape(32, 6) - ref) <= 1e-9 * np.linalg.norm(ref)
    np.testing.assert_allclose(p.Y0.to_dense(), Y0, atol=100 * EPS * np.abs(Y0).max())


def test_analytic_benchmark_has_the_right_mass():
    """Ganapol's flux integrates to exp(-sigma_a t) (unit source; guards against a wrong
    constant c t / (4 pi) or exponent in the collided integral, which change the mass by
    O(1)).  Midpoint rule on 4000 cells over |x| < t: the jump of the uncollided flux at
    the front is resolved exactly by the cell edges, so 1e-6."""
    for t, ss, sa in ((0.5, 1.0, 0.0), (2.0, 1.0, 0.0), (2.0, 0.5, 0.5)):
        x = np.linspace(-t, t, 4001)
        xm = 0.5 * (x[1:] + x[:-1])
        mass = P.plane_source_scalar_flux(xm, t, sigma_s=ss, sigma_a=sa).sum() * (x[1] - x[0])
        assert mass == pytest.approx(math.exp(-sa * t), abs=1e-6)
    # at the front the uncollided flat top exp(-t) / (2 t) remains; the collided part
    # vanishes like (1 - eta^2) log(1 / (1 - eta)) (measured 1.1e-3 relative at 1 - eta = 1e-4)
    assert P.plane_source_scalar_flux([0.9999], 1.0)[0] == pytest.approx(math.exp(-1) / 2, rel=5e-3)


def test_pn_flux_converges_to_the_analytic_benchmark():
    """The full P_N scalar flux at t = 2 approaches Ganapol's benchmark in L1 as the grid
    and the moment order are refined together (guards against a P_N system that converges
    to another equation, e.g. a wrong scattering normalisation).  A first-order upwind
    scheme on a solution with a jump converges at least like dx^{1/2} in L1, and P_N
    like 1/N in this weak norm: halving dx and doubling N must divide the error by more
    than sqrt(2) (measured 4.37e-2 -> 2.30e-2, factor 1.9).  The default size's figure
    (quoted in docs/problems.md) is 4.4e-2; bound 6e-2."""
    errors = []
    for nx, n in ((200, 29), (400, 59)):
        p = P.plane_source(nx=nx, n_moments=n, r=2, t_end=2.0)
        errors.append(p.flux_error(p.reference(2.0), 2.0))
    assert errors[0] < 6e-2
    assert errors[1] < errors[0] / math.sqrt(2)


def test_dlra_scalar_flux_converges_to_the_full_pn_solution_with_the_rank():
    """BUG (RK4 substeps, suggested_dt) at ranks 4, 8, 16 on the default problem: the
    relative L1 error of the scalar flux against the full P_N solution falls by more than
    5x per doubling of the rank (measured 0.24, 0.027, 2.9e-4) -- guards against an
    operator that the projected substeps apply wrongly (the error would stall)."""
    errors = []
    for r in (4, 8, 16):
        p = P.plane_source(r=r)
        sol = lc.solve(p.problem, p.Y0, p.t_span, p.suggested_dt, method="bug", substep="rk4")
        ref = p.scalar_flux(p.reference(2.0))
        errors.append(float(np.abs(p.scalar_flux(sol.Y) - ref).sum() / np.abs(ref).sum()))
    assert errors[1] < errors[0] / 5
    assert errors[2] < errors[1] / 5


def test_mass_is_conserved_by_the_discretisation_and_drifts_under_dlra():
    """With sigma_a = 0 the mass dx sqrt(2) sum_i Y[i, 0] has zero derivative for every Y
    (periodic stencils have zero column sums, scattering keeps moment 0): |dmass/dt| below
    100 eps ||F|| dx for a random Y (guards against zero ghost cells, which leak mass, or
    G[0, 0] = 1).  So full-rank Euler steps and the exact reference keep it to
    eps * steps.  The DLRA integrators do not (the tangent projection keeps it only if
    1 is in range(U) or e_0 in range(V)): their drift is only bounded by their error,
    falling with the rank (default size, BUG: measured 0.19, 0.021, 1e-4 at ranks 4, 8, 16)."""
    p = P.plane_source(nx=64, n_moments=9, r=3)
    Y = np.random.default_rng(1).standard_normal((64, 9))
    F = _F(p, Y)
    assert abs(F[:, 0].sum()) * p.dx <= 100 * EPS * np.linalg.norm(F) * p.dx
    # full-rank explicit Euler at the suggested step
    steps = round(p.t_span[1] / p.suggested_dt)
    Yk = p.reference.host(0.0).copy()
    for _ in range(steps):
        Yk = Yk + p.suggested_dt * _F(p, Yk)
    m0 = p.mass(p.Y0)
    assert m0 == pytest.approx(1.0, abs=1e-12)  # cell averages of a unit Gaussian
    assert abs(p.mass(Yk) - m0) <= 10 * steps * EPS
    assert abs(p.mass(p.reference(2.0)) - m0) <= 100 * EPS
    assert p.conserved["mass"](p.Y0) == m0
    drift = []
    for r in (2, 6):
        q = P.plane_source(nx=64, n_moments=9, r=r)
        sol = lc.solve(q.problem, q.Y0, q.t_span, q.suggested_dt, method="bug", substep="rk4")
        drift.append(abs(q.mass(sol.Y) - 1.0))
    assert drift[1] < drift[0]
    assert P.plane_source(nx=8, n_moments=3, r=1, sigma_a=0.1).conserved == {}


def test_large_size_never_forms_dense_matrices():
    """nx = 1e5 cells, 29 moments, rank 5: building the problem and two BUG steps stay
    below 40 MB traced (one dense nx x n_moments float64 matrix is 23 MB, an nx x nx one
    80 GB), and the mass is kept to within the DLRA drift of two steps (guards against a
    dense Y or operator slipping into the construction or the products)."""
    tracemalloc.start()
    try:
        p = P.plane_source(nx=100_000, n_moments=29, r=5)
        sol = lc.solve(p.problem, p.Y0, (0.0, 2 * p.suggested_dt), p.suggested_dt, method="bug", substep="euler")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40e6
    assert abs(p.mass(sol.Y) - 1.0) < 1e-3
    assert p.suggested_dt == pytest.approx(0.99 / (p.max_speed / p.dx + 1.0), rel=1e-3)


def test_pickles_by_rebuilding():
    """A problem round-trips through pickle (its reference is a closure): same Y0 and
    reference (guards against a field that is not rebuilt from the recorded call)."""
    p = P.get("plane-source", nx=30, n_moments=5, r=2, seed=3)
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q.Y0.U, p.Y0.U)
    np.testing.assert_array_equal(q.reference(1.0), p.reference(1.0))
    assert q.notes == p.notes
    assert q.stabilisation == "roe"


def test_rusanov_and_other_namespaces():
    """Rusanov viscosity is max|eig A| I (sparse) and the reference still solves that
    system; a non-NumPy namespace gets dense operators with the same F (guards against a
    Rusanov branch that keeps Roe's matrix, or a backend that drops a term)."""
    import array_api_strict as xps

    P.plane_source(nx=16, n_moments=5, r=2, stabilisation="rusanov")
    absA, lam = _abs_flux(5, "rusanov")
    np.testing.assert_array_equal(absA.toarray(), lam * np.eye(5))
    q = P.plane_source(nx=16, n_moments=5, r=2, xp=xps)
    Y = np.random.default_rng(2).standard_normal((16, 5))
    Yq = lc.LowRank.from_dense(xps.asarray(Y), 5)
    Fq = np.asarray(q.problem.evaluate(0.0, Yq).F_V(xps.eye(5, dtype=xps.float64)))
    np.testing.assert_allclose(Fq, _F(P.plane_source(nx=16, n_moments=5, r=2), Y), atol=100 * EPS * np.abs(Fq).max())
    Dx, Dxx = _periodic_stencils(16, 0.1)
    assert abs(Dx.sum(axis=0)).max() == 0
    assert abs(Dxx.sum(axis=0)).max() < 100 * EPS / 0.1


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(nx=1), ValueError, "`nx`"),
        (dict(nx=2.5), TypeError, "`nx`"),
        (dict(n_moments=1), ValueError, "`n_moments`"),
        (dict(r=40), ValueError, "`r` must satisfy"),
        (dict(cfl=1.5), ValueError, "`cfl` must be in"),
        (dict(width=0.0), ValueError, "`width`"),
        (dict(sigma_s=0.0), ValueError, "`sigma_s`"),
        (dict(sigma_a=-1.0), ValueError, "`sigma_a`"),
        (dict(stabilisation="upwind"), ValueError, "`stabilisation` must be 'roe' or 'rusanov'"),
        (dict(stabilisation=1), TypeError, "`stabilisation`"),
        (dict(n_moments=5000), ValueError, "`n_moments` = 5000 is above"),
        (dict(dtype=np.int64), TypeError, "`dtype`"),
    ],
)
def test_bad_input_is_named(kwargs, exc, match):
    """Every bad argument raises naming it (guards against a silent default or a bare
    SciPy error)."""
    with pytest.raises(exc, match=match):
        P.plane_source(**kwargs)


def test_bad_input_of_the_benchmark_and_diagnostics():
    """The benchmark and the diagnostics name their arguments (t <= 0, a non-NumPy x, a Y
    of the wrong shape) and never modify the caller's x."""
    import array_api_strict as xps

    x = np.array([0.0, 0.5])
    P.plane_source_scalar_flux(x, 1.0, width=0.03)
    np.testing.assert_array_equal(x, [0.0, 0.5])
    with pytest.raises(ValueError, match="`t` must be > 0"):
        P.plane_source_scalar_flux(x, 0.0)
    with pytest.raises(TypeError, match="`x` must be"):
        P.plane_source_scalar_flux(xps.asarray([0.0]), 1.0)
    p = P.plane_source(nx=10, n_moments=4, r=2)
    with pytest.raises(ValueError, match="`Y` must have shape"):
        p.mass(np.zeros((4, 10)))
    with pytest.raises(TypeError, match="`Y` must be"):
        p.scalar_flux([[0.0]])
