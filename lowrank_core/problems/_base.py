"""The container of the reference problems, and how they pickle (by rebuilding)."""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._lowrank import LowRank
from .._namespace import namespace_of
from .._problem import AbstractMatrixODE
from ._common import _RK4_REAL_STABILITY, _Backend, _dense_like, _fro, _int, _Reference, _stable_dt, _symmetric_lowrank


# ====================================================================== pickling
def _xp_by_name(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with a namespace module ``xp`` replaced by its import name."""
    xp = kwargs.get("xp")
    if xp is not None and not isinstance(xp, str):
        kwargs = {**kwargs, "xp": ("module", xp.__name__)}
    return kwargs


def _rebuild_problem(constructor: tuple[str, str], kwargs: dict[str, Any]) -> ReferenceProblem:
    """Unpickle a reference problem: call its factory ``(module, name)`` again (seeded, so
    the operators, initial value and reference come out the same; caches start empty)."""
    xp = kwargs.get("xp")
    if isinstance(xp, tuple) and xp[:1] == ("module",):
        kwargs = {**kwargs, "xp": importlib.import_module(xp[1])}
    module, name = constructor
    return getattr(importlib.import_module(module), name)(**kwargs)


def _recorded(constructor: Callable[..., Any]) -> Callable[..., Any]:
    """Record how a problem was built on the result, so that it pickles by rebuilding:
    its reference solutions and right-hand sides are closures, which do not pickle."""

    @functools.wraps(constructor)
    def build(*args: Any, **kwargs: Any) -> Any:
        arguments = dict(inspect.signature(constructor).bind(*args, **kwargs).arguments)
        if isinstance(arguments.get("seed"), np.random.Generator):
            # the constructor advances the generator: rebuild from its state before
            arguments["seed"] = copy.deepcopy(arguments["seed"])
        problem = constructor(*args, **kwargs)
        recipe = ((constructor.__module__, constructor.__name__), _xp_by_name(arguments))
        object.__setattr__(problem, "_recipe", recipe)
        return problem

    return build


# ====================================================================== container
@dataclass(frozen=True, eq=False)
class ReferenceProblem:
    r"""A matrix ODE with a rank-``r`` initial value and a reference solution.

    Attributes
    ----------
    name : str
        Registry name (see :data:`PROBLEMS`).
    problem : AbstractMatrixODE
        The right-hand side ``F(t, Y)`` of ``dY/dt = F(t, Y)``, ``Y`` of shape ``(m, n)``.
    Y0 : LowRank
        Rank-``r`` initial value at ``t_span[0]`` (``U (m, r)``, ``S (r, r)``,
        ``V (n, r)``) in the requested namespace, dtype and device.
    t_span : tuple of float
        ``(t0, t_end)``.
    reference : callable ``reference(t) -> array (m, n)``
        Exact or high-accuracy solution of the *full* problem at time ``t`` (in the
        namespace, device and dtype of ``Y0``'s factors).  Its initial value may have
        higher rank than ``Y0`` (then ``||Y0 - reference(t0)||`` is the initial
        truncation error); see ``notes``.
    symmetric : bool
        ``F(t, Y^T) = F(t, Y)^T`` and ``Y0`` is symmetric, so the exact solution is
        symmetric and symmetric-preserving integrators (BUG family) keep ``Y = Y^T``.
    norm_preserving : bool
        ``Re <Y, F(t, Y)> = 0`` for all ``Y``, so ``||Y(t)||_F`` is constant.
    notes : str
        Modelling choices and the provenance of the data.
    conserved : mapping of str to callable
        Quantities conserved by the exact flow, ``name -> q(Y) -> float`` for a
        :class:`~lowrank_core.LowRank` or a dense ``(m, n)`` array ``Y`` (for example
        ``"norm"`` and ``"energy"`` of the Schrödinger problem, ``"mass"`` of a kinetic
        problem); empty when the problem has none.  Their drift over a solve measures
        how well an integrator keeps the physics.
    suggested_dt : float or None
        A step size at which explicit RK4 substeps are stable and a KSL solve over
        ``t_span`` is cheap (``None`` when there is no particular suggestion).
    """

    name: str
    problem: AbstractMatrixODE
    Y0: LowRank
    t_span: tuple[float, float]
    reference: Callable[[float], Any]
    symmetric: bool
    norm_preserving: bool
    notes: str = ""
    suggested_dt: float | None = None
    conserved: Mapping[str, Callable[[Any], float]] = field(default_factory=dict)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A problem of this module pickles as the call that built it (its callables are
        # closures); one assembled by hand pickles field by field.
        recipe = self.__dict__.get("_recipe")
        if recipe is None:
            return object.__reduce_ex__(self, protocol)
        return _rebuild_problem, recipe

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(m, n)`` of the state."""
        return (int(self.Y0.shape[-2]), int(self.Y0.shape[-1]))

    def error(self, Y: Any, t: Any) -> float:
        r"""Relative Frobenius error ``||Y - X(t)||_F / ||X(t)||_F`` against the reference.

        Parameters
        ----------
        Y : LowRank or array of shape (m, n)
            Approximation at time ``t``, in the namespace of the reference.
        t : float
            Time.

        Returns
        -------
        float
            The relative error (the absolute error if ``X(t) = 0``), computed in the
            namespace of ``Y``.
        """
        ref = self.reference(t)
        dense, xp = _dense_like(Y, ref)
        num = _fro(dense - ref, xp)
        den = _fro(ref, xp)
        return num / den if den > 0 else num

    def best_error(self, t: Any, r: Any) -> float:
        r"""Relative error of the best rank-``r`` approximation of the reference at ``t``.

        By Eckart-Young, ``(sum_{j > r} sigma_j^2)^{1/2} / (sum_j sigma_j^2)^{1/2}`` with
        ``sigma_j`` the singular values of ``X(t)``: no rank-``r`` method can do better.

        Parameters
        ----------
        t : float
            Time.
        r : int
            Rank, ``r >= 0``.

        Returns
        -------
        float
        """
        r = _int(r, "r", 0)
        sv = getattr(self.reference, "singular_values", None)
        if sv is not None:
            s = np.asarray(sv(t), dtype=np.float64)
            total = float(np.sum(s**2))
            tail = float(np.sum(s[r:] ** 2))
        else:
            ref = self.reference(t)
            xp = namespace_of(ref)
            s = xp.linalg.svdvals(ref)
            total = float(xp.sum(s**2))
            tail = float(xp.sum(s[r:] ** 2))
        return math.sqrt(tail / total) if total > 0 else 0.0


def _assemble(
    cls: type[ReferenceProblem],
    name: str,
    problem: AbstractMatrixODE,
    Y0: LowRank,
    t_end: float,
    reference: Callable[[float], Any],
    notes: str,
    suggested_dt: float | None,
    *,
    symmetric: bool = False,
    norm_preserving: bool = False,
    conserved: tuple[str, ...] = (),
    **fields: Any,
) -> Any:
    """A factory's result: ``cls(...)`` over ``t_span = (0, t_end)``, with ``conserved``
    the problem's own methods of those names (bound methods, so set after construction)."""
    out = cls(
        name=name,
        problem=problem,
        Y0=Y0,
        t_span=(0.0, t_end),
        reference=reference,
        symmetric=symmetric,
        norm_preserving=norm_preserving,
        notes=notes,
        suggested_dt=suggested_dt,
        **fields,
    )
    if conserved:
        object.__setattr__(out, "conserved", {key: getattr(out, key) for key in conserved})
    return out


def _stiff_symmetric(
    name: str, problem: Any, ref: _Reference, r: int, to_xp: _Backend, rho: float, t_end: float, description: str
) -> ReferenceProblem:
    """A symmetric problem ``dX/dt = A^T X + X A + ...`` with ``||A||_2 = rho`` (heat, Riccati).

    ``Y0`` is the rank-``r`` eigen-truncation of ``reference(0)`` (``U = V``); the notes
    state the RK4 stability bound ``dt <~ 2.785 / (2 rho)``, and ``suggested_dt`` is 80 %
    of it.
    """
    notes = (
        f"{description}; Y0 is its rank-r eigen-truncation (U = V). "
        f"Stiff: ||A||_2 = {rho:.4g}; KSL with RK4 substeps needs dt <~ 2.785 / (2 ||A||_2) = "
        f"{_RK4_REAL_STABILITY / (2 * rho):.2g} (suggested_dt: 80% of that)."
    )
    Y0 = _symmetric_lowrank(ref.host(0.0), r, to_xp)
    return _assemble(ReferenceProblem, name, problem, Y0, t_end, ref, notes, _stable_dt(2 * rho, t_end), symmetric=True)
