r"""Runge–Kutta low-rank integrators: the robust RK-BUG family and projected Runge–Kutta.

* :class:`RKBUG` — Runge–Kutta BUG (Riffaud & Nobile 2025): one augmented BUG step per
  stage of an explicit Runge–Kutta method; robust, the order of the tableau until the
  error reaches the truncation plateau; rank adaptive.
* :class:`ProjectedRK` — projected Runge–Kutta (Kieri & Vandereycken 2019; the methods of
  Carrel's toolbox): the tangent projections ``P(Y_j) F(t_j, Y_j)`` of the stages combined
  by the tableau and retracted to rank ``r`` by a truncated SVD.  Cheapest per step but
  *not robust*: its retraction has curvature ``1 / sigma_r``.

Both take the same tableaux (:data:`TABLEAUX`): ``"heun"`` (order 2), ``"ssprk3"`` (3)
and ``"rk4"`` (4).  The stages evaluate ``F`` at points (``dA/dt`` for a
:class:`~lowrank_core.MatrixPath`), so neither uses a substep solver: the ``substep``
argument is accepted for a uniform interface (``solve`` and the benchmarks pass it to
every method) and has no effect.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .._lowrank import LowRank
from .._problem import AbstractMatrixODE
from .._stats import StepInfo
from .._truncation import Truncation
from ._base import AbstractIntegrator, AbstractRankAdaptive, StepKit
from .midpoint import augment_basis, truncate_capped

__all__ = ["TABLEAUX", "ButcherTableau", "ProjectedRK", "RKBUG"]


@dataclass(frozen=True)
class ButcherTableau:
    r"""An explicit Runge–Kutta method, for the ``tableau=`` option of :class:`~lowrank_core.RKBUG`
    and :class:`~lowrank_core.ProjectedRK`.

    ``s`` stages; stage ``j`` evaluates ``F_j = F(t0 + c_j h, Y_j)`` with
    ``Y_i = Y0 + h sum_{j<i} a_ij F_j`` and the step is ``Y1 = Y0 + h sum_j b_j F_j`` (the
    low-rank methods apply the same weights in their bases).  The named tableaux are in
    ``lowrank_core.integrators.TABLEAUX``; a user tableau is passed as the object:

    >>> import lowrank_core as lc
    >>> ralston = lc.integrators.ButcherTableau("ralston", ((), (2 / 3,)), (1 / 4, 3 / 4), (0.0, 2 / 3), 2)
    >>> lc.RKBUG(ralston).order
    2

    Parameters
    ----------
    name : str
        Shown in the method's ``repr``.
    a : sequence of sequences of float
        Stage weights, strictly lower triangular: row ``i`` (``i = 0..s-1``) holds the
        ``i`` weights ``a_i0 .. a_i,i-1`` (row 0 is empty).  An ``s x s`` matrix with
        zeros on and above the diagonal is accepted as well.
    b : sequence of float, length ``s``
        Weights of the update.
    c : sequence of float, length ``s``
        Stage times; ``c_i = sum_j a_ij`` (so ``c_0 = 0``).
    order : int
        Classical order ``p``, ``1 <= p <= s``: the order conditions
        ``b^T Phi(t) = 1 / gamma(t)`` of every rooted tree ``t`` with at most ``p``
        vertices are checked (Butcher), to round-off.  The step-size controller and the
        method's ``order`` use it.
    b_hat : sequence of float, default ()
        Weights of an embedded method of order ``order_hat`` on the same stages (the
        step-size controller's error estimate ``h sum_j (b_j - b̂_j) F_j``); ``s + 1``
        weights add the FSAL stage ``F(t1, Y1)`` at the new state (``a_s = b``,
        ``c_s = 1``).  Empty: no embedded pair (the controller uses step doubling).
    order_hat : int, default 0
        Order of ``b_hat``, ``1 <= order_hat < order`` (checked like ``order``); 0
        without ``b_hat``.

    Raises
    ------
    TypeError
        A weight that is not a real number, a ``name`` that is not a string, an
        ``order`` that is not an integer.
    ValueError
        Shapes that do not fit ``s`` stages, a non-finite weight, ``c != a 1``, or a
        violated order condition (the message names the tree's condition and the
        residual).
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    b_hat: tuple[float, ...] = ()
    order_hat: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            msg = (
                f"`tableau`: `name` of a ButcherTableau must be a str; got {self.name!r} "
                f"of type {type(self.name).__name__}."
            )
            raise TypeError(msg)
        where = f"invalid `tableau` {self.name!r}"
        b = _weights(self.b, "b", where)
        s = len(b)
        if s == 0:
            msg = f"{where}: `b` is empty; a Runge-Kutta method has at least one stage."
            raise ValueError(msg)
        c = _weights(self.c, "c", where)
        rows = _rows(self.a, s, where)
        if len(c) != s:
            msg = f"{where}: `c` has {len(c)} stage times for the {s} stages of `b`; give one per stage."
            raise ValueError(msg)
        for i, row in enumerate(rows):
            if abs(sum(row) - c[i]) > _slack(len(row), max(abs(c[i]), sum(map(abs, row)))):
                msg = (
                    f"{where}: stage time `c[{i}]` = {c[i]!r} differs from the row sum of `a[{i}]`, "
                    f"{sum(row)!r}; an explicit Runge-Kutta method needs c_i = sum_j a_ij."
                )
                raise ValueError(msg)
        order = _integer(self.order, "order", where)
        if not 1 <= order <= s:
            msg = (
                f"{where}: `order` must be between 1 and the number of stages {s} (an explicit method "
                f"of s stages has order at most s); got {order}."
            )
            raise ValueError(msg)
        _check_order(rows, b, order, "b", where)
        b_hat = _weights(self.b_hat, "b_hat", where)
        order_hat = _integer(self.order_hat, "order_hat", where)
        if not b_hat:
            if order_hat != 0:
                msg = f"{where}: `order_hat` is {order_hat} without `b_hat`; give the embedded weights or 0."
                raise ValueError(msg)
        else:
            if len(b_hat) not in (s, s + 1):
                msg = (
                    f"{where}: `b_hat` has {len(b_hat)} weights; give {s} (one per stage) or {s + 1} "
                    f"(with the FSAL stage F(t1, Y1))."
                )
                raise ValueError(msg)
            if not 1 <= order_hat < order:
                msg = f"{where}: `order_hat` must be between 1 and `order` - 1 = {order - 1}; got {order_hat}."
                raise ValueError(msg)
            _check_order(rows + [b] if len(b_hat) > s else rows, b_hat, order_hat, "b_hat", where)
        normalised = {"a": tuple(rows), "b": b, "c": c, "order": order, "b_hat": b_hat, "order_hat": order_hat}
        for attr, value in normalised.items():  # plain floats and ints: the caller's sequences are not kept
            object.__setattr__(self, attr, value)


def _weights(values: Any, field_name: str, where: str) -> tuple[float, ...]:
    """``values`` as a tuple of finite Python floats (a new tuple: the caller's sequence is not kept)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        msg = (
            f"{where}: `{field_name}` must be a sequence of real numbers; "
            f"got {values!r} of type {type(values).__name__}."
        )
        raise TypeError(msg)
    items = list(values)
    out = []
    for k, x in enumerate(items):
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            msg = f"{where}: `{field_name}[{k}]` must be a real number; got {x!r} of type {type(x).__name__}."
            raise TypeError(msg)
        if not math.isfinite(float(x)):
            msg = f"{where}: `{field_name}[{k}]` is {x!r}; the weights must be finite."
            raise ValueError(msg)
        out.append(float(x))
    return tuple(out)


def _rows(a: Any, s: int, where: str) -> list[tuple[float, ...]]:
    """The strictly lower triangular rows of ``a`` (row ``i`` of length ``i``), from ragged rows
    or an ``s x s`` matrix with zeros on and above the diagonal."""
    if isinstance(a, (str, bytes)) or not isinstance(a, Iterable):
        msg = f"{where}: `a` must be a sequence of rows (sequences of reals); got {a!r} of type {type(a).__name__}."
        raise TypeError(msg)
    rows = [_weights(row, f"a[{i}]", where) for i, row in enumerate(a)]
    if len(rows) != s:
        msg = f"{where}: `a` has {len(rows)} rows for the {s} stages of `b`; give one row per stage."
        raise ValueError(msg)
    if all(len(row) == s for row in rows):
        upper = [(i, j) for i in range(s) for j in range(i, s) if rows[i][j] != 0.0]
        if upper:
            i, j = upper[0]
            msg = (
                f"{where}: `a[{i}][{j}]` = {rows[i][j]!r} is on or above the diagonal; "
                f"an explicit method has a_ij = 0 for j >= i."
            )
            raise ValueError(msg)
        return [row[:i] for i, row in enumerate(rows)]
    for i, row in enumerate(rows):
        if len(row) != i:
            msg = (
                f"{where}: row `a[{i}]` has {len(row)} weights; row i of an explicit tableau has the i weights "
                f"a_i0 .. a_i,i-1 (row 0 empty), or give the full {s} x {s} matrix."
            )
            raise ValueError(msg)
    return rows


def _integer(value: Any, field_name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        msg = f"{where}: `{field_name}` must be an integer; got {value!r} of type {type(value).__name__}."
        raise TypeError(msg)
    return int(value)


def _slack(terms: int, magnitude: float) -> float:
    """Round-off allowance of a sum of ``terms`` products of magnitude ``magnitude``: each
    product and addition rounds once (relative ``eps``), with a factor 8 of headroom."""
    return 8.0 * (terms + 1) * sys.float_info.epsilon * max(magnitude, 1.0)


def _rooted_trees(order: int) -> list[tuple]:
    """Rooted trees with at most ``order`` vertices, each a sorted tuple of its subtrees."""
    level: set[tuple] = {()}
    trees = [()]

    def grow(t: tuple) -> Any:
        yield tuple(sorted((*t, ())))
        for i, child in enumerate(t):
            for g in grow(child):
                yield tuple(sorted((*t[:i], g, *t[i + 1 :])))

    for _ in range(order - 1):
        level = {g for t in level for g in grow(t)}
        trees += sorted(level)
    return trees


def _check_order(rows: list[tuple[float, ...]], b: tuple[float, ...], order: int, field_name: str, where: str) -> None:
    """Butcher's order conditions ``b^T Phi(t) = 1 / gamma(t)`` for every rooted tree with at most
    ``order`` vertices, ``Phi(t)_i = prod_{children u} (a Phi(u))_i`` (``Phi(leaf) = 1``)."""
    s = len(b)

    def phi(t: tuple, absolute: bool) -> tuple[list[float], int, float]:
        """``(Phi(t), |t|, gamma(t))``, with ``|a|`` for the round-off magnitude if ``absolute``."""
        vec, size, gamma = [1.0] * s, 1, 1.0
        for child in t:
            pc, n, g = phi(child, absolute)
            size, gamma = size + n, gamma * g
            for i in range(s):
                vec[i] *= sum((abs(w) if absolute else w) * pc[j] for j, w in enumerate(rows[i]))
        return vec, size, gamma * size

    for t in _rooted_trees(order):
        vec, size, gamma = phi(t, False)
        value = sum(w * x for w, x in zip(b, vec, strict=True))
        magnitude = sum(abs(w) * x for w, x in zip(b, phi(t, True)[0], strict=True))
        if abs(value - 1.0 / gamma) > _slack(s * size, magnitude):
            msg = (
                f"{where}: `{field_name}` does not satisfy the order conditions of order {order}: for the "
                f"rooted tree {_tree_str(t)} ({size} vertices) {field_name}^T Phi = {value!r}, not 1/{gamma:g}; "
                f"lower `{'order' if field_name == 'b' else 'order_hat'}` or correct the weights."
            )
            raise ValueError(msg)


def _tree_str(t: tuple) -> str:
    """Bracket notation: ``.`` a leaf, ``[u v]`` a root with subtrees ``u``, ``v``."""
    return "." if not t else "[" + " ".join(_tree_str(u) for u in t) + "]"


#: The tableaux of ``method="rk-bug"`` and ``method="projected-rk"`` (``tableau=``).
TABLEAUX: dict[str, ButcherTableau] = {
    # Heun-Euler 2(1): the explicit Euler step from the first stage
    "heun": ButcherTableau("heun", ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), 2, (1.0, 0.0), 1),
    # SSPRK3 with Heun's method on its first two stages, 3(2)
    "ssprk3": ButcherTableau(
        "ssprk3", ((), (1.0,), (0.25, 0.25)), (1.0 / 6.0, 1.0 / 6.0, 2.0 / 3.0), (0.0, 1.0, 0.5), 3, (0.5, 0.5, 0.0), 2
    ),
    # classical RK4 with the third-order FSAL embedding b̂ = (1/6, 1/3, 1/3, 0, 1/6), 4(3):
    # the estimate is h/6 (F(t1, Y_4) - F(t1, Y1)) (unique third-order weights with b̂_5 = 1/6)
    "rk4": ButcherTableau(
        "rk4",
        ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0),
        (0.0, 0.5, 0.5, 1.0),
        4,
        (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 0.0, 1.0 / 6.0),
        3,
    ),
}


def resolve_tableau(tableau: Any, method: str) -> ButcherTableau:
    """``tableau`` validated: a name from :data:`TABLEAUX` or a :class:`ButcherTableau` (validated
    when it was built; a configured method holds one, so ``dataclasses.replace`` keeps it)."""
    if isinstance(tableau, ButcherTableau):
        return tableau
    if not isinstance(tableau, str):
        msg = (
            f"`tableau` of method {method!r} must be a name, one of {sorted(TABLEAUX)}, or a "
            f"lowrank_core.integrators.ButcherTableau; got {tableau!r} of type {type(tableau).__name__}."
        )
        raise TypeError(msg)
    key = tableau.lower()
    if key not in TABLEAUX:
        msg = (
            f"unknown `tableau` {tableau!r} for method {method!r}; choose one of {sorted(TABLEAUX)} "
            f"or pass a lowrank_core.integrators.ButcherTableau."
        )
        raise ValueError(msg)
    return TABLEAUX[key]


def _count_point(kit: StepKit, t: float, Y: LowRank) -> Any:
    """``F`` bound to ``(t, Y)``, counted as one point per matrix of the stack."""
    kit.counters.rhs_evals += math.prod(Y.batch_shape)
    return kit.problem.evaluate(t, Y)


def _fro(E: Any, xp: Any) -> Any:
    """Frobenius norm over the last two axes (one per member of a stack)."""
    return xp.sqrt(xp.sum(xp.abs(E) ** 2, axis=(-2, -1)))


def _embedded_core(tab: ButcherTableau, G: dict[int, Any], h: float) -> Any:
    """``h sum_j (b_j - b̂_j) G_j`` over the stages of ``b`` (``G_j`` the projected ``F_j``)."""
    E = None
    for j, b in enumerate(tab.b):
        d = b - tab.b_hat[j]
        if d != 0.0:
            E = (h * d) * G[j] if E is None else E + (h * d) * G[j]
    return E


def _weighted(terms: list[tuple[float, Any]]) -> Any:
    """``sum_j w_j G_j`` over ``terms = [(w_j, G_j)]`` (``w_j != 0``; ``G_j = U^H F_j V``)."""
    total = None
    for w, G in terms:
        part = w * G
        total = part if total is None else total + part
    return total


def _tableau_embedded_order(self: _TableauMethod) -> int | None:
    """Order of the tableau's embedded method (the step-size controller's estimate);
    ``None`` for a tableau without ``b_hat`` (the controller then uses step doubling)."""
    return self.tableau.order_hat or None


#: ``embedded_order`` of the tableau methods, assigned in each class so that its API page lists it.
_EMBEDDED_ORDER = property(_tableau_embedded_order)


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class _TableauMethod(AbstractIntegrator):
    """The ``tableau`` option of :class:`RKBUG` and :class:`ProjectedRK`: a name from
    ``TABLEAUX`` or a :class:`ButcherTableau`, resolved once; ``order`` is the tableau's."""

    TABLEAUX: ClassVar[dict[str, ButcherTableau]] = TABLEAUX

    tableau: Any = field(default="rk4", kw_only=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        tab = resolve_tableau(self.tableau, self.name)
        object.__setattr__(self, "tableau", tab)
        object.__setattr__(self, "order", tab.order)  # the class attribute is the default tableau's


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class RKBUG(_TableauMethod, AbstractRankAdaptive):
    r"""Runge–Kutta BUG integrator (Riffaud & Nobile 2025), rank adaptive.

    One step ``t0 -> t1 = t0 + h`` from ``Y0 = U0 S0 V0^H`` of rank ``r`` with an explicit
    tableau ``(a, b, c)`` of ``s`` stages; ``Y_1 = Y0`` and ``F_j = F(t0 + c_j h, Y_j)``:

    1. For each stage ``i = 2..s`` (a BUG step with explicit-Euler-type substeps built
       from the earlier stages ``J_i = {j < i : a_ij != 0}``):

       a. basis update ``Û_i = orth([U0, F_j V_j for j in C_i])``,
          ``V̂_i = orth([V0, F_j^H U_j for j in C_i])``,
          where ``C_i = J_i ∪ C_j (j in J_i)``
          collects the stages that generated the bases of the stages used, so
          ``range(Û_i) ⊇ range(U_j)`` for ``j in J_i`` without repeating dependent columns;
       b. Galerkin ``Ŝ_i = (Û_i^H U0) S0 (V0^H V̂_i) + h sum_{j in J_i} a_ij Û_i^H F_j V̂_i``;
       c. truncation ``Y_i = U_i S_i V_i^H`` of ``Û_i Ŝ_i V̂_i^H`` (SVD), by the same rule
          as the final state.
    2. The same with the weights ``b`` in place of row ``i`` of ``a`` gives ``Y1``.

    The bases of a stage contain the column and row spaces of the tangent parts
    ``P(Y_j) F_j`` (``range(U_j) + range(F_j V_j)``), so each Galerkin step is the
    Runge–Kutta stage up to the normal components of ``F``.

    Cost per step (``r`` the rank, every stage kept at rank ``r``; ``k`` stages in
    ``C``): thin QR ``m x (k + 1) r`` and ``n x (k + 1) r`` and one SVD ``(k + 1) r`` per
    stage and for ``Y1``, ``s`` F points.  ``heun``: ``2r``, ``3r`` (2 F points);
    ``ssprk3``: ``2r``, ``3r``, ``4r`` (3); ``rk4``: ``2r``, ``3r``, ``4r``, ``5r`` (4).
    Error ``C (h^p + plateau + theta/h)`` with ``p`` the order of the tableau and constants
    independent of the singular values; the plateau is the truncation error of the stages
    and of ``Y1`` (it vanishes at full rank).

    Parameters
    ----------
    tableau : {"heun", "ssprk3", "rk4"} or ButcherTableau, default "rk4"
        A name from ``lowrank_core.integrators.TABLEAUX`` or a user
        :class:`~lowrank_core.integrators.ButcherTableau`.
    substep
        Accepted for a uniform interface; unused (see the module docstring).
    tol, rtol, min_rank, max_rank, truncation_rule
        As for :class:`~lowrank_core.RABUG`; they apply to every stage and to ``Y1``
        (without ``max_rank`` a rank at most doubles per step).
    """

    name: ClassVar[str] = "rk-bug"
    order: ClassVar[int] = 4
    embedded_order = _EMBEDDED_ORDER

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any, *, estimate: bool = False
    ) -> tuple[LowRank, Any, StepInfo]:
        """One step (see the class docstring); with ``estimate=True`` the step's
        ``info.error_estimate`` is the embedded estimate
        ``||h sum_j (b_j - b̂_j) Û^H F_j V̂||_F`` in the final Galerkin bases (before the
        truncation), per member; ``rk4`` evaluates ``F(t1, Y1)`` for it (one more point)."""
        kit = self.make_kit(problem, Y0)
        tab = self.tableau
        h = t1 - t0
        s = len(tab.b)
        values = [_count_point(kit, t0, Y0)]
        blocks = [(values[0].F_V(Y0.V), values[0].FH_U(Y0.U))]  # (F_j V_j, F_j^H U_j)
        closures: list[set[int]] = [set()]
        for i in range(1, s + 1):
            weights = tab.a[i] if i < s else tab.b
            used = [j for j, w in enumerate(weights) if w != 0.0]
            closure = set(used).union(*(closures[j] for j in used))
            Y, U_hat, V_hat, G = self._galerkin(kit, Y0, values, blocks, sorted(closure), used, weights, h)
            if i == s:
                if not estimate:
                    return Y, state, kit.info()
                E = _embedded_core(tab, G, h)
                if len(tab.b_hat) > s:  # FSAL stage F(t1, Y1), projected on the same bases
                    last = (-h * tab.b_hat[s]) * _count_point(kit, t1, Y).UH_F_V(U_hat, V_hat)
                    E = last if E is None else E + last
                return Y, state, kit.info(_fro(E, kit.xp))
            closures.append(closure)
            values.append(_count_point(kit, t0 + tab.c[i] * h, Y))
            blocks.append((values[i].F_V(Y.V), values[i].FH_U(Y.U)))
        msg = "unreachable: the last tableau row returns"
        raise AssertionError(msg)  # pragma: no cover

    def _galerkin(
        self, kit: StepKit, Y0: LowRank, values: list, blocks: list, closure: list, used: list, weights: Any, h: float
    ) -> tuple[LowRank, Any, Any, dict[int, Any]]:
        """One BUG step of the tableau row ``weights``: basis update, Galerkin, truncation.

        Returns the truncated state, the bases ``Û``, ``V̂`` and the projections
        ``G_j = Û^H F_j V̂`` of the stages used (for the embedded estimate)."""
        xp = kit.xp
        U_hat = augment_basis(kit, Y0.U, xp.concat([blocks[j][0] for j in closure], axis=-1))
        V_hat = augment_basis(kit, Y0.V, xp.concat([blocks[j][1] for j in closure], axis=-1))
        G = {j: values[j].UH_F_V(U_hat, V_hat) for j in used}
        S_hat = kit.project(Y0, U_hat, V_hat) + _weighted([(h * weights[j], G[j]) for j in used])
        return truncate_capped(kit, self.truncation, U_hat, S_hat, V_hat, Y0.rank), U_hat, V_hat, G

    def __repr__(self) -> str:
        return super().__repr__().replace("(", f"(tableau={self.tableau.name!r}, ", 1)


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class ProjectedRK(_TableauMethod):
    r"""Projected Runge–Kutta integrator (Kieri & Vandereycken 2019), fixed rank; not robust.

    One step ``t0 -> t1 = t0 + h`` from ``Y0 = U0 S0 V0^H`` of rank ``r`` with an explicit
    tableau ``(a, b, c)``; ``Y_1 = Y0``, ``F_j = F(t0 + c_j h, Y_j)`` and the tangent
    vector ``T_j = P(Y_j) F_j = X_j V_j^H + U_j L_j^H`` with ``L_j = F_j^H U_j``,
    ``X_j = F_j V_j - U_j (U_j^H F_j V_j)``:

    1. For each stage ``i = 2..s``: ``Y_i = T_r(Y0 + h sum_{j<i} a_ij T_j)``, where the sum
       is held in factored form ``Lf C Rf^H`` with ``Lf = [U0, X_1, (X_j, U_j)_{j>1}]``,
       ``Rf = [V0 S0^H + h a_i1 L_1, V0, (V_j, L_j)_{j>1}]`` (terms with ``a_ij = 0``
       left out) and ``T_r`` is the truncated SVD: QR of ``Lf`` and ``Rf``, SVD of
       ``R_L C R_R^H``, keep ``r``.
    2. ``Y1 = T_r(Y0 + h sum_j b_j T_j)`` in the same way.

    Cost per step: ``heun``: 4 QR (``2r``, ``4r`` columns, each for ``m`` and ``n``), 2 SVD,
    2 F points; ``ssprk3``: 6 QR (``2r``, ``4r``, ``6r``), 3 SVD, 3 F points; ``rk4``:
    8 QR (``2r``, ``3r``, ``3r``, ``8r``), 4 SVD, 4 F points.  Order ``p`` of the tableau
    while ``h`` is small against ``sigma_r`` (the retraction's curvature is
    ``1 / sigma_r``); **not robust**: once ``sigma_r`` is small against ``h`` the
    error is no longer bounded independently of ``sigma_r``.  Use :class:`RKBUG` for the
    same tableaux with a robust bound.

    Parameters
    ----------
    tableau : {"heun", "ssprk3", "rk4"} or ButcherTableau, default "rk4"
        A name from ``lowrank_core.integrators.TABLEAUX`` or a user
        :class:`~lowrank_core.integrators.ButcherTableau`.
    substep
        Accepted for a uniform interface; unused.
    """

    name: ClassVar[str] = "projected-rk"
    order: ClassVar[int] = 4
    truncation: Truncation = field(init=False, default_factory=Truncation)

    embedded_order = _EMBEDDED_ORDER

    def step(
        self, problem: AbstractMatrixODE, t0: float, t1: float, Y0: LowRank, state: Any, *, estimate: bool = False
    ) -> tuple[LowRank, Any, StepInfo]:
        """One step (see the class docstring); with ``estimate=True`` the step's
        ``info.error_estimate`` is ``||Q_l^H (h sum_j (b_j - b̂_j) T_j) Q_r||_F``, the
        embedded estimate in the bases ``Q_l``, ``Q_r`` of the final retraction (they
        span every stage's tangent vector; ``rk4``'s FSAL tangent ``P(Y1) F(t1, Y1)``, one
        more F point, is projected on them)."""
        kit = self.make_kit(problem, Y0)
        tab = self.tableau
        h = t1 - t0
        tangents = [self._tangent(kit, Y0, _count_point(kit, t0, Y0))]
        for i in range(1, len(tab.b) + 1):
            weights = tab.a[i] if i < len(tab.b) else tab.b
            Y, Q_l, Q_r = self._retract(kit, Y0, tangents, weights, h)
            if i == len(tab.b):
                if not estimate:
                    return Y, state, kit.info()
                terms = [(h * (b - tab.b_hat[j]), tangents[j]) for j, b in enumerate(tab.b)]
                if len(tab.b_hat) > len(tab.b):  # FSAL tangent at the new state
                    terms.append((-h * tab.b_hat[-1], self._tangent(kit, Y, _count_point(kit, t1, Y))))
                E = None
                for w, (U, X, V, L) in terms:
                    if w == 0.0:
                        continue
                    part = w * (
                        kit.mm(kit.mm(kit.ch(Q_l), X), kit.mm(kit.ch(V), Q_r))
                        + kit.mm(kit.mm(kit.ch(Q_l), U), kit.mm(kit.ch(L), Q_r))
                    )
                    E = part if E is None else E + part
                return Y, state, kit.info(_fro(E, kit.xp))
            tangents.append(self._tangent(kit, Y, _count_point(kit, t0 + tab.c[i] * h, Y)))
        msg = "unreachable: the last tableau row returns"
        raise AssertionError(msg)  # pragma: no cover

    @staticmethod
    def _tangent(kit: StepKit, Y: LowRank, F: Any) -> tuple[Any, Any, Any, Any]:
        """``(U, X, V, L)`` with ``P(Y) F = X V^H + U L^H``."""
        K = F.F_V(Y.V)
        L = F.FH_U(Y.U)
        X = K - kit.mm(Y.U, kit.mm(kit.ch(Y.U), K))
        return Y.U, X, Y.V, L

    def _retract(self, kit: StepKit, Y0: LowRank, tangents: list, weights: Any, h: float) -> tuple[LowRank, Any, Any]:
        """``T_r(Y0 + h sum_j w_j T_j)`` from the factored sum, and the orthonormal bases
        ``Q_l``, ``Q_r`` of its left and right factors."""
        xp = kit.xp
        r = Y0.rank
        _, X1, _, L1 = tangents[0]
        w1 = h * weights[0]
        left = [Y0.U]
        right = [kit.mm(Y0.V, kit.ch(Y0.S)) + w1 * L1 if w1 != 0.0 else kit.mm(Y0.V, kit.ch(Y0.S))]
        scales = [1.0]
        if w1 != 0.0:
            left.append(X1)
            right.append(Y0.V)
            scales.append(w1)
        for j in range(1, len(weights)):
            w = h * weights[j]
            if w == 0.0:
                continue
            U, X, V, L = tangents[j]
            left += [X, U]
            right += [V, L]
            scales += [w, w]
        Q_l, R_l = kit.qr(xp.concat(left, axis=-1))
        Q_r, R_r = kit.qr(xp.concat(right, axis=-1))
        # core C = blockdiag(scales_k I_r): R_l C R_r^H with the scales applied to R_l's blocks
        R_l_scaled = xp.concat([scales[k] * R_l[..., k * r : (k + 1) * r] for k in range(len(scales))], axis=-1)
        P, s, Q = kit.svd(kit.mm(R_l_scaled, kit.ch(R_r)))
        return kit.truncate(self.truncation, Q_l, P, s, Q, Q_r, r), Q_l, Q_r

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tableau={self.tableau.name!r}{self._kit_repr()})"
