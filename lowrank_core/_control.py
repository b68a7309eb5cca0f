r"""Step-size control, output times, events and checkpoints of :func:`lowrank_core.solve`.

Step-size control (``solve(..., dt=None, step_rtol=..., step_atol=...)``)
--------------------------------------------------------------------------
Every trial step ``t -> t + h`` gets an error estimate ``est`` (one per member of a
stack) from one of two estimators (:func:`estimator_of`):

*Embedded pair* (``"embedded"``: ``rk-bug`` and ``projected-rk`` with every tableau,
``midpoint-bug`` and ``parallel-bug-2`` except with exact substeps).  The method's step
also forms a lower-order solution of order ``q`` from the same stages, in the same
bases, before the truncation, and ``est`` is the norm of the difference
(``StepInfo.error_estimate`` of ``step(..., estimate=True)``):

* ``heun`` 2(1): ``h/2 ||Û^H (F_2 - F_1) V̂||`` (explicit Euler embedded);
* ``ssprk3`` 3(2): Heun's method on the first two stages, ``b̂ = (1/2, 1/2, 0)``;
* ``rk4`` 4(3): the FSAL embedding ``b̂ = (1/6, 1/3, 1/3, 0, 1/6)`` with the fifth
  stage ``F(t1, Y1)``, ``est = h/6 ||Û^H (F_4 - F(t1, Y1)) V̂||`` (one more F point);
* ``midpoint-bug``, ``parallel-bug-2`` 2(1): ``h ||Û^H (F_{1/2} - F_0) V̂||``, explicit
  Euler in the final bases;
* ``projected-rk``: the weight differences applied to the stages' tangent vectors,
  measured in the bases of the final retraction.

No extra decomposition; no extra F point except rk4's FSAL stage.  The higher-order
solution is kept (local extrapolation) and the step is accepted when ``est <= atol +
rtol ||Y||`` (error *per step*): with ``est ~ C h^{q+1}`` and the kept solution's local
error ``~ D h^{q+2}``, the global error is ``~ (D / C) T tol``, proportional to the
tolerance (Stetter's observation: error per step with local extrapolation is tolerance
proportional, error per unit step would give ``tol^{(q+1)/q}``).

*Step doubling* (``"doubling"``: every other method).  One step of ``h`` gives ``Y_1``,
two steps of ``h/2`` give ``Y_2``; for a method of order ``p`` Richardson's argument
gives the error of ``Y_2``, ``est = ||Y_2 - Y_1||_F / (2^p - 1)`` (from the factors,
:func:`difference_norm`).  ``Y_2`` is kept (not extrapolated: the extrapolation has rank
up to ``r_1 + r_2`` and would need a truncation the estimate does not see), and the
step is accepted when ``est <= (atol + rtol ||Y||) h`` (error *per unit of time*, the
tolerance-proportional rule without extrapolation).  Three steps per trial.

Both give a ratio ``ratio = est / allowance ~ h^p`` with ``p = q + 1`` (embedded) or the
method's order (doubling; 1 with Euler substeps), and the next step is ``h`` times the
PI factor ``x_n^(-0.7/p) x_{n-1}^(0.4/p)``, ``x = ratio / SAFETY^p`` (Gustafsson; at a
constant ratio it settles where the I controller ``SAFETY ratio^(-1/p)`` does), clipped
to ``[SHRINK, GROW]`` (no growth right after a rejection, where the I controller is
used).  What an embedded estimate does not see: the truncation of the final state, and
for a fixed rank below the solution's numerical rank the ``h eps`` error of the normal
component ``eps`` (first order in ``h``), which step doubling does see.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import as_float, real_number
from ._linalg import matmul
from ._lowrank import LowRank
from ._namespace import conj_transpose
from ._stats import Counters

__all__ = [
    "Checkpoint",
    "StepControl",
    "StepToleranceWarning",
    "controller_order",
    "difference_norm",
    "effective_order",
    "embedded_order",
    "estimator_of",
]

#: Safety factor, largest growth and largest shrink of the step-size controller.
SAFETY, GROW, SHRINK = 0.9, 5.0, 0.2
#: Exponents of the PI controller, times the order ``p``: with ``x = ratio / SAFETY^p``
#: the factor is ``x_n^(-PI_NOW / p) x_{n-1}^(PI_PREV / p)`` (Gustafsson's PI controller
#: with Hairer & Wanner's coefficients; at a constant ratio it settles where the I
#: controller ``SAFETY ratio^(-1/p)`` does, ``ratio = SAFETY^p``).
PI_NOW, PI_PREV = 0.7, 0.4
#: Smallest previous ratio the PI controller remembers (a step whose estimate nearly
#: vanished must not let the next step grow without bound).
RATIO_FLOOR = 1e-4
#: Default floor of the step size, in units of round-off of ``t``.
MIN_STEP_ULPS = 64
#: Probe step of the first-step guess, relative to ``max(1, |t0|)``.
PROBE = 1e-6
#: A step that would end within this fraction of itself before an output time is
#: stretched to end at it (no sliver steps).
STRETCH = 0.01
#: The truncation error of a step may use this fraction of the step's error allowance
#: before :class:`StepToleranceWarning` is emitted.
TRUNCATION_SHARE = 0.5
#: Relative time tolerance of event location (times the step size).
EVENT_XTOL = 1e-10
#: Most iterations of event location.
EVENT_MAXITER = 60
#: The error estimators of the controller (:func:`estimator_of`).
ESTIMATORS = ("embedded", "doubling")


class StepToleranceWarning(UserWarning):
    """The truncation tolerance of a rank-adaptive method is too loose for the step tolerance.

    Each truncation of a rank-adaptive method discards up to ``theta`` (Frobenius norm);
    the controller cannot tell this error from the time-stepping error, and when it is a
    large part of the error a step may have, shrinking the step does not reduce it.
    """


def effective_order(integrator: Any) -> int:
    """Order ``p`` of step doubling: the class attribute ``order`` of the method,
    capped at 1 with Euler substeps (their first-order error dominates)."""
    order = int(getattr(integrator, "order", 1) or 1)
    substep = getattr(integrator, "substep", None)
    if getattr(substep, "name", "") == "euler":
        order = 1
    return max(order, 1)


def embedded_order(integrator: Any) -> int | None:
    """Order ``q`` of the lower-order member of the method's embedded pair (its error
    estimate is ``O(h^{q+1})``), or ``None`` when the method (in this configuration)
    has none."""
    q = getattr(integrator, "embedded_order", None)
    return int(q) if q else None


def estimator_of(integrator: Any) -> str:
    """``"embedded"`` for a method with an embedded pair (:func:`embedded_order`), else
    ``"doubling"``."""
    return "embedded" if embedded_order(integrator) is not None else "doubling"


def controller_order(integrator: Any, estimator: str) -> int:
    """Exponent ``p`` of the controller (``ratio ~ h^p``): ``q + 1`` for an embedded pair
    (error per step), the method's :func:`effective_order` for step doubling (error per
    unit time)."""
    if estimator == "embedded":
        return embedded_order(integrator) + 1
    return effective_order(integrator)


def _fro2(x: Any, xp: Any) -> Any:
    return xp.sum(xp.abs(x) ** 2, axis=(-2, -1))


def difference_norm(Y1: LowRank, Y2: LowRank) -> Any:
    r"""``||Y_2 - Y_1||_F`` from the factors, for states of possibly different ranks.

    With ``P = U_1 U_1^H`` and ``Q = V_1 V_1^H`` the difference splits into orthogonal
    parts (Pythagoras), each formed explicitly so that no squared norms cancel:

    * ``(I - P) Y_2 = W_U S_2 V_2^H`` with ``W_U = U_2 - U_1 (U_1^H U_2)`` (``m x r_2``),
      norm ``||W_U S_2||_F``;
    * ``P (Y_2 - Y_1) Q``: ``||A (V_2^H V_1) - S_1||_F`` with ``A = (U_1^H U_2) S_2``;
    * ``P (Y_2 - Y_1)(I - Q)``: ``||A W_V^H||_F`` with ``W_V = V_2 - V_1 (V_1^H V_2)``.

    Cost ``O((m + n) r_1 r_2)`` products, no decomposition; accurate to round-off of
    ``||Y||`` (the parts are differences of matrices, not of squared norms).

    Returns
    -------
    array, shape ``batch_shape``
        Real, one norm per member of a stack.
    """
    xp = Y1.xp
    U1, S1, V1 = Y1.U, Y1.S, Y1.V
    U2, S2, V2 = Y2.U, Y2.S, Y2.V
    U1h, V1h = conj_transpose(U1, xp), conj_transpose(V1, xp)
    G_u = matmul(U1h, U2, xp)  # (r1, r2)
    G_v = matmul(V1h, V2, xp)  # (r1, r2)
    W_u = U2 - matmul(U1, G_u, xp)
    W_v = V2 - matmul(V1, G_v, xp)
    A = matmul(G_u, S2, xp)
    inner = matmul(A, conj_transpose(G_v, xp), xp) - S1
    side = matmul(A, conj_transpose(W_v, xp), xp)
    total = _fro2(matmul(W_u, S2, xp), xp) + _fro2(inner, xp) + _fro2(side, xp)
    return xp.sqrt(total)


def _positive_or_none(value: Any, name: str) -> float | None:
    return None if value is None else real_number(value, name, positive=True)


@dataclass(frozen=True)
class StepControl:
    """Validated settings of the step-size controller (see the module docstring).

    Attributes
    ----------
    rtol, atol : float
        ``step_rtol``, ``step_atol`` (at least one positive): the error allowed per step
        (embedded pairs) or per unit of time (step doubling).
    first_step, min_step, max_step : float or None
        First trial step, floor and ceiling of the step size.  ``None``: the first step
        is ``0.01 ||Y0||_F / ||P(Y0) F(t0, Y0)||_F`` (Hairer, Nørsett & Wanner's first guess,
        the tangent part of ``F`` measured by one probe step of the method), the floor is
        ``MIN_STEP_ULPS`` round-off units of ``t``, and there is no ceiling.  None of them
        depends on ``t_span`` (a solve split in two takes the same steps).
    order : int
        Exponent ``p`` of the controller (:func:`controller_order`).
    estimator : {"embedded", "doubling"}
        The error estimate (:func:`estimator_of`).
    """

    rtol: float
    atol: float
    first_step: float | None
    min_step: float | None
    max_step: float | None
    order: int
    estimator: str = "doubling"

    @classmethod
    def build(
        cls,
        step_rtol: Any,
        step_atol: Any,
        first_step: Any,
        min_step: Any,
        max_step: Any,
        order: int,
        estimator: str = "doubling",
    ):
        """Check the user's settings (``dt=None``) and build the control."""
        rtol = 0.0 if step_rtol is None else real_number(step_rtol, "step_rtol", nonnegative=True)
        atol = 0.0 if step_atol is None else real_number(step_atol, "step_atol", nonnegative=True)
        if rtol == 0.0 and atol == 0.0:
            msg = (
                "`dt` is None (adaptive step size) but no positive `step_rtol` or `step_atol` was given "
                f"(got step_rtol={step_rtol!r}, step_atol={step_atol!r}); pass e.g. step_rtol=1e-4, or a fixed dt."
            )
            raise ValueError(msg)
        if rtol >= 1.0:
            msg = f"`step_rtol` must be below 1 (a relative error); got {rtol}."
            raise ValueError(msg)
        first = _positive_or_none(first_step, "first_step")
        low = _positive_or_none(min_step, "min_step")
        high = _positive_or_none(max_step, "max_step")
        if low is not None and high is not None and low > high:
            msg = f"`min_step` = {low} exceeds `max_step` = {high}; choose min_step <= max_step."
            raise ValueError(msg)
        if estimator not in ESTIMATORS:  # pragma: no cover - internal
            msg = f"unknown estimator {estimator!r}; one of {ESTIMATORS}"
            raise ValueError(msg)
        return cls(
            rtol=rtol, atol=atol, first_step=first, min_step=low, max_step=high, order=order, estimator=estimator
        )

    def floor(self, t: float) -> float:
        """The floor of the step size at time ``t``: ``min_step``, or ``MIN_STEP_ULPS``
        round-off units of ``t`` (where ``t + h`` stops changing)."""
        if self.min_step is not None:
            return self.min_step
        return MIN_STEP_ULPS * float(np.finfo(float).eps) * max(abs(t), float(np.finfo(float).tiny))

    @property
    def truncations(self) -> int:
        """Truncations of an accepted step that the estimate does not see: ``2`` for step
        doubling (the two half steps), ``1`` for an embedded pair (the final truncation;
        the stages' truncations enter the stages)."""
        return 2 if self.estimator == "doubling" else 1

    def allowance(self, norm: Any, h: float) -> Any:
        """Error a step of size ``h`` may have: ``atol + rtol norm``, times ``h`` for step
        doubling (error per unit time)."""
        base = self.atol + self.rtol * norm
        return base * h if self.estimator == "doubling" else base

    def ratio(self, est: Any, norm: Any, h: float, xp: Any) -> float:
        """Largest ``est / allowance`` over the members (``inf`` if non-finite)."""
        r = est / self.allowance(norm, h)
        value = float(xp.max(r)) if getattr(r, "ndim", 0) else float(r)
        return value if math.isfinite(value) else math.inf

    def factor(self, ratio: float, grow: float, previous: float | None = None) -> float:
        """Step-size factor for an error ratio ``ratio`` (``<= 1``: accepted).

        ``SAFETY ratio^(-1/p)`` (I controller), or with ``previous`` (the ratio of the
        previous accepted step) ``x^(-PI_NOW/p) x_prev^(PI_PREV/p)`` with
        ``x = ratio / SAFETY^p`` (PI controller), clipped to ``[SHRINK, grow]``.
        """
        if ratio == 0.0:
            return grow
        if not math.isfinite(ratio):
            return SHRINK
        p = self.order
        if previous is None or not (previous > 0.0 and math.isfinite(previous)):
            value = SAFETY * ratio ** (-1.0 / p)
        else:
            x, x_prev = ratio / SAFETY**p, previous / SAFETY**p
            value = x ** (-PI_NOW / p) * x_prev ** (PI_PREV / p)
        return min(grow, max(SHRINK, value))


def truncation_theta(integrator: Any, Y: LowRank) -> float | None:
    """Largest truncation tolerance ``theta`` of a rank-adaptive method at ``Y`` (``None``
    for fixed rank or without ``tol``/``rtol``)."""
    trunc = getattr(integrator, "truncation", None)
    if trunc is None or not trunc.adaptive:
        return None
    xp = Y.xp
    s = xp.linalg.svdvals(Y.S)
    theta = trunc.theta(s, xp)
    return float(xp.max(theta)) if getattr(theta, "ndim", 0) else float(theta)


def warn_truncation(theta: float, allowance: float, t: float, truncations: int = 2, stacklevel: int = 4) -> None:
    """Emit :class:`StepToleranceWarning` (the rule of ``TRUNCATION_SHARE``)."""
    msg = (
        f"the truncation tolerance theta = {theta:.3g} per truncation ({truncations} per accepted step) is more than "
        f"{TRUNCATION_SHARE:g} of the error the step-size controller allows the step ({allowance:.3g} at "
        f"t = {t:.6g}); the controller cannot reduce the truncation error by shrinking the step. Lower the "
        "method's `tol`/`rtol` (by about the ratio) or raise `step_rtol`/`step_atol`."
    )
    warnings.warn(msg, StepToleranceWarning, stacklevel=stacklevel)


# --------------------------------------------------------------------- the controller
class TrialBreakdown(Exception):
    """A trial step broke down (NaN/Inf, a failed decomposition): an infinite error ratio."""


def _largest(x: Any, xp: Any) -> float:
    value = float(xp.max(x)) if getattr(x, "ndim", 0) else float(x)
    return value if math.isfinite(value) else math.inf


def trial(control: StepControl, one_step: Any, t_a: float, t_b: float, Y_a: LowRank, state: Any, norm_a: Any):
    """One trial step ``t_a -> t_b`` from ``Y_a`` with its error estimate.

    ``one_step(t_a, t_b, Y, state, estimate)`` returns ``(Y1, state1, est)`` (``est``
    only with ``estimate=True``) and raises :class:`TrialBreakdown` when the step broke
    down.  Returns ``(Y_new, state_new, ratio, est)``: ``Y_new`` is the kept state (the
    higher-order solution of an embedded pair; ``Y_2`` of step doubling), ``ratio =
    est / allowance``; a breakdown gives ``(None, None, inf, inf)``.
    """
    try:
        if control.estimator == "embedded":
            Y_new, s_new, est = one_step(t_a, t_b, Y_a, state, True)
        else:
            t_m = t_a + 0.5 * (t_b - t_a)
            Y1, _, _ = one_step(t_a, t_b, Y_a, state, False)
            Yh, sh, _ = one_step(t_a, t_m, Y_a, state, False)
            Y_new, s_new, _ = one_step(t_m, t_b, Yh, sh, False)
            est = difference_norm(Y1, Y_new) / (2.0**control.order - 1.0)
    except TrialBreakdown:
        return None, None, math.inf, math.inf
    xp = Y_new.xp
    norm = xp.maximum(norm_a, Y_new.norm())
    return Y_new, s_new, control.ratio(est, norm, t_b - t_a, xp), _largest(est, xp)


# ----------------------------------------------------------------------------- events
def check_events(events: Any) -> list[Any]:
    """``events`` as a list of callables ``event(t, Y) -> float`` (``TypeError`` otherwise)."""
    if events is None:
        return []
    items = list(events) if isinstance(events, (list, tuple)) else [events]
    for i, ev in enumerate(items):
        if not callable(ev):
            name = "`events`" if not isinstance(events, (list, tuple)) else f"`events[{i}]`"
            msg = (
                f"{name} must be a callable event(t, Y) -> float (with optional `terminal` and `direction` "
                f"attributes, as in scipy.integrate.solve_ivp); got {ev!r} of type {type(ev).__name__}."
            )
            raise TypeError(msg)
        terminal = getattr(ev, "terminal", False)
        if isinstance(terminal, (bool, np.bool_)):
            pass
        elif isinstance(terminal, (int, np.integer)) and terminal >= 1:
            pass
        else:
            msg = f"`events[{i}].terminal` must be a bool or a positive int; got {terminal!r}."
            raise ValueError(msg)
        direction = getattr(ev, "direction", 0)
        real_number(direction, f"events[{i}].direction")
    return items


def terminal_count(ev: Any) -> int:
    """Occurrences after which ``ev`` stops the solve (0: never)."""
    terminal = getattr(ev, "terminal", False)
    if isinstance(terminal, (bool, np.bool_)):
        return 1 if terminal else 0
    return int(terminal)


def event_value(ev: Any, t: float, Y: LowRank, index: int) -> float:
    """``float(ev(t, Y))``, with a clear error for a non-real or non-finite value."""
    value = ev(t, Y)
    g = as_float(value)
    if g is None:
        msg = f"`events[{index}]` must return a real number; at t = {t:.6g} it returned {value!r}."
        raise TypeError(msg)
    if not math.isfinite(g):
        msg = f"`events[{index}]` returned {g} at t = {t:.6g}; an event function must return finite values."
        raise ValueError(msg)
    return g


def crossed(ev: Any, g_a: float, g_b: float) -> bool:
    """Whether ``g`` changes sign from ``g_a`` to ``g_b`` in the event's direction.

    A zero at the start of a step does not count (it was reported at the end of the
    previous step); a zero at the end counts.
    """
    direction = float(getattr(ev, "direction", 0))
    if g_a == 0.0:
        return False
    rising = g_a < 0.0 <= g_b
    falling = g_a > 0.0 >= g_b
    if direction > 0:
        return rising
    if direction < 0:
        return falling
    return rising or falling


def locate(g: Any, t_a: float, t_b: float, g_a: float, g_b: float) -> float:
    """Time of the sign change of ``g`` in ``(t_a, t_b]`` (Illinois regula falsi).

    ``g(t)`` re-steps from ``t_a`` to ``t``.  Stops when the bracket is shorter than
    ``EVENT_XTOL (t_b - t_a)`` (plus the round-off of ``t``) or ``g`` is exactly zero;
    returns the bracket end on the far side of the sign change, so the state there has
    crossed.
    """
    lo, hi, g_lo, g_hi = t_a, t_b, g_a, g_b
    xtol = EVENT_XTOL * (t_b - t_a) + 4.0 * np.finfo(float).eps * max(abs(t_a), abs(t_b))
    side = 0
    for _ in range(EVENT_MAXITER):
        if hi - lo <= xtol or g_hi == 0.0:
            break
        t = hi - g_hi * (hi - lo) / (g_hi - g_lo)
        if not (lo < t < hi):
            t = 0.5 * (lo + hi)
        g_t = g(t)
        if g_t == 0.0 or (g_t > 0) != (g_lo > 0):
            hi, g_hi = t, g_t
            if side == -1:
                g_lo *= 0.5
            side = -1
        else:
            lo, g_lo = t, g_t
            if side == 1:
                g_hi *= 0.5
            side = 1
    return hi


# ------------------------------------------------------------------------ checkpoints
@dataclass
class Checkpoint:
    """Everything :func:`~lowrank_core.solve` needs to continue a solve bit for bit.

    Made by :meth:`~lowrank_core.Solution.checkpoint` (or attached to the exception of an interrupted
    solve as ``.checkpoint``); pass it as ``lc.solve(problem, None, t_span,
    resume=checkpoint)``.  It pickles (with the problem's arrays not included: the
    problem is given again to the resumed solve).

    Attributes
    ----------
    t : float
        Time of the state.
    Y : LowRank
        State at ``t`` (the last accepted state).
    t_start : float
        Start of the whole solve (``t_span[0]`` of the first call).
    step : int
        Accepted steps so far.
    method : AbstractIntegrator
        The integrator (configuration); ``state`` is its internal state.
    dt : float or None
        Fixed step size, or ``None`` with ``control`` (the controller's settings) and
        ``h_next`` (its next trial step).
    """

    t: float
    Y: LowRank
    t_start: float
    step: int
    method: Any
    state: Any
    counters: Counters
    dt: float | None
    control: StepControl | None
    h_next: float | None
    rejected: int
    wall_time: float
    step_sizes: list[float] = field(default_factory=list)
    step_ranks: list[int] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)
    Ys: list[LowRank] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    callback_values: list[Any] = field(default_factory=list)
    event_counts: list[int] = field(default_factory=list)
    t_events: list[list[float]] = field(default_factory=list)
    Y_events: list[list[LowRank]] = field(default_factory=list)
    warned: bool = False
    history: bool = True
    ratio_prev: float | None = None

    def copy(self) -> Checkpoint:
        """An independent copy (lists and counters copied, arrays shared: they are never
        modified in place)."""
        return copy.copy(self)._detached()

    def _detached(self) -> Checkpoint:
        self.counters = copy.deepcopy(self.counters)
        for name in ("step_sizes", "step_ranks", "ts", "Ys", "ranks", "callback_values", "event_counts"):
            setattr(self, name, list(getattr(self, name)))
        self.t_events = [list(x) for x in self.t_events]
        self.Y_events = [list(x) for x in self.Y_events]
        return self

    def __repr__(self) -> str:
        mode = f"dt={self.dt}" if self.dt is not None else f"adaptive, h_next={self.h_next:.3g}"
        return f"Checkpoint(t={self.t:.6g}, step={self.step}, rank={self.Y.rank}, {mode}, method={self.method!r})"
