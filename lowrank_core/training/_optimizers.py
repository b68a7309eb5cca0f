r"""Low-rank optimizers: the integrators of the library in training form, and paper 2's
geometric heavy ball and Adam.

Every optimizer is an immutable configuration with ``init(Y) -> param`` and
``step(param, grads) -> param`` (functional: the input parameter is never modified).
One call of ``step`` consumes the gradients of one forward/backward pass and takes one
optimizer step on the unknowns of the current *phase*; every ``basis_update_every``
steps the phase ends with a basis change (QR, projection, truncation), whose
decompositions all go through :class:`~lowrank_core.integrators.StepKit` and are
counted in the caller's :class:`~lowrank_core.Counters`.

One step core: the basis changes are the integrators' own step pieces
(``lowrank_core.integrators._steps``: BC-PSI's backward correction, abc-PSI's
augmentation and ``L``-truncation, RA-BUG's two augmentations, parallel BUG's core
assembly, the SVD truncation of a small core), called on the same StepKit seam, and
every product goes through the seam's ``matmul``.  What differs between an optimizer
and its integrator of the same name (:class:`lowrank_core.ABCPSI` and
:class:`ABCPSI` here, and so on) is only how the K-, L- and S-unknowns move between
basis changes: ``k`` optimizer steps on the factor gradients instead of a substep
solver on ``F``.  The two are different classes because they are different objects
(an ODE integrator configured by its substep solver, an optimizer rule configured by
its learning rate and phase length); with ``basis_update_every = 1`` and the full
gradient the optimizer's cycle *is* the integrator's step with Euler substeps.

Phases (``k = basis_update_every``; each line is ``k`` optimizer steps):

================  ==================================================================
optimizer         cycle of phases (gradient used) -> basis change at its end
================  ==================================================================
``PSI``           K (``grad_K``) -> QR of ``K``; S (``grad_S``, *ascent*); L (``grad_L``) -> QR of ``L``
``BCPSI``         K -> QR of ``K``, backward correction; L -> QR of ``L``
``ABCPSI``        K -> QR of ``[K, U0]``, projection; L -> SVD of ``L`` (truncation)
``RABUG``         K (from ``Y0``); L (from ``Y0``) -> 2 QR; S (augmented) -> SVD
``ParallelBUG``   T (all three, projected) -> 2 QR, SVD of the ``2r x 2r`` core
``HeavyBall``     as ParallelBUG, with momentum transported at the basis change
``Adam``          as ParallelBUG, with Adam moments transported at the basis change
================  ==================================================================
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from .._checks import choice, integer, real_number
from .._linalg import matmul
from .._lowrank import LowRank
from .._namespace import conj_transpose, device_of, real_dtype
from .._stats import Counters
from .._truncation import Truncation
from ..integrators import StepKit, _steps
from . import _inplace
from ._param import LowRankParam

__all__ = [
    "ABCPSI",
    "BCPSI",
    "PSI",
    "RABUG",
    "AbstractLowRankOptimizer",
    "Adam",
    "HeavyBall",
    "ParallelBUG",
    "transport_tangent",
]


class _Kit(StepKit):
    """The QR/SVD/projection/truncation half of :class:`StepKit` (training has no ODE problem)."""

    def __init__(self, xp: Any, counters: Counters) -> None:
        super().__init__(None, xp, counters, None)


# ---------------------------------------------------------------------- argument checks
# One rule for every hyperparameter: booleans are not numbers, strings are not parsed,
# and the message names the argument and what was received.


def _real_number(value: Any, name: str) -> float:
    """A finite real number (int, float or a NumPy real scalar; not a bool, not a string)."""
    return real_number(value, name)


def _positive(value: Any, name: str) -> float:
    v = _real_number(value, name)
    if v <= 0:
        msg = f"`{name}` must be positive; got {value!r}."
        raise ValueError(msg)
    return v


def _unit_interval(value: Any, name: str) -> float:
    v = _real_number(value, name)
    if not 0 <= v < 1:
        msg = f"`{name}` must lie in [0, 1); got {value!r}."
        raise ValueError(msg)
    return v


def _tolerance(value: Any, name: str) -> float | None:
    """``None`` or a finite non-negative real number."""
    if value is None:
        return None
    v = _real_number(value, name)
    if v < 0:
        msg = f"`{name}` must be non-negative (or None); got {value!r}."
        raise ValueError(msg)
    return v


def _count(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """An integer ``>= minimum`` (not a bool, not a float), or ``None`` where allowed."""
    return integer(value, name, minimum=minimum, allow_none=allow_none)


def _check_counters(counters: Any) -> Counters:
    if counters is None:
        return Counters()
    if not isinstance(counters, Counters):
        msg = f"`counters` must be a lowrank_core.Counters or None; got {type(counters).__name__}."
        raise TypeError(msg)
    return counters


def _zeros(shape: tuple, like: Any, xp: Any, *, real: bool = False) -> Any:
    dtype = real_dtype(like.dtype, xp) if real else like.dtype
    return xp.zeros(shape, dtype=dtype, device=device_of(like))


def _with_increments(param: LowRankParam, U: Any, S: Any, V: Any, **changes: Any) -> LowRankParam:
    """``param`` moved to the representation ``(U, S, V)`` with ``dK = dL = 0``."""
    xp = param.xp
    dK = _zeros((*U.shape[:-1], V.shape[-1]), U, xp)
    dL = _zeros((*V.shape[:-1], U.shape[-1]), V, xp)
    return param.replace(U=U, S=S, V=V, dK=dK, dL=dL, **changes)


def transport_tangent(U0: Any, V0: Any, A: Any, B: Any, C: Any, U1: Any, V1: Any, xp: Any) -> tuple[Any, Any, Any]:
    r"""Tangent coordinates at ``Y1`` of ``P(Y1) M`` for ``M = U0 A V0^H + B V0^H + U0 C^H``.

    ``P(Y1) Z = U1 U1^H Z + Z V1 V1^H - U1 U1^H Z V1 V1^H`` is the orthogonal projection
    onto the tangent space of the rank-``r1`` manifold at ``Y1 = U1 S1 V1^H``; its
    result is returned as ``(A1, B1, C1)`` with ``P(Y1) M = U1 A1 V1^H + B1 V1^H + U1 C1^H``,
    ``U1^H B1 = 0`` and ``V1^H C1 = 0``:

    .. math::

        A_1 = U_1^H M V_1, \quad B_1 = M V_1 - U_1 A_1, \quad C_1 = M^H U_1 - V_1 A_1^H,

    evaluated through the factors in ``O((m + n) r r_1)`` work, never forming ``M``.

    Parameters
    ----------
    U0 : array, shape (..., m, p)
    V0 : array, shape (..., n, q)
    A : array, shape (..., p, q)
    B : array, shape (..., m, q)
    C : array, shape (..., n, p)
        Coordinates of ``M`` (need not be tangent at ``U0 S V0^H``).
    U1 : array, shape (..., m, r1)
    V1 : array, shape (..., n, r1)
        Orthonormal bases of the new point.
    xp : namespace

    Returns
    -------
    A1 : array, shape (..., r1, r1)
    B1 : array, shape (..., m, r1)
    C1 : array, shape (..., n, r1)
    """

    return _transport_tangent(_overlaps(U0, V0, U1, V1, xp), U0, V0, A, B, C, U1, V1, xp)


def _overlaps(U0: Any, V0: Any, U1: Any, V1: Any, xp: Any) -> tuple[Any, Any]:
    """``(U1^H U0, V0^H V1)``: the two products of :func:`transport_tangent` shared by every moment."""
    return matmul(conj_transpose(U1, xp), U0, xp), matmul(conj_transpose(V0, xp), V1, xp)


def _transport_tangent(
    ab: tuple[Any, Any], U0: Any, V0: Any, A: Any, B: Any, C: Any, U1: Any, V1: Any, xp: Any
) -> tuple[Any, Any, Any]:
    """:func:`transport_tangent` with the overlaps ``ab = (U1^H U0, V0^H V1)`` given.

    Eight products with an ``m`` or ``n`` dimension: ``A1 = U1^H M V1`` is assembled
    from the overlaps and ``B^H U1`` (``r1 x r1`` products) instead of a ninth.
    """

    def ch(X: Any) -> Any:
        return conj_transpose(X, xp)

    def mm(X: Any, Y: Any) -> Any:
        return matmul(X, Y, xp)

    a, b = ab  # (r1, p), (q, r1)
    CV = mm(ch(C), V1)  # (p, r1)
    X = mm(A, b) + CV  # (p, r1): M V1 = U0 X + B b
    MV1 = mm(U0, X) + mm(B, b)  # M V1, (m, r1)
    BU = mm(ch(B), U1)  # (q, r1)
    A1 = mm(a, X) + mm(ch(BU), b)  # U1^H M V1 = (U1^H U0) X + (U1^H B) b
    MHU1 = mm(V0, mm(ch(A), ch(a)) + BU) + mm(C, ch(a))  # M^H U1, (n, r1)
    return A1, MV1 - mm(U1, A1), MHU1 - mm(V1, ch(A1))


class AbstractLowRankOptimizer:
    """Base class of the low-rank optimizers.

    Parameters
    ----------
    lr : float
        Learning rate ``h`` (the step size of the gradient flow ``dW/dt = -G(W)``).
    basis_update_every : int, default 1
        Optimizer steps per phase: ``k`` steps on ``K``, ``L`` or ``S`` (or on the
        tangent increments) between two basis changes.  ``k = 1`` is the integrator
        with one explicit Euler step per substep; larger ``k`` saves QR and SVD
        decompositions (the cost per cycle does not depend on ``k``).

    Notes
    -----
    Subclasses set ``phases`` and implement ``_close`` (the basis change at the end of a
    phase); ``_update_`` is one optimizer step on the phase's unknowns, written in place
    (``lowrank_core.training._inplace``) on the arrays named in ``WRITES`` and
    ``STATE_WRITES``: :meth:`step` runs it on copies of them, the PyTorch optimizer on
    its layers' own storage.
    """

    name: ClassVar[str] = ""
    phases: ClassVar[tuple[str, ...]] = ()
    rank_adaptive: ClassVar[bool] = False
    #: gradients needed in each phase
    NEEDS: ClassVar[dict[str, tuple[str, ...]]] = {"K": ("K",), "L": ("L",), "S": ("S",), "T": ("K", "L", "S")}

    def __init__(self, lr: float, *, basis_update_every: int = 1) -> None:
        self.lr = _positive(lr, "lr")
        self.basis_update_every = _count(basis_update_every, "basis_update_every")
        self.truncation = Truncation()

    # ------------------------------------------------------------------ public API
    def init(self, Y: LowRank) -> LowRankParam:
        """The parameter at the starting point ``Y`` (rank ``r``), with fresh optimizer state.

        Parameters
        ----------
        Y : LowRank
            ``U (..., m, r)``, ``S (..., r, r)``, ``V (..., n, r)``; leading dimensions
            are a stack of equally shaped layers updated together.
        """
        if not isinstance(Y, LowRank):
            msg = (
                f"`Y` must be a LowRank; got {type(Y).__name__}. Build one with LowRank(U, S, V) or LowRank.from_dense."
            )
            raise TypeError(msg)
        param = _with_increments(LowRankParam(Y.U, Y.S, Y.V, None, None, {}, 0, Y.xp), Y.U, Y.S, Y.V)
        return param.replace(state=self._init_state(param))

    def phase(self, param: LowRankParam) -> str:
        """Phase of the next step: ``"K"``, ``"L"``, ``"S"`` or ``"T"`` (tangent)."""
        return self.phases[(param.step // self.basis_update_every) % len(self.phases)]

    def needs(self, param: LowRankParam) -> tuple[str, ...]:
        """Gradients the next step uses, a subset of ``("K", "L", "S")``."""
        return self.NEEDS[self.phase(param)]

    def step(
        self,
        param: LowRankParam,
        *,
        grad: Any = None,
        grad_K: Any = None,
        grad_L: Any = None,
        grad_S: Any = None,
        counters: Counters | None = None,
        check_finite: bool = True,
    ) -> LowRankParam:
        r"""One optimizer step.

        Pass either the full-matrix gradient ``grad = G = \nabla_W \mathcal L`` at the
        parameter's current weight ``W`` (shape ``(..., m, n)``), or the factor gradients
        of the current representation (see :class:`LowRankParam`): ``grad_K = G V``
        (``(..., m, q)``), ``grad_L = G^H U`` (``(..., n, p)``), ``grad_S = U^H G V``
        (``(..., p, q)``).  Only those in :meth:`needs` are required.

        Parameters
        ----------
        param : LowRankParam
            Not modified.
        grad, grad_K, grad_L, grad_S : array, optional
        counters : Counters, optional
            Receives the decompositions (shapes, flops) and one gradient evaluation
            per matrix (``rhs_evals``).
        check_finite : bool, default True
            Scan the gradients for NaN/Inf (one host read-back per gradient: a
            synchronisation on GPUs).  ``False`` skips the scan; the caller checks.

        Returns
        -------
        LowRankParam
            The updated parameter; after the last step of a phase, in the new basis.

        Raises
        ------
        NonFiniteGradientError
            A gradient contains NaN or Inf (carries the step index).
        """
        if not isinstance(param, LowRankParam):
            msg = f"`param` must be a LowRankParam (from `{type(self).__name__}.init`); got {type(param).__name__}."
            raise TypeError(msg)
        counters = _check_counters(counters)
        phase = self.phase(param)
        g = param.check_grads(
            grad, {"K": grad_K, "L": grad_L, "S": grad_S}, self.NEEDS[phase], check_finite=bool(check_finite)
        )
        counters.rhs_evals += math.prod(param.batch_shape)
        new = self._update(phase, param, g).replace(step=param.step + 1)
        if (param.step + 1) % self.basis_update_every == 0:
            new = self._close(phase, new, _Kit(param.xp, counters))
        return new

    @property
    def cycle_length(self) -> int:
        """Optimizer steps per cycle: ``len(phases) * basis_update_every``."""
        return len(self.phases) * self.basis_update_every

    def finish(self, param: LowRankParam, *, counters: Counters | None = None) -> LowRankParam:
        r"""End the current cycle early: ``W = U S V^H`` with orthonormal ``U, V``; the next step starts a cycle.

        At the start of a cycle (``param.step`` a multiple of :attr:`cycle_length`) the
        parameter is returned unchanged.  Otherwise, by the state of the cycle:

        * ``W`` already ``U S V^H`` with ``p = q`` columns (right after a fixed-rank basis
          change, or RA-BUG's pending K-step result): no arithmetic, ``W`` unchanged.
        * in an augmented basis (abc-PSI's ``U`` with ``p > q`` columns, RA-BUG's S-phase
          with ``2r`` columns each), ``dK = dL = 0``: SVD of ``S`` (``p x q``) and
          truncation.
        * increments in flight (in the middle of a phase): the tangent methods
          (:class:`ParallelBUG`, :class:`HeavyBall`, :class:`Adam`) close their phase as at
          its regular end (momentum transported); the others write
          ``W = [U, dK] M [V, dL]^H`` and compress it, ``[U, dK] = Q_a R_a``,
          ``[V, dL] = Q_b R_b`` (2 QR), SVD of the ``(p+q) x (p+q)`` core
          ``R_a M R_b^H``, truncation.

        The truncation is the optimizer's (``tol``/``rtol``, ``[min_rank, max_rank]``); a
        fixed-rank optimizer keeps the rank of the cycle's start, so ``W`` changes by the
        discarded part of the increments (as it would at a regular basis change).
        Pending phase state (RA-BUG's ``K1``) is dropped; the step counter moves to the
        next multiple of :attr:`cycle_length`.

        Parameters
        ----------
        param : LowRankParam
            Not modified.
        counters : Counters, optional
            Receives the decompositions.

        Returns
        -------
        LowRankParam
            ``on_manifold`` is True.
        """
        if not isinstance(param, LowRankParam):
            msg = f"`param` must be a LowRankParam (from `{type(self).__name__}.init`); got {type(param).__name__}."
            raise TypeError(msg)
        counters = _check_counters(counters)
        cycle = self.cycle_length
        if param.step % cycle == 0:
            return param
        kit = _Kit(param.xp, counters)
        p, q = param.U.shape[-1], param.V.shape[-1]
        rank_in = param.state.get("r0", min(p, q))
        if param.step % self.basis_update_every != 0:  # increments in flight
            new = self._finish_phase(param, kit, rank_in)
        elif p != q or "r0" in param.state:  # augmented basis (abc-PSI, RA-BUG), dK = dL = 0
            Y1, _ = _steps.svd_truncate(kit, self.truncation, param.U, param.S, param.V, rank_in)
            new = _with_increments(param, Y1.U, Y1.S, Y1.V)
        else:
            new = param
        state = {k: v for k, v in new.state.items() if k not in ("K1", "r0")}
        return new.replace(step=-(-param.step // cycle) * cycle, state=state)

    def _finish_phase(self, param: LowRankParam, kit: _Kit, rank_in: int) -> LowRankParam:
        """Compress ``W = U S V^H + dK V^H + U dL^H`` onto the manifold (see :meth:`finish`)."""
        U, S, V, dK, dL = param.U, param.S, param.V, param.dK, param.dL
        p, q = U.shape[-1], V.shape[-1]
        Qa, Ra = kit.qr(param.xp.concat([U, dK], axis=-1))
        Qb, Rb = kit.qr(param.xp.concat([V, dL], axis=-1))
        Ra1, Ra2, Rb1, Rb2 = Ra[..., :p], Ra[..., p:], Rb[..., :q], Rb[..., q:]
        core = kit.mm(kit.mm(Ra1, S) + Ra2, kit.ch(Rb1)) + kit.mm(Ra1, kit.ch(Rb2))
        Y1, _ = _steps.svd_truncate(kit, self.truncation, Qa, core, Qb, rank_in)
        return _with_increments(param, Y1.U, Y1.S, Y1.V)

    # ------------------------------------------------------------------ hooks
    def _init_state(self, param: LowRankParam) -> dict:
        return {}

    #: the parameter's fields that ``_update_`` overwrites, by phase
    WRITES: ClassVar[dict[str, tuple[str, ...]]] = {"K": ("dK",), "L": ("dL",), "S": ("S",), "T": ("S", "dK", "dL")}
    #: the state arrays that ``_update_`` overwrites
    STATE_WRITES: ClassVar[tuple[str, ...]] = ()

    def _update(self, phase: str, param: LowRankParam, g: dict[str, Any]) -> LowRankParam:
        """One optimizer step on the unknowns of ``phase``; ``param`` is not modified.

        ``_update_`` on copies of the arrays it writes (``WRITES``,
        ``STATE_WRITES``): the step has one implementation, which the PyTorch
        optimizer also runs in place on its layers' own storage.
        """
        xp = param.xp
        own = {f: xp.asarray(getattr(param, f), copy=True) for f in self.WRITES[phase]}
        state = {k: xp.asarray(v, copy=True) if k in self.STATE_WRITES else v for k, v in param.state.items()}
        return self._update_(phase, param.replace(**own, state=state), g)

    def _update_(self, phase: str, param: LowRankParam, g: dict[str, Any]) -> LowRankParam:
        """``_update`` overwriting ``param``'s arrays (those of ``WRITES`` and
        ``STATE_WRITES``) where the array library allows; returns the result.

        Here one explicit Euler (SGD) step on the unknown of ``phase``.
        """
        h, xp = self.lr, param.xp
        if phase == "K":
            return param.replace(dK=_inplace.axpy(param.dK, -h, g["K"], xp))
        if phase == "L":
            return param.replace(dL=_inplace.axpy(param.dL, -h, g["L"], xp))
        return param.replace(S=_inplace.axpy(param.S, -h, g["S"], xp))

    def _close(self, phase: str, param: LowRankParam, kit: _Kit) -> LowRankParam:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared closes
    @staticmethod
    def _K(param: LowRankParam, kit: _Kit) -> Any:
        """The K-step unknown ``K = U S + dK``."""
        return kit.mm(param.U, param.S) + param.dK

    @staticmethod
    def _L(param: LowRankParam, kit: _Kit) -> Any:
        """The L-step unknown ``L = V S^H + dL``."""
        return kit.mm(param.V, kit.ch(param.S)) + param.dL

    @staticmethod
    def _Y0(param: LowRankParam) -> LowRank:
        """The point ``U S V^H`` of the cycle's start (the increments left out)."""
        return LowRank._trusted(param.U, param.S, param.V, param.xp)

    def _qr_of_L(self, param: LowRankParam, kit: _Kit) -> LowRankParam:
        """End of a fixed-rank L-phase: ``L = V1 R`` so ``W = U R^H V1^H`` (the integrators' ``l_close``)."""
        Y1 = _steps.l_close(kit, param.U, self._L(param, kit))
        return _with_increments(param, Y1.U, Y1.S, Y1.V)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr:g}, basis_update_every={self.basis_update_every})"


class _RankAdaptive(AbstractLowRankOptimizer):
    """Optimizers whose basis change ends with a truncation ``T_theta``.

    Parameters
    ----------
    lr, basis_update_every
        See :class:`AbstractLowRankOptimizer`.
    tol, rtol : float, optional
        Truncation tolerance ``theta = tol + rtol ||s||_2`` on the Frobenius norm of the
        discarded singular values (absolute and relative).  Without either the rank
        stays at the input rank.
    min_rank, max_rank : int, optional
        Bounds of the adaptive rank.
    """

    rank_adaptive: ClassVar[bool] = True

    def __init__(
        self,
        lr: float,
        *,
        basis_update_every: int = 1,
        tol: float | None = None,
        rtol: float | None = None,
        min_rank: int = 1,
        max_rank: int | None = None,
    ) -> None:
        super().__init__(lr, basis_update_every=basis_update_every)
        self.truncation = Truncation(
            tol=_tolerance(tol, "tol"),
            rtol=_tolerance(rtol, "rtol"),
            min_rank=_count(min_rank, "min_rank"),
            max_rank=_count(max_rank, "max_rank", allow_none=True),
        )

    def __repr__(self) -> str:
        t = self.truncation
        return super().__repr__()[:-1] + f", tol={t.tol}, rtol={t.rtol}, min_rank={t.min_rank}, max_rank={t.max_rank})"


# ====================================================================== PSI family
class PSI(AbstractLowRankOptimizer):
    r"""Projector-splitting integrator (KSL) in training form; fixed rank.

    Cycle (``k = basis_update_every`` steps each):

    1. K-phase: ``K <- K - h grad_K`` from ``K = U0 S0`` (``V0`` frozen); then
       ``K = U1 Ŝ`` (QR, ``m x r``).
    2. S-phase, **backward**: ``S <- S + h grad_S`` from ``Ŝ`` (gradient *ascent*, the
       substep that makes PSI non-monotone in training).
    3. L-phase: ``L <- L - h grad_L`` from ``L = V0 S̃^H`` (``U1`` frozen); then
       ``L = V1 S1^H`` (QR, ``n x r``).

    Cost per cycle of ``3k`` steps: 2 QR (``m x r``, ``n x r``), no SVD.  Kept as the
    baseline against which the backward-corrected methods are measured.
    """

    name: ClassVar[str] = "psi"
    phases: ClassVar[tuple[str, ...]] = ("K", "S", "L")

    def _update_(self, phase: str, param: LowRankParam, g: dict[str, Any]) -> LowRankParam:
        if phase == "S":  # the backward-in-time S-substep: ascent
            return param.replace(S=_inplace.axpy(param.S, self.lr, g["S"], param.xp))
        return super()._update_(phase, param, g)

    def _close(self, phase: str, param: LowRankParam, kit: _Kit) -> LowRankParam:
        if phase == "K":
            U1, S_hat = kit.qr(self._K(param, kit))
            return _with_increments(param, U1, S_hat, param.V)
        if phase == "L":
            return self._qr_of_L(param, kit)
        return param


class BCPSI(AbstractLowRankOptimizer):
    r"""Backward-corrected PSI in training form; fixed rank.

    Cycle: K-phase (``k`` steps on ``K`` from ``U0 S0``), ``U1 = orth(K)`` (QR ``m x r``),
    backward correction ``S̃ = (U1^H U0) S0`` (a projection, no gradient), L-phase
    (``k`` steps on ``L`` from ``V0 S̃^H``), ``L = V1 S1^H`` (QR ``n x r``).
    Cost per cycle of ``2k`` steps: 2 QR, no SVD.  The two basis changes are
    :class:`lowrank_core.BCPSI`'s own step pieces (``corrected_basis``, ``l_close``).
    """

    name: ClassVar[str] = "bc-psi"
    phases: ClassVar[tuple[str, ...]] = ("K", "L")

    def _close(self, phase: str, param: LowRankParam, kit: _Kit) -> LowRankParam:
        if phase == "K":  # the integrator's backward correction
            U1, S_tilde = _steps.corrected_basis(kit, self._K(param, kit), self._Y0(param))
            return _with_increments(param, U1, S_tilde, param.V)
        return self._qr_of_L(param, kit)


class ABCPSI(_RankAdaptive):
    r"""Augmented backward-corrected PSI (abc-PSI, paper 1) in training form.

    Cycle from ``Y0 = U0 S0 V0^H`` of rank ``r``:

    1. K-phase: ``k`` steps ``K <- K - h grad_K`` from ``U0 S0``.
    2. Augment: ``Û = orth([K, U0])`` (one QR, ``m x 2r``); backward correction
       ``Ŝ = (Û^H U0) S0`` (``2r x r``), so that ``Û Ŝ V0^H = Y0`` exactly.
    3. L-phase: ``k`` steps ``L <- L - h grad_L`` from ``L = V0 Ŝ^H`` (``n x 2r``), with
       ``grad_L = G^H Û``.
    4. Truncate ``Û L^H``: thin SVD ``L = Q Σ P^H`` (``n x 2r``), ``U1 = Û P``,
       ``V1 = Q``, keep ``r1`` values by ``T_theta`` (``r1`` in ``[min_rank, 2r]``).

    Cost per cycle of ``2k`` steps: **1 QR** (``m x 2r``) and 1 SVD (``n x 2r``).
    With ``k = 1`` and one SGD step per phase it is :class:`lowrank_core.ABCPSI` with
    Euler substeps, except that the L-step gradient is taken on a fresh batch.

    Built on the integrator's step pieces: steps 2 and 4 are the functions
    :class:`lowrank_core.ABCPSI` calls (``augmented_basis`` and ``truncate_l`` of
    ``lowrank_core.integrators._steps``, variant ``"min-qr"``), so the two share one
    implementation of the basis change; this class adds only the optimizer steps of the
    phases.
    """

    name: ClassVar[str] = "abc-psi"
    phases: ClassVar[tuple[str, ...]] = ("K", "L")

    def _close(self, phase: str, param: LowRankParam, kit: _Kit) -> LowRankParam:
        if phase == "K":  # the integrator's augmentation and backward correction
            U_hat, S_hat = _steps.augmented_basis(kit, self._K(param, kit), self._Y0(param))
            return _with_increments(param, U_hat, S_hat, param.V)
        # the integrator's close ("min-qr"): L = Q diag(s) P^H  =>  Û L^H = (Û P) diag(s) Q^H
        Y1 = _steps.truncate_l(kit, self.truncation, param.U, self._L(param, kit), param.V.shape[-1])
        return _with_increments(param, Y1.U, Y1.S, Y1.V)


class RABUG(_RankAdaptive):
    r"""Rank-adaptive BUG (DLRT) in training form.

    Cycle from ``Y0 = U0 S0 V0^H`` of rank ``r``:

    1. K-phase: ``k`` steps on ``K`` from ``U0 S0`` (``V0`` frozen); ``K1`` is stored.
    2. L-phase: ``k`` steps on ``L`` from ``V0 S0^H`` (``U0`` frozen), again from ``Y0``.
    3. Augment: ``Û = orth([K1, U0])``, ``V̂ = orth([L1, V0])`` (2 QR, ``m x 2r`` and
       ``n x 2r``); ``Ŝ = (Û^H U0) S0 (V0^H V̂)`` (``2r x 2r``, represents ``Y0`` exactly).
    4. S-phase: ``k`` Galerkin steps ``Ŝ <- Ŝ - h grad_S`` in the augmented bases.
    5. Truncate (SVD ``2r x 2r``).

    Cost per cycle of ``3k`` steps: 2 QR and 1 SVD.  DLRT (Schotthöfer et al. 2022)
    takes one step per phase on three passes of one batch; here every step takes a
    fresh gradient.  Steps 3 and 5 are :class:`lowrank_core.RABUG`'s own step pieces
    (``augmented_bases``, ``svd_truncate``).
    """

    name: ClassVar[str] = "ra-bug"
    phases: ClassVar[tuple[str, ...]] = ("K", "L", "S")

    def _close(self, phase: str, param: LowRankParam, kit: _Kit) -> LowRankParam:
        if phase == "K":  # keep K1, go back to Y0 for the L-phase
            state = {**param.state, "K1": self._K(param, kit)}
            return _with_increments(param, param.U, param.S, param.V, state=state)
        if phase == "L":  # the integrator's two augmentations
            state = dict(param.state)
            K1 = state.pop("K1")
            U_hat, S_hat, V_hat = _steps.augmented_bases(kit, K1, self._L(param, kit), self._Y0(param))
            state["r0"] = param.V.shape[-1]
            return _with_increments(param, U_hat, S_hat, V_hat, state=state)
        state = dict(param.state)  # the integrator's truncation of the Galerkin core
        Y1, _ = _steps.svd_truncate(kit, self.truncation, param.U, param.S, param.V, state.pop("r0"))
        return _with_increments(param, Y1.U, Y1.S, Y1.V, state=state)


# ====================================================================== tangent family
class ParallelBUG(_RankAdaptive):
    r"""Parallel BUG (GeoLoRA-style) in training form: one gradient pass per step.

    Between basis updates the weight moves in the tangent space of ``Y0 = U0 S0 V0^H``:
    ``W = U0 S V0^H + dK V0^H + U0 dL^H``.  Each step moves ``W`` by ``-h`` times the
    Riemannian gradient

    .. math::

        P(Y_0) G = U_0 g_S V_0^H + g_U V_0^H + U_0 g_V^H, \quad
        g_S = U_0^H G V_0, \; g_U = (I - U_0 U_0^H) G V_0, \; g_V = (I - V_0 V_0^H) G^H U_0 ,

    taken in the coordinates ``(-grad_S, grad_K, grad_L)``, which represent the same
    matrix because ``U_0^H grad_K = grad_S = (V_0^H grad_L)^H`` (so the three must be the
    factor gradients of one ``G``, as a backward pass or ``grad=G`` gives them):
    ``S += h grad_S``, ``dK -= h grad_K``, ``dL -= h grad_L``, no product per step.  The
    increments then have parts in the ranges of ``U0``, ``V0``, which ``S`` compensates.
    After ``k`` steps: ``[U0, Ũ] = orth([U0, dK])``, ``[V0, Ṽ] = orth([V0, dL])`` (QR
    ``m x 2r``, ``n x 2r``), core ``Ŝ = [[S̄, dL^H Ṽ], [Ũ^H dK, 0]]`` with
    ``S̄ = U0^H W V0 = S + U0^H dK + dL^H V0`` (``2r x 2r``), SVD, truncate.  With
    ``k = 1`` this is :class:`lowrank_core.ParallelBUG` with Euler substeps,
    ``Y½ = Y0 - h P(Y0) G(Y0)``; the basis change is that integrator's core assembly
    and truncation (``parallel_core``, ``svd_truncate``), with ``dK``, ``dL``
    in place of its K- and L-step results.
    """

    name: ClassVar[str] = "parallel-bug"
    phases: ClassVar[tuple[str, ...]] = ("T",)

    def _update_(self, phase: str, param: LowRankParam, g: dict[str, Any]) -> LowRankParam:
        """``W <- W - h P(Y0) G`` in the coordinates ``(-grad_S, grad_K, grad_L)``, in place.

        ``U0 (-g_S) V0^H + grad_K V0^H + U0 grad_L^H`` *is* ``P(Y0) G`` (expand the tangent
        coordinates of :meth:`_tangent`: ``U0^H grad_K = grad_S = (V0^H grad_L)^H``), with
        no product at all; the increments then carry parts in the ranges of ``U0``, ``V0``
        that ``S`` compensates (the close adds them back).  A linear method (plain
        steps, heavy ball's momentum) may take its steps in these coordinates: the
        matrices it adds up are the same.  This saves the two ``m x r x r`` products per
        layer and step of :meth:`_tangent`.
        """
        h, xp = self.lr, param.xp
        return param.replace(
            S=_inplace.axpy(param.S, h, g["S"], xp),
            dK=_inplace.axpy(param.dK, -h, g["K"], xp),
            dL=_inplace.axpy(param.dL, -h, g["L"], xp),
        )

    @staticmethod
    def _tangent(param: LowRankParam, g: dict[str, Any]) -> tuple[Any, Any, Any]:
        """The Riemannian gradient's tangent coordinates ``(g_S, g_U, g_V)`` from ``(grad_S, grad_K, grad_L)``."""
        xp, U, V = param.xp, param.U, param.V
        gS = g["S"]
        # (I - U U^H) G V = grad_K - U grad_S and (I - V V^H) G^H U = grad_L - V grad_S^H:
        # U^H grad_K = grad_S = (V^H grad_L)^H, so one m x r x r product per projection
        # (new arrays: the caller's gradients are not overwritten)
        gU = _inplace.minus_matmul(g["K"], U, gS, xp)
        return gS, gU, _inplace.minus_matmul(g["L"], V, conj_transpose(gS, xp), xp)

    def _close(self, phase: str, param: LowRankParam, kit: _Kit) -> LowRankParam:
        # The integrator's core assembly, with the increments dK, dL in place of the K-
        # and L-step results (only their parts orthogonal to U0, V0 enter), and the core
        # block S_bar = U0^H W V0 = S + U0^H dK + dL^H V0: the steps of every method of
        # this family leave parts of dK, dL in the ranges of U0, V0, which S compensates.
        S_bar = param.S + kit.mm(kit.ch(param.U), param.dK) + kit.mm(kit.ch(param.dL), param.V)
        U_hat, S_hat, V_hat = _steps.parallel_core(kit, S_bar, param.U, param.V, param.dK, param.dL)
        Y1, _ = _steps.svd_truncate(kit, self.truncation, U_hat, S_hat, V_hat, param.U.shape[-1])
        return _with_increments(param, Y1.U, Y1.S, Y1.V, state=self._transport(param, Y1))

    def _transport(self, param: LowRankParam, Y1: LowRank) -> dict:
        return param.state

    def _finish_phase(self, param: LowRankParam, kit: _Kit, rank_in: int) -> LowRankParam:
        return self._close("T", param, kit)


_MOMENTUM_TRANSPORTS = ("project", "reset")
_SECOND_MOMENT_TRANSPORTS = ("sqrt", "linear", "reset")


class HeavyBall(ParallelBUG):
    r"""Low-rank heavy ball (paper 2, methods.md §3.4): momentum kept in the tangent space.

    State: the momentum ``M = U B_S V^H + B_U V^H + U B_V^H``, a tangent vector at ``Y``,
    by its coordinates ``(B_S, B_U, B_V)`` (``(m + n + r) r`` numbers; between basis
    changes in :class:`ParallelBUG`'s product-free coordinates, tangent ones
    ``U^H B_U = 0``, ``V^H B_V = 0`` after each transport).  Step (``g`` the Riemannian
    gradient of :class:`ParallelBUG`, in its coordinates; the step is linear in ``g``, so
    ``M`` is the same matrix as with tangent coordinates):

    .. math::

        B \leftarrow \beta B + g, \qquad (S, dK, dL) \leftarrow (S, dK, dL) - h B .

    At every basis change ``Y0 -> Y1`` the momentum is **transported by projection**,
    ``M <- P(Y1) M`` (:func:`transport_tangent`), so it is tangent at the new point and
    vanishes at stationary points; ``momentum_transport="reset"`` sets it to zero instead.
    With ``beta = 0`` this is :class:`ParallelBUG`; with ``k = 1`` one step costs 2 QR
    and 1 SVD (``2r x 2r``) and one gradient pass.

    Parameters
    ----------
    lr, basis_update_every, tol, rtol, min_rank, max_rank
        See :class:`ParallelBUG`.
    beta : float, default 0.9
        Momentum factor in ``[0, 1)``.
    momentum_transport : {"project", "reset"}, default "project"
    """

    name: ClassVar[str] = "heavy-ball"
    STATE_WRITES: ClassVar[tuple[str, ...]] = ("B_S", "B_U", "B_V")

    def __init__(
        self,
        lr: float,
        *,
        beta: float = 0.9,
        momentum_transport: str = "project",
        basis_update_every: int = 1,
        tol: float | None = None,
        rtol: float | None = None,
        min_rank: int = 1,
        max_rank: int | None = None,
    ) -> None:
        super().__init__(
            lr, basis_update_every=basis_update_every, tol=tol, rtol=rtol, min_rank=min_rank, max_rank=max_rank
        )
        self.beta = _unit_interval(beta, "beta")
        self.momentum_transport = choice(momentum_transport, "momentum_transport", _MOMENTUM_TRANSPORTS)

    def _init_state(self, param: LowRankParam) -> dict:
        xp = param.xp
        return {"B_S": xp.zeros_like(param.S), "B_U": xp.zeros_like(param.dK), "B_V": xp.zeros_like(param.dL)}

    def _update_(self, phase: str, param: LowRankParam, g: dict[str, Any]) -> LowRankParam:
        # linear in g: any coordinates of P(Y0) G, here ParallelBUG's (-grad_S, grad_K, grad_L)
        st, b, h, xp = param.state, self.beta, self.lr, param.xp
        # each moment is used right after its update, while it is in cache
        B_S = _inplace.average(st["B_S"], b, -1.0, g["S"], xp)
        S = _inplace.axpy(param.S, -h, B_S, xp)
        B_U = _inplace.average(st["B_U"], b, 1.0, g["K"], xp)
        dK = _inplace.axpy(param.dK, -h, B_U, xp)
        B_V = _inplace.average(st["B_V"], b, 1.0, g["L"], xp)
        dL = _inplace.axpy(param.dL, -h, B_V, xp)
        return param.replace(S=S, dK=dK, dL=dL, state={**st, "B_S": B_S, "B_U": B_U, "B_V": B_V})

    def _transport(self, param: LowRankParam, Y1: LowRank) -> dict:
        st = param.state
        if self.momentum_transport == "reset":
            xp = param.xp
            return {**st, "B_S": xp.zeros_like(Y1.S), "B_U": xp.zeros_like(Y1.U), "B_V": xp.zeros_like(Y1.V)}
        A, B, C = transport_tangent(param.U, param.V, st["B_S"], st["B_U"], st["B_V"], Y1.U, Y1.V, param.xp)
        return {**st, "B_S": A, "B_U": B, "B_V": C}

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", beta={self.beta:g}, momentum_transport={self.momentum_transport!r})"


class Adam(ParallelBUG):
    r"""Low-rank Adam (paper 2, methods.md §3.5) on the tangent coordinates.

    State: first moment ``m = (m_S, m_U, m_V)`` (tangent coordinates, like the heavy
    ball's momentum), second moment ``v = (v_S, v_U, v_V)`` (element-wise, real,
    non-negative) and the step counters ``t`` (of ``m``) and ``t_v`` (of ``v``).  Step
    with the Riemannian gradient ``g`` of :class:`ParallelBUG`:

    .. math::

        m \leftarrow \beta_1 m + (1-\beta_1) g, \quad
        v \leftarrow \beta_2 v + (1-\beta_2) |g|^2, \quad
        d = \frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^{t_v})} + \epsilon},

    and ``W`` moves by ``-h`` times the tangent projection of ``d`` (the element-wise
    division leaves the tangent space): ``dK -= h d_U``, ``dL -= h d_V`` and
    ``S -= h (d_S - U^H d_U - d_V^H V)``, which is ``U d_S V^H + (I - U U^H) d_U V^H +
    U ((I - V V^H) d_V)^H``.  So, unlike :class:`ParallelBUG`'s, Adam's increments carry
    parts in the ranges of ``U``, ``V`` (compensated in ``S``; ``W`` is the same) and
    the basis change assembles its core from ``U^H W V = S + U^H dK + dL^H V``: two
    ``m x r x r`` products per step fewer than projecting ``d_U`` and ``d_V``.

    At each basis change ``Y0 -> Y1``: ``m <- P(Y1) m`` (:func:`transport_tangent`), and
    ``v`` by ``second_moment``:

    * ``"sqrt"`` (default; the rule of the first author's RobustDLRT code): transport
      ``sqrt(v)`` as if it were a tangent vector and square it element-wise.  Keeps
      ``v >= 0``; a heuristic, not the second moment of the rotated gradients.
    * ``"linear"``: transport ``v`` itself and take absolute values.
    * ``"reset"``: ``v <- 0`` and ``t_v <- 0`` (bias correction restarts).

    Parameters
    ----------
    lr, basis_update_every, tol, rtol, min_rank, max_rank
        See :class:`ParallelBUG`.
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    second_moment : {"sqrt", "linear", "reset"}, default "sqrt"
    """

    name: ClassVar[str] = "adam"
    STATE_WRITES: ClassVar[tuple[str, ...]] = ("m_S", "m_U", "m_V", "v_S", "v_U", "v_V")

    def __init__(
        self,
        lr: float,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        second_moment: str = "sqrt",
        basis_update_every: int = 1,
        tol: float | None = None,
        rtol: float | None = None,
        min_rank: int = 1,
        max_rank: int | None = None,
    ) -> None:
        super().__init__(
            lr, basis_update_every=basis_update_every, tol=tol, rtol=rtol, min_rank=min_rank, max_rank=max_rank
        )
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__iter__"):
            msg = f"`betas` must be a pair (beta1, beta2) of numbers in [0, 1); got {betas!r}."
            raise TypeError(msg)
        betas = tuple(betas)
        if len(betas) != 2:
            msg = f"`betas` must be a pair (beta1, beta2); got {len(betas)} values {betas!r}."
            raise ValueError(msg)
        self.betas = (_unit_interval(betas[0], "betas[0]"), _unit_interval(betas[1], "betas[1]"))
        self.eps = _positive(eps, "eps")
        self.second_moment = choice(second_moment, "second_moment", _SECOND_MOMENT_TRANSPORTS)

    def _init_state(self, param: LowRankParam) -> dict:
        xp = param.xp
        st = {f"m_{k}": xp.zeros_like(x) for k, x in (("S", param.S), ("U", param.dK), ("V", param.dL))}
        st.update(
            {f"v_{k}": _zeros(x.shape, x, xp, real=True) for k, x in (("S", param.S), ("U", param.dK), ("V", param.dL))}
        )
        st.update({"t": 0, "t_v": 0})
        return st

    def _update_(self, phase: str, param: LowRankParam, g: dict[str, Any]) -> LowRankParam:
        xp, st, h = param.xp, param.state, self.lr
        gs = self._tangent(param, g)
        t, t_v = st["t"] + 1, st["t_v"] + 1
        new = {**st, "t": t, "t_v": t_v}
        ms, vs = [st[f"m_{k}"] for k in "SUV"], [st[f"v_{k}"] for k in "SUV"]
        d = _inplace.adam_directions(ms, vs, list(gs), self.betas, t, t_v, self.eps, xp)  # bias-corrected
        # (in place: the moments are the state's own arrays; libraries without mutation rebind)
        new.update({f"m_{k}": x for k, x in zip("SUV", ms, strict=True)})
        new.update({f"v_{k}": x for k, x in zip("SUV", vs, strict=True)})
        # The step is the tangent projection of d: U d_S V^H + (I - U U^H) d_U V^H +
        # U ((I - V V^H) d_V)^H = U (d_S - U^H d_U - d_V^H V) V^H + d_U V^H + U d_V^H, so
        # the increments take d_U, d_V as they are and S the ranges' parts (two m x r x r
        # products instead of four; the close adds them back, see ParallelBUG._close).
        S = _inplace.axpy(param.S, -h, d[0], xp)
        S = _inplace.add_matmul(S, h, conj_transpose(param.U, xp), d[1], xp)
        S = _inplace.add_matmul(S, h, conj_transpose(d[2], xp), param.V, xp)
        dK = _inplace.axpy(param.dK, -h, d[1], xp)
        dL = _inplace.axpy(param.dL, -h, d[2], xp)
        return param.replace(S=S, dK=dK, dL=dL, state=new)

    def _transport(self, param: LowRankParam, Y1: LowRank) -> dict:
        xp, st = param.xp, param.state
        if self.second_moment == "reset":  # restart Adam in the new basis
            return {**self._init_state(_with_increments(param, Y1.U, Y1.S, Y1.V)), "t": 0, "t_v": 0}
        U0, V0 = param.U, param.V
        ab = _overlaps(U0, V0, Y1.U, Y1.V, xp)  # shared by both moments' transports
        ms = _transport_tangent(ab, U0, V0, st["m_S"], st["m_U"], st["m_V"], Y1.U, Y1.V, xp)
        vs = [st["v_S"], st["v_U"], st["v_V"]]
        if self.second_moment == "sqrt":
            vs = [xp.sqrt(v) for v in vs]
        vs = _transport_tangent(ab, U0, V0, *(xp.astype(v, U0.dtype) for v in vs), Y1.U, Y1.V, xp)
        vs = [xp.abs(v) ** 2 if self.second_moment == "sqrt" else xp.abs(v) for v in vs]
        # Restore Adam's bound |m| <= sqrt(v) entry-wise: the rotation moves momentum into
        # entries whose second moment is ~0, where m / sqrt(v) would explode (measured on
        # the ill-conditioned toy: without this guard both rules diverge).
        vs = [xp.maximum(v, xp.abs(m) ** 2) for v, m in zip(vs, ms, strict=True)]
        return {**st, "m_S": ms[0], "m_U": ms[1], "m_V": ms[2], "v_S": vs[0], "v_U": vs[1], "v_V": vs[2]}

    def __repr__(self) -> str:
        return (
            super().__repr__()[:-1] + f", betas={self.betas}, eps={self.eps:g}, second_moment={self.second_moment!r})"
        )
