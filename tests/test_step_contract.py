"""The step contract of the integrators (``lowrank_core.integrators``, module docstring).

* ``step(problem, t0, t1, Y0, state) -> (Y1, state, info)``: the driver adds the
  :class:`~lowrank_core.StepInfo` of every step to ``sol.stats``, so stepping by hand and
  adding the infos gives the same state and the same statistics as ``solve``;
* integrators are immutable (frozen dataclasses) and still pickle, deep-copy and keep
  their ``repr``; ``step`` is abstract;
* every decomposition of a step goes through the kit named by the ``kit`` field (the
  public hook the planted-bug tests use);
* the method class validates ``solve``'s options (``from_options``).
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections import Counter
from typing import ClassVar

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.integrators import AbstractIntegrator, StepKit

#: Keys of ``sol.stats`` that are not counts of the steps' work.
NOT_COUNTS = {"steps", "rejected_steps", "wall_time"}


def _setup():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((12, 10))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((12, 10)), rank=2)
    return lc.MatrixODE(lambda t, Y: B - Y), Y0


#: One configuration per method; parallel BUG with rejection (it rejects one step on this
#: run) and RA-BUG capped at max_rank = 3 (it hits the cap every step), so both
#: ``rejections`` and ``max_rank_hits`` are non-zero somewhere.
CONFIGS = {name: cls(substep="euler") for name, cls in lc.METHODS.items()}
CONFIGS["parallel-bug"] = lc.ParallelBUG(substep="euler", tol=1e-3, reject=True, max_rank=6)
CONFIGS["ra-bug"] = lc.RABUG(substep="euler", tol=1e-6, max_rank=3)
CONFIGS["abc-psi"] = lc.ABCPSI(substep="rk4", rtol=1e-3)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_infos_add_up_to_the_solve_stats(name):
    """Stepping by hand with ``step`` and adding the infos (``Counters.add``) reproduces
    ``solve``'s state bit for bit and every count of ``sol.stats``.

    Guards against a driver that drops or double-counts part of a step's info (e.g.
    ``Counters.add`` skipping ``rejections`` or ``max_rank_hits``), a step whose info
    misses work done outside its kit, or one that reports a shared running total instead
    of the step's own counts."""
    problem, Y0 = _setup()
    method = CONFIGS[name]
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.25, method=method)
    state, Y, total, infos = method.init(problem, 0.0, Y0), Y0, lc.Counters(), []
    for k in range(4):
        Y, state, info = method.step(problem, 0.25 * k, 0.25 * (k + 1), Y, state)
        assert isinstance(info, lc.StepInfo)
        infos.append(info)
        total.add(info)
    np.testing.assert_array_equal(Y.to_dense(), sol.Y.to_dense())
    counts = {k: v for k, v in sol.stats.items() if k not in NOT_COUNTS and k in total.as_dict()}
    assert total.as_dict() == counts
    assert all(info.rhs_evals > 0 and info.error_estimate is None for info in infos)
    if name == "parallel-bug":
        assert sol.stats["rejections"] > 0
    if name == "ra-bug":
        assert sol.stats["max_rank_hits"] == 4


def test_counters_add_checks_its_argument_and_ignores_the_error_estimate():
    total = lc.Counters()
    total.add(lc.StepInfo(qr=2, qr_shapes={(5, 2): 2}, error_estimate=0.5))
    total.add(total.info())  # a Counters' snapshot adds like any info: doubles
    assert total.qr == 4
    assert total.qr_shapes == Counter({(5, 2): 4})
    with pytest.raises(TypeError, match=r"`info` must be a lowrank_core\.StepInfo.*got int"):
        total.add(5)


@pytest.mark.parametrize("name", sorted(lc.METHODS))
def test_integrators_are_immutable_and_still_pickle(name):
    """Assigning an option raises; ``dataclasses.replace`` makes a changed copy and leaves
    the original alone; pickle and deepcopy keep the configuration and the ``repr``.

    Guards against a mutable integrator (a solve's method or a checkpoint's changed
    behind its back) and against derived fields (the truncation, the resolved substep,
    the tableau) that a copy or ``replace`` would lose or fail to rebuild."""
    method = CONFIGS.get(name, lc.METHODS[name]())
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.substep = lc.RK4()
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.kit = StepKit
    changed = dataclasses.replace(method, substep="rk4")
    assert changed.substep.name == "rk4"
    assert changed is not method
    assert method.substep.name == CONFIGS.get(name, method).substep.name
    assert repr(dataclasses.replace(method)) == repr(method)
    for clone in (pickle.loads(pickle.dumps(method)), copy.deepcopy(method)):
        assert repr(clone) == repr(method)
        assert type(clone) is type(method)
        assert clone.order == method.order
        assert getattr(clone, "truncation", None) == getattr(method, "truncation", None)


def test_step_is_abstract():
    """A subclass that does not implement ``step`` cannot be instantiated."""

    @dataclasses.dataclass(frozen=True, eq=False, repr=False, kw_only=True)
    class NoStep(AbstractIntegrator):
        name: ClassVar[str] = "no-step"

    with pytest.raises(TypeError, match="abstract"):
        NoStep()


class RecordingKit(StepKit):
    """Records the shape and batch size of every QR and SVD the step asks its kit for;
    ``RecordingKit.last`` is ``(QR shapes, SVD shapes, info)`` of the last step."""

    last: ClassVar[tuple] = ()

    def __init__(self, *args):
        super().__init__(*args)
        self.seen_qr, self.seen_svd = Counter(), Counter()

    def qr(self, X):
        self.seen_qr[tuple(X.shape[-2:])] += int(np.prod(X.shape[:-2]))
        return super().qr(X)

    def svd(self, X):
        self.seen_svd[tuple(X.shape[-2:])] += int(np.prod(X.shape[:-2]))
        return super().svd(X)

    def info(self, error_estimate=None):
        info = super().info(error_estimate)
        RecordingKit.last = (self.seen_qr, self.seen_svd, info)
        return info


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_decomposition_goes_through_the_kit(name):
    """With ``kit=RecordingKit`` the QR and SVD shapes the kit saw are exactly the ones the
    step's info counts, on a stack of two problems.

    Guards against an integrator (or a shared step piece) that calls the linear-algebra
    seam directly: its decompositions would be counted but escape the hook, so a planted
    kit would silently not be planted there."""
    problem, Y0 = _setup()
    Ys = lc.LowRank(*(np.stack([x, x]) for x in (Y0.U, Y0.S, Y0.V)))
    method = dataclasses.replace(CONFIGS[name], kit=RecordingKit)
    assert "kit=RecordingKit" in repr(method)
    Y1, _, info = method.step(problem, 0.0, 0.25, Ys, method.init(problem, 0.0, Ys))
    seen_qr, seen_svd, last = RecordingKit.last
    assert last is info
    assert seen_qr == Counter(info.qr_shapes)
    assert seen_svd == Counter(info.svd_shapes)
    assert info.qr + info.svd > 0


def test_kit_must_be_a_stepkit_subclass():
    with pytest.raises(TypeError, match=r"`kit` must be a subclass of lowrank_core\.integrators\.StepKit"):
        lc.BUG(kit=StepKit(None, np, lc.Counters(), None))
    with pytest.raises(TypeError, match=r"`kit` must be a subclass.*got <class 'int'>"):
        lc.BUG(kit=int)


@pytest.mark.parametrize(
    ("cls", "options", "error", "match"),
    [
        (lc.BUG, {"tol": 1e-3}, ValueError, r"`tol` was given, but method 'bug' has fixed rank"),
        (lc.RABUG, {"variant": "two-qr"}, ValueError, r"`variant` applies to 'abc-psi' only; method 'ra-bug'"),
        (lc.KSL, {"tableau": "heun"}, ValueError, r"`tableau` applies to 'rk-bug' and 'projected-rk' only"),
        (lc.ParallelBUG, {"conserve": lc.Conservation(left=np.ones(12))}, ValueError, r"`conserve` is supported"),
        (lc.BUG, {"nonsense": 1}, TypeError, r"unknown option `nonsense` for method 'bug'"),
    ],
)
def test_method_class_validates_the_solve_options(cls, options, error, match):
    """``from_options`` (what ``solve(method=name, **options)`` calls) names the option the
    class has no field for and the methods that take it; ``None`` means the default."""
    with pytest.raises(error, match=match):
        cls.from_options(**options)
    assert repr(cls.from_options(**dict.fromkeys(options))) == repr(cls())
