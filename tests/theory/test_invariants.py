"""Invariants of every step, for every integrator, backend, dtype and batch (methods.md §1, §2).

Hypotheses shared by all properties: one step ``t0 -> t0 + h`` of an integrator from a drawn
state ``Y0 = U0 S0 V0^H`` (general, non-diagonal core; separated, graded or nearly rank
deficient spectrum; leading batch dimensions) for the linear, non-tangent problem
``F(Y) = A Y + Y B^T + C`` with ``A = W1 + G1``, ``B = W2 + G2`` (skew generators of drawn
norm plus a general part) and a rank-2 source ``C``.

Properties:

* after the step ``U`` and ``V`` have orthonormal columns and the rank lies in
  ``[min_rank, max_rank]`` (``r`` for fixed-rank methods, at most ``2r`` for augmented ones);
* ``F = 0`` leaves ``Y`` unchanged;
* the step depends on ``Y0`` only, not on its factors: ``(U Q, Q^H S P, V P)`` with unitary
  ``Q, P`` gives the same ``Y1`` (equivariance under orthogonal changes of basis);
* for the BUG family, whose K- and L-steps play symmetric roles, stepping the transposed
  problem ``G(Z) = F(Z^H)^H`` from ``Y0^H`` gives ``Y1^H`` (equivariance under
  transposition).  KSL, Strang and (a)bc-PSI order K before L, so they are not symmetric.

All four properties run on every backend, dtype (float32, float64, complex128) and batch
(``strategies.BATCHES``).  The planted-bug tests run unbatched on NumPy: they replace a part of the
backend-independent step kit and check the checks, not the backends.

Each property is a ``check_*`` function used both by the hypothesis test and by a test
that plants a realistic bug through the integrators' public ``kit`` hook (a
``lc.integrators.StepKit`` subclass overriding one building block) and shows that the
check fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_core as lc

from .._helpers import dense, random_orthonormal, random_skew, to_numpy
from ._problems import one_step, record_truncations, truncation_condition
from .strategies import LowRankCase, lowrank_cases, skew_generators, spectra, step_sizes, tolerances

ALL_METHODS = sorted(lc.METHODS)
SYMMETRIC_METHODS = ["bug", "ra-bug", "parallel-bug"]

# Backward error of one step: a fixed number of Householder QRs, SVDs and products of
# orthonormal factors, each with error <= c k eps (Higham, Thm 19.4); c_step = 20 covers the
# longest chain (abc-PSI: QR, SVD, two products) with margin.
C_STEP = 20


# ---------------------------------------------------------------------- problem and method
@st.composite
def step_examples(draw):
    case = draw(lowrank_cases())
    W1 = draw(skew_generators(case.m, complex_=case.complex_))
    W2 = draw(skew_generators(case.n, complex_=case.complex_))
    h = draw(step_sizes(1e-2, 0.5))
    tol = draw(st.none() | tolerances(1e-8, 1e-2))
    min_rank = draw(st.integers(1, 2 * case.r))
    max_rank = draw(st.none() | st.integers(min_rank, 2 * case.r))
    return case, (W1, W2), h, {"tol": tol, "min_rank": min_rank, "max_rank": max_rank}


def linear_problem(xp, case: LowRankCase, W1, W2, *, transpose=False):
    """``F(Y) = A Y + Y B^T + C`` in ``xp``; ``transpose`` gives ``G(Z) = F(Z^H)^H``."""
    rng = case.rng(salt=1)
    cplx = case.complex_

    def g(*shape):
        return rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if cplx else 0)

    A = W1 + g(case.m, case.m) / (2 * np.sqrt(case.m))
    B = W2 + g(case.n, case.n) / (2 * np.sqrt(case.n))
    Cu, Cv = random_orthonormal(rng, case.m, 2, cplx), random_orthonormal(rng, case.n, 2, cplx)
    Cs = np.diag([0.5, 0.25]).astype(Cu.dtype)
    if transpose:  # (A Z^H + Z^H B^T + C)^H = conj(B) Z + Z conj(A)^T + C^H
        A, B, (Cu, Cs, Cv) = B.conj(), A.conj(), (Cv, Cs.conj().T, Cu)
    dt = getattr(xp, case.dtype)
    C = lc.LowRank(*(xp.asarray(x, dtype=dt) for x in (Cu, Cs, Cv)))
    return lc.LinearMatrixODE(xp.asarray(A, dtype=dt), xp.asarray(B, dtype=dt), C)


def make_method(name, options=None, kit=lc.integrators.StepKit):
    """Method ``name`` with RK4 substeps (and ``options`` if it is rank adaptive), its steps
    built from the kit class ``kit`` (the planted-bug tests pass a subclass)."""
    cls = lc.METHODS[name]
    if cls.rank_adaptive and options:
        return cls(substep="rk4", kit=kit, **options)
    return cls(substep="rk4", kit=kit)


def step_scale(case: LowRankCase, h: float, W1, W2) -> float:
    """``1 + h ||F||``-type growth of the step: bounds how much the step magnifies round-off."""
    return 1.0 + h * (np.linalg.norm(W1, 2) + np.linalg.norm(W2, 2) + 2.0)


# ---------------------------------------------------------------------- checks
def check_orthonormal_and_rank(Y1, case: LowRankCase, method):
    """``||Q^H Q - I||_max <= C_STEP max(m, n) eps`` for ``Q = U1, V1``; rank within its bounds."""
    bound = C_STEP * max(case.m, case.n) * case.eps()
    for Q in (to_numpy(Y1.U), to_numpy(Y1.V)):
        k = Q.shape[-1]
        defect = np.max(np.abs(np.swapaxes(Q, -1, -2).conj() @ Q - np.eye(k)))
        assert defect <= bound, f"orthonormality defect {defect:.3g} > {bound:.3g}"
    if method.rank_adaptive:
        tr = method.truncation
        p = 2 * case.r
        upper = p if tr.max_rank is None else min(tr.max_rank, p)
        assert min(tr.min_rank, p) <= Y1.rank <= upper, (Y1.rank, tr)
    else:
        assert Y1.rank == case.r
    assert np.all(np.isfinite(to_numpy(Y1.S)))


def check_zero_rhs(xp, case: LowRankCase, method, h):
    """``F = 0``: every substep is the identity, QR/SVD re-factor the same matrix, so
    ``||Y1 - Y0|| <= C_STEP max(m, n) eps ||Y0||`` (per batch member)."""
    Y0 = case.state(xp)
    Y1 = one_step(method, lc.MatrixODE(lambda t, Y: 0 * Y), 0.0, h, Y0)
    d0, d1 = dense(Y0), dense(Y1)
    err = np.linalg.norm(d1 - d0, axis=(-2, -1))
    assert np.all(err <= C_STEP * max(case.m, case.n) * case.eps() * np.linalg.norm(d0, axis=(-2, -1))), err


def _rotated(case: LowRankCase, factors):
    """``(U Q, Q^H S P, V P)`` with random unitary ``Q``, ``P``: the same matrix, other factors."""
    rng = case.rng(salt=2)
    U, S, V = factors
    Q = random_orthonormal(rng, case.r, case.r, case.complex_)
    P = random_orthonormal(rng, case.r, case.r, case.complex_)
    return U @ Q, Q.conj().T @ S @ P, V @ P


def _close(a, b, case, amplification, scale):
    """``||a - b|| <= C_STEP max(m, n) eps * amplification * scale * ||a||`` per batch member."""
    err = np.linalg.norm(a - b, axis=(-2, -1))
    bound = C_STEP * max(case.m, case.n) * case.eps() * amplification * scale * np.linalg.norm(a, axis=(-2, -1))
    assert np.all(err <= bound), (err, bound)


def check_basis_equivariance(xp, case: LowRankCase, W1, W2, h, method):
    """Two factorizations of ``Y0`` give the same ``Y1`` up to round-off, which the step
    magnifies by at most its growth ``1 + h ||F||`` and, where a truncation cuts between
    ``s_r1`` and ``s_r1+1``, by ``s_1 / (s_r1 - s_r1+1)`` (Wedin's theorem), recorded from
    both runs."""
    problem = linear_problem(xp, case, W1, W2)
    factors = case.factors()
    method, records = record_truncations(method)
    Ya = one_step(method, problem, 0.0, h, case.state(xp, factors))
    Yb = one_step(method, problem, 0.0, h, case.state(xp, _rotated(case, factors)))
    amplification = truncation_condition(records)
    _close(dense(Ya), dense(Yb), case, amplification, step_scale(case, h, W1, W2))


def check_transposition_equivariance(xp, case: LowRankCase, W1, W2, h, method):
    """For a method with symmetric K and L roles, step(G, Y0^H) = step(F, Y0)^H, with the
    round-off magnification of :func:`check_basis_equivariance`."""
    U, S, V = case.factors()
    method, records = record_truncations(method)
    Y1 = one_step(method, linear_problem(xp, case, W1, W2), 0.0, h, case.state(xp, (U, S, V)))
    Z0 = case.state(xp, (V, np.swapaxes(S, -1, -2).conj(), U))
    Z1 = one_step(method, linear_problem(xp, case, W1, W2, transpose=True), 0.0, h, Z0)
    amplification = truncation_condition(records)
    _close(dense(Y1), np.swapaxes(dense(Z1), -1, -2).conj(), case, amplification, step_scale(case, h, W1, W2))


# ---------------------------------------------------------------------- properties
@pytest.mark.parametrize("name", ALL_METHODS)
@given(example=step_examples())
def test_step_keeps_orthonormal_bases_and_rank_bounds(xp, name, example):
    case, (W1, W2), h, options = example
    method = make_method(name, options)
    Y1 = one_step(method, linear_problem(xp, case, W1, W2), 0.0, h, case.state(xp))
    assert type(Y1.U) is type(case.state(xp).U)
    assert Y1.dtype == getattr(xp, case.dtype)
    assert Y1.batch_shape == case.batch
    check_orthonormal_and_rank(Y1, case, method)


@pytest.mark.parametrize("name", ALL_METHODS)
@given(example=step_examples())
def test_zero_rhs_leaves_y_unchanged(xp, name, example):
    case, _, h, _ = example
    check_zero_rhs(xp, case, make_method(name), h)


@pytest.mark.parametrize("name", ALL_METHODS)
@given(example=step_examples())
def test_step_is_equivariant_under_change_of_basis(xp, name, example):
    case, (W1, W2), h, options = example
    check_basis_equivariance(xp, case, W1, W2, h, make_method(name, options))


@pytest.mark.parametrize("name", SYMMETRIC_METHODS)
@given(example=step_examples())
def test_bug_family_is_equivariant_under_transposition(xp, name, example):
    case, (W1, W2), h, options = example
    check_transposition_equivariance(xp, case, W1, W2, h, make_method(name, options))


# ---------------------------------------------------------------------- planted bugs
def _planted_case(dtype="float64"):
    case = LowRankCase(m=10, n=8, r=3, dtype=dtype, batch=(), sigma=np.array([1.0, 0.6, 0.3]), seed=7)
    rng = np.random.default_rng(3)
    return case, random_skew(rng, 10, 1.0, case.complex_), random_skew(rng, 8, 1.0, case.complex_)


class NormaliseOnlyKit(lc.integrators.StepKit):
    """The planted bug: a thin QR that only normalises the columns."""

    def qr(self, X):
        xp = self.xp
        norms = xp.sqrt(xp.sum(xp.abs(X) ** 2, axis=-2))
        return X / norms[..., None, :], norms[..., :, None] * xp.eye(X.shape[-1], dtype=X.dtype)


class UnclampedKit(lc.integrators.StepKit):
    """The planted bug: the truncation forgets ``max_rank``."""

    def truncate(self, truncation, left, u, s, v, right, rank_in):
        unclamped = dataclasses.replace(truncation, max_rank=None)
        return super().truncate(unclamped, left, u, s, v, right, rank_in)


class TransposeKit(lc.integrators.StepKit):
    """The planted bug: ``X^T`` where ``X^H`` is meant."""

    def ch(self, X):
        return self.xp.matrix_transpose(X)


class ElementwiseProjectKit(lc.integrators.StepKit):
    """The planted bug: the backward correction as an elementwise product."""

    def project(self, Y0, U, V=None):
        return (self.ch(U) @ Y0.U) * Y0.S


class UnconjugatedLStartKit(lc.integrators.StepKit):
    """The planted bug: the L-step starts from ``V0 S0`` instead of ``V0 S0^H``."""

    def kl_steps(self, t0, t1, Y0):
        F0 = self.evaluate(t0, Y0)
        K1 = self.k_step(t0, t1, Y0.U @ Y0.S, Y0.V, first=F0)
        L1 = self.l_step(t0, t1, Y0.V @ Y0.S, Y0.U, first=F0)  # bug: S0 instead of S0^H
        return K1, L1, F0


def test_orthonormality_catches_a_missing_reorthonormalization(np_xp):
    """Planted bug: the thin QR of the step kit only normalises the columns (Gram-Schmidt
    forgotten); ``Q R = X`` still holds, but ``U1`` is not orthonormal."""

    case, W1, W2 = _planted_case()
    problem = linear_problem(np_xp, case, W1, W2)
    check_orthonormal_and_rank(one_step(make_method("bc-psi"), problem, 0.0, 0.3, case.state(np_xp)), case, lc.BCPSI())
    Y1 = one_step(make_method("bc-psi", kit=NormaliseOnlyKit), problem, 0.0, 0.3, case.state(np_xp))
    with pytest.raises(AssertionError, match="orthonormality defect"):
        check_orthonormal_and_rank(Y1, case, lc.BCPSI())


def test_rank_bound_catches_a_dropped_max_rank_clamp(np_xp):
    """Planted bug: the rank rule forgets to clamp the wanted rank to ``max_rank``."""

    case, W1, W2 = _planted_case()
    method = make_method("ra-bug", {"tol": 1e-12, "max_rank": 4})
    problem = linear_problem(np_xp, case, W1, W2)
    check_orthonormal_and_rank(one_step(method, problem, 0.0, 0.3, case.state(np_xp)), case, method)
    Y1 = one_step(dataclasses.replace(method, kit=UnclampedKit), problem, 0.0, 0.3, case.state(np_xp))
    with pytest.raises(AssertionError):
        check_orthonormal_and_rank(Y1, case, method)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_zero_rhs_catches_transpose_instead_of_conjugate_transpose(np_xp, name):
    """Planted bug: ``X^T`` where ``X^H`` is meant (the ``^T`` of the papers read literally
    for complex problems) in the step kit; with ``F = 0`` ``Y`` must not move, and does."""
    case, _, _ = _planted_case("complex128")
    check_zero_rhs(np_xp, case, make_method(name), 0.1)
    with pytest.raises(AssertionError):
        check_zero_rhs(np_xp, case, make_method(name, kit=TransposeKit), 0.1)


def test_basis_equivariance_catches_an_elementwise_backward_correction(np_xp):
    """Planted bug: the backward correction ``(U1^H U0) * S0`` written as an elementwise
    product, as in the public MNIST layer of paper 1 (methods.md §2.3, 'code caveat').
    It depends on the factors, not only on ``Y0``."""
    case, W1, W2 = _planted_case()
    check_basis_equivariance(np_xp, case, W1, W2, 0.2, make_method("bc-psi"))
    with pytest.raises(AssertionError):
        check_basis_equivariance(np_xp, case, W1, W2, 0.2, make_method("bc-psi", kit=ElementwiseProjectKit))


@pytest.mark.parametrize("name", SYMMETRIC_METHODS)
def test_transposition_catches_an_unconjugated_l_start(np_xp, name):
    """Planted bug: the L-step of the BUG family starts from ``V0 S0`` instead of
    ``V0 S0^H`` (a missing transpose that is invisible for a diagonal core)."""
    case, W1, W2 = _planted_case()
    check_transposition_equivariance(np_xp, case, W1, W2, 0.2, make_method(name))
    with pytest.raises(AssertionError):
        check_transposition_equivariance(np_xp, case, W1, W2, 0.2, make_method(name, kit=UnconjugatedLStartKit))


def test_strategies_cover_the_spectrum_kinds():
    """The spectra strategy yields every kind (separated, graded, nearly deficient)."""
    seen = set()

    @given(sigma=spectra(4))
    def collect(sigma):
        assert np.all(np.diff(sigma) <= 0)
        assert sigma[0] == 1.0
        assert sigma[-1] > 0
        if sigma[-1] <= 1e-6:
            seen.add("nearly_deficient")
        else:
            seen.add("graded" if np.allclose(sigma[1:] / sigma[:-1], sigma[1]) else "separated")

    collect()
    assert seen == {"separated", "graded", "nearly_deficient"}

