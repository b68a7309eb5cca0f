r"""Backward-corrected projector splitting (BC-PSI) and its augmented variant (abc-PSI).

Kusch, Schotthöfer & Walter, *An augmented backward-corrected projector splitting
integrator for dynamical low-rank training* (arXiv:2502.03006).  The backward S-step of
projector splitting is replaced by an orthogonal projection, which removes the
backward-in-time (gradient-ascent) substep and one right-hand-side evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lowrank import LowRank
from .._problem import AbstractMatrixODE
from .._stats import StepInfo
from . import _steps
from ._base import AbstractIntegrator, AbstractRankAdaptive

__all__ = ["ABCPSI", "BCPSI"]


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class BCPSI(AbstractIntegrator):
    r"""Backward-corrected projector-splitting integrator (fixed rank).

    One step ``t0 -> t1`` from ``Y0 = U0 S0 V0^H``:

    1. K-step: ``dK/dt = F(t, K V0^H) V0`` from ``U0 S0``; ``U1 = orth(K(t1))``.
    2. Backward correction: ``S̃0 = (U1^H U0) S0``, so that ``U1 S̃0 V0^H = P_{U1} Y0``
       (no time integration, no ``F`` evaluation).
    3. L-step: ``dL/dt = F(t, U1 L^H)^H U1`` from ``V0 S̃0^H``; ``L(t1) = V1 S1^H`` (QR).

    Equals :class:`KSL` when ``F`` does not depend on ``Y``; otherwise differs from it
    by ``O(h^2)`` per step.  Cost per step: 2 thin QR (``m x r``, ``n x r``), no SVD,
    2 right-hand-side points with Euler substeps.
    """

    name: ClassVar[str] = "bc-psi"
    order: ClassVar[int] = 1

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any
    ) -> tuple[LowRank, Any, StepInfo]:
        kit = self.make_kit(problem, Y0)
        U0, S0, V0 = Y0.U, Y0.S, Y0.V
        K1 = kit.k_step(t0, t1, kit.mm(U0, S0), V0)
        U1, S_tilde = _steps.corrected_basis(kit, K1, Y0)
        L1 = kit.l_step(t0, t1, kit.mm(V0, kit.ch(S_tilde)), U1)
        return _steps.l_close(kit, U1, L1), state, kit.info()


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class ABCPSI(AbstractRankAdaptive):
    r"""Augmented backward-corrected projector-splitting integrator (abc-PSI).

    One step ``t0 -> t1`` from ``Y0 = U0 S0 V0^H`` of rank ``r``:

    1. K-step: ``dK/dt = F(t, K V0^H) V0`` from ``U0 S0`` -> ``K1``.
    2. Augment: ``Û = orth([K1, U0])`` (one thin QR of ``m x 2r``).
    3. Backward correction in the augmented basis: ``Ŝ = (Û^H U0) S0`` (``2r x r``);
       ``Û Ŝ V0^H = Y0`` exactly, so nothing is lost.
    4. L-step from ``L0 = V0 Ŝ^H`` (``n x 2r``) with basis ``Û`` -> ``L1``.
    5. Truncate ``Y½ = Û L1^H`` to the new rank ``r1`` in ``[min_rank, 2r]``.

    The K- and L-steps both start at ``Y0``, so with Euler substeps the whole step uses
    a single right-hand-side point (one gradient in training), and the dense default
    forms ``F(t0, Y0)`` once.

    Parameters
    ----------
    substep : {"rk4", "euler", "exact"} or SubstepSolver
    tol, rtol : float, optional
        Truncation tolerance ``theta = tol + rtol ||Y½||_F`` on the Frobenius norm of
        the discarded singular values.  Without either, the rank stays fixed at the
        input rank.
    min_rank, max_rank : int
        Bounds of the adaptive rank.
    variant : {"min-qr", "two-qr"}, default "min-qr"
        How step 5 is computed.

        * ``"min-qr"`` (default): one thin SVD of ``L1`` (``n x 2r``),
          ``L1 = Q Σ P^H`` so ``Y½ = (Û P) Σ Q^H``.  **1 QR** (``m x 2r``) + 1 SVD
          (``n x 2r``) per step.
        * ``"two-qr"``: as in the authors' code, ``L1 = V̂ R`` (QR of ``n x 2r``) and an
          SVD of ``R^H`` (``2r x 2r``).  **2 QR** + 1 SVD (``2r x 2r``) per step.

        Both give the same ``Y1`` up to round-off.

        The training rule :class:`lowrank_core.training.ABCPSI` is built on this
        step's pieces (the augmentation and the ``"min-qr"`` truncation of
        ``lowrank_core.integrators._steps``): a different class (an optimizer rule with a
        learning rate and phases, not an ODE integrator), one implementation of the
        basis change.
    conserve : Conservation, optional
        Conservative truncation: ``Û = orth([K1, U0, left])``, then ``V̂ = orth([L1,
        right])`` (``Y½ = Û L1^H`` unchanged) and the truncation of
        :class:`~lowrank_core.Conservation` (``variant`` is then not used).
    """

    name: ClassVar[str] = "abc-psi"
    order: ClassVar[int] = 1
    conservative: ClassVar[bool] = True
    VARIANTS: ClassVar[tuple[str, ...]] = ("min-qr", "two-qr")

    variant: str = "min-qr"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variant not in self.VARIANTS:
            msg = f"unknown `variant` {self.variant!r} for abc-PSI; choose one of {self.VARIANTS}."
            raise ValueError(msg)

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any
    ) -> tuple[LowRank, Any, StepInfo]:
        kit = self.make_kit(problem, Y0)
        U0, S0, V0 = Y0.U, Y0.S, Y0.V
        F0 = kit.evaluate(t0, Y0)  # shared first stage of the K- and L-steps
        K1 = kit.k_step(t0, t1, kit.mm(U0, S0), V0, first=F0)
        kept = self.kept(state, Y0) if self.conservation is not None else None
        U_hat, S_hat = _steps.augmented_basis(kit, K1, Y0, None if kept is None else kept.with_left(U0, Y0.xp))
        L1 = kit.l_step(t0, t1, kit.mm(V0, kit.ch(S_hat)), U_hat, first=F0)
        if kept is not None:  # Y½ = Û L1^H = Û (V̂^H L1)^H V̂^H with range(V̂) ⊇ range(right)
            V_hat = kit.augment(L1, kept.with_right(L1[..., :0], Y0.xp))
            Y1 = kept.truncate(kit, self.truncation, U_hat, kit.ch(kit.mm(kit.ch(V_hat), L1)), V_hat, Y0.rank)
            return Y1, state, kit.info()
        Y1 = _steps.truncate_l(kit, self.truncation, U_hat, L1, Y0.rank, self.variant)
        return Y1, state, kit.info()

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", variant={self.variant!r})"
