"""Reference problems (lowrank_core.problems): references solve their ODEs, invariants, backends."""

from __future__ import annotations

import functools
import math

import array_api_compat
import array_api_strict
import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems as P

from ._helpers import to_numpy

NAMES = sorted(P.PROBLEMS)

# Small instances: cheap enough for full solves in the test-suite budget.
SMALL = {
    "prescribed-path": dict(N=30, r=6),
    "heat": dict(size=16, r=5),
    "schrodinger": dict(N=24, r=6, t_end=0.5),
    "riccati": dict(m=16, r=12, t_end=0.05),
    "quadratic": dict(m=20, n=15, r=3, t_end=5.0),
    "stochastic-burgers": dict(m=64, n=16, r=6, nu=0.01, t_end=0.2),
    "allen-cahn": dict(N=32, r=8, t_end=0.5),
    "landau-damping": dict(nx=16, nv=16, r=4, t_end=1.0),
    "two-stream": dict(nx=16, nv=32, r=4, t_end=1.0),
    "plane-source": dict(nx=40, n_moments=7, r=4, t_end=0.5),
}


@functools.cache
def default_problem(name: str) -> P.ReferenceProblem:
    """The problem with its default parameters (built once per test session)."""
    return P.get(name)


@functools.cache
def small_problem(name: str) -> P.ReferenceProblem:
    return P.get(name, **SMALL[name])


def dense_F(p: P.ReferenceProblem, t: float, X: np.ndarray) -> np.ndarray:
    """The dense right-hand side F(t, X) obtained through the problem's product interface.

    X is represented exactly (full-rank SVD) and F = F_V(I).
    """
    xp = p.Y0.xp
    Xd = xp.asarray(X, dtype=p.Y0.dtype)
    Y = lc.LowRank.from_dense(Xd, min(X.shape))
    eye = xp.eye(X.shape[1], dtype=p.Y0.dtype)
    return to_numpy(p.problem.evaluate(t, Y).F_V(eye))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# Round-off units.  Every tolerance below is a multiple of the unit roundoff of the dtype
# involved, or a quantity of the problem's theory, with the reason beside it.
EPS = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
# Weyl: a computed singular value is off by at most the norm of the backward error of the
# SVD and of the products that built the matrix, a few EPS * sigma_1 (measured <= 3.7 EPS
# on the 100 x 100 prescribed path); 20 EPS * sigma_1 leaves room for other BLAS.
SVD_ULPS = 20
# The references are solved with rtol = atol = 1e-10 (DOP853 or Radau; see each problem's
# ``description``).
REFERENCE_TOL = 1e-10


# ---------------------------------------------------------------- (1) references solve the ODE
# Tolerances of the finite-difference check, with h = 1e-3 (t_end - t0) and the fourth-order
# central difference (error h^4 |X^(5)| / 30):
# * closed forms (prescribed path, heat, quadratic): truncation error <= ~1e-9 relative
#   (|X^(5)| / |X'| <= (rate)^4 with rate ~ 1 over the span), round-off ~ eps / h ~ 1e-12;
# * Schrödinger (DOP853, rtol = atol = 1e-10): the derivative of the dense-output interpolant
#   is accurate to about tol / step ~ 1e-8 (measured 4e-8), tolerance 1e-6;
# * Riccati (Radau, 1e-10): F is ill-conditioned in X (||A||_2 ~ 1.2e5), so an error of
#   1e-10 ||X|| in the reference shows up as ~1e-5 ||X|| in F(X); measured 1.7e-6, tol 2e-5.
FD_TOL = {"prescribed-path": 1e-9, "heat": 1e-9, "quadratic": 1e-9, "schrodinger": 1e-6, "riccati": 2e-5}
# Burgers and Allen-Cahn (DOP853 at 1e-10, dense-output derivative as for Schrödinger; measured
# 1.7e-8 and 4.7e-9): 1e-6.
FD_TOL.update({"stochastic-burgers": 1e-6, "allen-cahn": 1e-6})
# Vlasov-Poisson (DOP853 at 1e-10 from t_eval, the solver's interpolant; measured 1.5e-8
# Landau, 7.8e-8 two-stream): 1e-6.
FD_TOL.update({"landau-damping": 1e-6, "two-stream": 1e-6})
# Plane source: the reference is exact to round-off (DFT + per-mode eigendecomposition), so
# only the O(h^4) error of the difference quotient shows (measured 7.4e-10): 1e-8.
FD_TOL.update({"plane-source": 1e-8})


# The Riccati reference (Radau on the full 100 x 100 system, five solves) takes most of
# this file's time.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "riccati" else n for n in NAMES])
def test_reference_satisfies_its_ode(name):
    p = default_problem(name)
    t0, t1 = p.t_span
    t = t0 + 0.5 * (t1 - t0)
    h = 1e-3 * (t1 - t0)
    R = lambda s: to_numpy(p.reference(s))  # noqa: E731
    fd = (-R(t + 2 * h) + 8 * R(t + h) - 8 * R(t - h) + R(t - 2 * h)) / (12 * h)
    assert rel(fd, dense_F(p, t, R(t))) < FD_TOL[name]


@pytest.mark.parametrize("name", NAMES)
def test_initial_value_is_a_truncation_of_the_reference(name):
    """Y0 has the requested rank and is the best rank-r approximation of reference(t0)
    (up to the eigen- instead of SVD-truncation used for symmetric problems)."""
    p = default_problem(name)
    t0 = p.t_span[0]
    r = p.Y0.rank
    err0 = p.error(p.Y0, t0)
    # Both are relative norms of the same discarded tail, computed through different
    # decompositions; each carries a round-off of a few EPS (measured <= 3.3 EPS).
    assert err0 <= p.best_error(t0, r) + 16 * EPS
    # and the error helpers are consistent: the full reference has zero error, up to the
    # backward error of the SVD that factors it, O(sqrt(N) EPS) (measured <= 6.1 EPS)
    full = lc.LowRank.from_dense(p.reference(t0), min(p.shape))
    assert p.error(full, t0) < 4 * math.sqrt(max(p.shape)) * EPS


def test_reference_is_cached():
    p = small_problem("schrodinger")
    assert p.reference(0.25) is p.reference(0.25)
    assert p.reference(np.float64(0.25)) is p.reference(0.25)


def test_numerical_reference_rejects_times_before_t0():
    p = small_problem("schrodinger")
    with pytest.raises(ValueError, match="forward from t0"):
        p.reference(-0.1)


def test_numerical_reference_beyond_t_end_matches_a_separate_solve():
    """Beyond t_end a fresh solve is run; it continues the dense solution consistently.

    Guards against a continuation that restarts from the wrong state or integrates another
    ODE: one Euler step from reference(t1) predicts reference(t1 + h) to O(h^2), so the
    residual must shrink by 4 when h halves (a wrong start leaves it O(1), ratio 1; a wrong
    right-hand side leaves it O(h), ratio 2).  The reference's own error (1e-10) is below
    1e-4 of the smallest residual (measured 3.9e-6 at h = 2.5e-4), so 3 ... 5 allows it.
    """
    p = small_problem("riccati")
    t1 = p.t_span[1]
    a = to_numpy(p.reference(t1))
    F = dense_F(p, t1, a)
    residual = {}
    for h in (1e-3, 5e-4):
        b = to_numpy(p.reference(t1 + h))
        residual[h] = rel(b, a + h * F)
        # it did move, by what the ODE says to first order: the Euler step explains all
        # but O(h) of the motion (measured 2.4 % at h = 1e-3)
        assert residual[h] < 0.1 * rel(b, a)
    assert 3.0 < residual[1e-3] / residual[5e-4] < 5.0


# ---------------------------------------------------------------- (2) prescribed path
def test_prescribed_path_singular_values():
    p = default_problem("prescribed-path")
    j = np.arange(1, 101)
    for t in (0.0, 0.37, 1.0):
        s = np.linalg.svd(to_numpy(p.reference(t)), compute_uv=False)
        expected = math.exp(t) * 2.0**-j
        # the SVD resolves sigma_j to about EPS * sigma_1 absolutely (Weyl, SVD_ULPS)
        np.testing.assert_allclose(s, expected, rtol=0, atol=SVD_ULPS * EPS * expected[0])
    # closed-form best-approximation error e^t (sum_{j>r} 4^-j)^(1/2), relative to ||A(t)||;
    # the tail starts at sigma_{r+1} = 2^-r sigma_1, so an absolute error SVD_ULPS EPS sigma_1
    # is a relative error SVD_ULPS EPS 2^r of the tail
    r = 8
    expected = math.sqrt(np.sum(4.0 ** -j[r:]) / np.sum(4.0**-j))
    assert p.best_error(1.0, r) == pytest.approx(expected, rel=SVD_ULPS * EPS * 2.0**r)


def test_prescribed_path_exact_rank_and_exactness_of_ksl():
    k = 4
    p = P.prescribed_path(N=40, r=k, exact_rank=k, t_end=0.5)
    for t in (0.0, 0.3, 0.5):
        s = np.linalg.svd(to_numpy(p.reference(t)), compute_uv=False)
        # as above (Weyl): the k singular values, and zeros at the round-off of sigma_1
        np.testing.assert_allclose(s[:k], math.exp(t) * 2.0 ** -np.arange(1, k + 1), rtol=0, atol=SVD_ULPS * EPS * s[0])
        assert s[k] <= SVD_ULPS * EPS * s[0]
    # Exactness (methods.md §4.1): KSL with exact increments reproduces a rank-k path, up
    # to the round-off of each step (a few EPS; measured 0.7 EPS after 5 steps); a method
    # that is not exact errs by O(dt) instead
    sol = lc.solve(p.problem, p.Y0, p.t_span, dt=0.1, method="ksl", substep="exact")
    assert p.error(sol.Y, 0.5) < 20 * EPS * sol.stats["steps"]


def test_prescribed_path_w_norm_controls_the_rotation_speed():
    """With ||W_i||_2 = 0 the path is e^t D; larger ||W_i|| rotates the bases faster."""
    still = P.prescribed_path(N=10, r=2, w_norm=0.0)
    d = np.diag(2.0 ** -np.arange(1, 11))
    # e^{0 W} = I, so the path is e^t D up to one rounding per entry
    np.testing.assert_allclose(
        to_numpy(still.reference(0.5)), math.exp(0.5) * d, rtol=0, atol=4 * EPS * math.exp(0.5) * d[0, 0]
    )
    slow = to_numpy(P.prescribed_path(N=10, r=2, w_norm=0.1).reference(0.5))
    fast = to_numpy(P.prescribed_path(N=10, r=2, w_norm=5.0).reference(0.5))
    assert rel(slow, math.exp(0.5) * d) < rel(fast, math.exp(0.5) * d)


# ---------------------------------------------------------------- (3) symmetry and conservation
@pytest.mark.parametrize("name", ["heat", "riccati"])
def test_symmetric_problems(name):
    p = default_problem(name)
    assert p.symmetric
    # Y0 is symmetric with identical bases, so F(Y^T) = F(Y)^T keeps Y symmetric
    np.testing.assert_array_equal(to_numpy(p.Y0.U), to_numpy(p.Y0.V))
    for t in (p.t_span[0], p.t_span[1]):
        R = to_numpy(p.reference(t))
        # a symmetric solve keeps R = R^T up to the rounding of a few operations per entry
        # (measured exactly symmetric)
        assert np.linalg.norm(R - R.T) <= 16 * EPS * np.linalg.norm(R)
    # F(Y^T) = F(Y)^T at a random non-symmetric point of the right scale (a 1 % perturbation)
    rng = np.random.default_rng(3)
    R = to_numpy(p.reference(p.t_span[0]))
    X = R + 1e-2 * np.linalg.norm(R) * rng.standard_normal(R.shape) / R.shape[0]
    F, FT = dense_F(p, 0.0, X), dense_F(p, 0.0, X.T)
    # A wrong transpose in F is an O(1) relative error; round-off is amplified by F's
    # conditioning (||A|| ||X|| / ||F||; measured 637 EPS for heat, 275 EPS for Riccati),
    # far below sqrt(EPS), which separates the two.
    assert rel(FT, F.T) < math.sqrt(EPS)


def test_schrodinger_conserves_norm_and_energy():
    p = default_problem("schrodinger")
    assert p.norm_preserving
    ts = [0.0, 0.25, 0.5, 1.0]
    refs = [to_numpy(p.reference(t)) for t in ts]
    norms = np.array([np.linalg.norm(R) for R in refs])
    energies = np.array([p.energy(p.reference(t)) for t in ts])
    # DOP853 holds the local error of each of its O(100) steps over t in [0, 1] to
    # REFERENCE_TOL, so the drift of both invariants stays below 100 REFERENCE_TOL
    # (measured 1.8e-9 for the norm and 7.7e-9 for the energy)
    drift = 100 * REFERENCE_TOL
    assert np.max(np.abs(norms - norms[0])) < drift * norms[0]
    assert np.max(np.abs(energies - energies[0])) < drift * abs(energies[0])
    # the solution does move, by O(1) (measured 1.6): the drift check is not vacuous
    assert rel(refs[-1], refs[0]) > 0.1


def test_schrodinger_rhs_is_skew_and_energy_from_factors():
    p = small_problem("schrodinger")
    rng = np.random.default_rng(5)
    N = p.shape[0]
    X = rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))
    F = dense_F(p, 0.0, X)
    # Re <X, -i H X> = 0 for Hermitian H; the round-off of a dot product of length N^2 is at
    # most N^2 EPS ||X|| ||F|| (measured 0.03 EPS), while a non-skew F gives O(1)
    assert abs(np.vdot(X, F).real) < N * N * EPS * np.linalg.norm(X) * np.linalg.norm(F)
    # F = -i H[X], through the products and densely: sums of length N, N EPS each
    H = to_numpy(p.hamiltonian(p.Y0.xp.asarray(X)))
    np.testing.assert_allclose(F, -1j * H, atol=4 * N * EPS * np.linalg.norm(F))
    # energy from non-orthonormal factors equals the dense formula
    r = 4
    U = rng.standard_normal((N, r)) + 1j * rng.standard_normal((N, r))
    S = rng.standard_normal((r, r)) + 1j * rng.standard_normal((r, r))
    V = rng.standard_normal((N, r)) + 1j * rng.standard_normal((N, r))
    xp = p.Y0.xp
    Y = lc.LowRank(xp.asarray(U), xp.asarray(S), xp.asarray(V), check=False)
    dense = U @ S @ V.conj().T
    H_dense = to_numpy(p.hamiltonian(xp.asarray(dense)))
    energy = float(np.vdot(dense, H_dense).real)
    # <Y, H Y> summed two ways: round-off N EPS ||Y|| ||H Y||, relative to |energy|
    tol = 4 * N * EPS * np.linalg.norm(dense) * np.linalg.norm(H_dense) / abs(energy)
    assert p.energy(Y) == pytest.approx(energy, rel=tol)
    assert p.energy(xp.asarray(dense)) == pytest.approx(p.energy(Y), rel=tol)


@pytest.mark.parametrize("name", ["prescribed-path", "heat", "riccati", "quadratic"])
def test_flags_of_other_problems(name):
    p = default_problem(name)
    assert not p.norm_preserving
    assert p.symmetric == (name in ("heat", "riccati"))


# ---------------------------------------------------------------- (4) quadratic flow
def test_quadratic_optimal_loss_and_optimum():
    p = default_problem("quadratic")
    B = to_numpy(p.B)
    r = p.Y0.rank
    s = np.linalg.svd(B, compute_uv=False)
    # Singular values from two SVDs agree to SVD_ULPS EPS sigma_1 (Weyl); the loss is a
    # sum over the tail, so its relative round-off is that over the tail's norm
    tail_tol = SVD_ULPS * EPS * s[0] / np.linalg.norm(s[r:])
    assert p.optimal_loss == pytest.approx(0.5 * np.sum(s[r:] ** 2), rel=tail_tol)
    assert p.loss(p.optimum) == pytest.approx(p.optimal_loss, rel=tail_tol)
    np.testing.assert_allclose(to_numpy(p.optimum.singular_values()), s[:r], rtol=0, atol=SVD_ULPS * EPS * s[0])
    # any other rank-r matrix does worse (Eckart-Young), e.g. the initial value
    assert p.loss(p.Y0) > p.optimal_loss
    assert s[r - 1] / s[r] > 1.2  # a clear spectral gap: unique minimiser
    # the full flow X(t) = B + (X0 - B) e^{-t} tends to B: at t = 60 the error is e^{-60}
    # times the initial one, plus the rounding of one addition
    assert p.error(p.B, 60.0) < math.exp(-60.0) * p.error(p.Y0, 0.0) + 2 * EPS


def test_quadratic_ksl_converges_to_the_eckart_young_minimiser():
    """Guards against convergence to a saddle or no convergence.

    From a small random start the rank-r flow escapes the saddle at 0 and then converges
    linearly (measured: loss gap ~ e^{-0.59 t} for this spectrum; 4e-8 at t = 30).  Every
    other critical point of the loss on the rank-r matrices swaps a kept singular pair for
    a discarded one, so it lies at least sigma_r away from the minimiser with a loss gap of
    at least (sigma_r^2 - sigma_{r+1}^2) / 2: converged means far inside both.
    """
    p = P.quadratic_flow(**{**SMALL["quadratic"], "t_end": 30.0})
    s = np.linalg.svd(to_numpy(p.B), compute_uv=False)
    r = p.Y0.rank
    sol = lc.solve(p.problem, p.Y0, p.t_span, dt=0.1, method="ksl")
    gap = p.loss(sol.Y) - p.optimal_loss
    assert 0 <= gap < 1e-4 * 0.5 * (s[r - 1] ** 2 - s[r] ** 2)  # measured 6.8e-7 of it
    distance = np.linalg.norm(to_numpy(sol.Y.to_dense()) - to_numpy(p.optimum.to_dense()))
    assert distance < 1e-2 * s[r - 1]  # measured 1.1e-3 of it


# ---------------------------------------------------------------- (5) structured Riccati products
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("c_kind", ["none", "dense", "lowrank"])
@pytest.mark.parametrize("with_D", [False, True])
def test_riccati_products_match_dense_formula(complex_, c_kind, with_D):
    """F = A^H X + X A + C - X D X at non-orthonormal factors, through F V, F^H U, U^H F V."""
    rng = np.random.default_rng(7)
    m, r, k = 9, 3, 2

    def g(*shape):
        x = rng.standard_normal(shape)
        return x + 1j * rng.standard_normal(shape) if complex_ else x

    A, D = g(m, m), (g(m, m) if with_D else None)
    U, S, V = g(m, r), g(r, r), g(m, r)
    X = U @ S @ V.conj().T
    C_dense = np.zeros((m, m))
    C = None
    if c_kind == "dense":
        C_dense = C = g(m, m)
    elif c_kind == "lowrank":
        Qc = np.linalg.qr(g(m, 2))[0]
        Sc = g(2, 2)
        C_dense = Qc @ Sc @ Qc.conj().T
        C = lc.LowRank(Qc, Sc, Qc)
    F = A.conj().T @ X + X @ A + C_dense - X @ (np.eye(m) if D is None else D) @ X
    ode = P.RiccatiODE(A, C, D)
    Y = lc.LowRank(U, S, V, check=False)
    W, Z = g(m, k), g(m, k)
    # Each term is a product of sums of length <= m, rounded to m EPS times the norms of its
    # factors; the terms may cancel, so the scale is the sum of the terms' norms, not ||F||
    # (a wrong sign or a missing conjugate is an O(1) error)
    nrm = np.linalg.norm
    terms = 2 * nrm(A) * nrm(X) + nrm(C_dense) + nrm(X) ** 2 * (math.sqrt(m) if D is None else nrm(D))
    scale = 4 * m * EPS * terms
    np.testing.assert_allclose(ode.F_V(0.0, Y, Z), F @ Z, atol=scale * nrm(Z))
    np.testing.assert_allclose(ode.FH_U(0.0, Y, W), F.conj().T @ W, atol=scale * nrm(W))
    np.testing.assert_allclose(ode.UH_F_V(0.0, Y, W, Z), W.conj().T @ F @ Z, atol=scale * nrm(W) * nrm(Z))


def test_riccati_ode_validation():
    A = np.eye(4)
    with pytest.raises(ValueError, match="square"):
        P.RiccatiODE(np.ones((4, 3)))
    with pytest.raises(TypeError, match="`A`"):
        P.RiccatiODE(None)
    ode = P.RiccatiODE(A)
    Y = lc.LowRank.from_dense(np.ones((5, 5)), 1)
    with pytest.raises(ValueError, match="`A` must have shape"):
        ode.check_state(Y)
    with pytest.raises(ValueError, match="square state"):
        ode.check_state(lc.LowRank.from_dense(np.ones((4, 3)), 1))


# ---------------------------------------------------------------- (6) registry and argument errors
def test_get_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown problem name 'nope'.*'heat'.*'riccati'"):
        P.get("nope")
    with pytest.raises(TypeError, match="`name` must be a string"):
        P.get(3)
    assert P.get("quadratic", m=6, n=5, r=2).name == "quadratic"
    # every registered problem is listed here, so a new one must also be given its
    # entries in SMALL, FD_TOL and SOLVE_FACTOR above (the parametrised tests use them)
    assert set(P.PROBLEMS) == {
        "prescribed-path", "heat", "schrodinger", "riccati", "quadratic",
        "landau-damping", "two-stream", "stochastic-burgers", "allen-cahn", "plane-source",
    }  # fmt: skip
    for name in P.PROBLEMS:
        assert P.PROBLEMS[name].__module__.startswith("lowrank_core.problems.")


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: P.prescribed_path(N=5, r=6), ValueError, "`r` must satisfy"),
        (lambda: P.prescribed_path(N=5, r=2.5), TypeError, "`r` must be an integer"),
        (lambda: P.prescribed_path(N=5, r=2, exact_rank=9), ValueError, "`exact_rank`"),
        (lambda: P.prescribed_path(N=5, r=2, w_norm=-1.0), ValueError, "`w_norm`"),
        (lambda: P.heat_lyapunov(size=8, r=2, t_end=0.0), ValueError, "`t_end` must be positive"),
        (lambda: P.schrodinger(N=8, r=2, dtype=np.float64), TypeError, "complex"),
        (lambda: P.quadratic_flow(m=6, n=5, r=2, dtype=np.int64), TypeError, "`dtype`"),
        (lambda: P.quadratic_flow(m=6, n=5, r=2, spectrum=[1.0, -1.0]), ValueError, "`spectrum`"),
        (lambda: P.quadratic_flow(m=6, n=5, r=2, spectrum=[1.0] * 6), ValueError, "`spectrum`"),
        (lambda: P.quadratic_flow(m=6, n=5, r=2, xp="numpy"), TypeError, "`xp`"),
        (lambda: P.riccati(m=10, r=2, q=4), ValueError, "`q` must be odd"),
        (lambda: P.riccati(m=10, r=2, seed=-1), ValueError, "`seed`"),
    ],
)
def test_factory_argument_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_error_rejects_wrong_shape():
    p = small_problem("quadratic")
    with pytest.raises(ValueError, match="shape"):
        p.error(np.zeros((3, 3)), 0.0)


# ---------------------------------------------------------------- (7) other namespaces and dtypes
@pytest.mark.parametrize("name", NAMES)
def test_factories_work_with_array_api_strict(name):
    xp = array_api_strict
    p = P.get(name, xp=xp, **SMALL[name])
    assert p.Y0.xp is xp
    R = p.reference(p.t_span[0])
    assert array_api_compat.array_namespace(R) is xp
    assert tuple(R.shape) == p.shape
    assert R.dtype == p.Y0.dtype
    # two steps through the library, entirely in array_api_strict
    t0, t1 = p.t_span
    dt = p.suggested_dt
    sol = lc.solve(p.problem, p.Y0, (t0, t0 + 2 * dt), dt=dt, method="ksl")
    assert sol.Y.xp is xp
    # same numbers as NumPy: the same operations, with sums that may run in another order,
    # agree to the round-off of a length-N sum, N EPS (measured: identical or 0.2 EPS)
    ref_np = small_problem(name)
    N = max(p.shape)
    np.testing.assert_allclose(
        to_numpy(R), to_numpy(ref_np.reference(t0)), rtol=0, atol=N * EPS * np.linalg.norm(to_numpy(R))
    )
    assert p.error(sol.Y, t0 + 2 * dt) == pytest.approx(
        ref_np.error(lc.solve(ref_np.problem, ref_np.Y0, (t0, t0 + 2 * dt), dt=dt, method="ksl").Y, t0 + 2 * dt),
        rel=0,
        abs=N * EPS,
    )
    if name == "schrodinger":
        assert isinstance(p.energy(p.Y0), float)
    if name == "quadratic":
        assert isinstance(p.loss(p.Y0), float)


@pytest.mark.parametrize("name", NAMES)
def test_float32_and_complex_dtypes(name):
    dtype = np.complex64 if name == "schrodinger" else np.float32
    p = P.get(name, dtype=dtype, **SMALL[name])
    assert p.Y0.dtype == dtype
    assert p.reference(p.t_span[1]).dtype == dtype
    sol = lc.solve(p.problem, p.Y0, p.t_span, dt=p.suggested_dt if name != "quadratic" else 0.05, method="ksl")
    # the float64 bound of test_ksl_solve_is_close_to_the_reference plus the round-off of
    # each step in single precision, a few EPS32 relative per step (the excess over twice
    # the best error is at most 17 EPS32 in 124 steps, Riccati)
    bound = SOLVE_FACTOR[name] * p.best_error(p.t_span[1], p.Y0.rank) + 4 * EPS32 * sol.stats["steps"]
    assert p.error(sol.Y, p.t_span[1]) < bound


# ---------------------------------------------------------------- quick solves: problem and reference agree
# KSL (RK4 substeps) at the suggested step size: the error is bounded by C (eps_r + dt)
# (methods.md §4.2), eps_r the best rank-r error.  Measured error / eps_r: prescribed path
# 1.01, quadratic 1.07, heat 1.24, Schrödinger 1.46, Riccati 2.6 (r = 12 makes eps_r ~ 3.5e-6
# so small that the O(dt) splitting error shows); the factors leave ~1.5x headroom.
SOLVE_FACTOR = {"prescribed-path": 1.1, "heat": 2.0, "schrodinger": 2.5, "riccati": 4.0, "quadratic": 1.2}
# Burgers 1.12 and Allen-Cahn 1.99 measured (r = 8 leaves eps_r ~ 1e-6 for Allen-Cahn, so dt shows).
SOLVE_FACTOR.update({"stochastic-burgers": 1.7, "allen-cahn": 3.0})
# Vlasov-Poisson at 16 x 16 / 16 x 32, rank 4, t = 1: measured 1.10 (Landau), 1.07 (two-stream).
SOLVE_FACTOR.update({"landau-damping": 1.5, "two-stream": 1.5})
# Plane source at 40 x 7, rank 4, t = 0.5: measured 1.38.
SOLVE_FACTOR.update({"plane-source": 2.0})


@pytest.mark.parametrize("name", NAMES)
def test_ksl_solve_is_close_to_the_reference(name):
    p = small_problem(name)
    dt = p.suggested_dt if name != "quadratic" else 0.05
    sol = lc.solve(p.problem, p.Y0, p.t_span, dt=dt, method="ksl")
    t1 = p.t_span[1]
    best = p.best_error(t1, p.Y0.rank)
    # plus the round-off of the steps, a few EPS each
    assert p.error(sol.Y, t1) < SOLVE_FACTOR[name] * best + 20 * EPS * sol.stats["steps"]
    if p.norm_preserving:
        # Every PSI substep is a linear ODE with a skew-Hermitian generator of norm at most
        # ||H||; exact substeps conserve the norm, and RK4's stability function has
        # |R(iy)| = 1 - y^6/144 + O(y^8) on the imaginary axis, so each of the three RK4
        # substeps of a step loses at most (dt ||H||)^6 / 144 of the norm (measured drift
        # 1.3e-9 over 50 steps against the bound 1.6e-7; Euler substeps would gain
        # (dt ||H||)^2 / 2 per substep instead).
        y = dt * _operator_norm(p.hamiltonian, p.Y0)
        drift = 3 * sol.stats["steps"] * y**6 / 144
        assert float(sol.Y.norm()) == pytest.approx(float(p.Y0.norm()), rel=drift)


def _operator_norm(op, Y0: lc.LowRank, iterations: int = 100) -> float:
    """||op||_2 of a linear map on matrices (Hermitian, so power iteration converges to
    it from below); 5 % added for the iterations left out."""
    rng = np.random.default_rng(0)
    xp = Y0.xp
    X = rng.standard_normal(Y0.shape) + 1j * rng.standard_normal(Y0.shape)
    norm = 0.0
    for _ in range(iterations):
        X = to_numpy(op(xp.asarray(X, dtype=Y0.dtype)))
        norm = float(np.linalg.norm(X))
        X = X / norm
    return 1.05 * norm
