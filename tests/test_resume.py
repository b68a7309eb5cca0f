"""Checkpoint and resume: a solve split in two equals the uninterrupted one bit for bit,
and an interrupted solve hands back its last good state."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems


@pytest.fixture(scope="module")
def schrodinger():
    return problems.get("schrodinger", N=12, r=3, t_end=0.2)


def _same(a, b):
    """Bitwise equality of two solutions (all but the wall time)."""
    for name in ("U", "S", "V"):
        assert np.array_equal(getattr(a.Y, name), getattr(b.Y, name))
    assert np.array_equal(a.t, b.t)
    assert np.array_equal(a.step_sizes, b.step_sizes)
    assert a.step_ranks == b.step_ranks
    assert a.ranks == b.ranks
    for Ya, Yb in zip(a.Ys, b.Ys, strict=True):
        assert np.array_equal(Ya.S, Yb.S)
    sa = {k: v for k, v in a.stats.items() if k != "wall_time"}
    sb = {k: v for k, v in b.stats.items() if k != "wall_time"}
    assert sa == sb


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "ksl", "dt": 0.01},
        {"method": "ra-bug", "tol": 1e-10, "dt": 0.01},
        {"method": "bug", "step_rtol": 1e-4},
        {"method": "ra-bug", "tol": 1e-12, "step_rtol": 1e-4},
    ],
    ids=["fixed-rank-dt", "rank-adaptive-dt", "fixed-rank-adaptive", "rank-adaptive-adaptive"],
)
def test_split_solve_equals_uninterrupted(schrodinger, kwargs):
    """Solve (0, 0.08), pickle ``sol.checkpoint()``, resume to 0.2: the result equals one
    solve over (0, 0.2) with 0.08 among its output times bit for bit: final factors, saved
    states, step sizes, ranks, counters (``rejected_steps`` included).

    Guards against a checkpoint that drops the controller's next step (the resumed solve
    would restart from the first-step guess) or the counters, checked by planting both.
    """
    p = schrodinger
    t_eval = [0.04, 0.08, 0.15, 0.2]
    full = lc.solve(p.problem, p.Y0, (0.0, 0.2), t_eval=t_eval, **kwargs)
    first = lc.solve(p.problem, p.Y0, (0.0, 0.08), t_eval=t_eval[:2], **kwargs)
    ck = pickle.loads(pickle.dumps(first.checkpoint()))
    rest = lc.solve(p.problem, None, (0.0, 0.2), resume=ck, t_eval=t_eval[2:])
    _same(full, rest)


def test_checkpoint_without_history(schrodinger):
    """``checkpoint(history=False)`` drops the saved states (a smaller pickle) and resumes to
    the same final state; the resumed solution starts at the checkpoint."""
    p = schrodinger
    first = lc.solve(p.problem, p.Y0, (0.0, 0.1), dt=0.01, method="ksl")
    full = lc.solve(p.problem, p.Y0, (0.0, 0.2), dt=0.01, method="ksl")
    light = first.checkpoint(history=False)
    assert len(pickle.dumps(light)) < len(pickle.dumps(first.checkpoint()))
    rest = lc.solve(p.problem, None, (0.0, 0.2), resume=light)
    assert rest.t[0] == first.t[-1]
    assert np.array_equal(rest.Y.S, full.Y.S)


def _failing(p, when, kind):
    calls = {"n": 0}

    def f(t, Y):
        calls["n"] += 1
        if calls["n"] == when:
            if kind == "interrupt":
                raise KeyboardInterrupt
            return np.full(Y.shape, np.nan + 0j)
        return -1j * Y

    return lc.MatrixODE(f)


def test_keyboard_interrupt_keeps_last_good_state(schrodinger):
    """A KeyboardInterrupt in F propagates with ``.checkpoint`` (the last accepted state);
    resuming from it reaches the uninterrupted final state bit for bit (fixed dt).

    Guards against a checkpoint taken from a partially updated step (checked by planting
    the update of the state before the step completes).
    """
    p = schrodinger
    problem = _failing(p, 30, "interrupt")
    with pytest.raises(KeyboardInterrupt) as info:
        lc.solve(problem, p.Y0, (0.0, 0.2), dt=0.01, method="ksl")
    ck = info.value.checkpoint
    assert 0.0 < ck.t < 0.2
    good = lc.MatrixODE(lambda t, Y: -1j * Y)
    full = lc.solve(good, p.Y0, (0.0, 0.2), dt=0.01, method="ksl")
    rest = lc.solve(good, None, (0.0, 0.2), resume=ck)
    assert np.array_equal(rest.Y.S, full.Y.S)
    assert info.value.last_good is ck.Y


def test_nan_from_f_raises_with_last_good(schrodinger):
    """A NaN from F raises ``LowRankIntegrationError`` whose ``.last_good`` is the finite
    state before the failing step and whose ``.checkpoint`` pickles."""
    p = schrodinger
    problem = _failing(p, 30, "nan")
    with pytest.raises(lc.LowRankIntegrationError) as info:
        lc.solve(problem, p.Y0, (0.0, 0.2), dt=0.01, method="ksl")
    err = pickle.loads(pickle.dumps(info.value))
    assert np.isfinite(err.last_good.S).all()
    assert err.checkpoint.t == pytest.approx(err.t)
    assert err.checkpoint.step == err.step


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"resume": "ck"}, TypeError, "resume"),
        ({"Y0": "given"}, ValueError, "Y0"),
        ({"method": "bug"}, ValueError, "method"),
        ({"dt": 0.01}, ValueError, "dt"),
        ({"t_span": (0.05, 0.2)}, ValueError, "t_span"),
        ({"t_span": (0.0, 0.05)}, ValueError, "t_span"),
        ({"t_eval": [0.05]}, ValueError, "t_eval"),
    ],
)
def test_bad_resume(schrodinger, kwargs, error, name):
    """Bad resume arguments raise naming the argument.

    Guards against a resumed solve that silently changes method or step size (it would
    not continue the checkpointed solve)."""
    p = schrodinger
    ck = lc.solve(p.problem, p.Y0, (0.0, 0.1), dt=0.01, method="ksl").checkpoint()
    args = {"Y0": None, "t_span": (0.0, 0.2), "resume": ck, **kwargs}
    if args["Y0"] == "given":
        args["Y0"] = p.Y0
    with pytest.raises(error, match=f"`{name}`"):
        lc.solve(p.problem, args.pop("Y0"), args.pop("t_span"), **args)
