"""Properties that catch four bugs the rest of the suite let through (issue 21, "What slips through").

Each property below was checked by planting its bug in the library file by hand (in a
checkout of the library at this revision), running this module, and restoring the file
(``git checkout -- <file>``); the docstring of each test says what the failure looked like.

* (a) :func:`test_stacked_rtol_decides_the_rank_per_member` -- a relative truncation
  tolerance ``theta = tol + rtol ||Y||`` is computed per member of a stack, not over the
  whole stack (``lowrank_core/_truncation.py``, ``Truncation.theta``).
* (b) :func:`test_parallel_bug_rejects_exactly_the_steps_its_criterion_names` -- parallel
  BUG with ``reject=True`` rejects a step whose neglected block is above the tolerance, and
  only such a step (``lowrank_core/integrators/bug.py``, ``ParallelBUG._rejected``).
* (c) :func:`test_adam_first_steps_match_hand_written_adam_with_bias_correction` -- the
  first steps of low-rank Adam are Adam with bias correction on the tangent coordinates
  (``lowrank_core/training/_optimizers.py``, ``Adam._direction``).
* (d) :func:`test_euler_substep_evaluates_f_at_the_start_of_the_step` -- an Euler substep
  evaluates ``F`` at ``t0`` (``lowrank_core/_substep.py``, ``Euler.solve``).

Everything runs on NumPy in float64 (and float32 for (d)): the four bugs sit in
backend-independent code, and the properties are sized to take well under a second each.
"""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.training import Adam

from .._helpers import dense, eps_of, random_orthonormal, random_skew
from ._problems import spectral_path

# ---------------------------------------------------------------------------------------- (a)
N_A, R0_A, H_A, T_A, RTOL_A = 30, 16, 0.1, 0.5, 1e-4


def _graded_members(rng):
    """Two full-rank ``N x N`` members with very different norms *and* rank needs.

    Member 0: ``sigma_j = 1e3 * 10^-j`` (norm 1e3, fast decay: needs rank ~4 at
    ``rtol = 1e-4``).  Member 1: ``sigma_j = 2^-j`` (norm ~1.15, slow decay: needs rank ~14).
    The small member sets the shared rank -- the case a stack-wide norm gets wrong.
    """
    j = np.arange(N_A, dtype=float)
    spectra = (1e3 * 10.0**-j, 2.0**-j)
    return [(random_orthonormal(rng, N_A, N_A), np.diag(s), random_orthonormal(rng, N_A, N_A)) for s in spectra]


def _truncated(factors, r):
    P, S, Q = factors
    return P[:, :r], S[:r, :r], Q[:, :r]


@pytest.mark.parametrize("rule", ["tail", "threshold"])
@pytest.mark.parametrize("method", ["abc-psi", "ra-bug", "parallel-bug"])
def test_stacked_rtol_decides_the_rank_per_member(np_xp, method, rule):
    r"""A stacked rank-adaptive solve with ``rtol`` decides each member's rank by its own ``||Y||``.

    Property (``_truncation.py``: members of a stack share one rank, the largest any member
    needs): for a stack of two independent paths ``A_i(t) = e^t e^{t W1} A_i e^{-t W2}``, one of
    norm ~1e3 with a fast-decaying spectrum and one of norm ~1 with a slowly decaying one,

    * after every step the stack's rank equals the larger of the ranks of the two separate
      solves of the members (``sol.step_ranks``, step by step);
    * the member that needs the larger rank (here the small one, every step) then runs the
      same computation as its separate solve, so the two agree to round-off.

    Tolerance of the second check: both runs do the same arithmetic on the same data and
    differ only by the rounding of batched versus unbatched decompositions (``<= N eps`` per
    step relative to ``||A||``); a truncation amplifies a perturbation of the core by at most
    its condition ``s_1 / (s_r - s_{r+1}) = 2^{r+1}`` for the spectrum ``2^-j`` (Wedin), so
    ``10 * steps * N * eps * 2^{r+1}`` bounds the relative difference (about 1e-7; measured
    0 to 1e-15).  With a stack-wide norm the small member's theta is ~1e3 times too large and
    it would be truncated to rank ~4: a relative change of ``~2^-4``, far above that.

    ``rtol = 1e-4``: the two members' rank needs (~4 and ~14) are far apart, and the small
    member's theta (~1e-4) is ten orders above float64 round-off of the path.

    Guards against (a): ``theta`` computed with the norm over the whole stack instead of per
    member (planted in ``Truncation.theta`` as ``xp.sqrt(xp.sum(s * s))``, a sum over all
    axes).  Planted, all three methods failed the first check: the stack's ranks were
    ``[16, 4, 4, 4, 4, 4]`` for abc-psi and ra-bug (the big member's own ranks) against
    ``max = [16, 14, 14, 14, 14, 14]`` from the separate solves, and ``[16, 6, 7, 7, 7, 7]``
    against ``[16, 16, 17, 17, 16, 16]`` for parallel-bug.  The same property holds for
    the singular-value threshold rule (``truncation_rule="threshold"``, relative to each
    member's ``sigma_1``).
    """
    xp = np_xp
    rng = np.random.default_rng(21)
    W1, W2 = random_skew(rng, N_A, 0.5), random_skew(rng, N_A, 0.5)
    members = _graded_members(rng)
    stacked_factors = tuple(np.stack(x) for x in zip(*members, strict=True))
    problem, _, A = spectral_path(xp, "float64", W1, W2, stacked_factors, growth=1.0)
    Y0 = lc.LowRank(*(np.stack(x) for x in zip(*(_truncated(f, R0_A) for f in members), strict=True)))
    options = {"method": method, "substep": "exact", "rtol": RTOL_A, "truncation_rule": rule}
    stacked = lc.solve(problem, Y0, (0.0, T_A), H_A, **options)

    separate = []
    for factors in members:
        member_problem, _, _ = spectral_path(xp, "float64", W1, W2, factors, growth=1.0)
        separate.append(lc.solve(member_problem, lc.LowRank(*_truncated(factors, R0_A)), (0.0, T_A), H_A, **options))

    wanted = [max(ranks) for ranks in zip(*(s.step_ranks for s in separate), strict=True)]
    assert stacked.step_ranks == wanted, (stacked.step_ranks, [s.step_ranks for s in separate])
    # the design: the small member (1) needs the larger rank at every step
    assert separate[1].step_ranks == wanted, [s.step_ranks for s in separate]

    steps = len(stacked.step_ranks) - 1
    eps = eps_of("float64")
    bound = 10 * steps * N_A * eps * 2.0 ** (max(wanted) + 1)
    ref = dense(separate[1].Y)
    diff = np.linalg.norm(dense(stacked.Y)[1] - ref) / np.linalg.norm(ref)
    assert diff <= bound, (diff, bound)
    # Sanity of the set-up, not of (a): the rank-setting member follows its path to within
    # `steps` truncations of size <= rtol ||A|| plus parallel BUG's O(h) dropped block
    # (measured 6e-5 and 3e-4 relative), well inside 10 * steps * rtol.
    assert np.linalg.norm(dense(stacked.Y)[1] - A(T_A)[1]) <= 10 * steps * RTOL_A * np.linalg.norm(A(T_A)[1])


# ---------------------------------------------------------------------------------------- (b)
M_B, R_B, H_B, B_B, TOL_B = 8, 2, 0.1, 0.1, 1e-3


def _rejection_problem(xp, c, rng):
    r"""``A(t) = A0 + t B`` with ``A0 = P1 diag(1, 0.5) Q1^T`` (rank ``r = 2``) and
    ``B = b (P2 Q1^T + P1 Q2^T) + c P2 Q2^T`` (``[P1, P2]``, ``[Q1, Q2]`` orthonormal).

    One parallel-BUG step from ``Y0 = A0`` over ``h`` finds ``Ũ1 = P2``, ``Ṽ1 = Q2``; its core
    ``[[S0, h b I], [h b I, 0]]`` has ``r`` singular values ``~ S0`` and ``r`` of size
    ``~ h^2 b^2 / s_i <= 2e-4 < tol``, so the truncation keeps rank ``r < 2r`` whatever ``c``
    is; the neglected block is ``Ũ1^T ΔA Ṽ1 = h c I_r``, of norm ``h |c| sqrt(r)``.
    """
    P = random_orthonormal(rng, M_B, 2 * R_B)
    Q = random_orthonormal(rng, M_B, 2 * R_B)
    P1, P2, Q1, Q2 = P[:, :R_B], P[:, R_B:], Q[:, :R_B], Q[:, R_B:]
    S0 = np.diag([1.0, 0.5])
    A0 = P1 @ S0 @ Q1.T
    B = B_B * (P2 @ Q1.T + P1 @ Q2.T) + c * (P2 @ Q2.T)
    problem = lc.MatrixPath(lambda t: xp.asarray(A0 + t * B), dA=lambda t: xp.asarray(B))
    return problem, lc.LowRank(xp.asarray(P1), xp.asarray(S0), xp.asarray(Q1)), A0 + H_B * B


@pytest.mark.parametrize("substep", ["exact", "euler"])
def test_parallel_bug_rejects_exactly_the_steps_its_criterion_names(np_xp, substep):
    r"""Parallel BUG with ``reject=True`` rejects a step iff ``h eta > c_eta theta`` (here).

    Property (``ParallelBUG`` docstring): with ``theta`` the step's truncation tolerance and
    ``eta = ||Ũ1^H F(t0, Y0) Ṽ1||_F`` the neglected block, the step is rejected when
    ``h eta > c_eta theta`` (or when the truncation keeps all ``2r`` columns, which the
    problem of :func:`_rejection_problem` rules out).  With ``theta = tol`` and
    ``h eta = h |c| sqrt(r)`` we put the block at twice and at half the threshold:

    * at ``2 c_eta theta`` the step is rejected (``stats["rejections"] == 1``: the retry from
      the rank-``2r`` enlargement of ``Y0`` contains ``A(t1)`` in its bases, so its block is
      0) and the accepted step meets the tolerance, ``||Y1 - A(t1)||_F <= theta``;
    * at ``theta / 2`` it is accepted (``stats["rejections"] == 0``) with the block dropped,
      so its error is at most the block plus the truncation tail, ``theta / 2 + theta``.

    Factor 2 on either side: ``eta`` is a product of orthonormal factors with ``ΔA``, exact to
    ``~ M eps``, so round-off cannot move it across the threshold; the error check allows
    ``100 M eps ||A(t1)||`` of round-off on top of ``theta``.  Both substeps are exact for a
    linear path (``euler``: ``eta`` from ``F(t0) = B`` times ``h``; ``exact``: from ``ΔA``).

    Guards against (b): a rejection criterion that (almost) never fires (planted as
    ``scale * eta > 1e6 * self.c_eta * theta`` in ``ParallelBUG._rejected``, and again as
    ``return False``).  Planted, both substeps failed on the block at twice the threshold
    with ``stats["rejections"] == 0`` instead of 1 (``AssertionError: (2.0, 0)``).  The
    converse plant, a threshold ``1e-6`` times too small, failed on the block at half the
    threshold with 1 rejection instead of 0 (``AssertionError: (0.5, 1)``).
    """
    xp = np_xp
    eps = eps_of("float64")
    for factor, rejections in ((2.0, 1), (0.5, 0)):
        c = factor * TOL_B / (H_B * np.sqrt(R_B))
        problem, Y0, A1 = _rejection_problem(xp, c, np.random.default_rng(7))
        method = lc.ParallelBUG(substep=substep, tol=TOL_B, reject=True)
        sol = lc.solve(problem, Y0, (0.0, H_B), H_B, method=method)
        assert sol.stats["rejections"] == rejections, (factor, sol.stats["rejections"])
        err = np.linalg.norm(dense(sol.Y) - A1)
        if rejections:
            assert err <= TOL_B + 100 * M_B * eps * np.linalg.norm(A1), (factor, err)
        else:  # accepted: dropped block (theta / 2) plus truncation tail (<= theta)
            assert err <= (factor + 1) * TOL_B + 100 * M_B * eps * np.linalg.norm(A1), (factor, err)


# ---------------------------------------------------------------------------------------- (c)
M_C, N_C, R_C, LR_C, BETAS_C, EPS_ADAM = 12, 9, 3, 0.05, (0.8, 0.95), 1e-8


def _hand_written_adam(U, V, S, target, steps):
    r"""Adam with bias correction on the tangent coordinates at ``Y0 = U S V^T`` (NumPy).

    ``W = U S V^T + dK V^T + U dL^T``, loss ``1/2 ||W - T||_F^2`` (``G = W - T``),
    ``g = (U^T G V, (I - U U^T) G V, (I - V V^T) G^T U)``, then per coordinate
    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``d = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``, ``d_U, d_V`` projected onto the
    complements of ``U``, ``V``, and ``(S, dK, dL) -= lr d``.  Returns the coordinates after
    every step and the smallest ``|g|`` entry relative to its coordinate's largest.
    """
    b1, b2 = BETAS_C
    PU, PV = np.eye(M_C) - U @ U.T, np.eye(N_C) - V @ V.T
    x = [S.copy(), np.zeros((M_C, R_C)), np.zeros((N_C, R_C))]
    m = [np.zeros_like(a) for a in x]
    v = [np.zeros_like(a) for a in x]
    out, floor = [], np.inf
    for t in range(1, steps + 1):
        G = U @ x[0] @ V.T + x[1] @ V.T + U @ x[2].T - target
        g = [U.T @ G @ V, PU @ G @ V, PV @ G.T @ U]
        floor = min(floor, *(np.min(np.abs(gk)) / np.max(np.abs(gk)) for gk in g))
        d = []
        for k in range(3):
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            d.append((m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + EPS_ADAM))
        d[1], d[2] = PU @ d[1], PV @ d[2]
        x = [a - LR_C * dk for a, dk in zip(x, d, strict=True)]
        out.append([a.copy() for a in x])
    return out, floor


def test_adam_first_steps_match_hand_written_adam_with_bias_correction(np_xp):
    r"""The first steps of low-rank Adam are Adam with bias correction on the tangent coordinates.

    Property (``training/_optimizers.py``, ``Adam``): between two basis changes Adam runs on
    the tangent coordinates ``(S, dK, dL)`` of ``W = U0 S V0^T + dK V0^T + U0 dL^T`` with the
    Riemannian gradient ``(U0^T G V0, (I - P_U0) G V0, (I - P_V0) G^T U0)``, element-wise,
    with the bias corrections ``m / (1 - b1^t)`` and ``v / (1 - b2^t)``.  With
    ``basis_update_every = 4`` the first 3 steps stay in the basis of ``Y0``, and after each
    the tangent coordinates of the optimizer's ``W`` (``U0^T W V0``, ``(I - P_U0) W V0``,
    ``(I - P_V0) W^T U0``: independent of how the optimizer stores them) equal those of
    :func:`_hand_written_adam` on the
    loss ``1/2 ||W - T||^2``.  In particular the first step is the closed form
    ``S1 - S0 = -lr g_S / (|g_S| + eps)``, i.e. ``-lr sign(g_S)`` up to ``eps / |g_S|``, for
    any betas (checked separately).  Betas ``(0.8, 0.95)`` make the corrections of steps 2
    and 3 differ from 1 by O(1).

    Tolerance: each ``d`` entry is O(1) (``|m̂| <= sqrt(v̂)``) and is a quotient of sums of
    length ``<= max(m, n)``; round-off of the products (``max(m, n) eps ||g||_max``) is
    amplified by the quotient at most by ``||g||_max / min |g|`` (``1 / floor``, computed from
    the reference and asserted not to be tiny), so each step's coordinates agree to
    ``100 max(m, n) eps / floor`` relative to ``lr``, times the step count.

    Guards against (c): a missing bias correction (planted in ``Adam._direction`` as
    ``d.append(m / (xp.sqrt(v) + self.eps))``).  Planted, the first-step closed form failed:
    ``S1 - S0`` was ``-lr (1 - b1) / sqrt(1 - b2) sign(g_S) = -0.894 lr sign(g_S)`` for these
    betas (every entry of ``(S1 - S0) / closed_form`` was 0.894), an error of 5.3e-3 against
    a tolerance of 5.8e-12.
    """
    xp = np_xp
    rng = np.random.default_rng(3)
    Y0 = lc.LowRank.from_dense(xp.asarray(rng.standard_normal((M_C, N_C))), rank=R_C)
    target = rng.standard_normal((M_C, N_C))
    U, S, V = (np.asarray(f) for f in (Y0.U, Y0.S, Y0.V))
    steps = 3
    reference, floor = _hand_written_adam(U, V, S, target, steps)
    assert floor > 1e-6, floor  # the drawn gradients keep the quotient well conditioned
    tol = 100 * max(M_C, N_C) * eps_of("float64") / floor

    opt = Adam(LR_C, betas=BETAS_C, eps=EPS_ADAM, basis_update_every=steps + 1)
    param = opt.init(Y0)
    for k in range(steps):
        param = opt.step(param, grad=param.to_dense() - xp.asarray(target))
        # the tangent coordinates of W itself (the optimizer may store dK, dL with components
        # along U, V and S compensating; W and these coordinates are representation-free)
        W = np.asarray(param.to_dense())
        got = [U.T @ W @ V, W @ V - U @ (U.T @ W @ V), W.T @ U - V @ (V.T @ W.T @ U)]
        if k == 0:
            g_S = U.T @ (U @ S @ V.T - target) @ V
            closed_form = -LR_C * g_S / (np.abs(g_S) + EPS_ADAM)
            assert np.max(np.abs(got[0] - S - closed_form)) <= LR_C * tol, (got[0] - S) / closed_form
        for name, a, b in zip(("S", "dK", "dL"), got, reference[k], strict=True):
            err = np.max(np.abs(a - b))
            assert err <= (k + 1) * LR_C * tol, (k + 1, name, err, (k + 1) * LR_C * tol)


# ---------------------------------------------------------------------------------------- (d)
M_D, N_D, R_D = 10, 8, 3
#: every method whose Euler substeps all start at ``t0`` (Strang's half steps start at ``t0 + h/2`` by design)
EULER_EXACT_METHODS = ["ksl", "bc-psi", "abc-psi", "bug", "ra-bug", "parallel-bug"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("method", EULER_EXACT_METHODS)
def test_euler_substep_evaluates_f_at_the_start_of_the_step(np_xp, method, dtype):
    r"""One step with ``substep="euler"`` of ``F(t, Y) = t B`` is ``Y0 + h t0 B`` (explicit Euler at ``t0``).

    Property: explicit Euler evaluates ``F`` at the start of the step.  Problem: ``F(t, Y) =
    g(t) B`` with ``g(t) = t`` and ``B = C V0^T`` (row space inside that of ``Y0 = U0 S0 V0^T``),
    so ``Y0 + s B = (U0 S0 + s C) V0^T`` has rank ``r`` for all ``s`` and every substep of
    KSL, BC-PSI, abc-PSI, BUG, RA-BUG and parallel BUG is exact for it: the K-step gives
    ``K1 = (Y0 + h g(t0) B) V0`` whose range contains that of ``Y0 + h g(t0) B``, the L- and
    S-steps (from ``Y0`` or from the projected ``Y0``) add ``h g(t0)`` times the projection of
    ``B``, which is ``B`` itself, and the truncation back to rank ``r`` drops nothing.  So the
    step from ``t0 = 0.5`` to ``t1 = 0.75`` must return ``Y0 + h t0 B`` exactly, not
    ``Y0 + h t1 B`` (a difference of ``h^2 ||B|| = 0.0625 ||B||``).

    Tolerance: one step is a handful of products and thin QRs/SVDs of length ``<= m``, each
    backward stable, on factors with ``sigma(S0) in [0.5, 1]`` (no amplification beyond ~2),
    so ``20 m eps ||Y1||`` bounds the round-off for both dtypes (``c = 20`` for one step,
    as in test_invariants and test_exactness; measured below ``2 m eps``).

    Guards against (d): the Euler substep evaluating at the end of the step (planted in
    ``Euler.solve`` as ``flow.field(t1, X0, first)``).  Planted, KSL and BC-PSI failed with a
    relative error of 0.18 (the size of ``h (t1 - t0) ||B|| / ||Y1||``) and BUG with 0.14
    (only its Galerkin S-step evaluates afresh), in both dtypes, against bounds of 4.4e-14
    (float64) and 2.4e-5 (float32).  abc-PSI, RA-BUG and parallel BUG passed
    under that plant, correctly: their Euler substeps all start at ``Y0`` and reuse the one
    evaluation ``F(t0, Y0)`` that the step makes itself (``first``; ``StepKit.kl_steps`` and
    ``ABCPSI.step``), so ``Euler.solve``'s own time argument is never used.  For them the
    property guards the shared evaluation instead: planting ``evaluate(t1, Y0)`` in
    ``StepKit.kl_steps`` made BUG, RA-BUG and parallel BUG fail, and in ``ABCPSI.step``
    abc-PSI (both dtypes each).
    """
    xp = np_xp
    rng = np.random.default_rng(11)
    U0, V0 = random_orthonormal(rng, M_D, R_D), random_orthonormal(rng, N_D, R_D)
    S0 = np.diag([1.0, 0.75, 0.5])
    B = rng.standard_normal((M_D, R_D)) @ V0.T  # row space in span(V0): Y0 + s B has rank r
    dt = getattr(xp, dtype)
    B_x = xp.asarray(B, dtype=dt)
    problem = lc.MatrixODE(lambda t, Y: t * B_x)
    Y0 = lc.LowRank(*(xp.asarray(f, dtype=dt) for f in (U0, S0, V0)))
    t0, h = 0.5, 0.25
    sol = lc.solve(problem, Y0, (t0, t0 + h), h, method=method, substep="euler")
    expected = U0 @ S0 @ V0.T + h * t0 * B
    err = np.linalg.norm(dense(sol.Y).astype(float) - expected)
    bound = 20 * M_D * eps_of(dtype) * np.linalg.norm(expected)
    assert err <= bound, (err / np.linalg.norm(expected), bound / np.linalg.norm(expected))
