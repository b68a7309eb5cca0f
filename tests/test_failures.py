"""Breakdowns during a solve: where they happened, which members, and isolation.

Guards against errors that lose their context (a NaN in a stack that does not say which
member, a user exception from F without the step and time), and against one broken
member sinking a stack: with ``on_member_failure="isolate"`` every method, rank-adaptive
ones included, must carry the healthy members on exactly as a stack of the healthy
members alone (bitwise: each decomposition and product factors the members of a stack
independently, and NaN singular values of a broken member never count in a shared
rank decision).  Without isolation abc-PSI with ``rtol`` used to abort the whole stack
(its SVD raised for the batch), and the error did not name the member.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.integrators import METHODS

from ._helpers import random_lowrank_np

ADAPTIVE = {name for name, cls in METHODS.items() if getattr(cls, "rank_adaptive", False)}
HEALTHY = [0, 1, 3, 4]


def _stack(rng, batch=5, m=24, n=16):
    """Targets ``B`` of decaying spectrum (the adaptive rank settles between 1 and n)
    and a rank-3 start, as a stack."""
    Bs, Ys = [], []
    for _ in range(batch):
        U, S, V = random_lowrank_np(rng, m, n, np.logspace(0, -6, n))
        Bs.append(U @ S @ V.T)
        Ys.append(random_lowrank_np(rng, m, n, [1.0, 0.3, 0.1]))
    Y0 = lc.LowRank(*(np.stack([y[i] for y in Ys]) for i in range(3)))
    return np.stack(Bs), Y0


def _options(method):
    return {"rtol": 1e-3} if method in ADAPTIVE else {}


class _Target:
    """``f(t, Y) = B - Y``, with member ``bad`` of ``B`` NaN from time ``after`` on
    (a module-level class: picklable, unlike a lambda)."""

    def __init__(self, B, bad=None, after=-np.inf):
        self.B, self.bad, self.after = B, bad, after

    def __call__(self, t, Y):
        B = self.B
        if self.bad is not None and t > self.after:
            B = B.copy()
            B[self.bad] = np.nan
        return B - Y


@pytest.mark.parametrize("linalg", ["auto", "xp"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_nan_member(method, linalg):
    """Member 2's right-hand side turns NaN during step 2 (t > 0.6 is first evaluated in
    the step from 0.5 to 0.75 by every method, whose substeps stay in the step).
    By default the error names member 2, step 2 and t = 0.5; isolated, the solve
    finishes, reports {2: (2, 0.5)}, member 2 is NaN and the others equal the stacked
    solve of the healthy members alone bit for bit (same shared rank included).  The
    reference stack keeps the batch size (healthy members plus a copy of member 0, which
    leaves the shared rank, the largest any member needs, unchanged): the kernels' size
    rule picks a QR algorithm by the work of the whole stack (projected-rk's 24 x 9 QR is
    CholeskyQR2 for five members, Householder for four), so only equal batch sizes are
    comparable bit for bit."""
    B, Y0 = _stack(np.random.default_rng(0))
    kw = {"method": method, "linalg": linalg, **_options(method)}
    problem = lc.MatrixODE(_Target(B, bad=2, after=0.6))
    with pytest.raises(lc.LowRankIntegrationError, match=r"batch members \[2\]") as info:
        lc.solve(problem, Y0, (0.0, 1.0), 0.25, **kw)
    assert (info.value.members, info.value.step, info.value.t) == ((2,), 2, 0.5)
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.25, on_member_failure="isolate", **kw)
    assert sol.failed_members == {2: (2, 0.5)}
    assert np.isnan(sol.Y.S[2]).all()
    padded = [*HEALTHY, HEALTHY[0]]
    healthy = lc.LowRank(Y0.U[padded], Y0.S[padded], Y0.V[padded])
    ref = lc.solve(lc.MatrixODE(_Target(B[padded])), healthy, (0.0, 1.0), 0.25, **kw)
    assert sol.step_ranks == ref.step_ranks
    if method in ADAPTIVE:
        assert 3 < ref.Y.rank < 16  # the tolerance, not a bound, chose the rank
    for name in ("U", "S", "V"):
        np.testing.assert_array_equal(getattr(sol.Y, name)[HEALTHY], getattr(ref.Y, name)[: len(HEALTHY)])


def test_every_member_broken_still_raises_and_multi_dim_batches_name_tuples():
    """Isolation never turns a solve with nothing left into a silent NaN result; with two
    batch dimensions the members are index tuples."""
    B, Y0 = _stack(np.random.default_rng(1), batch=4)
    everything = B.copy()
    everything[:] = np.nan
    with pytest.raises(lc.LowRankIntegrationError, match=r"members \[0, 1, 2, 3\]"):
        lc.solve(lc.MatrixODE(_Target(everything)), Y0, (0.0, 0.5), 0.25, on_member_failure="isolate")
    B2 = B.reshape(2, 2, *B.shape[1:])
    Y2 = lc.LowRank(*(x.reshape(2, 2, *x.shape[1:]) for x in (Y0.U, Y0.S, Y0.V)))
    with pytest.raises(lc.LowRankIntegrationError) as info:
        lc.solve(lc.MatrixODE(_Target(B2, bad=(1, 0))), Y2, (0.0, 0.5), 0.25, method="ksl")
    assert info.value.members == ((1, 0),)
    sol = lc.solve(lc.MatrixODE(_Target(B2, bad=(1, 0))), Y2, (0.0, 0.5), 0.25, on_member_failure="isolate")
    assert sol.failed_members == {(1, 0): (0, 0.0)}


class _Failing:
    """Raises ``error`` (or returns a wrong shape) from the evaluation at time ``when``."""

    def __init__(self, B, when, error=None):
        self.B, self.when, self.error = B, when, error

    def __call__(self, t, Y):
        if t >= self.when:
            if self.error is not None:
                raise self.error
            return (self.B - Y)[..., :-1]
        return self.B - Y


def test_user_exception_from_f_keeps_its_type_and_gains_step_and_time():
    """A KeyError from F at step 3 propagates as that KeyError (catchable as such, the
    same object) with a note naming step 3 and its time; a wrong shape first returned
    at step 3 names `f`, and the step."""
    B, Y0 = _stack(np.random.default_rng(2), batch=1)
    error = KeyError("coefficient")
    with pytest.raises(KeyError) as info:
        lc.solve(lc.MatrixODE(_Failing(B, 0.75, error)), Y0, (0.0, 1.5), 0.25, method="ksl", substep="euler")
    assert info.value is error
    assert any("step 3 (t = 0.75" in note for note in info.value.__notes__)
    with pytest.raises(ValueError, match="`f` returned an array of shape") as info:
        lc.solve(lc.MatrixODE(_Failing(B, 0.75)), Y0, (0.0, 1.5), 0.25, method="bug", substep="euler")
    assert any("step 3" in note for note in info.value.__notes__)


def test_bad_argument_and_error_pickling():
    """`on_member_failure` is checked by name; the error pickles with its context."""
    B, Y0 = _stack(np.random.default_rng(3), batch=2)
    with pytest.raises(ValueError, match="`on_member_failure` must be one of"):
        lc.solve(lc.MatrixODE(_Target(B)), Y0, (0.0, 0.5), 0.25, on_member_failure="skip")
    with pytest.raises(lc.LowRankIntegrationError) as info:
        lc.solve(lc.MatrixODE(_Target(B, bad=1)), Y0, (0.0, 0.5), 0.25)
    copied = pickle.loads(pickle.dumps(info.value))
    assert (str(copied), copied.members, copied.step) == (str(info.value), (1,), 0)
