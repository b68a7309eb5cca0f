"""Every public object pickles and deep-copies, over NumPy, array-api-strict and PyTorch.

Guards against objects that store what does not pickle (the array namespace is a
module: ``TypeError: cannot pickle 'module' object`` broke multiprocessing, Dask, joblib
and checkpointing of a ``LowRank``, a ``Solution`` and a ``LowRankParam``), and against
round trips that lose data, the array library or the namespace: the copies must
compute, and a solve continued from a copied state equals the one continued from the
original bit for bit (the same arithmetic on the same values).
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import lowrank_core as lc
import lowrank_core.problems as lcp
from lowrank_core.integrators import METHODS

from ._helpers import lowrank_in, random_lowrank_np, to_numpy

TRAINING_OPTIMIZERS = sorted(["psi", "bc-psi", "abc-psi", "ra-bug", "parallel-bug", "heavy-ball", "adam"])


def _round_trips(obj):
    """The pickled-and-loaded and the deep-copied object."""
    return {"pickle": pickle.loads(pickle.dumps(obj)), "deepcopy": copy.deepcopy(obj)}


def _assert_same_lowrank(a, b):
    assert type(b) is lc.LowRank
    assert b.xp is a.xp
    for name in ("U", "S", "V"):
        x, y = getattr(a, name), getattr(b, name)
        assert type(y) is type(x)
        assert y.dtype == x.dtype
        np.testing.assert_array_equal(to_numpy(y), to_numpy(x))


def _minus_y(t, Y):
    """Module-level right-hand side (a lambda would not pickle, by Python's rules)."""
    return -Y


class _Path:
    """A picklable path ``A(t) = (1 + t) A0`` in the state's namespace."""

    def __init__(self, A0):
        self.A0 = A0

    def __call__(self, t):
        return (1.0 + t) * self.A0


def _state(xp, rng, batch=()):
    U, S, V = random_lowrank_np(rng, 8, 6, [1.0, 0.5, 0.1])
    Y = lowrank_in(xp, (U, S, V), xp.float64)
    if batch:
        Y = lc.LowRank(*(xp.stack([f] * batch[0]) for f in (Y.U, Y.S, Y.V)))
    return Y


@pytest.mark.parametrize("batch", [(), (2,)])
def test_lowrank_round_trip_keeps_factors_library_and_namespace(xp, batch):
    """A LowRank comes back with the same factors (same array type and dtype) and a
    working namespace: ``to_dense`` of the copy equals the original's."""
    Y = _state(xp, np.random.default_rng(0), batch)
    for how, Z in _round_trips(Y).items():
        _assert_same_lowrank(Y, Z)
        np.testing.assert_array_equal(to_numpy(Z.to_dense()), to_numpy(Y.to_dense()), err_msg=how)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_solution_round_trip_and_continued_solve(xp, method):
    """A Solution (states, times, stats, the integrator) round-trips, and continuing the
    solve from the copied final state gives the same result as from the original."""
    problem = lc.MatrixODE(_minus_y)
    Y0 = _state(xp, np.random.default_rng(1))
    kwargs = {"rtol": 1e-3} if getattr(METHODS[method], "rank_adaptive", False) else {}
    sol = lc.solve(problem, Y0, (0.0, 0.5), 0.25, method=method, **kwargs)
    for how, copied in _round_trips(sol).items():
        assert type(copied) is lc.Solution
        _assert_same_lowrank(sol.Y, copied.Y)
        assert len(copied.Ys) == len(sol.Ys)
        np.testing.assert_array_equal(copied.t, sol.t)
        assert copied.stats == sol.stats, how
        assert repr(copied.method) == repr(sol.method)
        a = lc.solve(problem, sol.Y, (0.5, 1.0), 0.25, method=sol.method)
        b = lc.solve(pickle.loads(pickle.dumps(problem)), copied.Y, (0.5, 1.0), 0.25, method=copied.method)
        np.testing.assert_array_equal(to_numpy(b.Y.to_dense()), to_numpy(a.Y.to_dense()), err_msg=how)


def test_configuration_objects_round_trip():
    """Integrators, substep solvers, truncation rules, counters and errors are plain
    configuration and round-trip with their settings (repr and attributes)."""
    objs = [cls() for cls in METHODS.values()]
    objs += [lc.ABCPSI(rtol=1e-3, max_rank=7, variant="two-qr"), lc.RABUG(tol=1e-6, min_rank=2)]
    objs += [lc.RKBUG("ssprk3", rtol=1e-3), lc.ProjectedRK("heun"), lc.MidpointBUG(tol=1e-6), lc.ParallelBUG2()]
    objs += [lc.RK4(), lc.Euler(), lc.Exact(), lc.Truncation(tol=1e-3, rtol=None, min_rank=2, max_rank=9)]
    objs += [lc.RK45(rtol=1e-4, atol=1e-7, first_step=0.01, max_substeps=50)]
    for obj in objs:
        for copied in _round_trips(obj).values():
            assert type(copied) is type(obj)
            assert repr(copied) == repr(obj)
    c = lc.Counters()
    c.qr += 3
    for copied in _round_trips(c).values():
        assert copied.as_dict() == c.as_dict()
    err = lc.LowRankIntegrationError("breakdown", t=0.25, step=3, members=(1, 4))
    for copied in _round_trips(err).values():
        assert (type(copied), str(copied), copied.t, copied.step, copied.members) == (
            type(err),
            str(err),
            0.25,
            3,
            (1, 4),
        )


def test_problems_round_trip(xp):
    """The problem classes with picklable callables (module-level functions), and every
    problem of ``lowrank_core.problems``, round-trip and give the same products."""
    rng = np.random.default_rng(2)
    Y = _state(xp, rng)
    L = xp.asarray(-2 * np.eye(8) + np.eye(8, k=1) + np.eye(8, k=-1))
    R = xp.asarray(-2 * np.eye(6) + np.eye(6, k=1) + np.eye(6, k=-1))
    W = xp.asarray(rng.standard_normal((6, 2)))
    path = lc.MatrixPath(_Path(Y.to_dense()), dA=_Path(Y.to_dense()))
    path.check_state(Y)
    for problem in (lc.MatrixODE(_minus_y), lc.LinearMatrixODE(L, R, C=Y), path):
        for copied in _round_trips(problem).values():
            assert type(copied) is type(problem)
            np.testing.assert_array_equal(to_numpy(copied.F_V(0.0, Y, W)), to_numpy(problem.F_V(0.0, Y, W)))
    for name in sorted(lcp.PROBLEMS):
        ref = lcp.get(name, xp=xp)
        for how, copied in _round_trips(ref).items():
            assert copied.name == ref.name
            _assert_same_lowrank(ref.Y0, copied.Y0)
            t1 = ref.t_span[1]
            np.testing.assert_array_equal(to_numpy(copied.reference(t1)), to_numpy(ref.reference(t1)), err_msg=how)


@pytest.mark.parametrize("name", TRAINING_OPTIMIZERS)
def test_training_parameter_round_trip(xp, name):
    """A LowRankParam in the middle of training (optimizer state, augmented basis)
    round-trips, and the copy takes the same next step as the original; so do the
    optimizers themselves."""
    from lowrank_core import training

    assert sorted(training.OPTIMIZERS) == TRAINING_OPTIMIZERS  # a new optimizer is tested too
    rng = np.random.default_rng(3)
    Y = _state(xp, rng)
    G = xp.asarray(rng.standard_normal((8, 6)))
    opt = training.OPTIMIZERS[name](lr=0.1, basis_update_every=2)
    p = opt.init(Y)
    for _ in range(3):
        p = opt.step(p, grad=G)
    for how, q in _round_trips(p).items():
        assert type(q) is training.LowRankParam
        assert q.xp is p.xp
        assert q.step == p.step
        opt2 = _round_trips(opt)[how]
        a, b = opt.step(p, grad=G), opt2.step(q, grad=G)
        for f in ("U", "S", "V", "dK", "dL"):
            np.testing.assert_array_equal(to_numpy(getattr(b, f)), to_numpy(getattr(a, f)), err_msg=how)


def test_torch_layer_and_optimizer_round_trip():
    """A LowRankLinear model and its LowRankOptimizer deep-copy and pickle (with the
    torch conventions: the optimizer's state dict round-trips through pickle)."""
    torch = pytest.importorskip("torch")
    from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(LowRankLinear(6, 5, rank=2), torch.nn.Tanh(), LowRankLinear(5, 3, rank=2))
    opt = LowRankOptimizer(model, "abc-psi", 1e-2, rtol=0.1)
    x = torch.randn(4, 6)
    for _ in range(2):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    for copied in _round_trips(model).values():
        torch.testing.assert_close(copied(x), model(x), rtol=0, atol=0)
    state = pickle.loads(pickle.dumps(opt.state_dict()))
    assert state.keys() == opt.state_dict().keys()
    copy.deepcopy(opt)
    # A model and its optimizer copied together (mid-cycle: three abc-PSI steps) keep
    # training: the copy recognises its own layers and takes the same step, bitwise.
    opt.zero_grad()
    model(x).pow(2).sum().backward()
    opt.step()
    for how in ("deepcopy", "pickle"):
        model2, opt2 = copy.deepcopy((model, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((model, opt)))
        assert [id(m) for m in opt2.layers] == [id(m) for m in (model2[0], model2[2])]
        for m, o in ((model, opt), (model2, opt2)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
        torch.testing.assert_close(model2(x), model(x), rtol=0, atol=0, msg=how)
        copy_state = opt2.state_dict()
        assert copy_state["state"].keys() == opt.state_dict()["state"].keys()
