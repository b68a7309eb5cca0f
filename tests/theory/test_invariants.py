"""Invariants of every step, for every integrator, on inputs drawn by hypothesis.

Properties (methods.md §1, §4): after one step U and V have orthonormal columns, the
rank lies in [min_rank, max_rank] (at most 2r for augmented methods), F = 0 leaves Y
unchanged, and the result does not depend on the choice of factors: replacing
U -> U Q, S -> Q^H S P, V -> V P with unitary Q, P represents the same Y0 and must give
the same Y1.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_core as lc

from .._helpers import random_orthonormal

ALL_METHODS = sorted(lc.METHODS)


@st.composite
def step_inputs(draw):
    """(m, n, r, complex?, seed, h) with r <= min(m, n) // 2 so that 2r fits."""
    m = draw(st.integers(4, 14))
    n = draw(st.integers(4, 14))
    r = draw(st.integers(1, min(m, n) // 2))
    cplx = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    h = draw(st.sampled_from([0.01, 0.1, 0.5]))
    return m, n, r, cplx, seed, h


def _state_and_problem(m, n, r, cplx, seed):
    rng = np.random.default_rng(seed)
    U = random_orthonormal(rng, m, r, cplx)
    V = random_orthonormal(rng, n, r, cplx)
    # singular values in [0.1, 1]: well-conditioned, so round-off stays ~eps
    S = np.diag(rng.uniform(0.1, 1.0, r)).astype(U.dtype)
    g = lambda *s: rng.standard_normal(s) + (1j * rng.standard_normal(s) if cplx else 0)  # noqa: E731
    A, B, G = g(m, m) / np.sqrt(m), g(n, n) / np.sqrt(n), g(m, n) / 4
    problem = lc.LinearMatrixODE(A, B, lc.LowRank.from_dense(G, rank=min(2, m, n)))
    return lc.LowRank(U, S, V), problem, rng


def _method(name):
    cls = lc.METHODS[name]
    return cls(substep="rk4")


@pytest.mark.parametrize("name", ALL_METHODS)
@given(args=step_inputs())
def test_step_keeps_orthonormal_bases_and_rank_bounds(name, args):
    """U^H U = I and V^H V = I to c m eps (Householder QR and SVD are backward stable);
    fixed-rank methods keep r, augmented ones stay within [1, min(2r, m, n)]."""
    m, n, r, cplx, seed, h = args
    Y0, problem, _ = _state_and_problem(m, n, r, cplx, seed)
    method = _method(name)
    Y1, _ = method.step(problem, 0.0, h, Y0, method.init(problem, 0.0, Y0), lc.Counters())
    eps = np.finfo(float).eps
    for Q in (Y1.U, Y1.V):
        k = Q.shape[-1]
        assert np.max(np.abs(Q.conj().T @ Q - np.eye(k))) <= 100 * max(m, n) * eps
    if method.rank_adaptive:
        assert 1 <= Y1.rank <= min(2 * r, m, n)
    else:
        assert Y1.rank == r
    assert np.all(np.isfinite(Y1.S))


@pytest.mark.parametrize("name", ALL_METHODS)
@given(args=step_inputs())
def test_zero_rhs_leaves_y_unchanged(name, args):
    m, n, r, cplx, seed, h = args
    Y0, _, _ = _state_and_problem(m, n, r, cplx, seed)
    zero = lc.MatrixODE(lambda t, Y: 0 * Y)
    Y1, _ = _method(name).step(zero, 0.0, h, Y0, None, lc.Counters())
    Y0d = Y0.to_dense()
    assert np.linalg.norm(Y1.to_dense() - Y0d) <= 100 * max(m, n) * np.finfo(float).eps * np.linalg.norm(Y0d)


@pytest.mark.parametrize("name", ALL_METHODS)
@given(args=step_inputs())
def test_step_is_independent_of_the_factorization(name, args):
    """Y1 depends on Y0 only, not on its factors: (U Q, Q^H S P, V P) gives the same Y1.
    With sigma(S) in [0.1, 1] the step is well conditioned, so the two results agree to
    1e3 eps relative."""
    m, n, r, cplx, seed, h = args
    Y0, problem, rng = _state_and_problem(m, n, r, cplx, seed)
    Q = random_orthonormal(rng, r, r, cplx)
    P = random_orthonormal(rng, r, r, cplx)
    Y0b = lc.LowRank(Y0.U @ Q, Q.conj().T @ Y0.S @ P, Y0.V @ P)
    method = _method(name)
    Ya, _ = method.step(problem, 0.0, h, Y0, None, lc.Counters())
    Yb, _ = method.step(problem, 0.0, h, Y0b, None, lc.Counters())
    da, db = Ya.to_dense(), Yb.to_dense()
    assert np.linalg.norm(da - db) <= 1e3 * np.finfo(float).eps * np.linalg.norm(da)


def test_orthonormality_property_catches_a_missing_reorthonormalization():
    """Planted bug: BC-PSI that normalizes K1's columns instead of taking a QR.  The
    orthonormality invariant of the first test fails for it on a generic input."""

    class NoReorth(lc.BCPSI):
        def step(self, problem, t0, t1, Y0, state, counters):
            kit = self.kit(problem, Y0, counters)
            K1 = kit.k_step(t0, t1, Y0.U @ Y0.S, Y0.V)
            U1 = K1 / np.linalg.norm(K1, axis=0)  # bug: columns normalized, not orthogonalized
            S_tilde = (kit.ch(U1) @ Y0.U) @ Y0.S
            L1 = kit.l_step(t0, t1, Y0.V @ kit.ch(S_tilde), U1)
            V1, R = kit.qr(L1)
            return lc.LowRank._trusted(U1, kit.ch(R), V1, Y0.xp), state

    Y0, problem, _ = _state_and_problem(10, 8, 3, False, 1)
    Y1, _ = NoReorth(substep="rk4").step(problem, 0.0, 0.5, Y0, None, lc.Counters())
    defect = np.max(np.abs(Y1.U.T @ Y1.U - np.eye(3)))
    assert defect > 100 * 10 * np.finfo(float).eps
