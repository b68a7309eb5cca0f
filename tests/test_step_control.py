"""Step-size control of ``solve(..., dt=None, step_rtol=..., step_atol=...)``.

Step doubling with an error-per-unit-time rule (``lowrank_core/_control.py``): the
achieved error is proportional to the tolerance, the controller's exponent follows the
method's order, rejected steps are counted, and a controller that cannot go on raises
with where and how large the error was.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems
from lowrank_core._control import SAFETY, StepControl, StepToleranceWarning, difference_norm, effective_order


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
    (1 for KSL and BUG, 2 for KSL-Strang, 1 with Euler substeps), so a ratio ``4`` asks for
    ``0.9 / 2`` of the step at order 2.

    Guards against an exponent ``-1/(p+1)`` (the error-per-step exponent, wrong for an
    error-per-unit-time rule: the ratio scales as ``h^p``), checked by planting it.
    """
    assert effective_order(lc.KSL()) == 1
    assert effective_order(lc.KSLStrang()) == 2
    assert effective_order(lc.KSLStrang(substep="euler")) == 1
    control = StepControl.build(1e-3, None, None, None, None, order=2)
    assert math.isclose(control.factor(4.0, 5.0), SAFETY / 2.0)
    assert control.factor(0.0, 5.0) == 5.0
    assert control.factor(math.inf, 5.0) == 0.2


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
    with pytest.warns(StepToleranceWarning, match="truncation tolerance"):
        lc.solve(problem, Y0, (0.0, 0.2), method="ra-bug", tol=1e-3, step_rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StepToleranceWarning)
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
