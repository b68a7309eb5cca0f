"""``solve``: integrate a matrix ODE on the low-rank manifold over a time span."""

from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _dask
from ._control import (
    GROW,
    PROBE,
    RATIO_FLOOR,
    STRETCH,
    TRUNCATION_SHARE,
    Checkpoint,
    StepControl,
    TrialBreakdown,
    check_events,
    controller_order,
    crossed,
    difference_norm,
    estimator_of,
    event_value,
    locate,
    terminal_count,
    trial,
    truncation_theta,
    warn_truncation,
)
from ._errors import LowRankIntegrationError
from ._linalg import (
    LinAlgBreakdown,
    isolating_members,
    matmul,
    member_indices,
    nonfinite_members,
    thin_qr,
    use_linalg,
)
from ._lowrank import LowRank
from ._namespace import conj_transpose
from ._problem import AbstractMatrixODE
from ._stats import Counters
from ._substep import SubstepBreakdown
from .integrators import METHODS, AbstractIntegrator

__all__ = ["Checkpoint", "Solution", "solve", "time_grid"]



class _Default:
    """The value of an option of :func:`solve` that was not given: the method's own
    default applies (shown as ``default`` in the signature; one instance, which pickles
    as itself)."""

    def __repr__(self) -> str:
        return "default"

    def __reduce__(self) -> str:
        return "_DEFAULT"


_DEFAULT = _Default()
#: Most steps a time grid may have: beyond, ``dt`` is almost surely a mistake (and the
#: grid alone would need gigabytes).
MAX_STEPS = 10**8
#: Accepted values of ``solve(..., on_member_failure=...)``.
MEMBER_FAILURE_MODES = ("raise", "isolate")


@dataclass
class Solution:
    """Result of :func:`solve`.

    Attributes
    ----------
    Y : LowRank
        State at the final time.
    t : numpy.ndarray
        Times of the saved states (always includes the initial and final time).
    Ys : list of LowRank
        Saved states, one per entry of ``t``.
    ranks : list of int
        Rank of each saved state.
    stats : dict
        ``steps``, ``rhs_evals`` (distinct right-hand-side points), ``qr``, ``svd``
        (numbers of decompositions), ``qr_shapes``, ``svd_shapes`` (``{(rows, cols):
        count}``), ``qr_flops``, ``svd_flops``, ``flops`` (decomposition operation
        counts), ``max_rank_hits`` (steps where the tolerance wanted more than
        ``max_rank``), ``rejections`` (repeated steps of :class:`ParallelBUG` with
        ``reject=True``) and ``wall_time`` (seconds).  Decompositions and evaluations are
        counted per matrix: a stack of ``B`` problems counts ``B`` per batched call;
        ``max_rank_hits`` and ``rejections`` count steps.  With ``substep="exact"``,
        ``rhs_evals`` counts exact increments (one per substep).  With ``dt=None``:
        ``rejected_steps`` (rejected trial steps of the controller; all counts include
        the work of rejected trials).
    method : AbstractIntegrator
        The integrator that produced the solution.
    step_ranks : list of int
        Rank after every step (``step_ranks[0]`` is the rank of ``Y0``), also when
        ``save_every > 1`` thins the saved states.
    failed_members : dict
        With ``on_member_failure="isolate"``: batch index of each member that broke down
        -> ``(step, t)`` of the step where it did (its factors are NaN from then on).
        Empty when every member finished.
    step_sizes : numpy.ndarray
        Size of every accepted step, in order (with ``dt=None``, the controller's; with
        a fixed ``dt``, ``dt`` except for steps shortened to hit ``t_eval``, ``t1`` or an
        event).  ``stats["rejected_steps"]`` counts the rejected trial steps.
    t_events, Y_events : list or None
        With ``events``: for each event, the times (array) and states (list of
        :class:`LowRank`) where it occurred, as in ``scipy.integrate.solve_ivp``;
        ``None`` without events.
    status : int
        ``0``: the solve reached ``t1``; ``1``: a terminal event stopped it (then
        ``sol.Y`` is the state at the event).  Failures raise instead of returning
        ``-1``.
    message : str
        Human-readable ``status``.
    callback_values : list
        The return values of ``callback(t, Y)``, one per accepted step (``None`` for a
        callback that returns nothing).
    """

    Y: LowRank
    t: np.ndarray
    Ys: list[LowRank]
    ranks: list[int]
    stats: dict[str, Any]
    method: AbstractIntegrator
    step_ranks: list[int] = field(default_factory=list)
    failed_members: dict[Any, tuple[int, float]] = field(default_factory=dict)
    step_sizes: np.ndarray = field(default_factory=lambda: np.empty(0))
    t_events: list[np.ndarray] | None = None
    Y_events: list[list[LowRank]] | None = None
    status: int = 0
    message: str = "The solver successfully reached the end of the integration interval."
    callback_values: list[Any] = field(default_factory=list)
    _checkpoint: Checkpoint | None = field(default=None, repr=False)

    def checkpoint(self, *, history: bool = True) -> Checkpoint:
        """A picklable :class:`~lowrank_core.Checkpoint` of the final state, to continue the solve.

        ``lc.solve(problem, None, (t0, t2), resume=sol.checkpoint())`` continues from
        ``sol.t[-1]`` with the same method, integrator state (rank, kept columns),
        counters, step size or controller state (its next trial step), and events: the
        result equals, bit for bit, one solve over ``(t0, t2)`` that had the resume time
        among its output times (``t_eval``; with a fixed ``dt`` on the grid
        ``t0 + k dt`` this holds without ``t_eval``).

        Parameters
        ----------
        history : bool, default True
            Keep the saved states, event records and callback values, so the resumed
            solution holds the whole run; ``False`` keeps only what is needed to go on
            (a smaller pickle), and the resumed solution starts at the checkpoint.
        """
        if not isinstance(history, bool):
            msg = f"`history` must be True or False; got {history!r} of type {type(history).__name__}."
            raise TypeError(msg)
        if self._checkpoint is None:
            msg = "this Solution was not made by lowrank_core.solve and has no checkpoint."
            raise ValueError(msg)
        ck = self._checkpoint.copy()
        if not history:
            ck.ts, ck.Ys, ck.ranks, ck.callback_values, ck.step_sizes = [], [], [], [], []
            ck.t_events = [[] for _ in ck.t_events]
            ck.Y_events = [[] for _ in ck.Y_events]
            ck.step_ranks = [ck.Y.rank]
            ck.history = False
        return ck


def time_grid(t_span: Any, dt: Any) -> list[float]:
    """Validated grid ``t0, t0 + dt, ..., t1`` (the last step may be shorter).

    Times are computed as ``t0 + k dt`` rather than by repeated addition, so rounding
    errors do not accumulate.
    """
    t0, t1 = _check_span(t_span)
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating, np.integer)):
        msg = f"`dt` must be a positive real number; got {dt!r} of type {type(dt).__name__}."
        raise TypeError(msg)
    dt = float(dt)
    span = t1 - t0
    if not math.isfinite(dt) or dt <= 0:
        msg = f"`dt` must be positive and finite; got {dt}."
        raise ValueError(msg)
    if dt > span * (1 + 1e-12):
        msg = f"`dt` = {dt} is larger than the time span t1 - t0 = {span}; choose dt <= {span}."
        raise ValueError(msg)
    ratio = span / dt
    if ratio > MAX_STEPS:
        msg = (
            f"`dt` = {dt:g} would take {ratio:.3g} steps over the span {span:g}, more than "
            f"{MAX_STEPS:.0e}; choose a larger dt (or split the span into several solves)."
        )
        raise ValueError(msg)
    n = round(ratio)
    if abs(ratio - n) > 1e-9 * max(1.0, ratio):
        n = math.ceil(ratio)
    n = max(n, 1)
    grid = [t0 + k * dt for k in range(n)]
    grid.append(t1)
    # guard against a vanishing last step from rounding
    if len(grid) > 2 and grid[-1] - grid[-2] <= 1e-12 * span:
        grid.pop(-2)
    return grid


def _per_unit_time(flag: Any, tol: Any, rtol: Any, dt: Any, method: Any) -> tuple[Any, Any]:
    """``tol * dt`` and ``rtol * dt`` for ``solve(..., tol_per_unit_time=True)``."""
    if not isinstance(flag, bool):
        msg = f"`tol_per_unit_time` must be True or False; got {flag!r} of type {type(flag).__name__}."
        raise TypeError(msg)
    if dt is None:
        msg = (
            "`tol_per_unit_time=True` scales the truncation tolerance by the fixed step size (theta = tol * dt), "
            "but `dt` is None (step-size control). Pass `dt`, or pass the per-step tolerance as `tol`."
        )
        raise ValueError(msg)
    if isinstance(method, AbstractIntegrator):
        msg = (
            "`tol_per_unit_time=True` cannot be combined with an integrator instance; pass the method's name "
            "with `tol`/`rtol`, or configure the instance with tol = (tolerance per unit time) * dt."
        )
        raise ValueError(msg)
    if all(v is _DEFAULT or v is None for v in (tol, rtol)):
        msg = "`tol_per_unit_time=True` needs a truncation tolerance: pass `tol` or `rtol` (per unit time)."
        raise ValueError(msg)

    def scaled(value: Any) -> Any:
        real = (int, float, np.integer, np.floating)
        if isinstance(value, bool) or not isinstance(value, real) or not isinstance(dt, real):
            return value  # left to the checks of `tol`/`rtol`/`dt`, which name the argument
        return float(value) * float(dt)

    return scaled(tol), scaled(rtol)


def _resolve_method(
    method: Any,
    substep: Any,
    tol: Any,
    rtol: Any,
    min_rank: Any,
    max_rank: Any,
    variant: Any,
    rule: Any = _DEFAULT,
    conserve: Any = _DEFAULT,
    tableau: Any = _DEFAULT,
) -> AbstractIntegrator:
    options = {
        "substep": substep,
        "tol": tol,
        "rtol": rtol,
        "min_rank": min_rank,
        "max_rank": max_rank,
        "variant": variant,
        "truncation_rule": rule,
        "conserve": conserve,
        "tableau": tableau,
    }
    given = {k: v for k, v in options.items() if v is not _DEFAULT}
    if isinstance(method, AbstractIntegrator):
        if given:
            names = ", ".join(f"`{k}`" for k in given)
            msg = (
                f"{names} cannot be combined with an integrator instance; configure the "
                f"instance instead, e.g. {type(method).__name__}({', '.join(f'{k}=...' for k in given)})."
            )
            raise ValueError(msg)
        return method
    if isinstance(method, type) and issubclass(method, AbstractIntegrator):
        cls = method
    elif isinstance(method, str):
        key = method.lower()
        if key not in METHODS:
            msg = f"unknown `method` {method!r}; choose one of {sorted(METHODS)} or pass an integrator instance."
            raise ValueError(msg)
        cls = METHODS[key]
    else:
        msg = (
            f"`method` must be a name ({sorted(METHODS)}), an integrator class or instance; "
            f"got {type(method).__name__}."
        )
        raise TypeError(msg)
    return cls.from_options(**given)  # the class validates its options and rejects others


def solve(
    problem: AbstractMatrixODE,
    Y0: LowRank | None,
    t_span: tuple[float, float],
    dt: float | None = None,
    *,
    method: Any = _DEFAULT,
    substep: Any = _DEFAULT,
    tol: float | None | _Default = _DEFAULT,
    min_rank: int | _Default = _DEFAULT,
    max_rank: int | None | _Default = _DEFAULT,
    rtol: float | None | _Default = _DEFAULT,
    variant: str | None | _Default = _DEFAULT,
    truncation_rule: str | _Default = _DEFAULT,
    conserve: Any = _DEFAULT,
    tableau: str | None | _Default = _DEFAULT,
    tol_per_unit_time: bool = False,
    save_every: int = 1,
    check_finite: bool = True,
    linalg: str | None = None,
    on_member_failure: str = "raise",
    step_rtol: float | None = None,
    step_atol: float | None = None,
    first_step: float | None = None,
    min_step: float | None = None,
    max_step: float | None = None,
    t_eval: Any = None,
    callback: Any = None,
    events: Any = None,
    resume: Checkpoint | None = None,
) -> Solution:
    r"""Integrate ``dY/dt = F(t, Y)`` on the manifold of low-rank matrices.

    Parameters
    ----------
    problem : AbstractMatrixODE
        :class:`MatrixODE` (dense ``f(t, Y)``), :class:`MatrixPath` (given ``A(t)``),
        :class:`LinearMatrixODE` or a user subclass with product methods.
    Y0 : LowRank
        Initial value ``U0 S0 V0^H`` with ``U0 (..., m, r)``, ``S0 (..., r, r)``,
        ``V0 (..., n, r)``; leading dimensions are independent problems.
    t_span : (float, float)
        ``(t0, t1)`` with ``t0 < t1``.
    dt : float or None
        Step size, ``0 < dt <= t1 - t0``; the last step is shortened to end at ``t1``.
        ``None`` (the default): the step size is chosen by the controller from
        ``step_rtol``/``step_atol`` (embedded pair or step doubling; see ``docs/solve.md``).
    method : str, integrator class or instance, default "abc-psi"
        ``"ksl"``, ``"ksl-strang"``, ``"bc-psi"``, ``"abc-psi"``, ``"bug"``,
        ``"ra-bug"``, ``"parallel-bug"``, the second-order ``"midpoint-bug"`` and
        ``"parallel-bug-2"``, the Runge-Kutta ``"rk-bug"`` and ``"projected-rk"`` (with
        ``tableau=``), or an
        :class:`~lowrank_core.integrators.AbstractIntegrator` (then configure it
        directly instead of passing ``substep``/``tol``/...).
    substep : {"rk4", "euler", "rk45", "exact"} or SubstepSolver, default "rk4"
        Solver of the substep ODEs; ``"rk45"`` is adaptive (:class:`RK45`, default
        tolerances; pass ``RK45(rtol=..., atol=...)`` to choose them), ``"exact"`` uses
        the increments of a :class:`MatrixPath`.
    tol : float, optional
        Absolute truncation tolerance ``theta`` (Frobenius norm of the discarded
        singular values per step) of a rank-adaptive method.  ``None`` keeps the rank
        of ``Y0``.  Passing it to a fixed-rank method raises ``ValueError``.
    min_rank, max_rank : int, optional
        Bounds of the rank of a rank-adaptive method (default 1 and ``2r`` per step, at
        most ``min(m, n)``); without ``tol``/``rtol`` they clamp the fixed rank.  Hitting
        ``max_rank`` is counted in ``stats["max_rank_hits"]``.  Fixed-rank methods
        reject them.
    rtol : float, optional
        Relative truncation tolerance: ``theta = tol + rtol ||Y||_F``.
    variant : str, optional
        abc-PSI only: ``"min-qr"`` (default, 1 QR per step) or ``"two-qr"``.
    truncation_rule : {"tail", "threshold"}, optional
        How a rank-adaptive method reads ``tol``/``rtol`` (:class:`Truncation`):
        ``"tail"`` (default) discards the smallest singular values whose Frobenius norm
        is ``<= theta = tol + rtol ||Y||_F``; ``"threshold"`` keeps the singular values
        ``> theta = tol + rtol sigma_1``.
    conserve : Conservation, optional
        Conservative truncation (``"ra-bug"`` and ``"abc-psi"`` only; other methods
        raise ``ValueError``): the columns ``conserve.left`` (``m x d``) and
        ``conserve.right`` (``n x c``) join the augmented bases and the truncation keeps
        the part of ``Y`` they see exactly, so linear invariants ``a^H Y b`` of the
        right-hand side with ``a`` in ``range(left)``, ``b`` in ``range(right)`` (mass,
        momentum of a kinetic problem) are conserved to round-off
        (:class:`Conservation`; Einkemmer & Joseph 2021, Einkemmer, Ostermann & Scalone
        2023).
    tableau : {"heun", "ssprk3", "rk4"}, optional
        Runge-Kutta tableau of ``"rk-bug"`` and ``"projected-rk"`` (default ``"rk4"``;
        other methods raise ``ValueError``).
    tol_per_unit_time : bool, default False
        Read ``tol`` and ``rtol`` per unit time: every step truncates with
        ``theta = (tol + rtol ||Y||_F) * dt`` instead of ``tol + rtol ||Y||_F``.  The
        truncation errors of the ``(t1 - t0)/dt`` steps then add up to at most
        ``(t1 - t0) (tol + rtol ||Y||_F)`` whatever ``dt`` is, so the error of a
        rank-adaptive method decreases as ``dt`` shrinks, down to that floor, instead of
        growing like ``theta/dt`` (the ``theta/h`` term of the error bounds of
        RA-BUG and parallel BUG, Ceruti, Kusch & Lubich 2022, 2024).  Needs a fixed
        ``dt``, a method name or class and ``tol`` or ``rtol``.
    save_every : int, default 1
        Keep every ``save_every``-th state (the final state is always kept).
    check_finite : bool, default True
        Check the factors for NaN/Inf after every step and raise
        :class:`LowRankIntegrationError` with the step index, the time and, for a
        stack, the batch indices of the members at fault (``.members``).  A QR or SVD of
        non-finite input raises the same error whatever this flag says.
    linalg : {"auto", "kernels", "xp"}, optional
        Where the QR/SVD decompositions run: the batched ``lowrank_kernels`` kernels,
        the array library's ``linalg``, or the size rule (``"auto"``; see
        :func:`use_linalg`).  ``None`` keeps the enclosing :func:`use_linalg` setting
        (``"auto"`` by default).  ``stats["kernel_calls"]`` counts kernel calls.
    on_member_failure : {"raise", "isolate"}, default "raise"
        For a stack of problems (batched ``Y0``), what a breakdown of some members does.
        ``"raise"``: :class:`LowRankIntegrationError` naming them.  ``"isolate"``: the
        broken members keep NaN factors from the failing step on, their decompositions
        are done on zero stand-ins and their NaN singular values never count in a rank
        decision, and the healthy members go on as the stack of the healthy members
        alone would (bit for bit on the kernel and NumPy paths); ``sol.failed_members``
        maps each broken member to the ``(step, t)`` where it broke.  The solve still
        raises if every member breaks.  Implies the per-step finiteness check.
        Fixed ``dt`` only.
    step_rtol, step_atol : float, optional
        With ``dt=None``: the error allowed to a step's estimate ``est``.  Methods with
        an embedded pair (``rk-bug``, ``projected-rk``, ``midpoint-bug``,
        ``parallel-bug-2``): per step, ``est <= step_atol + step_rtol ||Y||_F``, ``est``
        the difference of the pair's two solutions (the higher-order one is kept).
        Other methods: per unit of time, ``est <= (step_atol + step_rtol ||Y||_F) h``
        with ``est = ||Y_2 - Y_1||_F / (2^p - 1)`` the step-doubling estimate of a
        method of order ``p`` (``AbstractIntegrator.order``).  Either way the achieved
        error is proportional to the tolerance.  At least one must be positive;
        ``step_rtol < 1``.  A rank-adaptive method's truncation ``theta`` should stay
        below half the allowance per unseen truncation (two for step doubling, one
        for an embedded pair; :class:`~lowrank_core.StepToleranceWarning` otherwise).
    first_step, min_step, max_step : float, optional
        With ``dt=None``: the first trial step (default ``0.01 ||Y0|| / ||P(Y0) F||``
        from one probe step), the floor below which the solve raises (default 64
        round-off units of ``t``) and a ceiling (default none).
    t_eval : sequence of float, optional
        Sorted times inside ``t_span`` at which to save the state (then ``sol.t`` is
        ``t_eval``); each is hit exactly by shortening the step that would pass it.
    callback : callable, optional
        ``callback(t, Y)`` after every accepted step; its return values are collected in
        ``sol.callback_values``.  An exception in it stops the solve (with
        ``exc.checkpoint``).
    events : callable or list of callables, optional
        ``event(t, Y) -> float`` as in ``scipy.integrate.solve_ivp`` (attributes
        ``terminal``, ``direction``); zeros located to ``1e-10 h`` by regula falsi on the
        step size, in ``sol.t_events``/``sol.Y_events``; a terminal one ends the solve
        (``sol.status == 1``).
    resume : Checkpoint, optional
        Continue the solve of :meth:`~lowrank_core.Solution.checkpoint` (then ``Y0`` is ``None``, the
        method and step settings come from the checkpoint, ``t_span = (t0, t2)`` is the
        span of the whole solve); bit for bit equal to one uninterrupted solve.

    Returns
    -------
    Solution
        ``sol.Y`` (final state), ``sol.t``, ``sol.Ys``, ``sol.ranks``, ``sol.stats``,
        ``sol.step_sizes``, ``sol.t_events``, ``sol.status``, ``sol.checkpoint()``.

    Raises
    ------
    TypeError, ValueError
        Invalid arguments (named in the message).
    LowRankIntegrationError
        Numerical breakdown (non-finite values, failed decomposition, the controller's
        floor), with ``.t``, ``.step``, ``.error_estimate`` (floor) and the last good
        state (``.last_good``, ``.checkpoint`` to resume from).  A ``KeyboardInterrupt``
        and exceptions from ``F`` or ``callback`` propagate with ``.checkpoint`` and
        ``.last_good`` attached.

    Examples
    --------
    >>> import numpy as np
    >>> import lowrank_core as lc
    >>> rng = np.random.default_rng(1)
    >>> B = rng.standard_normal((30, 20))
    >>> Y0 = lc.LowRank.from_dense(rng.standard_normal((30, 20)), rank=4)
    >>> sol = lc.solve(lc.MatrixODE(lambda t, Y: B - Y), Y0, (0.0, 5.0), dt=0.5,
    ...                method="abc-psi", substep="euler")
    >>> sol.stats["qr"], sol.stats["rhs_evals"]
    (10, 10)
    """
    if resume is not None:
        given = {
            "method": method, "substep": substep, "tol": tol, "rtol": rtol, "min_rank": min_rank,
            "max_rank": max_rank, "variant": variant, "truncation_rule": truncation_rule, "conserve": conserve,
            "tableau": tableau, "tol_per_unit_time": tol_per_unit_time or _DEFAULT,
        }  # fmt: skip
        _check_resume(resume, Y0, [k for k, v in given.items() if v is not _DEFAULT])
        integrator = resume.method
    else:
        if tol_per_unit_time is not False:
            tol, rtol = _per_unit_time(tol_per_unit_time, tol, rtol, dt, method)
        integrator = _resolve_method(
            "abc-psi" if method is _DEFAULT else method,
            substep, tol, rtol, min_rank, max_rank, variant, truncation_rule, conserve, tableau=tableau,
        )  # fmt: skip
    if isinstance(save_every, bool) or not isinstance(save_every, int):
        msg = f"`save_every` must be an integer; got {save_every!r} of type {type(save_every).__name__}."
        raise TypeError(msg)
    if save_every < 1:
        msg = f"`save_every` must be >= 1; got {save_every}."
        raise ValueError(msg)
    if not isinstance(check_finite, bool):
        msg = f"`check_finite` must be True or False; got {check_finite!r} of type {type(check_finite).__name__}."
        raise TypeError(msg)
    if not isinstance(on_member_failure, str) or on_member_failure not in MEMBER_FAILURE_MODES:
        msg = f"`on_member_failure` must be one of {MEMBER_FAILURE_MODES}; got {on_member_failure!r}."
        raise ValueError(msg)
    isolate = on_member_failure == "isolate"
    steps = {"step_rtol": step_rtol, "step_atol": step_atol, "first_step": first_step, "min_step": min_step}
    steps["max_step"] = max_step
    if resume is not None:
        extra = [k for k, v in {"dt": dt, **steps}.items() if v is not None]
        if extra:
            names = ", ".join(f"`{k}`" for k in extra)
            msg = (
                f"{names} cannot be combined with `resume`: the checkpoint fixes the step size or the controller "
                "(so that the resumed solve continues bit for bit). Drop them, or start a new solve from "
                "checkpoint.Y with other settings."
            )
            raise ValueError(msg)
        span = _check_span(t_span)
        if span[0] != resume.t_start or not span[1] > resume.t:
            msg = (
                f"`t_span` of a resumed solve must be (t0, t1) with t0 = {resume.t_start} (the start of the "
                f"checkpointed solve) and t1 > {resume.t} (the checkpoint's time); got {t_span!r}."
            )
            raise ValueError(msg)
        dt, control = resume.dt, resume.control
        if dt is not None:
            time_grid(span, dt)
    elif dt is None:
        span = _check_span(t_span)
        estimator = estimator_of(integrator)
        control = StepControl.build(**steps, order=controller_order(integrator, estimator), estimator=estimator)
        if isolate:
            msg = (
                '`on_member_failure="isolate"` works with a fixed step size only; pass `dt` (a NaN member would '
                "make every trial step of the controller fail)."
            )
            raise ValueError(msg)
    else:
        given_steps = [k for k, v in steps.items() if v is not None]
        if given_steps:
            names = ", ".join(f"`{k}`" for k in given_steps)
            msg = f"{names} apply to adaptive steps only (dt=None); got dt = {dt!r} as well. Drop one of them."
            raise ValueError(msg)
        time_grid(t_span, dt)  # validates t_span and dt (and the number of steps)
        span = _check_span(t_span)
        control = None
    t_eval = _check_t_eval(t_eval, span, resume)
    if t_eval is not None and save_every != 1:
        msg = f"`save_every` = {save_every} cannot be combined with `t_eval` (which chooses the saved states)."
        raise ValueError(msg)
    if callback is not None and not callable(callback):
        msg = (
            f"`callback` must be a callable callback(t, Y) or None; got {callback!r} of type {type(callback).__name__}."
        )
        raise TypeError(msg)
    events = check_events(events)
    Y_first = Y0 if resume is None else resume.Y
    args = (save_every, check_finite, isolate, t_eval, callback, events, resume)
    with isolating_members(isolate), _dask.dask_scope(Y_first):  # counts Dask synchronisations
        if linalg is not None:
            with use_linalg(linalg):
                return _run(integrator, problem, Y0, span, dt, control, *args)
        return _run(integrator, problem, Y0, span, dt, control, *args)


def _check_span(t_span: Any) -> tuple[float, float]:
    """``t_span`` as ``(t0, t1)``, finite, ``t0 < t1`` (``TypeError``/``ValueError`` naming it)."""
    try:
        if isinstance(t_span, (str, bytes)) or any(isinstance(v, (str, bytes, bool)) for v in t_span):
            raise TypeError
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        msg = f"`t_span` must be a pair of real numbers (t0, t1); got {t_span!r}."
        raise TypeError(msg) from None
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
        msg = f"`t_span` must satisfy t0 < t1 with finite values; got ({t0}, {t1})."
        raise ValueError(msg)
    return t0, t1


def _check_t_eval(t_eval: Any, span: tuple[float, float], resume: Any) -> np.ndarray | None:
    """``t_eval`` as a strictly increasing float array inside ``t_span`` (after the
    checkpoint's time when resuming)."""
    if t_eval is None:
        return None
    try:
        if isinstance(t_eval, (str, bytes)):
            raise TypeError
        times = np.array(t_eval, dtype=float, copy=True)
        if times.dtype == bool or np.asarray(t_eval).dtype == bool:
            raise TypeError
    except (TypeError, ValueError):
        msg = f"`t_eval` must be a sequence of real times; got {t_eval!r} of type {type(t_eval).__name__}."
        raise TypeError(msg) from None
    if times.ndim != 1 or times.size == 0:
        msg = f"`t_eval` must be a non-empty 1-D sequence of times; got shape {times.shape}."
        raise ValueError(msg)
    lo = span[0] if resume is None else resume.t
    if not np.all(np.isfinite(times)) or times[0] < lo or times[-1] > span[1]:
        where = "t_span" if resume is None else "[checkpoint time, t1]"
        msg = (
            f"`t_eval` must lie inside {where} = [{lo}, {span[1]}]; got values from {times.min()} to {times.max()}. "
            "Drop the times outside or widen the span."
        )
        raise ValueError(msg)
    if times.size > 1 and not np.all(np.diff(times) > 0):
        msg = "`t_eval` must be sorted in strictly increasing order (no repeats); sort it with np.unique(t_eval)."
        raise ValueError(msg)
    return times


def _check_resume(resume: Any, Y0: Any, given: list[str]) -> None:
    """``resume`` must be a :class:`Checkpoint`, without ``Y0`` and method options."""
    if not isinstance(resume, Checkpoint):
        msg = f"`resume` must be a Checkpoint (from sol.checkpoint() or err.checkpoint); got {type(resume).__name__}."
        raise TypeError(msg)
    if Y0 is not None:
        msg = (
            "`Y0` and `resume` were both given; the checkpoint holds the state to continue from. "
            "Pass Y0=None: lc.solve(problem, None, t_span, resume=checkpoint)."
        )
        raise ValueError(msg)
    if given:
        names = ", ".join(f"`{k}`" for k in given)
        msg = (
            f"{names} cannot be combined with `resume`: the checkpoint carries its integrator "
            f"({resume.method!r}) and state. Drop them."
        )
        raise ValueError(msg)


def _run(
    integrator: Any,
    problem: Any,
    Y0: LowRank | None,
    t_span: tuple[float, float],
    dt: float | None,
    control: StepControl | None,
    save_every: int,
    check_finite: bool,
    isolate: bool,
    t_eval: np.ndarray | None = None,
    callback: Any = None,
    events: list[Any] | None = None,
    resume: Checkpoint | None = None,
) -> Solution:
    """The time loop: fixed steps on a grid, or trial steps with a step-size controller."""
    events = events or []
    t_end = t_span[1]
    if resume is None:
        state = integrator.init(problem, t_span[0], Y0)
        ck = Checkpoint(
            t=t_span[0], Y=Y0, t_start=t_span[0], step=0, method=integrator, state=state, counters=Counters(),
            dt=dt, control=control, h_next=None, rejected=0, wall_time=0.0, step_ranks=[Y0.rank],
            event_counts=[0] * len(events), t_events=[[] for _ in events], Y_events=[[] for _ in events],
        )  # fmt: skip
        if t_eval is None:
            ck.ts, ck.Ys, ck.ranks = [ck.t], [Y0], [Y0.rank]
    else:
        ck = resume.copy()
        integrator.init(problem, ck.t, ck.Y)  # checks that problem and state fit (the state is the checkpoint's)
        if len(ck.event_counts) != len(events):  # other events than before: their history starts now
            ck.event_counts, ck.t_events, ck.Y_events = [0] * len(events), [[] for _ in events], [[] for _ in events]
        if not ck.history and t_eval is None:
            ck.ts, ck.Ys, ck.ranks = [ck.t], [ck.Y], [ck.Y.rank]
        ck.history = True
    counters = ck.counters
    outputs = [] if t_eval is None else [float(v) for v in t_eval if v > ck.t or (v == ck.t and resume is None)]
    if outputs and outputs[0] == ck.t:  # t_eval starts at t0: the initial state is an output
        outputs.pop(0)
        _save(ck, ck.t, ck.Y)
    failed: dict[Any, tuple[int, float]] = {}
    dask_state = _dask.is_dask_namespace(ck.Y.xp)
    g_prev = [event_value(ev, ck.t, ck.Y, i) for i, ev in enumerate(events)]
    status, message = 0, "The solver successfully reached the end of the integration interval."
    start = time.perf_counter()

    def one_step(t_a: float, t_b: float, Y: LowRank, state: Any, estimate: bool = False) -> tuple[LowRank, Any]:
        """One step of the method, breakdowns turned into LowRankIntegrationError; with
        ``estimate=True`` (a method with an embedded pair) ``(Y1, state1, error estimate)``."""
        try:
            if estimate:
                Y1, state1, info = integrator.step(problem, t_a, t_b, Y, state, estimate=True)
            else:
                Y1, state1, info = integrator.step(problem, t_a, t_b, Y, state)
            if dask_state:  # persist the state (cut its graph) and check it in one synchronisation
                Y1 = _dask.cut(Y1, t_a, ck.step, check_finite or isolate)
            # Counted once the step's work is done (on Dask: computed at the cut; a step a lost
            # worker stops is redone after a resume and counted then).  Rejected trials and
            # event searches count too.
            counters.add(info)
        except SubstepBreakdown as exc:
            raise LowRankIntegrationError(str(exc), t=t_a, step=ck.step, members=exc.members) from exc
        except LinAlgBreakdown as exc:
            msg = f"{exc}; the right-hand side may have produced NaN/Inf or the step size is too large"
            raise LowRankIntegrationError(msg, t=t_a, step=ck.step, members=exc.members) from exc
        except LowRankIntegrationError:
            raise
        except Exception as exc:
            if dask_state and _dask.is_worker_failure(exc):  # resumable: `.Y` is the state at t_a
                raise _dask.worker_failure(exc, t_a, ck.step, Y, ck) from exc
            # A user exception (from F, an operator, a callable C(t)): same object and
            # type, with where it happened attached to its traceback.
            exc.add_note(
                f"lowrank_core.solve: raised during step {ck.step} (t = {t_a:.6g} -> {t_b:.6g}) of {integrator!r}"
            )
            raise
        return (Y1, state1, info.error_estimate) if estimate else (Y1, state1)

    def controlled(t_a: float, t_b: float, Y: LowRank, state: Any, estimate: bool) -> tuple[LowRank, Any, Any]:
        """A trial step of the controller (:func:`~lowrank_core._control.trial`): ``(Y1,
        state1, error estimate or None)``; a breakdown (not a Dask worker failure) is a
        ``TrialBreakdown`` (an infinite error ratio)."""
        try:
            if estimate:
                return one_step(t_a, t_b, Y, state, estimate=True)
            return (*one_step(t_a, t_b, Y, state), None)
        except LowRankIntegrationError as exc:
            if hasattr(exc, "Y"):  # a Dask worker failure: not the step size's fault
                raise
            raise TrialBreakdown(str(exc)) from exc

    def trial_steps():
        """Yield ``(t_a, t_b, Y, state)`` of the accepted steps (fixed grid or controller)."""
        if control is None:
            for t_b in _fixed_points(ck.t_start, t_end, ck.dt, outputs, ck.t):
                t_a = ck.t
                Y, state = one_step(t_a, t_b, ck.Y, ck.state)
                if check_finite or isolate:
                    if not dask_state:
                        _check_finite(Y, t_a, ck.step, failed if isolate else None)
                yield t_a, t_b, Y, state
            return
        high = math.inf if control.max_step is None else control.max_step
        h = ck.h_next
        if h is None:
            h = control.first_step if control.first_step is not None else _first_step(one_step, ck)
        grow = GROW
        stops = [*outputs, t_end]
        adaptive_rank = bool(getattr(getattr(integrator, "truncation", None), "adaptive", False))
        Y_a = ck.Y
        while ck.t < t_end:
            t_a = ck.t
            stop = next(s for s in stops if s > t_a)
            h_plan = min(h, high)
            t_b = stop if t_a + (1.0 + STRETCH) * h_plan >= stop else t_a + h_plan
            h_try = t_b - t_a
            Y2, state2, ratio, est = trial(control, controlled, t_a, t_b, Y_a, ck.state, ck.Y.norm())
            if ratio <= 1.0:
                h = h_try * control.factor(ratio, grow, ck.ratio_prev)
                ck.ratio_prev = max(ratio, RATIO_FLOOR)
                if t_b == stop:  # shortened to hit an output time: keep the planned step
                    h = max(h, min(h_plan, h_try * grow))
                grow = GROW
                theta = truncation_theta(integrator, Y2) if not ck.warned else None
                if theta is not None:
                    allowance = control.allowance(float(ck.Y.xp.max(Y2.norm())), h_try)
                    if control.truncations * theta > TRUNCATION_SHARE * allowance:
                        ck.warned = True
                        warn_truncation(theta, allowance, t_a, control.truncations, stacklevel=5)
                ck.h_next = h
                yield t_a, t_b, Y2, state2
                Y_a = ck.Y
                continue
            ck.rejected += 1
            grow = 1.0
            low = control.floor(t_b)
            if adaptive_rank and Y2 is not None and Y2.rank > Y_a.rank and Y_a.rank < min(Y_a.shape[-2:]):
                # The trial wanted a larger rank: the error is the part of F outside the bases
                # (first order in h, not reduced by a smaller step).  Retry the same step from
                # the same matrix in the bases enlarged by the trial's (zero-padded core).
                Y_a = _enlarged(Y_a, Y2, counters)
                continue
            h = h_try * control.factor(ratio, 1.0)
            if h < low:
                msg = (
                    f"the step-size controller shrank the step to {h:.3g}, below the floor min_step = {low:.3g}; "
                    f"the estimated error of the last trial step {t_a:.6g} -> {t_b:.6g} was "
                    f"{est:.3g}, allowed {control.allowance(float(ck.Y.xp.max(ck.Y.norm())), h_try):.3g}"
                )
                theta = truncation_theta(integrator, ck.Y)
                if theta is not None:
                    msg += f"; the truncation tolerance theta = {theta:.3g} per step may dominate: lower `tol`/`rtol`"
                elif not math.isfinite(est):
                    msg += "; the trial steps broke down (NaN/Inf from the right-hand side?)"
                err = LowRankIntegrationError(msg, t=t_a, step=ck.step, checkpoint=ck.copy(), error_estimate=est)
                raise err

    steps = trial_steps()
    try:
        for t_a, t_b, Y, state in steps:
            Y_a, state_a = ck.Y, ck.state
            hit = None  # (t*, Y*, state*) of a terminal event
            if events:
                g_now = [event_value(ev, t_b, Y, i) for i, ev in enumerate(events)]
                found = []
                for i, ev in enumerate(events):
                    if crossed(ev, g_prev[i], g_now[i]):
                        t_star = _locate_event(one_step, ev, i, t_a, t_b, Y_a, state_a, g_prev[i], g_now[i])
                        found.append((t_star, i))
                for t_star, i in sorted(found):
                    Y_star, s_star = (Y, state) if t_star == t_b else one_step(t_a, t_star, Y_a, state_a)
                    ck.t_events[i].append(t_star)
                    ck.Y_events[i].append(Y_star)
                    ck.event_counts[i] += 1
                    limit = terminal_count(events[i])
                    if limit and ck.event_counts[i] >= limit:
                        hit = (t_star, Y_star, s_star)
                        break
                g_prev = g_now
            if hit is not None:
                t_b, Y, state = hit
            ck.t, ck.Y, ck.state = t_b, Y, state
            ck.step += 1
            ck.step_sizes.append(t_b - t_a)
            ck.step_ranks.append(Y.rank)
            if t_eval is None:
                if ck.step % save_every == 0 or t_b == t_end or hit is not None:
                    _save(ck, t_b, Y)
            elif outputs and t_b == outputs[0]:
                outputs.pop(0)
                _save(ck, t_b, Y)
            if callback is not None:
                try:
                    ck.callback_values.append(callback(t_b, Y))
                except Exception as exc:
                    exc.add_note(f"lowrank_core.solve: raised by `callback` at t = {t_b:.6g} (step {ck.step})")
                    _attach(exc, ck)
                    raise
            if hit is not None:
                status, message = 1, "A termination event occurred."
                break
    except KeyboardInterrupt as exc:
        ck.wall_time += time.perf_counter() - start
        _attach(exc, ck)
        raise
    except LowRankIntegrationError as exc:
        if getattr(exc, "checkpoint", None) is None:
            _attach(exc, ck)
        raise
    except Exception as exc:
        _attach(exc, ck)
        raise
    finally:
        steps.close()
    if t_eval is None and ck.ts[-1] != ck.t:  # the final state is always kept
        _save(ck, ck.t, ck.Y)
    ck.wall_time += time.perf_counter() - start
    stats = {
        "steps": ck.step,
        **counters.as_dict(),
        "rejected_steps": ck.rejected,
        "wall_time": ck.wall_time,
        **_dask.session_stats(),
    }
    sizes = np.asarray(ck.step_sizes, dtype=float)
    return Solution(
        Y=ck.Y,
        t=np.asarray(ck.ts, dtype=float),
        Ys=list(ck.Ys),
        ranks=list(ck.ranks),
        stats=stats,
        method=integrator,
        step_ranks=list(ck.step_ranks),
        failed_members=failed,
        step_sizes=sizes,
        t_events=[np.asarray(x, dtype=float) for x in ck.t_events] if events else None,
        Y_events=[list(x) for x in ck.Y_events] if events else None,
        status=status,
        message=message,
        callback_values=list(ck.callback_values),
        _checkpoint=ck.copy(),
    )


def _first_step(one_step: Any, ck: Checkpoint) -> float:
    """``0.01 ||Y0|| / ||P(Y0) F||`` with the tangent part of ``F`` from one probe step of the
    method of length ``PROBE max(1, |t0|)`` (counted in the stats like any step)."""
    h_p = PROBE * max(1.0, abs(ck.t))
    Y_p, _ = one_step(ck.t, ck.t + h_p, ck.Y, ck.state)
    xp = ck.Y.xp
    speed = float(xp.max(difference_norm(ck.Y, Y_p))) / h_p
    size = float(xp.max(ck.Y.norm()))
    if not (math.isfinite(speed) and speed > 0.0 and size > 0.0):
        return math.inf  # no scale to go by: try the whole way to the next output time
    return 1e-2 * size / speed


def _enlarged(Y: LowRank, trial: LowRank, counters: Counters) -> LowRank:
    """``Y`` written in the bases ``orth([U, U_trial])``, ``orth([V, V_trial])`` (rank at
    most ``min(m, n)``): the same matrix, with a zero-padded core ``Q_U^H U S V^H Q_V``.

    Two thin QRs (counted), of ``m x (r + r_trial)`` and ``n x (r + r_trial)``.
    """
    xp = Y.xp
    cap = min(Y.shape[-2:])
    QU, _ = thin_qr(xp.concat([Y.U, trial.U], axis=-1), xp, counters)
    QV, _ = thin_qr(xp.concat([Y.V, trial.V], axis=-1), xp, counters)
    QU, QV = QU[..., :cap], QV[..., :cap]
    k = min(QU.shape[-1], QV.shape[-1])
    QU, QV = QU[..., :k], QV[..., :k]
    S = matmul(matmul(matmul(conj_transpose(QU, xp), Y.U, xp), Y.S, xp), matmul(conj_transpose(Y.V, xp), QV, xp), xp)
    return LowRank._trusted(QU, S, QV, xp)


def _save(ck: Checkpoint, t: float, Y: LowRank) -> None:
    ck.ts.append(t)
    ck.Ys.append(Y)
    ck.ranks.append(Y.rank)


def _attach(exc: BaseException, ck: Checkpoint) -> None:
    """Attach the last good state to an exception that stops a solve (``.checkpoint``)."""
    try:
        exc.checkpoint = ck.copy()
        if not isinstance(exc, LowRankIntegrationError):  # there it is a property of the checkpoint
            exc.last_good = ck.Y
    except AttributeError:  # pragma: no cover - an exception type with __slots__
        pass


def _locate_event(one_step, ev, i, t_a, t_b, Y_a, state_a, g_a, g_b) -> float:
    """Time of event ``i`` in ``(t_a, t_b]`` (:func:`~lowrank_core._control.locate`)."""

    def g(t: float) -> float:
        return event_value(ev, t, one_step(t_a, t, Y_a, state_a)[0], i)

    return locate(g, t_a, t_b, g_a, g_b)


def _fixed_points(t_start: float, t_end: float, dt: float, outputs: list[float], t_now: float) -> list[float]:
    """End times of the fixed steps after ``t_now``: the grid ``t_start + k dt`` of
    :func:`time_grid` with the output times (and ``t_now``) merged in; a grid point within
    ``1e-9 dt`` of one of them is replaced by it."""
    points = time_grid((t_start, t_end), dt)
    for s in [*outputs, t_now]:
        i = bisect.bisect_left(points, s)
        near = [j for j in (i - 1, i) if 0 <= j < len(points) and abs(points[j] - s) <= 1e-9 * dt]
        if near:
            points[near[0]] = s
        else:
            points.insert(i, s)
    return [p for p in points if p > t_now]


def _check_finite(Y: LowRank, t: float, k: int, failed: dict[Any, tuple[int, float]] | None) -> None:
    """Raise if a factor of ``Y`` is non-finite, naming the members of a stack at fault.

    With ``failed`` (isolation), newly broken members are recorded there instead, and
    only a stack whose every member broke raises.
    """
    xp = Y.xp
    masks = {name: nonfinite_members(x, xp) for name, x in (("U", Y.U), ("S", Y.S), ("V", Y.V))}
    names = [name for name, bad in masks.items() if bad is not None]
    if not names:
        return
    members: tuple[Any, ...] = ()
    if Y.batch_shape:
        bad = masks[names[0]]
        for name in names[1:]:
            bad = xp.logical_or(bad, masks[name])
        members = member_indices(bad, xp)
        if failed is not None and len(members) < math.prod(Y.batch_shape):
            for i in members:
                failed.setdefault(i, (k, t))
            return
    msg = (
        f"non-finite values in factor{'s' if len(names) > 1 else ''} {', '.join(names)} after the step; the "
        "right-hand side returned NaN/Inf or the step size is too large for the substep solver"
    )
    raise LowRankIntegrationError(msg, t=t, step=k, members=members)
