"""Gradient flows: descent of abc-PSI and convergence to the Eckart-Young optimum (methods.md §4.5-4.6)."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc


def _quadratic(seed=0, m=60, n=40):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, n)))[0]
    V = np.linalg.qr(rng.standard_normal((n, n)))[0]
    sig = 10.0 * 2.0 ** (-np.arange(n) / 3)
    B = U @ np.diag(sig) @ V.T
    Y0 = lc.LowRank.from_dense(0.01 * rng.standard_normal((m, n)), rank=5)
    return B, sig, Y0


def _loss(Y, B):
    return 0.5 * np.linalg.norm(Y.to_dense() - B) ** 2


@pytest.mark.parametrize("h", [0.25, 0.5, 1.0])
def test_abc_psi_descends_and_reaches_eckart_young(h):
    """L(W) = ½||W - B||² is 1-smooth, so for h <= 1 the augmented (pre-truncation)
    point satisfies L(Y½) <= L(Y0) - h(1 - h/2)||P(Y0) G||² (methods.md §4.5); the
    truncation back to rank r adds at most B δ_tr + δ_tr²/2, which the descent term
    dominates on this problem, so the loss must fall in every step (checked up to
    1e-12 relative round-off).  The only local minimum on M_r is the Eckart-Young
    truncation of B, so the loss converges to ½ Σ_{j>r} σ_j² (T = 40: the error decays
    like the subspace gap (σ_6/σ_5)^k, far below the 1e-8 tolerance)."""
    B, sig, Y0 = _quadratic()
    problem = lc.MatrixODE(lambda t, Y: B - Y)
    sol = lc.solve(problem, Y0, (0.0, 40.0), h, method="abc-psi", substep="euler")
    losses = np.array([_loss(Y, B) for Y in sol.Ys])
    assert np.all(np.diff(losses) <= 1e-12 * losses[:-1]), np.diff(losses).max()
    optimum = 0.5 * np.sum(sig[5:] ** 2)
    assert losses[-1] == pytest.approx(optimum, rel=1e-8)
    assert sol.stats["rhs_evals"] == sol.stats["steps"]  # one gradient per step


def test_psi_backward_s_step_ascends():
    """The contrast: KSL's backward S-substep is a gradient-ascent step and raises the
    loss in some steps (methods.md §4.5), which abc-PSI avoids by construction."""
    B, _, Y = _quadratic(seed=1)
    problem = lc.MatrixODE(lambda t, Y: B - Y)
    method = lc.KSL(substep="euler")
    h, ascents = 0.5, 0
    for k in range(40):
        kit = method.kit(problem, Y, lc.Counters())
        U1, S_hat = kit.qr(kit.k_step(k * h, (k + 1) * h, Y.U @ Y.S, Y.V))
        S_tilde = kit.s_step(k * h, (k + 1) * h, S_hat, U1, Y.V, sign=-1.0)
        ascents += _loss(lc.LowRank._trusted(U1, S_tilde, Y.V, Y.xp), B) > _loss(lc.LowRank._trusted(U1, S_hat, Y.V, Y.xp), B)
        Y, _ = method.step(problem, k * h, (k + 1) * h, Y, None, lc.Counters())
    assert ascents > 0


@pytest.mark.parametrize("variant", ["min-qr", "two-qr"])
def test_rank_adaptive_abc_psi_grows_rank_to_meet_tolerance(variant):
    """With tol = theta, abc-PSI can raise the rank up to 2r per step (the augmented basis
    [K1, U0] has 2r columns), so on the gradient flow towards a rank-6 target started at
    rank 2 it reaches rank 6 and drives the loss to the truncation floor O(theta²)."""
    rng = np.random.default_rng(3)
    m, n = 30, 20
    B = lc.LowRank.from_dense(rng.standard_normal((m, n)), rank=6).to_dense()
    Y0 = lc.LowRank.from_dense(rng.standard_normal((m, n)), rank=2)
    problem = lc.MatrixODE(lambda t, Y: B - Y)
    sol = lc.solve(problem, Y0, (0.0, 30.0), 1.0, method="abc-psi", substep="euler", tol=1e-8, variant=variant)
    assert sol.ranks[-1] == 6 and max(sol.ranks) == 6
    assert _loss(sol.Y, B) < 1e-12


def test_dropped_augmentation_is_caught():
    """A planted bug: abc-PSI without U0 in the augmented basis (Û = orth(K1), the
    'dropped augmentation columns') cannot grow the rank, so the rank-adaptivity
    property above fails for it."""

    class NoAugment(lc.ABCPSI):
        def step(self, problem, t0, t1, Y0, state, counters):
            kit = self.kit(problem, Y0, counters)
            K1 = kit.k_step(t0, t1, Y0.U @ Y0.S, Y0.V)
            U_hat, _ = kit.qr(K1)  # bug: should be kit.augment(K1, Y0.U)
            S_hat = (kit.ch(U_hat) @ Y0.U) @ Y0.S
            L1 = kit.l_step(t0, t1, Y0.V @ kit.ch(S_hat), U_hat)
            Q, s, P = kit.svd(L1)
            return kit.truncate(self.truncation, U_hat, P, s, Q, None, Y0.rank), state

    rng = np.random.default_rng(3)
    m, n = 30, 20
    B = lc.LowRank.from_dense(rng.standard_normal((m, n)), rank=6).to_dense()
    Y0 = lc.LowRank.from_dense(rng.standard_normal((m, n)), rank=2)
    problem = lc.MatrixODE(lambda t, Y: B - Y)
    sol = lc.solve(problem, Y0, (0.0, 30.0), 1.0, method=NoAugment(substep="euler", tol=1e-8))
    assert sol.ranks[-1] < 6 and _loss(sol.Y, B) > 1e-3
