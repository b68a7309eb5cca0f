"""Output of ``solve``: ``t_eval`` hit exactly, ``callback(t, Y)``, ``events`` like solve_ivp."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core._control import EVENT_XTOL


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(3)
    Y0 = lc.LowRank.from_dense(rng.standard_normal((16, 12)), rank=3)
    return lc.MatrixODE(lambda t, Y: -Y), Y0


@pytest.mark.parametrize("adaptive", [False, True])
def test_t_eval_hit_exactly(setup, adaptive):
    """The saved times are ``t_eval`` exactly, and (fixed dt) the state at an output time
    equals, bit for bit, a solve that ends there: the step that would pass it is shortened.

    Guards against saving the first step end past the output time (or the nearest one),
    checked by planting ``t_b >= outputs[0]``.
    """
    problem, Y0 = setup
    t_eval = [0.0, 0.25, 0.5, 0.7]
    step = {"step_rtol": 1e-4} if adaptive else {"dt": 0.1}
    sol = lc.solve(problem, Y0, (0.0, 1.0), method="ksl", t_eval=t_eval, **step)
    assert sol.t.tolist() == t_eval
    assert sol.Ys[0] is Y0
    assert math.isclose(float(np.sum(sol.step_sizes)), 1.0, rel_tol=1e-13)
    if not adaptive:
        part = lc.solve(problem, Y0, (0.0, 0.25), method="ksl", dt=0.1)
        assert np.array_equal(part.Y.to_dense(), sol.Ys[1].to_dense())
    for t, Y in zip(sol.t, sol.Ys, strict=True):  # dY/dt = -Y: the exact state is e^{-t} Y0
        assert np.linalg.norm(Y.to_dense() - math.exp(-t) * Y0.to_dense()) < 1e-3


def test_callback_after_each_accepted_step(setup):
    """``callback(t, Y)`` is called once per accepted step with its end time and state, and
    its return values are collected in ``sol.callback_values``.

    Guards against calling it for rejected trial steps (checked by planting).
    """
    problem, Y0 = setup
    seen = []

    def cb(t, Y):
        seen.append(t)
        return float(Y.norm())

    sol = lc.solve(problem, Y0, (0.0, 1.0), method="ksl", step_rtol=1e-3, first_step=0.9, callback=cb)
    assert sol.stats["rejected_steps"] >= 1
    assert len(seen) == sol.stats["steps"] == len(sol.callback_values)
    assert np.allclose(np.cumsum(sol.step_sizes), seen, rtol=0, atol=1e-14)
    assert sol.callback_values[-1] == float(sol.Y.norm())


def test_callback_error_stops_with_context(setup):
    """An exception in the callback propagates (same type) with a note naming the time and
    the checkpoint of the accepted state it was called with attached.

    Guards against losing the state of the step the callback saw (checked by planting a
    checkpoint of the previous step)."""
    problem, Y0 = setup

    def cb(t, Y):
        if t > 0.35:
            msg = "diagnostic failed"
            raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="diagnostic failed") as info:
        lc.solve(problem, Y0, (0.0, 1.0), dt=0.1, method="ksl", callback=cb)
    assert any("callback" in note for note in info.value.__notes__)
    assert math.isclose(info.value.checkpoint.t, 0.4)


def _half_norm(Y0):
    target = 0.5 * float(Y0.norm())

    def event(t, Y):
        return float(Y.norm()) - target

    return event


@pytest.mark.parametrize("adaptive", [False, True])
def test_terminal_event(setup, adaptive):
    """A terminal event ``||Y|| = ||Y0|| / 2`` of ``dY/dt = -Y`` stops the solve at
    ``t* = ln 2``: the located time is within the method's time error (rk4 substeps, KSL
    exact for this tangent field: 1e-6) and ``g(t*)`` vanishes to the location tolerance
    ``EVENT_XTOL h |g'|``; ``status``, ``message``, ``t_events``, ``Y_events`` as solve_ivp.

    Guards against stopping at the end of the step that crossed (t* off by up to dt),
    checked by planting.
    """
    problem, Y0 = setup
    event = _half_norm(Y0)
    event.terminal = True
    step = {"step_rtol": 1e-6} if adaptive else {"dt": 0.1}
    sol = lc.solve(problem, Y0, (0.0, 2.0), method="ksl", events=event, **step)
    t_star = sol.t_events[0][0]
    assert sol.status == 1
    assert sol.message == "A termination event occurred."
    assert abs(t_star - math.log(2.0)) < 1e-6
    assert sol.t[-1] == t_star
    assert abs(event(t_star, sol.Y)) <= 4 * EVENT_XTOL * float(Y0.norm()) + 1e-12
    assert sol.Y_events[0][0] is sol.Y


def test_event_direction_and_non_terminal(setup):
    """A non-terminal event is recorded and the solve goes on to ``t1``; ``direction=+1``
    ignores the falling crossing.

    Guards against ignoring ``direction`` (checked by planting).
    """
    problem, Y0 = setup
    falling = _half_norm(Y0)
    rising = _half_norm(Y0)
    rising.direction = 1
    sol = lc.solve(problem, Y0, (0.0, 2.0), dt=0.1, method="ksl", events=[falling, rising])
    assert sol.status == 0
    assert sol.t[-1] == 2.0
    assert len(sol.t_events[0]) == 1
    assert len(sol.t_events[1]) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"t_eval": [0.5, 0.2]}, ValueError, "t_eval"),
        ({"t_eval": [0.5, 1.5]}, ValueError, "t_eval"),
        ({"t_eval": [[0.5]]}, ValueError, "t_eval"),
        ({"t_eval": "0.5"}, TypeError, "t_eval"),
        ({"t_eval": [0.5], "save_every": 2}, ValueError, "save_every"),
        ({"events": 3.0}, TypeError, "events"),
        ({"events": [lambda t, Y: 1.0, "x"]}, TypeError, "events"),
        ({"callback": 1}, TypeError, "callback"),
    ],
)
def test_bad_output_arguments(setup, kwargs, error, name):
    """Bad output arguments raise naming the argument in backticks.

    Guards against an unsorted ``t_eval`` being sorted silently (the states would not
    match the caller's order).
    """
    problem, Y0 = setup
    with pytest.raises(error, match=f"`{name}"):
        lc.solve(problem, Y0, (0.0, 1.0), dt=0.1, method="ksl", **kwargs)
