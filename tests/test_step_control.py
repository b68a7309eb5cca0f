"""Step-size control of ``solve(..., dt=None, step_rtol=..., step_atol=...)``.

Two estimators (``lowrank_core/_control.py``): embedded pairs (error per step, local
extrapolation) for ``rk-bug``, ``projected-rk``, ``midpoint-bug``, ``parallel-bug-2``,
and step doubling (error per unit time) for the other methods.  Tested: each embedded
estimate is asymptotically the lower-order solution's true local error; the achieved
error is proportional to the tolerance with either estimator; the controller's exponent
follows the estimate's order; rejected steps and their work are counted; a controller
that cannot go on raises with where and how large the error was.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems
from lowrank_core._control import (
    SAFETY,
    StepControl,
    controller_order,
    difference_norm,
    effective_order,
    estimator_of,
)


@pytest.fixture(scope="module")
def schrodinger():
    """Schrödinger problem at 12 x 12, rank 3, t in [0, 0.1], with a reference of the BUG
    integrator itself (Richardson extrapolation of dt = 2e-4 and 1e-4, first order: its
    error is O(dt^2) ~ 1e-8, below the errors compared here)."""
    p = problems.get("schrodinger", N=12, r=3, t_end=0.1)
    a = lc.solve(p.problem, p.Y0, p.t_span, 2e-4, method="bug").Y.to_dense()
    b = lc.solve(p.problem, p.Y0, p.t_span, 1e-4, method="bug").Y.to_dense()
    return p, 2.0 * b - a


def test_error_follows_tolerance(schrodinger):
    """The time-stepping error is proportional to ``step_rtol``: over the tolerances
    1e-1 ... 1e-4 the ratio error / (step_rtol ||Y|| T) stays within a factor 10 (measured:
    0.66 to 1.6 for BUG; four decades, and the heat problem, in bench/step_control.py).

    Guards against an error-per-step rule (``est <= tol`` instead of ``est <= tol h``):
    then the error scales as ``tol^{1/2}`` for a first-order method and the ratio spreads
    by about 30 over three decades (checked by planting it).
    """
    p, ref = schrodinger
    T = p.t_span[1] - p.t_span[0]
    ratios = []
    for tol in (1e-1, 1e-2, 1e-3, 1e-4):
        sol = lc.solve(p.problem, p.Y0, p.t_span, method="bug", step_rtol=tol)
        err = np.linalg.norm(sol.Y.to_dense() - ref) / np.linalg.norm(ref)
        ratios.append(err / (tol * T))
    assert max(ratios) / min(ratios) < 10, ratios
    assert max(ratios) < 10, ratios  # the error is below the tolerance's promise (times a factor)


def test_controller_exponent_follows_order():
    """The step-size factor is ``safety * ratio^(-1/p)`` with ``p`` the method's ``order``
    for step doubling (1 for KSL and BUG, 2 for KSL-Strang, 1 with Euler substeps), so a
    ratio ``4`` asks for ``0.9 / 2`` of the step at order 2.  With the previous ratio
    (PI controller) it is ``x^(-0.7/p) x_prev^(0.4/p)``, ``x = ratio / 0.9^p``, which at a
    constant ratio ``0.9^p`` keeps the step (the I controller's fixed point).

    Guards against an exponent ``-1/(p+1)`` (the error-per-step exponent, wrong for an
    error-per-unit-time rule: the ratio scales as ``h^p``) and against a PI controller
    whose fixed point is not the I controller's (``SAFETY`` outside the powers: 28 %
    more steps at order 1), both checked by planting them.
    """
    assert effective_order(lc.KSL()) == 1
    assert effective_order(lc.KSLStrang()) == 2
    assert effective_order(lc.KSLStrang(substep="euler")) == 1
    control = StepControl.build(1e-3, None, None, None, None, order=2)
    assert math.isclose(control.factor(4.0, 5.0), SAFETY / 2.0)
    assert control.factor(0.0, 5.0) == 5.0
    assert control.factor(math.inf, 5.0) == 0.2
    assert math.isclose(control.factor(SAFETY**2, 5.0, SAFETY**2), 1.0)
    x = 4.0 / SAFETY**2
    assert math.isclose(control.factor(4.0, 5.0, SAFETY**2), x**-0.35)
    assert math.isclose(control.factor(4.0, 5.0, 4.0), x**-0.15)


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((20, 15))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((20, 15)), rank=3)
    return lc.MatrixODE(lambda t, Y: B - Y), Y0


def test_step_sizes_and_rejections(small):
    """The accepted steps tile the span (their sum is ``t1 - t0`` to round-off), a too large
    ``first_step`` is rejected and counted in ``stats["rejected_steps"]``, and the work of
    rejected trials is counted in ``rhs_evals``.

    Guards against rejections that are silently dropped from the stats, or step sizes
    recorded before the step was shortened to hit ``t1`` (checked by planting both).
    """
    problem, Y0 = small
    sol = lc.solve(problem, Y0, (0.0, 2.0), method="ksl", step_rtol=1e-3, first_step=1.9)
    assert math.isclose(float(np.sum(sol.step_sizes)), 2.0, rel_tol=1e-13)
    assert sol.stats["rejected_steps"] >= 1
    assert sol.stats["steps"] == len(sol.step_sizes) == len(sol.step_ranks) - 1
    calm = lc.solve(problem, Y0, (0.0, 2.0), method="ksl", step_rtol=1e-3, first_step=sol.step_sizes[0])
    assert calm.stats["rejected_steps"] < sol.stats["rejected_steps"]
    assert calm.stats["rhs_evals"] < sol.stats["rhs_evals"]


def test_floor_raises_with_time_step_and_estimate(small):
    """A right-hand side that returns NaN from t = 0.5 on stops the controller at its floor:
    ``LowRankIntegrationError`` with the time, the step index, the error estimate of the
    last trial (in the message and as ``.error_estimate``)
    and the last good state (``.last_good``, ``.checkpoint``) at ``t <= 0.5``.

    Guards against a controller that loops forever or returns NaN factors, checked by
    planting a floor of 0.
    """
    _, Y0 = small

    def f(t, Y):
        return np.full(Y.shape, np.nan) if t > 0.5 else -Y

    with pytest.raises(lc.LowRankIntegrationError, match="floor") as info:
        lc.solve(lc.MatrixODE(f), Y0, (0.0, 1.0), method="ksl", step_rtol=1e-4)
    err = info.value
    assert 0.0 < err.t <= 0.5 + 1e-12
    assert err.step >= 1
    assert f"was {err.error_estimate:.3g}" in str(err)
    assert err.checkpoint.t <= 0.5
    assert np.isfinite(err.last_good.S).all()


@pytest.mark.parametrize(("gap", "rank2"), [(1e-1, 7), (1e-6, 5), (1e-12, 5), (1e-12, 6)])
def test_difference_norm_matches_dense(gap, rank2):
    """``||Y_2 - Y_1||_F`` from the factors equals the dense norm for states of different
    ranks, to round-off of ``||Y||`` (1e3 eps) also when they differ by ``1e-12 ||Y||``
    (same rank, nearly the same bases).

    Guards against the Gram formula ``||S_1||^2 + ||S_2||^2 - 2 Re<Y_1, Y_2>``, which loses
    everything below ``sqrt(eps) ||Y||`` to cancellation (checked by planting it).
    """
    rng = np.random.default_rng(7)
    A = rng.standard_normal((30, 20))
    A[:, 5:] *= 1e-13  # (nearly) rank 5: a sixth column of Y2 is as small as the gap
    Y1 = lc.LowRank.from_dense(A, rank=5)
    Y2 = lc.LowRank.from_dense(A + gap * rng.standard_normal((30, 20)), rank=rank2)
    dense = np.linalg.norm(Y2.to_dense() - Y1.to_dense())
    scale = np.linalg.norm(A)
    assert abs(float(difference_norm(Y1, Y2)) - dense) <= 1e3 * np.finfo(float).eps * scale


def test_rank_adaptive_grows_its_rank(schrodinger):
    """RA-BUG from a rank-3 state of a problem that needs rank ~12: the part of F outside
    the bases makes the step-doubling error first order in h, so shrinking the step does
    not help; the controller retries from the same matrix in enlarged bases and the solve
    completes with the rank grown.

    Guards against a controller that only shrinks the step (it ends at the floor with a
    LowRankIntegrationError, checked by planting it).
    """
    p, _ = schrodinger
    sol = lc.solve(p.problem, p.Y0, p.t_span, method="ra-bug", tol=1e-12, step_rtol=1e-4)
    assert sol.step_ranks[-1] > 2 * p.Y0.rank
    assert sol.stats["steps"] < 50


def test_loose_truncation_warns(small):
    """A truncation tolerance ``theta`` larger than half the error a step may have emits
    ``StepToleranceWarning`` (once) naming both; a tight one does not.

    Guards against the truncation error silently dominating the controller (checked by
    planting a disabled check).
    """
    problem, Y0 = small
    with pytest.warns(lc.StepToleranceWarning, match="truncation tolerance"):
        lc.solve(problem, Y0, (0.0, 0.2), method="ra-bug", tol=1e-3, step_rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", lc.StepToleranceWarning)
        lc.solve(problem, Y0, (0.0, 0.2), method="ra-bug", tol=1e-14, step_rtol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({}, ValueError, "step_rtol"),
        ({"step_rtol": -1e-3}, ValueError, "step_rtol"),
        ({"step_rtol": "1e-3"}, TypeError, "step_rtol"),
        ({"step_atol": True}, TypeError, "step_atol"),
        ({"step_rtol": 2.0}, ValueError, "step_rtol"),
        ({"step_rtol": 1e-3, "first_step": 0.0}, ValueError, "first_step"),
        ({"step_rtol": 1e-3, "min_step": 1.0, "max_step": 0.1}, ValueError, "min_step"),
        ({"dt": 0.1, "step_rtol": 1e-3}, ValueError, "step_rtol"),
        ({"step_rtol": 1e-3, "on_member_failure": "isolate"}, ValueError, "dt"),
    ],
)
def test_bad_step_settings(small, kwargs, error, name):
    """Bad step settings raise naming the argument in backticks.

    Guards against ``dt=None`` without a tolerance silently using a default step.
    """
    problem, Y0 = small
    with pytest.raises(error, match=f"`{name}`"):
        lc.solve(problem, Y0, (0.0, 1.0), method="ksl", **kwargs)


# ----------------------------------------------------------------- embedded pairs
def _linear_problem(n=10, m=8, r=2, seed=3):
    """``dY/dt = A Y + Y B^T`` with decay rates 0.5 ... 20 and a rotation: the flow keeps
    the rank (``F(Y)`` lies in the tangent space, no normal component), so the exact
    solution ``e^{tA} Y0 e^{tB^T}`` has rank ``r`` and a low-rank method has no modelling
    error; the fast rates make a transient."""
    from scipy.linalg import expm

    rng = np.random.default_rng(seed)
    skew_a = rng.standard_normal((n, n))
    skew_b = rng.standard_normal((m, m))
    A = -np.diag(np.linspace(0.5, 20.0, n)) + (skew_a - skew_a.T)
    B = -np.diag(np.linspace(0.2, 3.0, m)) + 0.5 * (skew_b - skew_b.T)
    Y0 = lc.LowRank.from_dense(rng.standard_normal((n, r)) @ rng.standard_normal((r, m)), rank=r)
    dense0 = Y0.to_dense()

    def exact(t):
        return expm(t * A) @ dense0 @ expm(t * B).T

    def f(Y):
        return A @ Y + Y @ B.T

    return lc.LinearMatrixODE(A, B), Y0, exact, f


def _dense_low_order(method, f, Y0, h):
    """The embedded lower-order solution written out densely from the method's tableau
    (an independent implementation of what the estimate compares with): classical
    stages ``k_j = f(Y0 + h sum a_jl k_l)``, ``Y_low = Y0 + h sum b̂_j k_j`` (``rk4``: the
    FSAL stage ``f(Y_high)``); the midpoint methods' embedded method is explicit Euler."""
    if isinstance(method, (lc.MidpointBUG, lc.ParallelBUG2)):
        return Y0 + h * f(Y0)
    tab = method.tableau
    ks = []
    for i in range(len(tab.b)):
        ks.append(f(Y0 + h * sum(a * k for a, k in zip(tab.a[i], ks, strict=True))))
    high = Y0 + h * sum(b * k for b, k in zip(tab.b, ks, strict=True))
    if len(tab.b_hat) > len(tab.b):
        ks.append(f(high))
    return Y0 + h * sum(b * k for b, k in zip(tab.b_hat, ks, strict=True))


EMBEDDED = [
    ("heun", lambda n: lc.RKBUG(tableau="heun", rtol=1e-14, max_rank=n)),
    ("ssprk3", lambda n: lc.RKBUG(tableau="ssprk3", rtol=1e-14, max_rank=n)),
    ("rk4", lambda n: lc.RKBUG(tableau="rk4", rtol=1e-14, max_rank=n)),
    ("midpoint-bug", lambda n: lc.MidpointBUG(rtol=1e-14, max_rank=n)),
    ("parallel-bug-2", lambda n: lc.ParallelBUG2(rtol=1e-14, max_rank=n)),
]


@pytest.mark.parametrize(("label", "make"), EMBEDDED, ids=[e[0] for e in EMBEDDED])
def test_embedded_estimate_is_the_low_order_error(label, make):
    """The embedded estimate of one step, divided by the true local error of the pair's
    lower-order solution (written out densely from the tableau and compared with the
    exact flow), tends to 1 as ``h -> 0``: the difference is the higher-order solution's
    own error, relatively ``O(h)``.  Without truncation (``rtol = 1e-14``, no rank cap)
    the Galerkin steps are the classical stages, so the ratio is within 5 % at
    ``h = 1e-3`` (``h max|rate| = 0.02``) and the deviation shrinks with ``h``.

    Guards against an estimate built from the wrong weights (the high-order weights as
    the low-order ones gives 0; a sign error in the FSAL stage of rk4 or a missing
    factor ``h`` gives a ratio far from 1), checked by planting ``b̂ = b``.
    """
    problem, Y0, exact, f = _linear_problem()
    method = make(min(Y0.shape))
    dense0 = Y0.to_dense()
    deviations = []
    for h in (4e-3, 2e-3, 1e-3):
        state = method.init(problem, 0.0, Y0)
        _, _, info = method.step(problem, 0.0, h, Y0, state, estimate=True)
        true = np.linalg.norm(_dense_low_order(method, f, dense0, h) - exact(h))
        deviations.append(abs(float(info.error_estimate) / true - 1.0))
    assert deviations[-1] < 0.05, deviations
    assert deviations[-1] < deviations[0], deviations


@pytest.mark.parametrize("tableau", ["heun", "ssprk3", "rk4"])
def test_projected_rk_estimate_order(tableau):
    """Projected RK's embedded estimate (the weight differences applied to the stages'
    tangent vectors, measured in the bases of the final retraction) scales as
    ``h^{q+1}``, ``q`` the embedded order (fitted slope within 0.15), on the
    rank-preserving linear flow at fixed rank.

    Guards against an estimate of the wrong order (e.g. measuring the whole increment
    ``h sum b_j T_j``, order 1), checked by planting it.
    """
    problem, Y0, _, _ = _linear_problem()
    method = lc.ProjectedRK(tableau=tableau)
    hs = np.array([8e-3, 4e-3, 2e-3, 1e-3])
    ests = [float(method.step(problem, 0.0, h, Y0, None, estimate=True)[2].error_estimate) for h in hs]
    slope = np.polyfit(np.log(hs), np.log(ests), 1)[0]
    assert abs(slope - (method.embedded_order + 1)) < 0.15, slope


def test_estimator_choice_and_cost():
    """Methods with an embedded pair use it (one step per trial: ``rhs_evals`` is the
    method's F points per step times the trials, plus the first-step probe step; rk4's
    FSAL stage is a fifth point per trial), the others use step doubling (three steps
    per trial), and with exact substeps the midpoint methods fall back to doubling.

    Guards against an embedded method silently estimated by step doubling (three
    times the F evaluations), checked by planting ``estimator_of`` returning "doubling".
    """
    assert estimator_of(lc.RKBUG()) == "embedded"
    assert estimator_of(lc.ProjectedRK(tableau="heun")) == "embedded"
    assert estimator_of(lc.MidpointBUG()) == "embedded"
    assert estimator_of(lc.MidpointBUG(substep="exact")) == "doubling"
    assert estimator_of(lc.BUG()) == "doubling"
    assert controller_order(lc.RKBUG(tableau="heun"), "embedded") == 2
    assert controller_order(lc.RKBUG(tableau="ssprk3"), "embedded") == 3
    assert controller_order(lc.RKBUG(tableau="rk4"), "embedded") == 4
    assert controller_order(lc.MidpointBUG(), "embedded") == 2
    problem, Y0, _, _ = _linear_problem()
    for tableau, points in (("ssprk3", 3), ("rk4", 5)):
        sol = lc.solve(problem, Y0, (0.0, 1.0), method="rk-bug", tableau=tableau, step_rtol=1e-6)
        trials = sol.stats["steps"] + sol.stats["rejected_steps"]
        probe = points - (points == 5)  # the probe is a plain step (no FSAL point)
        assert sol.stats["rhs_evals"] == points * trials + probe, sol.stats


def test_embedded_rejections_counted():
    """With an embedded pair, a too large ``first_step`` is rejected, counted in
    ``stats["rejected_steps"]``, and its F evaluations are in ``rhs_evals`` (3 per
    trial of ssprk3, no probe step when ``first_step`` is given).

    Guards against rejected trials that are not counted (checked by planting it).
    """
    problem, Y0, _, _ = _linear_problem()
    sol = lc.solve(problem, Y0, (0.0, 1.0), method="rk-bug", tableau="ssprk3", step_rtol=1e-6, first_step=0.9)
    assert sol.stats["rejected_steps"] >= 1
    assert sol.stats["rhs_evals"] == 3 * (sol.stats["steps"] + sol.stats["rejected_steps"])
    assert math.isclose(float(np.sum(sol.step_sizes)), 1.0, rel_tol=1e-13)


@pytest.mark.parametrize("tableau", ["ssprk3", "rk4"])
def test_embedded_error_follows_tolerance(tableau):
    """With an embedded pair (local extrapolation, error per step), the global error at
    ``T = 1`` is proportional to ``step_rtol``: over four decades (1e-3 ... 1e-7) the
    ratio error / step_rtol stays within a factor 10, on the rank-preserving linear flow
    with a transient (no modelling error, error against the exact solution).

    Guards against the error-per-unit-time rule with local extrapolation (error
    ``~ tol^{p/(p-1)}``: a spread of about 100 over four decades for ssprk3) and
    against the controller's exponent ``1/(q + 2)`` (too cautious at loose
    tolerances), checked by planting both.
    """
    problem, Y0, exact, _ = _linear_problem()
    ref = exact(1.0)
    ratios = []
    for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7):
        sol = lc.solve(problem, Y0, (0.0, 1.0), method="rk-bug", tableau=tableau, step_rtol=tol)
        ratios.append(np.linalg.norm(sol.Y.to_dense() - ref) / np.linalg.norm(ref) / tol)
    assert max(ratios) / min(ratios) < 10, ratios


def test_loose_truncation_warns_embedded():
    """With an embedded pair the allowance is per step (``step_rtol ||Y||``) and one
    truncation (the final one) is unseen: RK-BUG with ``tol = 1e-3`` against
    ``step_rtol = 1e-6`` (``||Y|| ~ 10``) warns naming "1 per accepted step"; with
    ``tol = 1e-8`` it does not (``1e-8 < 0.5e-6 ||Y||``).

    Guards against the step-doubling rule applied to an embedded pair (allowance times
    ``h``: ``tol = 1e-8`` then warns on the first step, ``h ~ 7e-4``), checked by
    planting it.
    """
    problem, Y0, _, _ = _linear_problem()
    with pytest.warns(lc.StepToleranceWarning, match="1 per accepted step"):
        lc.solve(problem, Y0, (0.0, 0.2), method="rk-bug", tableau="ssprk3", tol=1e-3, step_rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", lc.StepToleranceWarning)
        sol = lc.solve(problem, Y0, (0.0, 0.2), method="rk-bug", tableau="ssprk3", tol=1e-8, step_rtol=1e-6)
    assert 1e-8 > 0.5 * 1e-6 * float(Y0.norm()) * sol.step_sizes[0]  # the planted rule would have warned
