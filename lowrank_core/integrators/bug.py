r"""Basis-update & Galerkin (BUG) integrators.

* :class:`BUG` — fixed-rank "unconventional" integrator (Ceruti & Lubich 2022).
* :class:`RABUG` — rank-adaptive augmented BUG (Ceruti, Kusch & Lubich 2022).
* :class:`ParallelBUG` — parallel rank-adaptive BUG (Ceruti, Kusch & Lubich 2024),
  all substeps from ``Y0``, optional step rejection.

K- and L-steps start from the same point ``Y0`` and never go backward in time; the
Galerkin S-step runs forward in the new bases.  All three share the substep,
augmentation and truncation code of :class:`~lowrank_core.integrators.StepKit` with the
projector-splitting family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lowrank import LowRank
from .._problem import AbstractMatrixODE
from .._stats import StepInfo
from . import _steps
from ._base import AbstractIntegrator, AbstractRankAdaptive

__all__ = ["BUG", "RABUG", "ParallelBUG"]


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class BUG(AbstractIntegrator):
    r"""Fixed-rank BUG integrator.

    One step ``t0 -> t1`` from ``Y0 = U0 S0 V0^H``:

    1. K-step: ``dK/dt = F(t, K V0^H) V0`` from ``U0 S0``; ``U1 = orth(K1)``, ``M = U1^H U0``.
    2. L-step (independent of 1): ``dL/dt = F(t, U0 L^H)^H U0`` from ``V0 S0^H``;
       ``V1 = orth(L1)``, ``N = V1^H V0``.
    3. Galerkin S-step, forward: ``dS/dt = U1^H F(t, U1 S V1^H) V1`` from ``M S0 N^H``.

    Cost per step: 2 thin QR (``m x r``, ``n x r``), no SVD, 2 right-hand-side points
    with Euler substeps (``Y0``, shared by K and L, and ``U1 M S0 N^H V1^H``).  Robust
    first order; exact for rank-``r`` paths; keeps ``Y`` symmetric when ``F`` does.
    """

    name: ClassVar[str] = "bug"
    order: ClassVar[int] = 1

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any
    ) -> tuple[LowRank, Any, StepInfo]:
        kit = self.make_kit(problem, Y0)
        K1, L1, _ = kit.kl_steps(t0, t1, Y0)
        U1, _ = kit.qr(K1)
        V1, _ = kit.qr(L1)
        S1 = kit.s_step(t0, t1, kit.project(Y0, U1, V1), U1, V1)
        return LowRank._trusted(U1, S1, V1, Y0.xp), state, kit.info()


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class RABUG(AbstractRankAdaptive):
    r"""Rank-adaptive (augmented) BUG integrator.

    One step ``t0 -> t1`` from ``Y0 = U0 S0 V0^H`` of rank ``r``:

    1. K- and L-steps from ``Y0`` as in :class:`BUG`, then augment:
       ``Û = orth([K1, U0])`` (``m x 2r``), ``V̂ = orth([L1, V0])`` (``n x 2r``).
    2. Galerkin S-step in the augmented bases from ``Ŝ0 = (Û^H U0) S0 (V0^H V̂)``
       (so ``Û Ŝ0 V̂^H = Y0`` exactly): ``dS/dt = Û^H F(t, Û S V̂^H) V̂``.
    3. Truncate ``Ŝ1`` (SVD ``2r x 2r``) with ``theta = tol + rtol ||Ŝ1||_F``, clamped
       to ``[min_rank, max_rank]``; without ``tol``/``rtol`` back to rank ``r``.

    Cost per step: 2 thin QR (``m x 2r``, ``n x 2r``), 1 SVD (``2r x 2r``), one
    right-hand-side point with Euler substeps (all substeps start at ``Y0``).  Error
    ``O(h + theta/h)``; preserves norm (up to ``theta``) for skew-Hermitian ``F``.

    With ``conserve=Conservation(left, right)`` the kept columns join the augmented
    bases (``Û = orth([K1, U0, left])``, ``V̂ = orth([L1, V0, right])``) and step 3
    keeps ``P_l Ŝ`` and ``Ŝ P_r`` exactly and truncates the remainder (see
    :class:`~lowrank_core.Conservation`; one more small SVD per step).
    """

    name: ClassVar[str] = "ra-bug"
    order: ClassVar[int] = 1
    conservative: ClassVar[bool] = True

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any
    ) -> tuple[LowRank, Any, StepInfo]:
        kit = self.make_kit(problem, Y0)
        K1, L1, F0 = kit.kl_steps(t0, t1, Y0)
        kept = self.kept(state, Y0) if self.conservation is not None else None
        if kept is not None:  # the kept columns join both augmented bases
            left, right = kept.with_left(Y0.U, Y0.xp), kept.with_right(Y0.V, Y0.xp)
        else:
            left = right = None
        U_hat, S0_hat, V_hat = _steps.augmented_bases(kit, K1, L1, Y0, left, right)
        S_hat = kit.s_step(t0, t1, S0_hat, U_hat, V_hat, first=F0)
        if kept is not None:
            return kept.truncate(kit, self.truncation, U_hat, S_hat, V_hat, Y0.rank), state, kit.info()
        return _steps.svd_truncate(kit, self.truncation, U_hat, S_hat, V_hat, Y0.rank)[0], state, kit.info()


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class ParallelBUG(AbstractRankAdaptive):
    r"""Parallel rank-adaptive BUG integrator, optionally with step rejection.

    One step ``t0 -> t1`` from ``Y0 = U0 S0 V0^H`` of rank ``r``; all three substeps
    start at ``Y0`` and are independent:

    1. K-step -> ``K1``; ``[U0, Ũ1] = orth([U0, K1])`` (thin QR ``m x 2r``), keep ``Ũ1 ⟂ U0``.
    2. L-step -> ``L1``; ``[V0, Ṽ1] = orth([V0, L1])`` (thin QR ``n x 2r``).
    3. S-step in the old bases: ``dS/dt = U0^H F(t, U0 S V0^H) V0`` from ``S0`` -> ``S̄1``.
    4. Assemble ``Ŝ1 = [[S̄1, L1^H Ṽ1], [Ũ1^H K1, 0]]`` (``2r x 2r``) in the bases
       ``[U0, Ũ1]``, ``[V0, Ṽ1]``, and truncate (SVD ``2r x 2r``).

    With Euler substeps this is ``Y½ = Y0 + h P(Y0) F(t0, Y0)`` before truncation.  It
    is *not* exact for rank-``r`` paths: the block ``Ũ1^H ΔA Ṽ1`` is dropped, an error
    that vanishes as ``h -> 0``.

    Parameters
    ----------
    substep, tol, rtol, min_rank, max_rank
        As for :class:`RABUG`.
    reject : bool, default False
        Step rejection (needs ``tol`` or ``rtol``).  With ``theta`` the step's truncation
        tolerance and ``η = ||Ũ1^H F(t0, Y0) Ṽ1||_F`` the norm of the neglected block,
        the step is rejected when ``h η > c_eta theta``, or when the truncation keeps all
        ``2r`` columns, unless the new rank has already reached ``max_rank`` (then a
        repeat could not raise it).  A rejected step is retried from the same
        ``Y0`` enlarged to rank ``2r`` (``[U0, Ũ1] diag(S0, 0) [V0, Ṽ1]^H``, the same
        matrix), up to ``max_retries`` times; rejections are counted in
        ``stats["rejections"]``.
    c_eta : float, default 1.0
        Safety factor of the rejection test.
    max_retries : int, default 3
    """

    name: ClassVar[str] = "parallel-bug"
    order: ClassVar[int] = 1

    reject: bool = False
    c_eta: float = 1.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.reject, bool):
            msg = f"`reject` must be True or False; got {self.reject!r} of type {type(self.reject).__name__}."
            raise TypeError(msg)
        if self.reject and not self.truncation.adaptive:
            msg = "`reject=True` needs a truncation tolerance; pass `tol` or `rtol` as well."
            raise ValueError(msg)
        c_eta = self.c_eta
        if isinstance(c_eta, bool) or not (isinstance(c_eta, (int, float)) and c_eta > 0):
            msg = f"`c_eta` must be a positive number; got {c_eta!r}."
            raise ValueError(msg)
        max_retries = self.max_retries
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            msg = f"`max_retries` must be a non-negative integer; got {max_retries!r}."
            raise ValueError(msg)
        object.__setattr__(self, "c_eta", float(c_eta))

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any
    ) -> tuple[LowRank, Any, StepInfo]:
        xp = Y0.xp
        Y = Y0
        kit = self.make_kit(problem, Y0)  # one kit (one tally) for all attempts
        for attempt in range(self.max_retries + 1):
            U0, S0, V0 = Y.U, Y.S, Y.V
            r = Y.rank
            K1, L1, F0 = kit.kl_steps(t0, t1, Y)
            S_bar = kit.s_step(t0, t1, S0, U0, V0, first=F0)
            U_hat, S_hat, V_hat = _steps.parallel_core(kit, S_bar, U0, V0, K1, L1)
            U_new, V_new = U_hat[..., r:], V_hat[..., r:]  # [U0, K1]: first r columns span U0
            k_u, k_v = U_new.shape[-1], V_new.shape[-1]
            Y1, s = _steps.svd_truncate(kit, self.truncation, U_hat, S_hat, V_hat, r)
            if not self.reject or attempt == self.max_retries or k_u == 0 or k_u != k_v:
                # no rejection requested, retries exhausted, or no square enlargement possible
                return Y1, state, kit.info()
            if not self._rejected(kit, F0, t0, t1, U_new, V_new, s, Y1.rank):
                return Y1, state, kit.info()
            kit.counters.rejections += 1
            z_rk = xp.zeros((*Y.batch_shape, r, k_v), dtype=S0.dtype, device=Y.device)
            z_kr = xp.zeros((*Y.batch_shape, k_u, r), dtype=S0.dtype, device=Y.device)
            zero = xp.zeros((*Y.batch_shape, k_u, k_v), dtype=S0.dtype, device=Y.device)
            S_big = xp.concat([xp.concat([S0, z_rk], axis=-1), xp.concat([z_kr, zero], axis=-1)], axis=-2)
            Y = LowRank._trusted(U_hat, S_big, V_hat, xp)
        return Y1, state, kit.info()  # pragma: no cover - loop always returns

    def _rejected(self, kit, F0, t0, t1, U_new, V_new, s, new_rank) -> bool:
        """The rejection test of the class docstring."""
        tr = self.truncation
        if tr.max_rank is not None and new_rank >= tr.max_rank:
            return False  # the rank cannot grow any further: repeating would change nothing
        xp = kit.xp
        value = F0 if F0 is not None else kit.problem.increment(t0, t1, xp)
        scale = 1.0 if F0 is None else (t1 - t0)
        block = value.UH_F_V(U_new, V_new)
        eta = xp.sqrt(xp.sum(xp.abs(block) ** 2, axis=(-2, -1)))
        theta = tr.theta(s, xp)
        too_big = bool(xp.any(scale * eta > self.c_eta * theta))
        saturated = new_rank == s.shape[-1]
        return too_big or saturated
