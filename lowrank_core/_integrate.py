"""``solve``: integrate a matrix ODE on the low-rank manifold over a time span."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _dask
from ._errors import LowRankIntegrationError
from ._linalg import Counters, LinAlgBreakdown, isolating_members, member_indices, nonfinite_members, use_linalg
from ._lowrank import LowRank
from ._problem import AbstractMatrixODE
from ._substep import SubstepBreakdown
from .integrators import METHODS, AbstractIntegrator, AbstractRankAdaptive
from .integrators._base import check_conservation

__all__ = ["Solution", "solve", "time_grid"]

_DEFAULT = object()
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
        ``rhs_evals`` counts exact increments (one per substep).
    method : AbstractIntegrator
        The integrator that produced the solution.
    step_ranks : list of int
        Rank after every step (``step_ranks[0]`` is the rank of ``Y0``), also when
        ``save_every > 1`` thins the saved states.
    failed_members : dict
        With ``on_member_failure="isolate"``: batch index of each member that broke down
        -> ``(step, t)`` of the step where it did (its factors are NaN from then on).
        Empty when every member finished.
    """

    Y: LowRank
    t: np.ndarray
    Ys: list[LowRank]
    ranks: list[int]
    stats: dict[str, Any]
    method: AbstractIntegrator
    step_ranks: list[int] = field(default_factory=list)
    failed_members: dict[Any, tuple[int, float]] = field(default_factory=dict)


def time_grid(t_span: Any, dt: Any) -> list[float]:
    """Validated grid ``t0, t0 + dt, ..., t1`` (the last step may be shorter).

    Times are computed as ``t0 + k dt`` rather than by repeated addition, so rounding
    errors do not accumulate.
    """
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
    kwargs: dict[str, Any] = {}
    if given.get("conserve") is not None:
        check_conservation(given["conserve"], cls)  # clear error for methods without it
    elif "conserve" in given:
        given.pop("conserve")
    if "substep" in given:
        kwargs["substep"] = given.pop("substep")
    if given.get("tableau") is not None:
        if not hasattr(cls, "TABLEAUX"):
            msg = (
                f"`tableau` applies to 'rk-bug' and 'projected-rk' only; method {cls.name!r} has no "
                "Runge-Kutta tableau. Drop `tableau` or use method='rk-bug'."
            )
            raise ValueError(msg)
        kwargs["tableau"] = given.pop("tableau")
    given.pop("tableau", None)
    if not issubclass(cls, AbstractRankAdaptive):
        for key in ("tol", "rtol", "min_rank", "max_rank", "truncation_rule"):
            if given.get(key) is not None:
                msg = (
                    f"`{key}` was given, but method {cls.name!r} has fixed rank. Use a "
                    "rank-adaptive method such as 'abc-psi', or drop `{key}`."
                ).replace("{key}", key)
                raise ValueError(msg)
        if given.get("variant") is not None:
            msg = f"`variant` applies to 'abc-psi' only; method {cls.name!r} has none."
            raise ValueError(msg)
        given = {}
    elif "variant" in given:
        if given["variant"] is None:
            given.pop("variant")
        elif not hasattr(cls, "VARIANTS"):
            msg = f"`variant` applies to 'abc-psi' only; method {cls.name!r} has none."
            raise ValueError(msg)
    kwargs.update(given)
    return cls(**kwargs)


def solve(
    problem: AbstractMatrixODE,
    Y0: LowRank,
    t_span: tuple[float, float],
    dt: float,
    method: Any = "abc-psi",
    substep: Any = _DEFAULT,
    tol: float | None = _DEFAULT,  # type: ignore[assignment]
    min_rank: int = _DEFAULT,  # type: ignore[assignment]
    max_rank: int | None = _DEFAULT,  # type: ignore[assignment]
    *,
    rtol: float | None = _DEFAULT,  # type: ignore[assignment]
    variant: str | None = _DEFAULT,  # type: ignore[assignment]
    truncation_rule: str = _DEFAULT,  # type: ignore[assignment]
    conserve: Any = _DEFAULT,
    tableau: str | None = _DEFAULT,  # type: ignore[assignment]
    tol_per_unit_time: bool = False,
    save_every: int = 1,
    check_finite: bool = True,
    linalg: str | None = None,
    on_member_failure: str = "raise",
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
    dt : float
        Step size, ``0 < dt <= t1 - t0``; the last step is shortened to end at ``t1``.
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

    Returns
    -------
    Solution
        ``sol.Y`` (final state), ``sol.t``, ``sol.Ys``, ``sol.ranks``, ``sol.stats``.

    Raises
    ------
    TypeError, ValueError
        Invalid arguments (named in the message).
    LowRankIntegrationError
        Numerical breakdown (non-finite values, failed decomposition), with ``.t`` and
        ``.step``.

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
    if tol_per_unit_time is not False:
        tol, rtol = _per_unit_time(tol_per_unit_time, tol, rtol, dt, method)
    integrator = _resolve_method(
        method, substep, tol, rtol, min_rank, max_rank, variant, truncation_rule, conserve, tableau=tableau
    )
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
    grid = time_grid(t_span, dt)
    isolate = on_member_failure == "isolate"
    with isolating_members(isolate), _dask.dask_scope(Y0):  # counts Dask synchronisations
        if linalg is not None:
            with use_linalg(linalg):
                return _run(integrator, problem, Y0, grid, save_every, check_finite, isolate)
        return _run(integrator, problem, Y0, grid, save_every, check_finite, isolate)


def _run(
    integrator: Any, problem: Any, Y0: LowRank, grid: Any, save_every: int, check_finite: bool, isolate: bool
) -> Solution:
    state = integrator.init(problem, grid[0], Y0)
    counters = Counters()
    Y = Y0
    ts, Ys, ranks = [grid[0]], [Y0], [Y0.rank]
    step_ranks = [Y0.rank]
    failed: dict[Any, tuple[int, float]] = {}
    n_steps = len(grid) - 1
    start = time.perf_counter()
    dask_state = _dask.is_dask_namespace(Y0.xp)
    for k in range(n_steps):
        t_a, t_b = grid[k], grid[k + 1]
        last_good = Y
        try:
            Y, state = integrator.step(problem, t_a, t_b, Y, state, counters)
            if dask_state:  # persist the state (cut its graph) and check it in one synchronisation
                Y = _dask.cut(Y, t_a, k, check_finite or isolate)
        except SubstepBreakdown as exc:
            raise LowRankIntegrationError(str(exc), t=t_a, step=k, members=exc.members) from exc
        except LinAlgBreakdown as exc:
            msg = f"{exc}; the right-hand side may have produced NaN/Inf or the step size is too large"
            raise LowRankIntegrationError(msg, t=t_a, step=k, members=exc.members) from exc
        except LowRankIntegrationError:
            raise
        except Exception as exc:
            if dask_state and _dask.is_worker_failure(exc):  # resumable: `.Y` is the state at t_a
                msg = (
                    f"the Dask cluster failed ({type(exc).__name__}: {exc}); "
                    "resume with solve(problem, err.Y, (err.t, t1), dt)"
                )
                err = LowRankIntegrationError(msg, t=t_a, step=k)
                err.Y = last_good
                raise err from exc
            # A user exception (from F, an operator, a callable C(t)): same object and
            # type, with where it happened attached to its traceback.
            exc.add_note(f"lowrank_core.solve: raised during step {k} (t = {t_a:.6g} -> {t_b:.6g}) of {integrator!r}")
            raise
        if (check_finite or isolate) and not dask_state:
            _check_finite(Y, t_a, k, failed if isolate else None)
        step_ranks.append(Y.rank)
        if (k + 1) % save_every == 0 or k == n_steps - 1:
            ts.append(t_b)
            Ys.append(Y)
            ranks.append(Y.rank)
    wall = time.perf_counter() - start
    stats = {"steps": n_steps, **counters.as_dict(), "wall_time": wall, **_dask.session_stats()}
    return Solution(
        Y=Y,
        t=np.asarray(ts),
        Ys=Ys,
        ranks=ranks,
        stats=stats,
        method=integrator,
        step_ranks=step_ranks,
        failed_members=failed,
    )


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
