"""Adaptive Dormand-Prince 5(4) substeps, ``substep="rk45"`` / :class:`lowrank_core.RK45`.

References are the same integrator with the substep ODEs solved exactly: the sub-flows
of ``dY/dt = L Y + Y L^T`` are linear and autonomous in the factor ``X``, so
``X(t1) = expm((t1 - t0) G) X(t0)`` with ``G`` the matrix of the sub-flow (built column
by column from ``flow.field``); for a path ``A(t)`` the exact substeps are the library's
``substep="exact"``.  The adaptive solve may then differ from its reference only by the
inner integration error, which the controller keeps near ``rtol |X|``.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import scipy.linalg as sla

import lowrank_core as lc

from ._helpers import dense, lowrank_in, random_lowrank_np, to_numpy

#: Bound on ``||Y_rk45 - Y_exact||_F / ||Y_exact||_F`` in units of ``rtol``.  Each inner
#: step is accepted when its *fourth*-order error estimate is below ``atol + rtol |X|``
#: (RMS), while the propagated solution is the fifth-order one, so its local errors are
#: well below the tolerance; the differences measured on the problems below are
#: 0.05-1.4 rtol over every method (``atol`` = rtol/1000, tens of inner steps): 10 leaves
#: room for the accumulation over substeps without hiding an O(1) defect.
FACTOR = 10.0


class _ExactLinear(lc.SubstepSolver):
    """Exact substeps of a linear autonomous sub-flow (reference only, NumPy, unbatched)."""

    name = "exact-linear"

    def solve(self, flow, t0, t1, X0, first=None):
        shape = tuple(X0.shape)
        size = math.prod(shape)
        G = np.empty((size, size), dtype=X0.dtype)
        for j in range(size):
            E = np.zeros(size, dtype=X0.dtype)
            E[j] = 1.0
            G[:, j] = np.reshape(flow.field(t0, np.reshape(E, shape)), (-1,))
        return np.reshape(sla.expm((t1 - t0) * G) @ np.reshape(X0, (-1,)), shape)


class _Counting(lc.AbstractMatrixODE):
    """Delegates to ``inner``, recording every evaluation point's time and batch size."""

    def __init__(self, inner):
        self.inner, self.calls, self.times = inner, 0, []

    def check_state(self, Y0):
        self.inner.check_state(Y0)

    def evaluate(self, t, Y):
        self.calls += math.prod(Y.batch_shape)
        self.times.append(t)
        return self.inner.evaluate(t, Y)


def _laplacian(n, scale):
    """``scale`` times the 1-D Dirichlet stencil (1, -2, 1): spectral radius < 4 scale."""
    return scale * (-2.0 * np.eye(n) + np.eye(n, k=1) + np.eye(n, k=-1))


def _heat(L, xp=None):
    """``dY/dt = L Y + Y L^T`` through the structured products (LinearMatrixODE)."""
    return lc.LinearMatrixODE(L if xp is None else xp.asarray(L), L if xp is None else xp.asarray(L))


def _dense_heat(L):
    """The same right-hand side through a dense ``f(t, Y)`` (any backend, stacks of ``L``)."""

    def f(t, Y):
        return L @ Y + Y @ (L.mT if hasattr(L, "mT") else np.swapaxes(L, -1, -2))

    return lc.MatrixODE(f)


def _Y0(seed=0, n=12, sigmas=(1.0, 0.5, 0.25)):
    return lc.LowRank(*random_lowrank_np(np.random.default_rng(seed), n, n, list(sigmas)))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------------------- accuracy


def test_rk45_matches_exact_substeps_within_tolerance_and_converges():
    """KSL on the heat equation with rk45 substeps differs from KSL with exact substeps
    by at most FACTOR * rtol, and 100x smaller tolerances shrink the difference at least
    10x (order 5: about 100x).

    Guards against a wrong tableau coefficient (a typo in a fifth-order weight ``b_i``:
    the propagated solution is then only first-order accurate while the error estimate
    built from the correct ``e_i`` does not see it, so the difference stays O(h))."""
    L = _laplacian(12, 10.0)
    problem, Y0 = _heat(L), _Y0()
    ref = dense(lc.solve(problem, Y0, (0.0, 0.2), 0.05, method="ksl", substep=_ExactLinear()).Y)
    diffs = []
    for rtol in (1e-5, 1e-7):
        sol = lc.solve(problem, Y0, (0.0, 0.2), 0.05, method="ksl", substep=lc.RK45(rtol=rtol, atol=rtol * 1e-3))
        diffs.append(_rel(dense(sol.Y), ref))
        assert diffs[-1] <= FACTOR * rtol, (rtol, diffs[-1])
    assert diffs[1] <= diffs[0] / 10.0, diffs


def test_stiff_heat_rk45_stable_where_rk4_blows_up():
    """On the heat equation with spectral radius ~ 2 * 4 * 13^2 = 1.35e3, an outer step
    dt = 0.01 is 5x beyond RK4's stability limit 2.785 / rho: rk4 substeps blow up
    (error > 1e3 or a raised breakdown), rk45 substeps stay within FACTOR * rtol of the
    exact substeps.

    Guards against a controller that accepts steps without comparing the error estimate
    with the tolerance (or grows the step without limit): the inner steps then leave the
    stability region and rk45 blows up like rk4."""
    L = _laplacian(12, 13.0**2)
    problem, Y0 = _heat(L), _Y0()
    span, dt = (0.0, 0.04), 0.01
    ref = dense(lc.solve(problem, Y0, span, dt, method="ksl", substep=_ExactLinear()).Y)
    try:
        rk4_err = _rel(dense(lc.solve(problem, Y0, span, dt, method="ksl", substep="rk4").Y), ref)
    except lc.LowRankIntegrationError:
        rk4_err = math.inf
    assert rk4_err > 1e3
    rtol = 1e-6
    sol = lc.solve(problem, Y0, span, dt, method="ksl", substep=lc.RK45(rtol=rtol, atol=rtol * 1e-3))
    assert _rel(dense(sol.Y), ref) <= FACTOR * rtol


@pytest.mark.parametrize("method", sorted(lc.METHODS))
def test_every_method_with_rk45_matches_its_exact_substeps(method):
    """Every integrator (K-, L- and S-flows, the backward S-step with sign -1, substeps
    sharing a first evaluation) with rk45 substeps is within FACTOR * rtol of the same
    integrator with exact substeps, on a mildly stiff heat problem (rho ~ 80, dt = 0.05).

    Guards against a last inner step clipped in time but not in size (``t_new = t1``
    while the stages still advance by the controller's ``h``): the substeps then
    overshoot ``t1``, which every method shows as an O(h) difference."""
    L = _laplacian(12, 10.0)
    problem, Y0 = _dense_heat(L), _Y0()
    ref = dense(lc.solve(problem, Y0, (0.0, 0.2), 0.05, method=method, substep=_ExactLinear()).Y)
    rtol = 1e-7
    sol = lc.solve(problem, Y0, (0.0, 0.2), 0.05, method=method, substep=lc.RK45(rtol=rtol, atol=rtol * 1e-3))
    assert sol.Y.rank == Y0.rank
    assert _rel(dense(sol.Y), ref) <= FACTOR * rtol


def test_time_dependent_path_evaluated_at_inner_stage_times():
    """For a rank-3 path ``A(t)`` with rotating factors and oscillating singular values,
    KSL is exact with exact substeps; with rk45 substeps (``dA(t)`` sampled at the inner
    stage times) it matches the dense path ``A(t1)`` within FACTOR * rtol.

    Guards against stage times measured from the substep's start instead of the current
    inner step (``t0 + c_i h`` in place of ``t + c_i h``): every inner step after the
    first then integrates ``dA`` at the wrong times, an O(1) error."""
    rng = np.random.default_rng(3)
    m, n = 10, 8
    U0, _, V0 = random_lowrank_np(rng, m, n, [1.0, 1.0, 1.0])
    Wm, Wn = (np.triu(rng.standard_normal((k, k)), 1) for k in (m, n))
    Wm, Wn = Wm - Wm.T, Wn - Wn.T  # skew: the factors rotate, U(t) = expm(t Wm) U0

    def path(t):
        s = np.diag([2.0 + np.sin(3 * t), 1.0 + 0.5 * np.cos(5 * t), 0.5 + 0.2 * np.sin(7 * t)])
        return sla.expm(t * Wm) @ U0 @ s @ (sla.expm(t * Wn) @ V0).T

    def dpath(t):
        s = np.diag([2.0 + np.sin(3 * t), 1.0 + 0.5 * np.cos(5 * t), 0.5 + 0.2 * np.sin(7 * t)])
        ds = np.diag([3 * np.cos(3 * t), -2.5 * np.sin(5 * t), 1.4 * np.cos(7 * t)])
        Ut, Vt = sla.expm(t * Wm) @ U0, sla.expm(t * Wn) @ V0
        return Wm @ Ut @ s @ Vt.T + Ut @ ds @ Vt.T + Ut @ s @ (Wn @ Vt).T

    problem = lc.MatrixPath(path, dpath)
    Y0 = lc.LowRank.from_dense(path(0.0), rank=3)
    span, dt = (0.0, 1.0), 0.25
    exact = lc.solve(problem, Y0, span, dt, method="ksl", substep="exact")
    assert _rel(dense(exact.Y), path(1.0)) < 1e-12  # the reference is exact
    rtol = 1e-7
    sol = lc.solve(problem, Y0, span, dt, method="ksl", substep=lc.RK45(rtol=rtol, atol=rtol * 1e-3))
    assert _rel(dense(sol.Y), path(1.0)) <= FACTOR * rtol


# ---------------------------------------------------------------------------- counting


def test_rhs_evals_counts_every_stage_including_rejections():
    """``stats["rhs_evals"]`` equals the evaluations a wrapping problem sees, for a run
    with rejected inner steps (a first step 20x too large on a stiff problem) and the
    initial step selection; and with one accepted inner step per substep (``first_step
    = dt``, loose tolerance) KSL costs exactly 3 substeps x 7 stages per step at the stage
    times ``t0 + c_i h`` and ``t1``.

    Guards against uncounted stages (the FSAL stage, the stages of a rejected step, the
    step-selection probe evaluated through the problem instead of ``flow.field``)."""
    L = _laplacian(12, 13.0**2)
    wrapped = _Counting(_dense_heat(L))
    sol = lc.solve(wrapped, _Y0(), (0.0, 0.02), 0.01, method="ksl", substep=lc.RK45(first_step=0.01))
    assert wrapped.calls == sol.stats["rhs_evals"]
    # the rejected steps were actually exercised: more than the 7 per substep of a first try
    assert sol.stats["rhs_evals"] > 3 * 7 * 2
    wrapped = _Counting(_dense_heat(L))
    sol = lc.solve(wrapped, _Y0(), (0.0, 0.02), 0.01, method="abc-psi", substep="rk45")
    assert wrapped.calls == sol.stats["rhs_evals"]

    easy = _Counting(lc.MatrixODE(lambda t, Y: -0.1 * Y))
    h = 0.01
    sol = lc.solve(easy, _Y0(), (0.0, 2 * h), h, method="ksl", substep=lc.RK45(rtol=1e-3, atol=1e-3, first_step=h))
    assert easy.calls == sol.stats["rhs_evals"] == 2 * 3 * 7
    stage_times = sorted({0.0 + c * h for c in (0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0)})
    seen = sorted({round(t, 15) for t in easy.times if t <= h + 1e-15})
    np.testing.assert_allclose(seen, stage_times, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------- bad input and breakdown


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"rtol": 0.0}, ValueError, "rtol"),
        ({"rtol": -1e-6}, ValueError, "rtol"),
        ({"rtol": float("nan")}, ValueError, "rtol"),
        ({"rtol": True}, TypeError, "rtol"),
        ({"rtol": "1e-6"}, TypeError, "rtol"),
        ({"atol": 0.0}, ValueError, "atol"),
        ({"atol": float("inf")}, ValueError, "atol"),
        ({"atol": False}, TypeError, "atol"),
        ({"first_step": 0.0}, ValueError, "first_step"),
        ({"first_step": -0.1}, ValueError, "first_step"),
        ({"max_substeps": 2.5}, TypeError, "max_substeps"),
        ({"max_substeps": True}, TypeError, "max_substeps"),
        ({"max_substeps": 0}, ValueError, "max_substeps"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, exc, name):
    """Invalid tolerances, first step or step budget raise TypeError (kind) or ValueError
    (value) naming the argument in backquotes.

    Guards against tolerances accepted unchecked (``rtol=0`` or NaN makes every error
    norm infinite or NaN: a confusing breakdown deep in a solve; ``True`` read as 1)."""
    with pytest.raises(exc, match=f"`{name}`"):
        lc.RK45(**kwargs)


def test_breakdown_below_step_floor_names_time_error_and_member():
    """A stack whose member 1 has a NaN field from t = 0.05 on (finite before): the
    controller shrinks the inner step to its floor at t ~ 0.05 and ``solve`` raises
    LowRankIntegrationError with the outer step and time, the inner time, the error
    estimate and ``members == (1,)``; the healthy member is not named.

    Guards against a controller that loops forever (no floor) or returns NaN silently,
    and against naming every member of the stack."""

    def f(t, Y):
        out = -Y
        if t > 0.05:
            out = out.copy()
            out[1] = np.nan
        return out

    U, S, V = random_lowrank_np(np.random.default_rng(0), 8, 6, [1.0, 0.5])
    Y0 = lc.LowRank(*(np.stack([x, x]) for x in (U, S, V)))
    with pytest.raises(lc.LowRankIntegrationError, match="below the floor") as info:
        lc.solve(lc.MatrixODE(f), Y0, (0.0, 0.1), 0.1, method="ksl", substep="rk45")
    err = info.value
    assert (err.step, err.t, err.members) == (0, 0.0, (1,))
    assert "error estimate" in str(err)
    inner = float(str(err).split("stuck at t = ")[1].split(":")[0])
    assert 0.04 < inner <= 0.05


def test_breakdown_after_max_substeps():
    """A stiff problem with ``max_substeps=3``: LowRankIntegrationError naming
    ``max_substeps``, the step index and the time, never a result.

    Guards against an unbounded inner loop (a stiff or blowing-up sub-flow that takes
    millions of tiny steps without telling the user)."""
    L = _laplacian(12, 13.0**2)
    with pytest.raises(lc.LowRankIntegrationError, match="max_substeps") as info:
        lc.solve(_dense_heat(L), _Y0(), (0.0, 0.02), 0.01, method="ksl", substep=lc.RK45(max_substeps=3))
    assert (info.value.step, info.value.t) == (0, 0.0)


def test_resolution_pickle_and_repr():
    """``substep="rk45"`` (any case) gives default tolerances; an instance keeps its
    options through pickling and its repr shows them.

    Guards against the name missing from the substep table and against a solver whose
    options are lost in a copy (a worker would integrate at the default tolerances)."""
    method = lc.KSL(substep="RK45")
    assert isinstance(method.substep, lc.RK45)
    assert (method.substep.rtol, method.substep.atol) == (1e-6, 1e-9)
    solver = lc.RK45(rtol=1e-4, atol=1e-7, first_step=0.5, max_substeps=50)
    copy = pickle.loads(pickle.dumps(solver))
    assert (copy.rtol, copy.atol, copy.first_step, copy.max_substeps) == (1e-4, 1e-7, 0.5, 50)
    assert repr(copy) == "RK45(rtol=0.0001, atol=1e-07, first_step=0.5, max_substeps=50)"


# ---------------------------------------------------------------------------- backends and stacks


def test_stack_controlled_by_its_worst_member(xp):
    """A stack of two heat problems, member 1 40x stiffer than member 0, solved in one
    call on every backend: each member is within FACTOR * rtol ||Y0_i|| of its own
    exact-substep reference (the inner grid satisfies the tolerance for the worst member).

    Guards against an error norm taken over one member (or averaged over the stack):
    the stiff member is then integrated with the easy member's steps and is inaccurate
    or unstable."""
    n = 12
    Ls = np.stack([_laplacian(n, 4.0), _laplacian(n, 160.0)])
    factors = [random_lowrank_np(np.random.default_rng(s), n, n, [1.0, 0.5, 0.25]) for s in (0, 1)]
    refs = [
        dense(
            lc.solve(
                _dense_heat(Ls[i]), lc.LowRank(*factors[i]), (0.0, 0.04), 0.02, method="ksl", substep=_ExactLinear()
            ).Y
        )
        for i in range(2)
    ]
    Y0 = lowrank_in(xp, tuple(np.stack([factors[0][j], factors[1][j]]) for j in range(3)), xp.float64)
    rtol = 1e-6
    sol = lc.solve(
        _dense_heat(xp.asarray(Ls)), Y0, (0.0, 0.04), 0.02, method="ksl", substep=lc.RK45(rtol=rtol, atol=rtol * 1e-3)
    )
    out = to_numpy(sol.Y.to_dense())
    assert type(sol.Y.U) is type(Y0.U)
    # Relative to ||Y0_i||: the stiff member decays to ~1e-3 of its start, and errors
    # committed early at rtol times the state's size then, are not relative to the end.
    for i in range(2):
        start = np.linalg.norm(factors[i][0] @ factors[i][1] @ factors[i][2].T)
        assert np.linalg.norm(out[i] - refs[i]) <= FACTOR * rtol * start, i
