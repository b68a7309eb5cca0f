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
    """An explicit Runge–Kutta method: ``a`` strictly lower triangular (rows of stage
    weights), ``b`` the weights of the update, ``c`` the stage times, ``order`` its
    classical order.

    ``b_hat`` are the weights of an embedded method of order ``order_hat`` on the same
    stages (the step-size controller's error estimate ``h sum_j (b_j - b̂_j) F_j``); one
    weight more than ``b`` is the FSAL stage ``F(t1, Y1)`` at the new state.  Empty:
    no embedded pair.
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    order: int
    b_hat: tuple[float, ...] = ()
    order_hat: int = 0


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
    """``tableau`` validated: a name from :data:`TABLEAUX` (or one of its entries, as held by a
    configured method, so that ``dataclasses.replace`` of a method keeps its tableau)."""
    if isinstance(tableau, ButcherTableau) and tableau in TABLEAUX.values():
        return tableau
    if not isinstance(tableau, str):
        msg = (
            f"`tableau` of method {method!r} must be a name, one of {sorted(TABLEAUX)}; "
            f"got {tableau!r} of type {type(tableau).__name__}."
        )
        raise TypeError(msg)
    key = tableau.lower()
    if key not in TABLEAUX:
        msg = f"unknown `tableau` {tableau!r} for method {method!r}; choose one of {sorted(TABLEAUX)}."
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


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class RKBUG(AbstractRankAdaptive):
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
    tableau : {"heun", "ssprk3", "rk4"}, default "rk4"
    substep
        Accepted for a uniform interface; unused (see the module docstring).
    tol, rtol, min_rank, max_rank, truncation_rule
        As for :class:`~lowrank_core.RABUG`; they apply to every stage and to ``Y1``
        (without ``max_rank`` a rank at most doubles per step).
    """

    name: ClassVar[str] = "rk-bug"
    order: ClassVar[int] = 4
    TABLEAUX: ClassVar[dict[str, ButcherTableau]] = TABLEAUX

    tableau: Any = field(default="rk4", kw_only=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        tab = resolve_tableau(self.tableau, self.name)
        object.__setattr__(self, "tableau", tab)
        object.__setattr__(self, "order", tab.order)  # the class attribute is the default tableau's

    @property
    def embedded_order(self) -> int:
        """Order of the tableau's embedded method (the step-size controller's estimate)."""
        return self.tableau.order_hat

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
class ProjectedRK(AbstractIntegrator):
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
    tableau : {"heun", "ssprk3", "rk4"}, default "rk4"
    substep
        Accepted for a uniform interface; unused.
    """

    name: ClassVar[str] = "projected-rk"
    order: ClassVar[int] = 4
    TABLEAUX: ClassVar[dict[str, ButcherTableau]] = TABLEAUX

    tableau: Any = field(default="rk4", kw_only=False)
    truncation: Truncation = field(init=False, default_factory=Truncation)

    def __post_init__(self) -> None:
        super().__post_init__()
        tab = resolve_tableau(self.tableau, self.name)
        object.__setattr__(self, "tableau", tab)
        object.__setattr__(self, "order", tab.order)  # the class attribute is the default tableau's

    @property
    def embedded_order(self) -> int:
        """Order of the tableau's embedded method (the step-size controller's estimate)."""
        return self.tableau.order_hat

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
