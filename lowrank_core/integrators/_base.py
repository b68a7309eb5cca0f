r"""Integrator base class and the step toolkit shared by every method.

An integrator is an immutable configuration (substep solver, truncation rule).  The
evolving state is passed in and returned, so a user can drive the integration:

>>> import numpy as np
>>> import lowrank_core as lc
>>> rng = np.random.default_rng(0)
>>> Y = lc.LowRank.from_dense(rng.standard_normal((20, 15)), rank=3)
>>> problem = lc.MatrixODE(lambda t, Y: -Y)
>>> method = lc.KSL(substep="rk4")
>>> state = method.init(problem, 0.0, Y)
>>> counters = lc.Counters()
>>> for k in range(10):
...     Y, state = method.step(problem, 0.1 * k, 0.1 * (k + 1), Y, state, counters)
>>> counters.qr
20
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .._conservation import Conservation, _Kept
from .._linalg import Counters, matmul, thin_qr, thin_svd
from .._lowrank import LowRank
from .._namespace import conj_transpose
from .._problem import AbstractMatrixODE, RHSValue
from .._substep import SubFlow, SubstepSolver, resolve_substep
from .._truncation import Truncation

__all__ = ["AbstractIntegrator", "AbstractRankAdaptive", "StepKit"]


class StepKit:
    """The building blocks of a step, bound to one problem, namespace and counters.

    Every integrator composes its step from these, so substeps, orthonormalization,
    augmentation and truncation are written once.
    """

    def __init__(self, problem: AbstractMatrixODE, xp: Any, counters: Counters, substep: SubstepSolver) -> None:
        self.problem, self.xp, self.counters, self.substep = problem, xp, counters, substep

    # -- right-hand side ---------------------------------------------------------
    def evaluate(self, t: float, Y: LowRank) -> RHSValue | None:
        """Evaluate ``F`` at ``(t, Y)`` for reuse as the first stage of several substeps.

        Returns ``None`` for exact substeps (which use increments, not point values).
        """
        if self.substep.needs_increments:
            return None
        self.counters.rhs_evals += math.prod(Y.batch_shape)
        return self.problem.evaluate(t, Y)

    # -- substeps ----------------------------------------------------------------
    def k_step(self, t0: float, t1: float, K0: Any, V: Any, first: RHSValue | None = None) -> Any:
        """Solve ``dK/dt = F(t, K V^H) V`` from ``K0`` over ``[t0, t1]``."""
        flow = SubFlow("K", self.problem, self.xp, self.counters, V=V)
        return self.substep.solve(flow, t0, t1, K0, first)

    def l_step(self, t0: float, t1: float, L0: Any, U: Any, first: RHSValue | None = None) -> Any:
        """Solve ``dL/dt = F(t, U L^H)^H U`` from ``L0`` over ``[t0, t1]``."""
        flow = SubFlow("L", self.problem, self.xp, self.counters, U=U)
        return self.substep.solve(flow, t0, t1, L0, first)

    def s_step(
        self, t0: float, t1: float, S0: Any, U: Any, V: Any, *, sign: float = 1.0, first: RHSValue | None = None
    ) -> Any:
        """Solve ``dS/dt = sign * U^H F(t, U S V^H) V`` from ``S0`` over ``[t0, t1]``."""
        flow = SubFlow("S", self.problem, self.xp, self.counters, U=U, V=V, sign=sign)
        return self.substep.solve(flow, t0, t1, S0, first)

    def kl_steps(self, t0: float, t1: float, Y0: LowRank) -> tuple[Any, Any, RHSValue | None]:
        """K- and L-steps both started at ``Y0`` (the BUG pattern), sharing ``F(t0, Y0)``.

        Returns ``K1 (..., m, r)``, ``L1 (..., n, r)`` and the shared evaluation (for a
        later substep that also starts at ``Y0``).
        """
        F0 = self.evaluate(t0, Y0)
        K1 = self.k_step(t0, t1, self.mm(Y0.U, Y0.S), Y0.V, first=F0)
        L1 = self.l_step(t0, t1, self.mm(Y0.V, self.ch(Y0.S)), Y0.U, first=F0)
        return K1, L1, F0

    # -- linear algebra ------------------------------------------------------------
    def qr(self, X: Any) -> tuple[Any, Any]:
        """Counted thin QR (``R`` with non-negative real diagonal)."""
        return thin_qr(X, self.xp, self.counters)

    def svd(self, X: Any) -> tuple[Any, Any, Any]:
        """Counted thin SVD ``X = U diag(s) V^H``."""
        return thin_svd(X, self.xp, self.counters)

    def augment(self, new: Any, old: Any) -> Any:
        """Orthonormal basis of ``[new, old]`` (one thin QR of ``(..., m, 2r)``)."""
        Q, _ = self.qr(self.xp.concat([new, old], axis=-1))
        return Q

    def project(self, Y0: LowRank, U: Any, V: Any = None) -> Any:
        """Core of ``Y0`` in new bases: ``(U^H U0) S0 (V0^H V)``, or ``(U^H U0) S0`` without ``V``.

        ``U (..., m, k)`` and ``V (..., n, l)`` give a ``(..., k, l)`` core; when
        ``range(U) ⊇ range(U0)`` (and likewise for ``V``) it represents ``Y0`` exactly.
        """
        core = self.mm(self.mm(self.ch(U), Y0.U), Y0.S)
        return core if V is None else self.mm(core, self.mm(self.ch(Y0.V), V))

    def ch(self, X: Any) -> Any:
        """Conjugate transpose of the last two axes."""
        return conj_transpose(X, self.xp)

    def mm(self, A: Any, B: Any) -> Any:
        """``A @ B`` (large NumPy stacks split across threads, see ``_linalg.matmul``)."""
        return matmul(A, B, self.xp)

    def truncate(self, truncation: Truncation, left: Any, u: Any, s: Any, v: Any, right: Any, rank_in: int) -> LowRank:
        """Apply ``truncation`` and count a hit of ``max_rank``."""
        Y1, capped = truncation.truncate(left, u, s, v, right, rank_in, self.xp)
        if capped:
            self.counters.max_rank_hits += 1
        return Y1


class AbstractIntegrator:
    """Base class of the low-rank integrators.

    Subclasses set the class attributes and implement :meth:`step`.

    Attributes
    ----------
    name : str
        Registry name used by :func:`lowrank_core.solve`.
    order : int
        Classical order of the method with exact substeps.  ``solve(..., dt=None)`` uses
        it for its step-doubling estimate ``||Y_2 - Y_1|| / (2^p - 1)`` and its
        controller exponent ``1/p``: a new integrator sets its own.
    rank_adaptive : bool
        Whether the rank may change from step to step.
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 1
    rank_adaptive: ClassVar[bool] = False

    def __init__(self, *, substep: Any = "rk4") -> None:
        self.substep = resolve_substep(substep)

    def init(self, problem: AbstractMatrixODE, t0: float, Y0: LowRank) -> Any:
        """Check that ``problem``, ``Y0`` and this configuration fit; return the initial state.

        The methods of this library are one-step methods without internal state, so the
        state is ``None``; subclasses with memory (momentum, step-size control) return
        their own.
        """
        if not isinstance(problem, AbstractMatrixODE):
            msg = (
                f"`problem` must be a MatrixODE, MatrixPath, LinearMatrixODE or another "
                f"AbstractMatrixODE; got {type(problem).__name__}."
            )
            raise TypeError(msg)
        if not isinstance(Y0, LowRank):
            msg = (
                f"`Y0` must be a LowRank; got {type(Y0).__name__}. "
                "Use LowRank(U, S, V) or LowRank.from_dense(A, rank)."
            )
            raise TypeError(msg)
        if self.substep.needs_increments and not problem.has_increments:
            msg = (
                f"substep={self.substep.name!r} needs a problem with exact increments (a "
                f"MatrixPath); {type(problem).__name__} has none. Use substep='rk4' or 'euler'."
            )
            raise ValueError(msg)
        problem.check_state(Y0)
        return None

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any, counters: Counters
    ) -> tuple[LowRank, Any]:
        """Advance ``Y0`` from ``t0`` to ``t1``.

        Parameters
        ----------
        problem : AbstractMatrixODE
        t0, t1 : float
            Step interval, ``t1 > t0``.
        Y0 : LowRank
            State at ``t0`` (orthonormal ``U``, ``V``).
        state : object
            What :meth:`~lowrank_core.integrators.AbstractIntegrator.init` (or the previous step) returned.
        counters : Counters
            Receives the decompositions and right-hand-side evaluations of the step.

        Returns
        -------
        Y1 : LowRank
            State at ``t1``; ``Y0`` is not modified.
        state : object
        """
        raise NotImplementedError

    def kit(self, problem: AbstractMatrixODE, Y0: LowRank, counters: Counters) -> StepKit:
        """The step toolkit bound to this step."""
        return StepKit(problem, Y0.xp, counters, self.substep)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(substep={self.substep.name!r})"


class AbstractRankAdaptive(AbstractIntegrator):
    """Marker base of integrators that can change the rank (``tol``/``rtol``).

    ``conserve`` (a :class:`~lowrank_core.Conservation`) is accepted by the subclasses
    with ``conservative = True`` (:class:`~lowrank_core.RABUG`, :class:`~lowrank_core.ABCPSI`): their augmented
    bases then always contain the kept columns and their truncation keeps the part of
    ``Y`` the kept columns see exactly.
    """

    rank_adaptive: ClassVar[bool] = True
    #: Whether the method supports ``conserve=`` (a conservative truncation).
    conservative: ClassVar[bool] = False

    def __init__(
        self,
        *,
        substep: Any = "rk4",
        tol: float | None = None,
        rtol: float | None = None,
        min_rank: int = 1,
        max_rank: int | None = None,
        truncation_rule: str = "tail",
        conserve: Any = None,
    ) -> None:
        super().__init__(substep=substep)
        self.truncation = Truncation(tol=tol, rtol=rtol, min_rank=min_rank, max_rank=max_rank, rule=truncation_rule)
        self.conservation = check_conservation(conserve, self)

    def kept(self, state: Any, Y0: LowRank) -> _Kept:
        """The prepared kept columns: the ``state`` from :meth:`init`, or prepared now
        when a caller steps without ``init``."""
        return state if isinstance(state, _Kept) else self.conservation.prepare(Y0)

    def init(self, problem: AbstractMatrixODE, t0: float, Y0: LowRank) -> Any:
        """As :meth:`AbstractIntegrator.init`, and the rank bounds must fit ``Y0``'s shape:
        ``min_rank <= min(m, n)`` (a larger ``max_rank`` only caps nothing)."""
        state = super().init(problem, t0, Y0)
        m, n = Y0.shape[-2:]
        if self.truncation.min_rank > min(m, n):
            msg = (
                f"`min_rank` = {self.truncation.min_rank} exceeds min(m, n) = {min(m, n)} for a state of shape "
                f"{Y0.shape}; no rank-{self.truncation.min_rank} matrix of that shape exists. Lower min_rank."
            )
            raise ValueError(msg)
        conservation = getattr(self, "conservation", None)
        if conservation is not None:
            conservation.check_rank(Y0.rank, self.truncation.max_rank, self.truncation.adaptive)
            return conservation.prepare(Y0)
        return state

    def __repr__(self) -> str:
        t = self.truncation
        conservation = getattr(self, "conservation", None)
        return (
            f"{type(self).__name__}(substep={self.substep.name!r}, tol={t.tol}, rtol={t.rtol}, "
            f"min_rank={t.min_rank}, max_rank={t.max_rank}"
            + (f", truncation_rule={t.rule!r}" if t.rule != "tail" else "")
            + (f", conserve={conservation!r})" if conservation is not None else ")")
        )


def check_conservation(conserve: Any, method: Any) -> Any:
    """``conserve`` validated for ``method`` (``None`` or a :class:`~lowrank_core.Conservation`)."""
    if conserve is None:
        return None
    if not isinstance(conserve, Conservation):
        msg = (
            f"`conserve` must be a lowrank_core.Conservation (or None); got {type(conserve).__name__}. "
            "Build it with lc.Conservation(left=..., right=...)."
        )
        raise TypeError(msg)
    if not getattr(method, "conservative", False):
        name = getattr(method, "name", type(method).__name__)
        msg = (
            f"`conserve` is supported by the methods 'ra-bug' and 'abc-psi' only; method {name!r} has no "
            "conservative truncation. Use method='ra-bug' or 'abc-psi'."
        )
        raise ValueError(msg)
    return conserve
