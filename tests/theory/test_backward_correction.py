"""Local consistency of the backward correction (methods.md §2.3, §4.8).

Hypotheses: one step from a drawn state (separated or graded spectrum, general core) of
the nonlinear problem ``F(t, Y) = A Y - Y Y^H Y + cos(t) G`` (``A`` = skew generator plus a
general part, so ``F`` is Lipschitz with constant ``L_F`` and bounded by ``B`` near
``Y0``), explicit Euler substeps.

Conclusions:

* BC-PSI replaces the backward S-step of KSL by the projection ``(U1^H U0) S0``; the two
  differ by ``h U1^H [F(Y0) - F(U1 Ŝ1 V0^H)] V0``, of norm ``<= h L ||U1 Ŝ1 V0^H - Y0||
  <= h^2 L ||F(Y0)||`` (``L`` the Lipschitz constant of ``F`` near ``Y0``), and the Euler
  L-steps that follow magnify a difference of their starts by at most ``1 + h L``:
  ``||Y1^BC - Y1^KSL|| <= (1 + h L) h^2 L ||F(Y0)||`` for ``h = 0.04 ... 0.005``.
* For ``Y``-independent ``F`` with exact increments the backward S-step is solved exactly
  and equals the projection, so BC-PSI and KSL coincide to round-off.

Both properties run on every backend and with stacked batches (per-member differences).
The ``O(h^2)`` property draws float64 and complex128 only: in float32 the round-off of a
step (``20 max(m, n) eps ~ 3e-5``) is as large as ``h^2 = 2.5e-5`` at ``h = 0.005``, so the
check could not see the order at the small ``h``; the exact-increment property is a round-off check and draws
every dtype.  The planted bug runs unbatched on NumPy: it patches the backend-independent
step kit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_core as lc

from .._helpers import dense, random_orthonormal, random_skew
from ._problems import one_step, spectral_path
from .strategies import LowRankCase, lowrank_cases, scaled, skew_generators

HS = [0.04, 0.02, 0.01, 0.005]


@st.composite
def nonlinear_steps(draw):
    case = draw(lowrank_cases(dtypes=("float64", "complex128"), kinds=("separated", "graded"), batches=((), (2,))))
    W = draw(skew_generators(case.m, complex_=case.complex_, norm=(0.1, 2.0)))
    return case, W


def nonlinear_data(case: LowRankCase, W):
    """NumPy ``A`` (generator plus a general part) and ``G`` (``||G||_2 = 1``)."""
    rng = case.rng(salt=3)
    cplx = case.complex_
    A = W + rng.standard_normal((case.m, case.m)) / (2 * math.sqrt(case.m))
    k = min(case.m, case.n)  # G = P Q^H with orthonormal P, Q: ||G||_2 = 1
    G = random_orthonormal(rng, case.m, k, cplx) @ random_orthonormal(rng, case.n, k, cplx).conj().T
    return A, G


def nonlinear_problem(xp, case: LowRankCase, W):
    A, G = nonlinear_data(case, W)
    dt = getattr(xp, case.dtype)
    A, G = xp.asarray(A, dtype=dt), xp.asarray(G, dtype=dt)
    cplx = case.complex_

    def f(t, Y):
        YH = xp.conj(xp.matrix_transpose(Y)) if cplx else xp.matrix_transpose(Y)
        return A @ Y - Y @ (YH @ Y) + math.cos(t) * G

    return lc.MatrixODE(f)


def local_bound(case: LowRankCase, W, h):
    """``(1 + h L) h^2 L ||F(Y0)||_F``, the bound of the module docstring.

    ``L = ||A||_2 + 3 rho^2`` is the Lipschitz constant of ``F`` on matrices of spectral norm
    ``<= rho``; every point of the two steps is within ``2 h ||F(Y0)||`` of ``Y0``, so
    ``rho = ||Y0||_2 + 2 h ||F(Y0)||_2`` (the worst batch member).
    """
    A, G = nonlinear_data(case, W)
    U, S, V = case.factors()
    Y0 = U @ S @ np.swapaxes(V, -1, -2).conj()
    F0 = A @ Y0 - Y0 @ np.swapaxes(Y0, -1, -2).conj() @ Y0 + G
    rho = np.max(np.linalg.norm(Y0, 2, axis=(-2, -1)) + 2 * h * np.linalg.norm(F0, 2, axis=(-2, -1)))
    L = np.linalg.norm(A, 2) + 3 * rho**2
    return (1 + h * L) * h**2 * L * np.max(np.linalg.norm(F0, axis=(-2, -1)))


def check_second_order_difference(xp, case: LowRankCase, W, kit=lc.integrators.StepKit):
    problem = nonlinear_problem(xp, case, W)
    for h in HS:
        Y0 = case.state(xp)
        bc = one_step(lc.BCPSI(substep="euler", kit=kit), problem, 0.0, h, Y0)
        ksl = one_step(lc.KSL(substep="euler", kit=kit), problem, 0.0, h, Y0)
        diff = float(np.max(np.linalg.norm(dense(bc) - dense(ksl), axis=(-2, -1))))
        roundoff = 20 * max(case.m, case.n) * case.eps()
        assert diff <= local_bound(case, W, h) + roundoff, (h, diff, local_bound(case, W, h))


@scaled(0.5)
@given(example=nonlinear_steps())
def test_backward_correction_differs_from_ksl_by_h_squared(xp, example):
    case, W = example
    check_second_order_difference(xp, case, W)


@scaled(0.5)
@given(case=lowrank_cases(), h=st.sampled_from([0.05, 0.2, 0.5]))
def test_backward_correction_equals_ksl_for_given_increments(xp, case, h):
    """``F = dA/dt`` independent of ``Y``: the two steps agree to ``20 max(m, n) eps`` relative
    (one backward-stable step each, as in test_invariants)."""
    rng = case.rng(salt=4)
    W1, W2 = random_skew(rng, case.m, 1.0, case.complex_), random_skew(rng, case.n, 1.0, case.complex_)
    problem, Y0, _ = spectral_path(xp, case.dtype, W1, W2, case.factors(), growth=1.0)
    bc = dense(one_step(lc.BCPSI(substep="exact"), problem, 0.0, h, Y0))
    ksl = dense(one_step(lc.KSL(substep="exact"), problem, 0.0, h, Y0))
    err = np.linalg.norm(bc - ksl, axis=(-2, -1))
    assert np.all(err <= 20 * max(case.m, case.n) * case.eps() * np.linalg.norm(ksl, axis=(-2, -1)))


class TransposedOverlapKit(lc.integrators.StepKit):
    """The planted bug: ``project`` with the overlap the wrong way round."""

    def project(self, Y0, U, V=None):
        return (self.ch(Y0.U) @ U) @ Y0.S


def test_local_order_catches_a_transposed_overlap(np_xp):
    """Planted bug: the backward correction written with the overlap the wrong way round,
    ``(U0^H U1) S0`` instead of ``(U1^H U0) S0``.  Both are ``S0 + O(h)``, so the step is
    still consistent, but the difference to KSL is only ``O(h)`` and exceeds the
    ``O(h^2)`` bound at small ``h``."""
    case = LowRankCase(m=12, n=9, r=3, dtype="float64", batch=(), sigma=np.array([1.0, 0.6, 0.3]), seed=11)
    W = random_skew(np.random.default_rng(1), 12, 1.0)
    check_second_order_difference(np_xp, case, W)
    with pytest.raises(AssertionError):
        check_second_order_difference(np_xp, case, W, kit=TransposedOverlapKit)
