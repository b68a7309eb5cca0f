r"""Projector-splitting integrators (Lubich & Oseledets 2014).

The tangent projector ``P(Y) Z = Z P_V - P_U Z P_V + P_U Z`` is split into three
flows solved in sequence: K forward, S backward, L forward.  Robust to small singular
values (Kieri, Lubich & Walach 2016) and exact for rank-``r`` paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lowrank import LowRank
from .._problem import AbstractMatrixODE
from .._stats import StepInfo
from . import _steps
from ._base import AbstractIntegrator

__all__ = ["KSL", "KSLStrang"]


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class KSL(AbstractIntegrator):
    r"""Lie-Trotter projector-splitting integrator (KSL).

    One step ``t0 -> t1`` from ``Y0 = U0 S0 V0^H``:

    1. K-step: ``dK/dt = F(t, K V0^H) V0``, ``K(t0) = U0 S0``; ``K(t1) = U1 Ŝ1`` (QR).
    2. S-step, backward: ``dS/dt = -U1^H F(t, U1 S V0^H) V0``, ``S(t0) = Ŝ1``; ``S̃0 = S(t1)``.
    3. L-step: ``dL/dt = F(t, U1 L^H)^H U1``, ``L(t0) = V0 S̃0^H``; ``L(t1) = V1 S1^H`` (QR).

    Cost per step: 2 thin QR (``m x r``, ``n x r``), no SVD, 3 right-hand-side points
    with Euler substeps.  First order, fixed rank.

    Parameters
    ----------
    substep : {"rk4", "euler", "exact"} or SubstepSolver
        Solver of the K, S and L sub-flows.
    """

    name: ClassVar[str] = "ksl"
    order: ClassVar[int] = 1

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any
    ) -> tuple[LowRank, Any, StepInfo]:
        kit = self.make_kit(problem, Y0)
        U0, S0, V0 = Y0.U, Y0.S, Y0.V
        K1 = kit.k_step(t0, t1, kit.mm(U0, S0), V0)
        U1, S_hat = kit.qr(K1)
        S_tilde = kit.s_step(t0, t1, S_hat, U1, V0, sign=-1.0)
        L1 = kit.l_step(t0, t1, kit.mm(V0, kit.ch(S_tilde)), U1)
        return _steps.l_close(kit, U1, L1), state, kit.info()


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class KSLStrang(AbstractIntegrator):
    r"""Strang projector-splitting integrator (KSL over ``h/2``, then its adjoint LSK).

    One step ``t0 -> t1`` with ``t½ = (t0 + t1)/2``; the two adjacent L half-steps are
    merged into one L-step over ``[t0, t1]``:

    1. K over ``[t0, t½]`` with ``V0``; QR -> ``U1 Ŝ``.
    2. S backward over ``[t0, t½]`` with ``(U1, V0)`` -> ``S̃``.
    3. L over ``[t0, t1]`` with ``U1`` from ``V0 S̃^H``; QR -> ``V1 S^H``.
    4. S backward over ``[t½, t1]`` with ``(U1, V1)`` -> ``S̃2``.
    5. K over ``[t½, t1]`` with ``V1`` from ``U1 S̃2``; QR -> ``U2 S2``.

    Cost per step: 3 thin QR (2 of ``m x r``, 1 of ``n x r``), no SVD, 5 points with
    Euler substeps.  Second order (with ``"rk4"`` or ``"exact"`` substeps; Euler
    substeps limit it to first order) when the singular values are not small compared
    with the step size; no robust second-order theory exists for it.
    """

    name: ClassVar[str] = "ksl-strang"
    order: ClassVar[int] = 2

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any
    ) -> tuple[LowRank, Any, StepInfo]:
        kit = self.make_kit(problem, Y0)
        tm = t0 + 0.5 * (t1 - t0)
        U0, S0, V0 = Y0.U, Y0.S, Y0.V
        K = kit.k_step(t0, tm, kit.mm(U0, S0), V0)
        U1, S_hat = kit.qr(K)
        S_tilde = kit.s_step(t0, tm, S_hat, U1, V0, sign=-1.0)
        L = kit.l_step(t0, t1, kit.mm(V0, kit.ch(S_tilde)), U1)
        V1, R = kit.qr(L)
        S_tilde2 = kit.s_step(tm, t1, kit.ch(R), U1, V1, sign=-1.0)
        K2 = kit.k_step(tm, t1, kit.mm(U1, S_tilde2), V1)
        U2, S2 = kit.qr(K2)
        return LowRank._trusted(U2, S2, V1, Y0.xp), state, kit.info()
