r"""Sub-flows of the splitting integrators and the small solvers that integrate them.

Every DLRA integrator evolves unconstrained factor ODEs with the bases frozen:

* K-flow (co-basis ``V`` fixed): ``dK/dt = F(t, K V^H) V``,          ``K (..., m, k)``
* L-flow (basis ``U`` fixed):    ``dL/dt = F(t, U L^H)^H U``,         ``L (..., n, k)``
* S-flow (both fixed):          ``dS/dt = ± U^H F(t, U S V^H) V``,   ``S (..., k, l)``

A :class:`SubFlow` knows how to evaluate its vector field through the problem's
product interface (one counted right-hand-side evaluation per call) and, for
``Y``-independent problems, its exact increment.  A :class:`SubstepSolver` advances a
sub-flow over ``[t0, t1]``.
"""

from __future__ import annotations

import math
from typing import Any

from ._checks import integer, real_number
from ._linalg import member_indices
from ._lowrank import LowRank
from ._namespace import device_of, eye_like
from ._problem import AbstractMatrixODE, RHSValue
from ._stats import Counters

__all__ = ["RK4", "RK45", "Euler", "Exact", "SubFlow", "SubstepBreakdown", "SubstepSolver", "resolve_substep"]


class SubFlow:
    """One factor ODE with frozen bases; see the module docstring.

    Parameters
    ----------
    kind : {"K", "L", "S"}
    problem : AbstractMatrixODE
    xp : namespace
    counters : Counters
    U : array or None
        Fixed left basis (L- and S-flows).
    V : array or None
        Fixed right basis (K- and S-flows).
    sign : float
        ``+1`` or ``-1`` (the backward S-step of projector splitting uses ``-1``).
    """

    def __init__(
        self,
        kind: str,
        problem: AbstractMatrixODE,
        xp: Any,
        counters: Counters,
        *,
        U: Any = None,
        V: Any = None,
        sign: float = 1.0,
    ) -> None:
        self.kind, self.problem, self.xp, self.counters = kind, problem, xp, counters
        self.U, self.V, self.sign = U, V, sign

    def point(self, X: Any) -> LowRank:
        """The evaluation point ``Y(X)`` as an (unchecked) factored matrix."""
        xp = self.xp
        batch = tuple(X.shape[:-2])
        if self.kind == "K":
            return LowRank._trusted(X, eye_like(X.shape[-1], X, xp, batch_shape=batch), self.V, xp)
        if self.kind == "L":
            return LowRank._trusted(self.U, eye_like(X.shape[-1], X, xp, batch_shape=batch), X, xp)
        return LowRank._trusted(self.U, X, self.V, xp)

    def evaluate(self, t: float, X: Any) -> RHSValue:
        """Evaluate ``F`` at ``(t, Y(X))``; counts one evaluation per matrix in the batch."""
        self.counters.rhs_evals += math.prod(X.shape[:-2])
        return self.problem.evaluate(t, self.point(X))

    def apply(self, value: RHSValue) -> Any:
        """The sub-flow's vector field from a bound right-hand side ``value``."""
        if self.kind == "K":
            return value.F_V(self.V)
        if self.kind == "L":
            return value.FH_U(self.U)
        out = value.UH_F_V(self.U, self.V)
        return -out if self.sign < 0 else out

    def field(self, t: float, X: Any, value: RHSValue | None = None) -> Any:
        """``dX/dt`` at ``(t, X)``; ``value`` reuses an evaluation already made at this point."""
        if value is None:
            value = self.evaluate(t, X)
        return self._checked(self.apply(value), X)

    def increment(self, t0: float, t1: float, X0: Any) -> Any:
        """Exact ``X(t1) - X(t0)`` for a ``Y``-independent right-hand side."""
        self.counters.rhs_evals += math.prod(X0.shape[:-2])
        return self._checked(self.apply(self.problem.increment(t0, t1, self.xp)), X0)

    _PRODUCT = {"K": "F_V", "L": "FH_U", "S": "UH_F_V"}

    def _checked(self, dX: Any, X: Any) -> Any:
        """Reject a product of the wrong shape or dtype (a user problem's bug) early."""
        if tuple(dX.shape) != tuple(X.shape) or dX.dtype != X.dtype:
            msg = (
                f"{type(self.problem).__name__}.{self._PRODUCT[self.kind]} returned shape "
                f"{tuple(dX.shape)} and dtype {dX.dtype}; expected shape {tuple(X.shape)} and "
                f"dtype {X.dtype} (the state's dtype)."
            )
            raise ValueError(msg)
        return dX


class SubstepSolver:
    """Advances a ``SubFlow`` over one interval ``[t0, t1]``.

    Subclasses implement :meth:`solve`.  ``first`` is an optional right-hand side
    already evaluated at ``(t0, Y(X0))``, reused for the first stage so that points
    shared between substeps are evaluated once.
    """

    name: str = ""
    #: number of F evaluations per substep (without reuse of ``first``)
    stages: int = 0
    needs_increments: bool = False

    def solve(self, flow: SubFlow, t0: float, t1: float, X0: Any, first: RHSValue | None = None) -> Any:
        """Return ``X(t1)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Euler(SubstepSolver):
    """Explicit Euler: ``X1 = X0 + h g(t0, X0)`` (order 1, one evaluation)."""

    name = "euler"
    stages = 1

    def solve(self, flow: SubFlow, t0: float, t1: float, X0: Any, first: RHSValue | None = None) -> Any:
        return X0 + (t1 - t0) * flow.field(t0, X0, first)


class RK4(SubstepSolver):
    """Classical fourth-order Runge-Kutta with stage times ``t0, t0+h/2, t0+h/2, t1``."""

    name = "rk4"
    stages = 4

    def solve(self, flow: SubFlow, t0: float, t1: float, X0: Any, first: RHSValue | None = None) -> Any:
        h = t1 - t0
        tm = t0 + 0.5 * h
        k1 = flow.field(t0, X0, first)
        k2 = flow.field(tm, X0 + (0.5 * h) * k1)
        k3 = flow.field(tm, X0 + (0.5 * h) * k2)
        k4 = flow.field(t1, X0 + h * k3)
        return X0 + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


class SubstepBreakdown(ArithmeticError):
    """An adaptive substep solver could not reach ``t1`` (step size below its floor, or
    too many inner steps).

    ``solve`` turns it into :class:`~lowrank_core.LowRankIntegrationError` with the index
    and start time of the outer step; ``t`` here is the inner time where it stopped,
    ``error`` the last weighted error estimate and ``members`` the batch indices of the
    members whose error was not below one (empty for a single problem).
    """

    def __init__(self, message: str, *, t: float, error: float, members: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.t, self.error, self.members = t, error, tuple(members)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_breakdown, (self.args[0], self.t, self.error, self.members)


def _rebuild_breakdown(message: str, t: float, error: float, members: tuple[Any, ...]) -> SubstepBreakdown:
    exc = SubstepBreakdown.__new__(SubstepBreakdown)
    ArithmeticError.__init__(exc, message)
    exc.t, exc.error, exc.members = t, error, members
    return exc


# Dormand-Prince 5(4) (Dormand & Prince 1980; Hairer, Norsett & Wanner, Solving ODEs I,
# Table II.5.2): nodes, coupling coefficients, fifth-order weights (b_7 = 0: FSAL) and the
# difference between the fifth- and fourth-order weights (as in scipy.integrate.RK45).
_DP_C = (0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0)
_DP_A = (
    (),
    (1.0 / 5.0,),
    (3.0 / 40.0, 9.0 / 40.0),
    (44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0),
    (19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0),
    (9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0),
)
_DP_B = (35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0)
_DP_E = (-71.0 / 57600.0, 0.0, 71.0 / 16695.0, -71.0 / 1920.0, 17253.0 / 339200.0, -22.0 / 525.0, 1.0 / 40.0)


class RK45(SubstepSolver):
    r"""Adaptive Dormand-Prince 5(4) substeps with error control (like ``scipy.integrate.RK45``).

    Each substep ``[t0, t1]`` is integrated by as many inner steps as the tolerances
    require, the last one ending exactly at ``t1``.  An inner step of size ``h`` from
    ``(t, X)`` takes the six Dormand-Prince stages ``k_i = g(t + c_i h, X + h sum_j
    a_ij k_j)``, the fifth-order solution ``X_new = X + h sum_i b_i k_i`` and one more
    stage ``k_7 = g(t + h, X_new)`` (the first stage of the next inner step: FSAL).  The
    error estimate ``E = h sum_i e_i k_i`` (fifth- minus fourth-order solution) is
    measured in the weighted RMS norm

    .. math::

        \|E\| = \Big(\frac{1}{N} \sum_{ij}
            \Big|\frac{E_{ij}}{\mathrm{atol} + \mathrm{rtol}\,\max(|X_{ij}|, |X_{\mathrm{new},ij}|)}\Big|^2\Big)^{1/2},

    ``N`` the number of entries.  The step is accepted when ``||E|| < 1``; the next step
    size is ``h * min(10, 0.9 ||E||^{-1/5})`` after an acceptance (no growth right after a
    rejection) and ``h * max(0.2, 0.9 ||E||^{-1/5})`` after a rejection.  Local errors are
    thus kept near ``atol + rtol |X|`` per entry, which an explicit method on a stiff
    sub-flow reaches only with steps inside its stability region: the controller finds
    them by itself, where a fixed ``"rk4"`` substep blows up.

    Every stage is one counted right-hand-side evaluation (``stats["rhs_evals"]``),
    including those of rejected inner steps and the one extra evaluation of the initial
    step-size selection (Hairer, Norsett & Wanner, II.4) when ``first_step`` is not
    given; a first stage ``F(t0, Y0)`` shared with other substeps is reused.  An accepted
    inner step costs six evaluations, a rejected one six more.

    A stack of problems (leading batch dimensions of ``X``) shares one inner time grid,
    since ``F`` is evaluated at one time for the whole stack: the error is the largest
    of the members' norms, so every member meets the tolerance and the step sequence
    (hence a member's result, within the tolerance) depends on the other members.
    Members whose state or first stage is already non-finite at ``t0`` (a broken member
    under ``on_member_failure="isolate"``, or an ``F`` returning NaN) are left out of the
    control; their NaN values reach the library's usual finiteness reporting.

    Parameters
    ----------
    rtol : float, default 1e-6
        Relative tolerance, ``> 0``; values below ``100 eps`` of the state's dtype are
        raised to ``100 eps`` (as SciPy does), since round-off alone exceeds them.
    atol : float, default 1e-9
        Absolute tolerance, ``> 0``, in the units of the factor being integrated
        (``K = U S``, ``L = V S^H`` or ``S``).
    first_step : float, optional
        First inner step size, ``> 0`` (clipped to the substep).  ``None`` chooses it
        from ``F(t0, X0)`` and one more evaluation.
    max_substeps : int, default 10000
        Most inner steps (accepted and rejected) per substep.

    Raises
    ------
    LowRankIntegrationError
        From :func:`~lowrank_core.solve`, with the outer step's index and time, when the
        inner step size falls below ``10 ulp(t)`` or ``max_substeps`` is exceeded; the
        message names the inner time, the step size and the error estimate, and
        ``.members`` the members of a stack whose error was too large.

    Examples
    --------
    >>> import numpy as np
    >>> import lowrank_core as lc
    >>> L = -2.0 * np.eye(40) + np.eye(40, k=1) + np.eye(40, k=-1)
    >>> L *= 41.0**2                       # Dirichlet Laplacian, spectral radius ~ 6.7e3
    >>> Y0 = lc.LowRank.from_dense(np.outer(np.ones(40), np.ones(40)), rank=2)
    >>> sol = lc.solve(lc.LinearMatrixODE(L, L), Y0, (0.0, 0.01), dt=0.005, method="ksl",
    ...                substep=lc.RK45(rtol=1e-6, atol=1e-9))
    >>> bool(np.isfinite(sol.Y.to_dense()).all())
    True
    """

    name = "rk45"
    stages = 7
    order = 5
    #: step-size controller: safety factor, smallest and largest factor per step
    SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0

    def __init__(
        self, rtol: float = 1e-6, atol: float = 1e-9, first_step: float | None = None, max_substeps: int = 10_000
    ) -> None:
        self.rtol = real_number(rtol, "rtol", positive=True)
        self.atol = real_number(atol, "atol", positive=True)
        self.first_step = None if first_step is None else real_number(first_step, "first_step", positive=True)
        self.max_substeps = integer(max_substeps, "max_substeps", minimum=1)

    def __repr__(self) -> str:
        return (
            f"RK45(rtol={self.rtol!r}, atol={self.atol!r}, first_step={self.first_step!r}, "
            f"max_substeps={self.max_substeps!r})"
        )

    # -- norms ---------------------------------------------------------------------
    @staticmethod
    def _rms(x: Any, scale: Any, xp: Any) -> Any:
        """Per-member weighted RMS norm ``sqrt(mean |x / scale|^2)`` over the last two axes."""
        if math.prod(x.shape[-2:]) == 0:
            return xp.zeros(tuple(x.shape[:-2]), dtype=scale.dtype, device=device_of(scale))
        return xp.sqrt(xp.mean(xp.abs(x / scale) ** 2, axis=(-2, -1)))

    def _largest(self, norms: Any, skip: Any, xp: Any) -> float:
        """Largest member norm, non-finite norms counting as infinite, ``skip``ped members as 0."""
        norms = xp.where(xp.isfinite(norms), norms, xp.full_like(norms, math.inf))
        if skip is not None:
            norms = xp.where(skip, xp.zeros_like(norms), norms)
        return float(xp.max(norms))

    def _initial_step(
        self, flow: SubFlow, t0: float, X0: Any, f0: Any, scale: Any, skip: Any, span: float, xp: Any
    ) -> float:
        """Hairer-Norsett-Wanner's starting step (one counted evaluation), for the stack's
        most demanding member."""
        d0 = self._rms(X0, scale, xp)
        d1 = self._rms(f0, scale, xp)
        small = xp.logical_or(d0 < 1e-5, d1 < 1e-5)
        ratio = 0.01 * d0 / xp.where(small, xp.ones_like(d1), d1)
        h0_members = xp.where(small, xp.full_like(d0, 1e-6), ratio)
        if skip is not None:
            h0_members = xp.where(skip, xp.full_like(h0_members, math.inf), h0_members)
        h0 = min(float(xp.min(h0_members)), span)
        f1 = flow.field(t0 + h0, X0 + h0 * f0)
        d2 = self._rms(f1 - f0, scale, xp) / h0
        worst = xp.maximum(d1, d2)
        worst = xp.where(xp.isfinite(worst), worst, xp.full_like(worst, math.inf))
        if skip is not None:
            worst = xp.where(skip, xp.zeros_like(worst), worst)
        dmax = float(xp.max(worst))
        h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / self.order)
        return min(100.0 * h0, h1, span) if h1 > 0 else h0

    # -- integration -----------------------------------------------------------------
    def solve(self, flow: SubFlow, t0: float, t1: float, X0: Any, first: RHSValue | None = None) -> Any:
        xp = flow.xp
        span = t1 - t0
        if span <= 0:
            return X0
        rtol = max(self.rtol, 100.0 * float(xp.finfo(X0.dtype).eps))
        atol, exponent = self.atol, -1.0 / self.order
        f = flow.field(t0, X0, first)
        # members that no step size can rescue: left out of the control (see the docstring)
        broken = xp.logical_not(
            xp.logical_and(xp.all(xp.isfinite(X0), axis=(-2, -1)), xp.all(xp.isfinite(f), axis=(-2, -1)))
        )
        if not bool(xp.any(broken)):
            skip = None
        elif bool(xp.all(broken)):
            return X0 + span * f  # nothing to control; NaN reaches the finiteness checks
        else:
            skip = broken
        if self.first_step is not None:
            h = min(self.first_step, span)
        else:
            h = self._initial_step(flow, t0, X0, f, atol + rtol * xp.abs(X0), skip, span, xp)
        t, X, attempts = t0, X0, 0
        last, norms_last = math.nan, None
        while t < t1:
            rejected = False
            while True:
                attempts += 1
                floor = 10.0 * math.ulp(max(abs(t), abs(t1)))
                if h < floor or attempts > self.max_substeps:
                    self._break(t, h, floor, attempts, last, norms_last, skip, xp)
                t_new = t + h
                if t_new >= t1 or t1 - t_new < floor:
                    t_new = t1
                h_used = t_new - t
                ks = [f]
                for i in range(1, 6):
                    Xi = X
                    for j, a in enumerate(_DP_A[i]):
                        Xi = Xi + (h_used * a) * ks[j]
                    ks.append(flow.field(t + _DP_C[i] * h_used, Xi))
                X_new = X
                for b, k in zip(_DP_B, ks, strict=True):
                    if b:
                        X_new = X_new + (h_used * b) * k
                f_new = flow.field(t_new, X_new)
                ks.append(f_new)
                E = None
                for e, k in zip(_DP_E, ks, strict=True):
                    if e:
                        E = (h_used * e) * k if E is None else E + (h_used * e) * k
                scale = atol + rtol * xp.maximum(xp.abs(X), xp.abs(X_new))
                norms_last = self._rms(E, scale, xp)
                last = self._largest(norms_last, skip, xp)
                if last < 1.0:
                    factor = self.MAX_FACTOR if last == 0 else min(self.MAX_FACTOR, self.SAFETY * last**exponent)
                    if rejected:
                        factor = min(1.0, factor)
                    t, X, f = t_new, X_new, f_new
                    h = h_used * factor
                    break
                shrink = self.SAFETY * last**exponent if math.isfinite(last) else 0.0
                h = h_used * max(self.MIN_FACTOR, shrink)
                rejected = True
        return X

    def _break(
        self, t: float, h: float, floor: float, attempts: int, error: float, norms: Any, skip: Any, xp: Any
    ) -> None:
        """Raise :class:`SubstepBreakdown` naming the time, step size, error and members."""
        members: tuple[Any, ...] = ()
        if norms is not None and norms.ndim > 0:
            bad = xp.logical_not(norms < 1.0)
            if skip is not None:
                bad = xp.logical_and(bad, xp.logical_not(skip))
            members = member_indices(bad, xp)
        why = (
            f"more than `max_substeps` = {self.max_substeps} inner steps"
            if attempts > self.max_substeps
            else f"inner step size {h:.3g} below the floor {floor:.3g} (10 ulp of t)"
        )
        msg = (
            f"rk45 substep stuck at t = {t:.10g}: {why}, weighted error estimate {error:.3g} "
            f"(rtol={self.rtol:g}, atol={self.atol:g}); the sub-flow may be non-finite or too "
            "stiff for an explicit method at these tolerances"
        )
        raise SubstepBreakdown(msg, t=t, error=error, members=members)


class Exact(SubstepSolver):
    """Exact substeps from the increments ``A(t1) - A(t0)`` of a given path.

    Valid only for problems whose ``F`` does not depend on ``Y``
    (``problem.has_increments``), such as :class:`~lowrank_core.MatrixPath`.
    """

    name = "exact"
    stages = 1
    needs_increments = True

    def solve(self, flow: SubFlow, t0: float, t1: float, X0: Any, first: RHSValue | None = None) -> Any:
        return X0 + flow.increment(t0, t1, X0)


SUBSTEPS: dict[str, type[SubstepSolver]] = {"euler": Euler, "rk4": RK4, "rk45": RK45, "exact": Exact}


def resolve_substep(substep: Any) -> SubstepSolver:
    """Turn a name or instance into a :class:`SubstepSolver`."""
    if isinstance(substep, SubstepSolver):
        return substep
    if isinstance(substep, str):
        key = substep.lower()
        if key in SUBSTEPS:
            return SUBSTEPS[key]()
        msg = f"unknown `substep` {substep!r}; choose one of {sorted(SUBSTEPS)} or pass a SubstepSolver instance."
        raise ValueError(msg)
    msg = f"`substep` must be a name ({sorted(SUBSTEPS)}) or a SubstepSolver; got {type(substep).__name__}."
    raise TypeError(msg)
