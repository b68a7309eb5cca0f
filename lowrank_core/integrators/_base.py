r"""Integrator base classes, the step contract, and the step toolkit shared by every method.

The step contract
-----------------
An integrator is an immutable configuration (a frozen dataclass: substep solver,
truncation rule, options of the method); the evolving state is passed in and returned,
so a user can drive the integration:

>>> import numpy as np
>>> import lowrank_core as lc
>>> rng = np.random.default_rng(0)
>>> Y = lc.LowRank.from_dense(rng.standard_normal((20, 15)), rank=3)
>>> problem = lc.MatrixODE(lambda t, Y: -Y)
>>> method = lc.KSL(substep="rk4")
>>> state = method.init(problem, 0.0, Y)
>>> total = lc.Counters()
>>> for k in range(10):
...     Y, state, info = method.step(problem, 0.1 * k, 0.1 * (k + 1), Y, state)
...     total.add(info)
>>> info.qr, total.qr
(2, 20)

* ``init(problem, t0, Y0) -> state`` checks that problem, state and configuration fit
  and returns the method's initial state (``None`` for the memoryless methods here; the
  prepared kept columns of a conservative truncation).
* ``step(problem, t0, t1, Y0, state) -> (Y1, state1, info)`` (abstract) advances one
  step without touching its inputs; ``info`` is a :class:`~lowrank_core.StepInfo`: the
  decompositions, right-hand-side points, rejected attempts and ``max_rank`` hits of
  this step, and an optional local error estimate.  :func:`lowrank_core.solve` adds the
  infos of its steps to ``sol.stats`` (:meth:`~lowrank_core.Counters.add`).
* Capabilities are class attributes, declared once: ``name`` (registry name),
  ``order`` (for the step-size controller), ``rank_adaptive`` (the rank may change:
  ``tol``/``rtol``), ``conservative`` (accepts ``conserve=``).  Options are the
  dataclass fields: ``solve(method=name, **options)`` builds the method with
  :meth:`AbstractIntegrator.from_options`, which rejects options the class has no
  field for with an error naming the methods that take them.
* Every step is composed from the methods of a :class:`StepKit` (substeps, QR, SVD,
  augmentation, projection, truncation): the ``kit`` field names the class, so a variant
  of one building block is ``dataclasses.replace(method, kit=MyKit)`` with
  ``class MyKit(lc.integrators.StepKit)`` overriding that method (tests plant bugs this
  way; a user can count, log or swap a decomposition).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._conservation import Conservation, _Kept
from .._linalg import matmul, thin_qr, thin_svd
from .._lowrank import LowRank
from .._namespace import conj_transpose
from .._problem import AbstractMatrixODE, RHSValue
from .._stats import Counters, StepInfo
from .._substep import SubFlow, SubstepSolver, resolve_substep
from .._truncation import Truncation

__all__ = ["AbstractIntegrator", "AbstractRankAdaptive", "StepKit"]


class StepKit:
    """The building blocks of a step, bound to one problem, namespace and tally.

    Every integrator composes its step from these, so substeps, orthonormalization,
    augmentation and truncation are written once, and every decomposition and
    right-hand-side point of a step is counted in the kit's ``counters`` (a fresh
    :class:`~lowrank_core.Counters` per step; :meth:`info` turns it into the step's
    :class:`~lowrank_core.StepInfo`).

    This is the integrators' public extension point: each integrator has a ``kit``
    field naming its kit class (default ``StepKit``), and builds one kit per step with
    ``kit(problem, xp, counters, substep)``.  A subclass that overrides one of the
    methods below changes that building block in every method that uses it:

    >>> import dataclasses
    >>> import lowrank_core as lc
    >>> class LoggingKit(lc.integrators.StepKit):
    ...     def qr(self, X):
    ...         print("QR of", tuple(X.shape))
    ...         return super().qr(X)
    >>> method = dataclasses.replace(lc.BUG(), kit=LoggingKit)

    Parameters
    ----------
    problem : AbstractMatrixODE or None
        The right-hand side (``None`` for a kit that only does linear algebra, as in
        training).
    xp : namespace
        Array namespace of the state.
    counters : Counters
        Receives the counts of the step.
    substep : SubstepSolver or None
        Solver of the K-, L- and S-substeps.
    """

    def __init__(self, problem: AbstractMatrixODE, xp: Any, counters: Counters, substep: SubstepSolver) -> None:
        self.problem, self.xp, self.counters, self.substep = problem, xp, counters, substep

    def info(self, error_estimate: Any = None) -> StepInfo:
        """The counts of this kit's step as a :class:`~lowrank_core.StepInfo` (with an
        optional local ``error_estimate``)."""
        return self.counters.info(error_estimate)

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


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class AbstractIntegrator(metaclass=abc.ABCMeta):
    """Base class of the low-rank integrators (see the module docstring for the contract).

    A subclass is a ``@dataclass(frozen=True, eq=False, repr=False, kw_only=True)``
    declaring its capabilities as class attributes and its options as fields, and
    implements :meth:`step`.  Instances are immutable (assigning an attribute raises
    ``dataclasses.FrozenInstanceError``): change an option with
    ``dataclasses.replace``.  They compare by identity, pickle and deep-copy.

    Parameters
    ----------
    substep : {"rk4", "euler", "rk45", "exact"} or SubstepSolver, default "rk4"
        Solver of the K-, L- and S-substeps (held as the resolved
        :class:`~lowrank_core.SubstepSolver`).
    kit : type, default StepKit
        The :class:`StepKit` subclass the steps are built from (the extension point of
        the module docstring).

    Attributes
    ----------
    name : str
        Registry name used by :func:`lowrank_core.solve` (class attribute).
    order : int
        Classical order of the method with exact substeps.  ``solve(..., dt=None)`` uses
        it for its step-doubling estimate ``||Y_2 - Y_1|| / (2^p - 1)`` and its
        controller exponent ``1/p``: a new integrator sets its own.  A method with an
        embedded pair instead has an ``embedded_order`` ``q`` (a property; ``None`` where
        the configuration has no pair) and a ``step(..., estimate=True)`` that returns
        the pair's estimate as ``info.error_estimate``; the controller then uses it
        (error per step, exponent ``1/(q + 1)``) instead of step doubling.
    rank_adaptive : bool
        Whether the rank may change from step to step (the class takes
        ``tol``/``rtol``/``min_rank``/``max_rank``/``truncation_rule``).
    conservative : bool
        Whether the class accepts ``conserve=`` (a conservative truncation).
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 1
    rank_adaptive: ClassVar[bool] = False
    conservative: ClassVar[bool] = False

    substep: Any = "rk4"
    kit: type[StepKit] = StepKit

    def __post_init__(self) -> None:
        object.__setattr__(self, "substep", resolve_substep(self.substep))
        if not (isinstance(self.kit, type) and issubclass(self.kit, StepKit)):
            msg = (
                f"`kit` must be a subclass of lowrank_core.integrators.StepKit (the class, not an instance); "
                f"got {self.kit!r} of type {type(self.kit).__name__}."
            )
            raise TypeError(msg)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Names of the options of this method (its constructor's fields, without ``kit``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name != "kit")

    @classmethod
    def from_options(cls, **options: Any) -> AbstractIntegrator:
        """This method configured from :func:`lowrank_core.solve`'s options.

        ``None`` means "the method's default" for every option of ``solve`` (so it is
        dropped); an option the class has no field for raises ``ValueError`` naming the
        option and the methods that take it; the fields validate their own values.
        """
        from . import METHODS  # the registry imports the subclasses of this module

        mine = cls.option_names()
        kwargs = {}
        for key, value in options.items():
            if value is None:
                continue
            if key in mine:
                kwargs[key] = value
                continue
            if key == "conserve":
                check_conservation(value, cls)  # names the conservative methods
            if key in AbstractRankAdaptive.option_names() and not cls.rank_adaptive:
                msg = (
                    f"`{key}` was given, but method {cls.name!r} has fixed rank. Use a rank-adaptive method "
                    f"such as 'abc-psi', or drop `{key}`."
                )
                raise ValueError(msg)
            takers = [m.name for m in METHODS.values() if key in m.option_names()]
            if not takers:
                msg = f"unknown option `{key}` for method {cls.name!r}; it takes {', '.join(mine)}."
                raise TypeError(msg)
            names = " and ".join(repr(n) for n in takers) if len(takers) <= 2 else ", ".join(map(repr, takers))
            msg = f"`{key}` applies to {names} only; method {cls.name!r} has none. Drop `{key}`."
            raise ValueError(msg)
        return cls(**kwargs)

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

    @abc.abstractmethod
    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any
    ) -> tuple[LowRank, Any, StepInfo]:
        """Advance ``Y0`` from ``t0`` to ``t1``.

        Parameters
        ----------
        problem : AbstractMatrixODE
        t0, t1 : float
            Step interval, ``t1 > t0``.
        Y0 : LowRank
            State at ``t0`` (orthonormal ``U``, ``V``); not modified.
        state : object
            What :meth:`~lowrank_core.integrators.AbstractIntegrator.init` (or the previous step) returned.

        Returns
        -------
        Y1 : LowRank
            State at ``t1``.
        state : object
            The state to pass to the next step.
        info : StepInfo
            What the step did (decompositions, right-hand-side points, rejections,
            ``max_rank`` hits; ``error_estimate`` where the method has one), counted per
            matrix of a stack.
        """

    def make_kit(self, problem: AbstractMatrixODE, Y0: LowRank) -> StepKit:
        """A fresh kit of class ``self.kit`` for one step from ``Y0`` (with its own
        counters, returned as the step's info by :meth:`StepKit.info`)."""
        return self.kit(problem, Y0.xp, Counters(), self.substep)

    def _kit_repr(self) -> str:
        """``", kit=Name"`` for a kit other than the default (for ``__repr__``)."""
        return "" if self.kit is StepKit else f", kit={self.kit.__qualname__}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(substep={self.substep.name!r}{self._kit_repr()})"


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class AbstractRankAdaptive(AbstractIntegrator):
    """Base of the integrators that can change the rank: the truncation options.

    The capability itself is the class attribute ``rank_adaptive = True`` (set here);
    code asks ``cls.rank_adaptive``, not ``issubclass``.  ``conserve`` (a
    :class:`~lowrank_core.Conservation`) is accepted by the subclasses with
    ``conservative = True`` (:class:`~lowrank_core.RABUG`,
    :class:`~lowrank_core.ABCPSI`): their augmented bases then always contain the kept
    columns and their truncation keeps the part of ``Y`` the kept columns see exactly.

    Parameters
    ----------
    substep, kit
        As for :class:`AbstractIntegrator`.
    tol, rtol, min_rank, max_rank, truncation_rule
        The :class:`~lowrank_core.Truncation` of every step (held as ``truncation``).
    conserve : Conservation, optional
        Conservative truncation (methods with ``conservative = True`` only).
    """

    rank_adaptive: ClassVar[bool] = True

    tol: float | None = None
    rtol: float | None = None
    min_rank: int = 1
    max_rank: int | None = None
    truncation_rule: str = "tail"
    conserve: Conservation | None = None
    truncation: Truncation = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        truncation = Truncation(
            tol=self.tol, rtol=self.rtol, min_rank=self.min_rank, max_rank=self.max_rank, rule=self.truncation_rule
        )
        object.__setattr__(self, "truncation", truncation)
        check_conservation(self.conserve, self)

    @property
    def conservation(self) -> Conservation | None:
        """The ``conserve`` option (``None`` without a conservative truncation)."""
        return self.conserve

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
        if self.conservation is not None:
            self.conservation.check_rank(Y0.rank, self.truncation.max_rank, self.truncation.adaptive)
            return self.conservation.prepare(Y0)
        return state

    def __repr__(self) -> str:
        t = self.truncation
        return (
            f"{type(self).__name__}(substep={self.substep.name!r}, tol={t.tol}, rtol={t.rtol}, "
            f"min_rank={t.min_rank}, max_rank={t.max_rank}"
            + (f", truncation_rule={t.rule!r}" if t.rule != "tail" else "")
            + (f", conserve={self.conservation!r}" if self.conservation is not None else "")
            + f"{self._kit_repr()})"
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
