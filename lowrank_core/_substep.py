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

from ._linalg import Counters
from ._lowrank import LowRank
from ._namespace import eye_like
from ._problem import AbstractMatrixODE, RHSValue

__all__ = ["RK4", "Euler", "Exact", "SubFlow", "SubstepSolver", "resolve_substep"]


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


SUBSTEPS: dict[str, type[SubstepSolver]] = {"euler": Euler, "rk4": RK4, "exact": Exact}


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
