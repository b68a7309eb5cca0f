r"""Robust second-order BUG integrators built on the midpoint rule.

* :class:`MidpointBUG` — the midpoint BUG integrator (Ceruti, Einkemmer, Kusch & Lubich
  2024): a half step of the augmented BUG integrator, then a midpoint Galerkin update in
  bases augmented by the right-hand side at the half step.
* :class:`ParallelBUG2` — the same midpoint Galerkin update after a half step of the
  *parallel* BUG integrator, whose three substeps are independent (after Kusch 2024).

Both are rank adaptive (``tol``/``rtol``, clamped to ``[min_rank, max_rank]``); without a
tolerance they truncate back to the rank of ``Y0``.  The update

.. math::

    \hat U = \operatorname{orth}[U_{1/2}, F_{1/2} V_{1/2}],\quad
    \hat V = \operatorname{orth}[V_{1/2}, F_{1/2}^H U_{1/2}],\quad
    \hat S_1 = \hat U^H Y_0 \hat V + h\, \hat U^H F_{1/2} \hat V

(``F_{1/2} = F(t_{1/2}, Y_{1/2})``) is shared: ``range(U_{1/2}) ⊇ range(U_0)`` so
``Y_0`` is represented exactly, and the bases contain the column and row spaces of the
tangent part ``P(Y_{1/2}) F_{1/2}``, so the update is the explicit midpoint rule up to the
normal component of ``F``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .._lowrank import LowRank
from .._problem import AbstractMatrixODE
from .._stats import StepInfo
from .._truncation import Truncation
from ._base import AbstractRankAdaptive, StepKit

__all__ = ["MidpointBUG", "ParallelBUG2", "augment_basis", "truncate_capped"]


def augment_basis(kit: StepKit, Q: Any, X: Any) -> Any:
    r"""Orthonormal basis of ``[Q, X]`` (one counted thin QR of ``(..., m, k + l)``); its first
    ``k`` columns span ``range(Q)`` for an orthonormal ``Q (..., m, k)``.

    As everywhere in the library, all columns are kept when ``[Q, X]`` is numerically rank
    deficient (``F = B - Y`` puts ``B V0`` in both halves of the midpoint basis): the QR then
    completes the basis with orthonormal directions that depend on rounding and on the QR
    route, and the Galerkin step is done in that larger space.  Dropping them by the
    diagonal of ``R`` is not an option without column pivoting (a later column may have a
    large component along a direction whose own column was small).
    """
    Q_full, _ = kit.qr(kit.xp.concat([Q, X], axis=-1))
    return Q_full


def truncate_capped(kit: StepKit, truncation: Truncation, U_hat: Any, S_hat: Any, V_hat: Any, rank: int) -> LowRank:
    """SVD of the Galerkin core ``S_hat`` and truncation of ``U_hat S_hat V_hat^H``.

    Without ``max_rank`` the new rank is at most ``2 rank`` (the library's rule: a rank may
    at most double per step, as for :class:`~lowrank_core.RABUG`, whose core is ``2r x 2r``);
    the singular values beyond are discarded before the tolerance is applied.
    """
    P, s, Q = kit.svd(S_hat)
    if truncation.max_rank is None and s.shape[-1] > 2 * rank:
        P, s, Q = P[..., : 2 * rank], s[..., : 2 * rank], Q[..., : 2 * rank]
    return kit.truncate(truncation, U_hat, P, s, Q, V_hat, rank)


def midpoint_update(
    kit: StepKit,
    truncation: Truncation,
    t0: float,
    t1: float,
    Y0: LowRank,
    U_half: Any,
    S_half: Any,
    V_half: Any,
    F0: Any = None,
) -> tuple[LowRank, Any]:
    r"""The midpoint Galerkin update shared by :class:`MidpointBUG` and :class:`ParallelBUG2`.

    Parameters
    ----------
    kit : StepKit
    truncation : Truncation
    t0, t1 : float
    Y0 : LowRank
        State at ``t0``, rank ``r``; ``range(U_half) ⊇ range(U0)``, ``range(V_half) ⊇ range(V0)``.
    U_half (..., m, k), S_half (..., k, l), V_half (..., n, l)
        The half-step state ``Y_{1/2} = U_half S_half V_half^H`` (orthonormal bases).
    F0 : RHSValue or None
        ``F(t0, Y0)`` for the embedded error estimate (``None``: no estimate).

    Returns
    -------
    Y1 : LowRank
        The truncation of ``Û Ŝ1 V̂^H`` (bases ``m x 2k``, ``n x 2l``; the second
        halves from :func:`augment_basis`).
    error_estimate : array or None
        With ``F0``: ``||h Û^H (F_{1/2} - F0) V̂||_F`` per member, the difference between
        the midpoint update and the explicit Euler step ``Û^H Y0 V̂ + h Û^H F0 V̂`` in the
        same bases (an embedded 2(1) pair; no extra F point, no decomposition).
    """
    xp = kit.xp
    t_half = t0 + 0.5 * (t1 - t0)
    Y_half = LowRank._trusted(U_half, S_half, V_half, xp)
    # F at the midpoint is always a point value (also with exact substeps: the basis needs it)
    kit.counters.rhs_evals += math.prod(Y0.batch_shape)
    F_half = kit.problem.evaluate(t_half, Y_half)
    U_hat = augment_basis(kit, U_half, F_half.F_V(V_half))
    V_hat = augment_basis(kit, V_half, F_half.FH_U(U_half))
    if kit.substep.needs_increments:
        # the exact integral of the Y-independent F replaces the midpoint quadrature h F_{1/2}
        kit.counters.rhs_evals += math.prod(Y0.batch_shape)
        change = kit.problem.increment(t0, t1, xp).UH_F_V(U_hat, V_hat)
    else:
        G_half = F_half.UH_F_V(U_hat, V_hat)
        change = (t1 - t0) * G_half
    S_hat = kit.project(Y0, U_hat, V_hat) + change
    Y1 = truncate_capped(kit, truncation, U_hat, S_hat, V_hat, Y0.rank)
    if F0 is None or kit.substep.needs_increments:
        return Y1, None
    E = (t1 - t0) * (G_half - F0.UH_F_V(U_hat, V_hat))
    return Y1, xp.sqrt(xp.sum(xp.abs(E) ** 2, axis=(-2, -1)))


def _euler_embedded_order(self: AbstractRankAdaptive) -> int | None:
    """``1``: the explicit Euler step in the final bases is the embedded method of the
    step-size controller; ``None`` with exact substeps (no point value ``F(t0, Y0)``)."""
    return None if self.substep.needs_increments else 1


#: ``embedded_order`` of the methods that end with :func:`midpoint_update` (their 2(1) pair),
#: assigned in each class so that its API page lists it.
_EMBEDDED_ORDER = property(_euler_embedded_order)


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class MidpointBUG(AbstractRankAdaptive):
    r"""Midpoint BUG integrator (Ceruti, Einkemmer, Kusch & Lubich 2024), rank adaptive.

    One step ``t0 -> t1 = t0 + h`` from ``Y0 = U0 S0 V0^H`` of rank ``r``,
    ``t½ = t0 + h/2``:

    1. Half step of the augmented BUG integrator (:class:`~lowrank_core.RABUG` without
       truncation): K- and L-steps on ``[t0, t½]`` from ``Y0``; ``U½ = orth([K½, U0])``
       (``m x 2r``), ``V½ = orth([L½, V0])`` (``n x 2r``); Galerkin S-step on ``[t0, t½]``
       from ``(U½^H U0) S0 (V0^H V½)`` -> ``S½``; ``Y½ = U½ S½ V½^H`` (rank ``<= 2r``).
    2. Evaluate ``F½ = F(t½, Y½)``; augment ``Û = orth([U½, F½ V½])`` (``m x 4r``),
       ``V̂ = orth([V½, F½^H U½])`` (``n x 4r``).
    3. Midpoint Galerkin update ``Ŝ1 = (Û^H U0) S0 (V0^H V̂) + h Û^H F½ V̂`` (with
       ``substep="exact"`` the increment ``Û^H (A(t1) - A(t0)) V̂`` replaces ``h Û^H F½ V̂``).
    4. Truncate ``Ŝ1`` (SVD ``4r x 4r``) with ``theta = tol + rtol ||Ŝ1||_F``, clamped to
       ``[min_rank, max_rank]`` (without ``max_rank`` at most ``2r``, the library's rule
       that a rank at most doubles per step); without ``tol``/``rtol`` back to rank ``r``.

    Cost per step: 4 thin QR (``m x 2r``, ``n x 2r``, ``m x 4r``, ``n x 4r``), 1 SVD
    (``4r x 4r``), 2 right-hand-side points with Euler substeps (``F(t0, Y0)``, shared by
    the K-, L- and S-steps of the half step, and ``F(t½, Y½)``).  Robust second order:
    ``||Y_n - A(t_n)|| <= c0 δ + c1 ε̂ + c2 h ε + c3 h^2 + c4 n theta`` with constants
    independent of the singular values (ε the normal component of ``F`` at rank ``r``, ε̂
    at the augmented rank).  Not exact for general rank-``r`` paths (the midpoint basis
    misses ``A(t1) V0`` at ``O(h^2)``); exact for rank-``r`` paths affine in ``t``.
    """

    name: ClassVar[str] = "midpoint-bug"
    order: ClassVar[int] = 2
    embedded_order = _EMBEDDED_ORDER

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any, *, estimate: bool = False
    ) -> tuple[LowRank, Any, StepInfo]:
        """One step (see the class docstring); with ``estimate=True`` the step's
        ``info.error_estimate`` is the embedded 2(1) estimate of ``midpoint_update``."""
        kit = self.make_kit(problem, Y0)
        t_half = t0 + 0.5 * (t1 - t0)
        K, L, F0 = kit.kl_steps(t0, t_half, Y0)
        U_half = kit.augment(K, Y0.U)
        V_half = kit.augment(L, Y0.V)
        S_half = kit.s_step(t0, t_half, kit.project(Y0, U_half, V_half), U_half, V_half, first=F0)
        Y1, est = midpoint_update(kit, self.truncation, t0, t1, Y0, U_half, S_half, V_half, F0 if estimate else None)
        return Y1, state, kit.info(est)


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class ParallelBUG2(AbstractRankAdaptive):
    r"""Second-order robust parallel BUG integrator (after Kusch 2024), rank adaptive.

    One step ``t0 -> t1 = t0 + h`` from ``Y0 = U0 S0 V0^H`` of rank ``r``,
    ``t½ = t0 + h/2``; the substeps of step 1 are independent of each other, as are
    the two QR of step 2:

    1. Half step of the parallel BUG integrator (:class:`~lowrank_core.ParallelBUG`,
       untruncated): K-, L- and S-steps on ``[t0, t½]``, all from ``Y0``;
       ``[U0, Ũ] = orth([U0, K½])``, ``[V0, Ṽ] = orth([V0, L½])``;
       ``S½ = [[S̄½, L½^H Ṽ], [Ũ^H K½, 0]]`` in the bases ``U½ = [U0, Ũ]``,
       ``V½ = [V0, Ṽ]`` (rank ``<= 2r``).
    2. As steps 2 to 4 of :class:`MidpointBUG`: ``F½ = F(t½, Y½)``,
       ``Û = orth([U½, F½ V½])``, ``V̂ = orth([V½, F½^H U½])``, midpoint Galerkin update,
       truncation.

    Cost per step: 4 thin QR (``m x 2r``, ``n x 2r``, ``m x 4r``, ``n x 4r``), 1 SVD
    (``4r x 4r``), 2 right-hand-side points with Euler substeps.  The dropped block
    ``Ũ^H F Ṽ`` of the half step is ``O(h ε + h^2)`` (the tangent part of ``F`` has no
    component in it), so ``Y½`` is first-order accurate and the midpoint update is
    robust second order as for :class:`MidpointBUG`.
    """

    name: ClassVar[str] = "parallel-bug-2"
    order: ClassVar[int] = 2
    embedded_order = _EMBEDDED_ORDER  # the same 2(1) pair as MidpointBUG

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any, *, estimate: bool = False
    ) -> tuple[LowRank, Any, StepInfo]:
        """One step (see the class docstring); ``estimate=True`` as in :meth:`~lowrank_core.MidpointBUG.step`."""
        xp = Y0.xp
        kit = self.make_kit(problem, Y0)
        t_half = t0 + 0.5 * (t1 - t0)
        r = Y0.rank
        K, L, F0 = kit.kl_steps(t0, t_half, Y0)
        S_bar = kit.s_step(t0, t_half, Y0.S, Y0.U, Y0.V, first=F0)
        U_new = kit.augment(Y0.U, K)[..., r:]  # orth([U0, K]): the first r columns span U0
        V_new = kit.augment(Y0.V, L)[..., r:]
        k_u, k_v = U_new.shape[-1], V_new.shape[-1]
        zero = xp.zeros((*Y0.batch_shape, k_u, k_v), dtype=Y0.S.dtype, device=Y0.device)
        top = xp.concat([S_bar, kit.mm(kit.ch(L), V_new)], axis=-1)
        bottom = xp.concat([kit.mm(kit.ch(U_new), K), zero], axis=-1)
        S_half = xp.concat([top, bottom], axis=-2)
        U_half = xp.concat([Y0.U, U_new], axis=-1)
        V_half = xp.concat([Y0.V, V_new], axis=-1)
        Y1, est = midpoint_update(kit, self.truncation, t0, t1, Y0, U_half, S_half, V_half, F0 if estimate else None)
        return Y1, state, kit.info(est)
