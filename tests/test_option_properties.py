"""Options of ``solve`` and of the integrators that no other property pinned down.

Each option here was found by planting a bug that ignores or misreads it and running the
tests that mention it: the suite still passed.  Each test below states the option's
documented meaning as a property, and its docstring names the planted bug it catches
(checked by planting it).  The review's table of every option and the test that catches
a wrong implementation is in ``docs/development.md`` (Option review).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems

EPS = float(np.finfo(np.float64).eps)


def _gradient_flow(m: int = 12, n: int = 10, r: int = 3, seed: int = 0):
    """``dY/dt = B - Y`` from a rank-``r`` start: the flow of ``||Y - B||^2 / 2``."""
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((m, n))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((m, n)), rank=r)
    return lc.MatrixODE(lambda t, Y: B - Y), Y0


# ---------------------------------------------------------------- truncation: tol, rtol, rule
def _spectrum():
    # sigma_1 = 1, ||s||_2 = 1.1885, tails ||s[k:]|| = 1.19, 0.64, 0.40, 0.27, 0.1
    return np.array([1.0, 0.5, 0.3, 0.25, 0.1])


def test_threshold_rule_scales_rtol_by_the_largest_singular_value():
    """``truncation_rule="threshold"`` keeps ``sigma_i > tol + rtol sigma_1``.

    Guards against the relative tolerance of the threshold rule scaled by ``||s||_F`` (the
    tail rule's scale) instead of ``sigma_1``: with ``rtol = 0.27`` the threshold is 0.27
    (keeps 1, 0.5, 0.3) instead of 0.321 (keeps 1, 0.5).  The other rule tests use
    spectra where both scales keep the same values.
    """
    s = _spectrum()
    for rtol in (0.27, 0.21, 0.45):
        kept = int(np.sum(s > rtol * s[0]))
        rank, _ = lc.Truncation(rtol=rtol, rule="threshold").choose_rank(s, 1, np)
        assert rank == kept, (rtol, rank, kept)
    assert lc.Truncation(rtol=0.27, rule="threshold").choose_rank(s, 1, np)[0] == 3


@pytest.mark.parametrize("rule", ["tail", "threshold"])
def test_tol_and_rtol_add(rule):
    """``theta = tol + rtol * scale``: with both set, the rank is that of the sum.

    Guards against one tolerance replacing the other (``rtol`` given, ``tol`` ignored, or
    the reverse): the spectrum and tolerances are chosen so that ``tol`` alone, ``rtol``
    alone and their sum keep three different ranks.
    """
    s = _spectrum()
    scale = s[0] if rule == "threshold" else float(np.linalg.norm(s))
    tails = np.sqrt(np.cumsum((s * s)[::-1])[::-1])  # tails[k] = ||s[k:]||

    def expected(theta: float) -> int:
        if rule == "threshold":
            return int(np.sum(s > theta))
        return int(np.sum(tails > theta))

    tol, rtol = 0.15, 0.28 / scale  # theta: 0.15, 0.28 and 0.43, between the kept values
    ranks = {
        "tol": lc.Truncation(tol=tol, rule=rule).choose_rank(s, 1, np)[0],
        "rtol": lc.Truncation(rtol=rtol, rule=rule).choose_rank(s, 1, np)[0],
        "both": lc.Truncation(tol=tol, rtol=rtol, rule=rule).choose_rank(s, 1, np)[0],
    }
    assert ranks["tol"] == expected(tol)
    assert ranks["rtol"] == expected(rtol * scale)
    assert ranks["both"] == expected(tol + rtol * scale)
    assert len(set(ranks.values())) == 3, ranks  # the case separates the three readings


# ---------------------------------------------------------------- check_finite
def _nan_on_call(n_bad: int, m: int = 12, n: int = 10, r: int = 3):
    """A gradient flow whose ``n_bad``-th evaluation (counting from 1) returns NaN."""
    rng = np.random.default_rng(1)
    B = rng.standard_normal((m, n))
    calls = [0]

    def f(t, Y):
        calls[0] += 1
        return B - Y + (math.nan if calls[0] == n_bad else 0.0)

    return lc.MatrixODE(f), lc.LowRank.from_dense(rng.standard_normal((m, n)), rank=r)


def test_check_finite_raises_at_the_step_that_went_non_finite():
    """``check_finite=True``: a state that turns non-finite in a step raises
    :class:`LowRankIntegrationError` for that step, even when no decomposition follows.

    BUG with Euler substeps evaluates F twice per step: at ``Y0`` (K- and L-steps, then
    their QRs) and in the S-step, after which no decomposition runs.  A NaN in the S-step
    of the last step is seen by the per-step check only.  Guards against the check skipped
    (``check_finite`` ignored, or read as False): the solve then returns a NaN state.
    """
    steps = 3
    problem, Y0 = _nan_on_call(2 * steps)  # the S-step of the last step
    with pytest.raises(lc.LowRankIntegrationError) as info:
        lc.solve(problem, Y0, (0.0, 0.3), dt=0.1, method="bug", substep="euler")
    # names the last step (0-based) and the time it started from
    assert info.value.step == steps - 1
    assert info.value.t == pytest.approx(0.2)
    assert "factor S" in str(info.value)


def test_check_finite_false_skips_the_per_step_check():
    """``check_finite=False``: no per-step check; the same NaN in the last S-step reaches
    the returned state.

    Guards against the flag ignored the other way (the check always run): the solve would
    raise.
    """
    problem, Y0 = _nan_on_call(6)
    sol = lc.solve(problem, Y0, (0.0, 0.3), dt=0.1, method="bug", substep="euler", check_finite=False)
    assert sol.stats["steps"] == 3
    assert not np.all(np.isfinite(sol.Y.S))
    # the earlier states, before the NaN, are finite
    assert all(np.all(np.isfinite(Y.S)) for Y in sol.Ys[:-1])


# ---------------------------------------------------------------- step-size control
@pytest.fixture(scope="module")
def schrodinger():
    """Schrödinger problem at 12 x 12, rank 3, t in [0, 0.1]: its norm is nearly conserved,
    so ``step_rtol ||Y||`` is nearly a constant that ``step_atol`` can stand in for."""
    return problems.get("schrodinger", N=12, r=3, t_end=0.1)


def test_step_atol_adds_to_step_rtol(schrodinger):
    """The allowance is ``(step_atol + step_rtol ||Y||) h``: with ``||Y|| ~ c`` constant,
    ``step_rtol = rho, step_atol = rho c`` takes the steps of ``step_rtol = 2 rho``.

    The norm drifts by ``delta`` (measured 6.8e-5; BUG keeps it up to the truncation to new
    bases), so the allowances differ by at most ``delta`` relative per step and the step
    sizes by at most ``steps * delta`` (measured 5e-4 against the bound 3e-3).  Guards
    against ``step_atol`` ignored whenever ``step_rtol`` is set: the steps are then those
    of ``step_rtol = rho`` alone, about 30-50 % shorter (twice as many steps here).
    """
    p = schrodinger
    c = float(p.Y0.norm())
    rho = 1e-3
    both = lc.solve(p.problem, p.Y0, p.t_span, method="bug", step_rtol=rho, step_atol=rho * c)
    double = lc.solve(p.problem, p.Y0, p.t_span, method="bug", step_rtol=2 * rho)
    single = lc.solve(p.problem, p.Y0, p.t_span, method="bug", step_rtol=rho)
    delta = max(abs(float(Y.norm()) - c) / c for Y in double.Ys)
    assert len(both.step_sizes) == len(double.step_sizes) < len(single.step_sizes)
    np.testing.assert_allclose(both.step_sizes, double.step_sizes, rtol=len(double.step_sizes) * delta)


def test_min_step_is_the_floor_below_which_the_solve_raises(schrodinger):
    """``min_step``: a step the controller must shrink below it raises
    :class:`LowRankIntegrationError` naming ``min_step``; without it the same solve runs.

    A first trial step of 0.05 has 36 times the allowed error at ``step_rtol = 1e-3``, so
    the controller shrinks it to 0.01 and then (measured) to steps of about 1e-3; a floor
    of 0.03 is above every step it needs.  Guards against ``min_step`` ignored (the default
    floor of 64 round-off units of ``t`` used instead): the solve then succeeds.
    """
    p = schrodinger
    kw = dict(method="bug", step_rtol=1e-3, first_step=0.05)
    sol = lc.solve(p.problem, p.Y0, p.t_span, **kw)
    assert sol.step_sizes.min() < 0.03
    with pytest.raises(lc.LowRankIntegrationError, match="min_step = 0.03"):
        lc.solve(p.problem, p.Y0, p.t_span, min_step=0.03, **kw)


def test_max_step_caps_every_step(schrodinger):
    """``max_step``: no accepted step is longer; the last step ends at ``t1``.

    With ``step_rtol = 0.1`` the controller takes steps up to 0.03 on its own (measured),
    so a cap of 0.01 binds.  Guards against ``max_step`` ignored.
    """
    p = schrodinger
    free = lc.solve(p.problem, p.Y0, p.t_span, method="bug", step_rtol=0.1)
    capped = lc.solve(p.problem, p.Y0, p.t_span, method="bug", step_rtol=0.1, max_step=0.01)
    assert free.step_sizes.max() > 0.02
    assert capped.step_sizes.max() <= 0.01 * (1 + 4 * EPS)
    assert capped.t[-1] == p.t_span[1]
    assert capped.step_sizes.sum() == pytest.approx(p.t_span[1] - p.t_span[0], rel=4 * EPS * len(capped.step_sizes))


# ---------------------------------------------------------------- parallel BUG: c_eta, max_retries
def _near_best_start():
    """``B`` with singular values ``2^-k`` (30 x 20) and a rank-4 start near its best
    rank-4 approximation: one Euler step of ``dY/dt = B - Y`` whose neglected block
    ``h eta`` lies between ``1e-8 theta`` and ``theta`` at ``tol = 1e-2``, and between
    ``theta`` and ``1e8 theta`` at ``tol = 1e-3`` (measured: rejected at ``c_eta = 1`` for
    ``tol = 1e-3`` only)."""
    rng = np.random.default_rng(0)
    m, n = 30, 20
    Q1 = np.linalg.qr(rng.standard_normal((m, n)))[0]
    Q2 = np.linalg.qr(rng.standard_normal((n, n)))[0]
    B = Q1 @ np.diag(0.5 ** np.arange(n)) @ Q2.T
    Y0 = lc.LowRank.from_dense(B + 0.01 * rng.standard_normal((m, n)), rank=4)
    return lc.MatrixODE(lambda t, Y: B - Y), Y0


def _rejections(tol: float, c_eta: float, max_retries: int) -> int:
    problem, Y0 = _near_best_start()
    method = lc.ParallelBUG(substep="euler", tol=tol, reject=True, c_eta=c_eta, max_retries=max_retries)
    return lc.solve(problem, Y0, (0.0, 0.1), dt=0.1, method=method).stats["rejections"]


def test_c_eta_scales_the_rejection_threshold():
    """A step is rejected when ``h eta > c_eta theta``: the same step is rejected or
    accepted as ``c_eta`` moves across ``h eta / theta``, in both directions.

    Guards against ``c_eta`` ignored (the test read with ``c_eta = 1``): the step at
    ``tol = 1e-3`` is then rejected with ``c_eta = 1e8``, and the step at ``tol = 1e-2``
    accepted with ``c_eta = 1e-8``.
    """
    assert _rejections(1e-3, 1.0, 1) == 1
    assert _rejections(1e-3, 1e8, 1) == 0
    assert _rejections(1e-2, 1.0, 1) == 0
    assert _rejections(1e-2, 1e-8, 1) == 1


def test_max_retries_bounds_the_repetitions_of_a_step():
    """With a test that rejects every attempt (``c_eta = 1e-8``), one step is repeated
    exactly ``max_retries`` times (while the enlarged rank can still grow), and
    ``max_retries = 0`` never repeats.

    Guards against ``max_retries`` ignored (a fixed number of retries, the default 3):
    every count below would then be the same.
    """
    assert [_rejections(1e-2, 1e-8, k) for k in (0, 1, 2)] == [0, 1, 2]


# ---------------------------------------------------------------- RK45 substeps: atol
def test_rk45_atol_sets_the_local_error_where_it_dominates():
    """``RK45(atol=...)`` keeps local errors near ``atol + rtol |X|`` per entry.

    The state's entries are about 1e-7 and ``rtol = 1e-9``, so ``rtol |X|`` ~ 1e-16 and
    ``atol`` decides: six decades less ``atol`` must cost more inner steps and give a
    smaller error against a reference of the same outer steps with tolerances 1e-13 /
    1e-22 (local control predicts a factor (1e6)^(4/5) ~ 6e4 in the global error; measured
    400, required 30).  Guards against ``atol`` ignored (the default 1e-9 used): both
    solves are then the same.
    """
    rng = np.random.default_rng(0)
    n = 20
    A = rng.standard_normal((n, n)) / math.sqrt(n) - np.eye(n)
    problem = lc.LinearMatrixODE(A, A)
    Y0 = lc.LowRank.from_dense(1e-6 * rng.standard_normal((n, n)), rank=3)

    def run(rtol: float, atol: float):
        return lc.solve(problem, Y0, (0.0, 1.0), dt=0.25, method="ksl", substep=lc.RK45(rtol=rtol, atol=atol))

    ref = run(1e-13, 1e-22).Y.to_dense()
    loose, tight = run(1e-9, 1e-7), run(1e-9, 1e-13)
    err = {
        k: np.linalg.norm(s.Y.to_dense() - ref) / np.linalg.norm(ref) for k, s in (("loose", loose), ("tight", tight))
    }
    assert tight.stats["rhs_evals"] > loose.stats["rhs_evals"]
    assert err["tight"] < err["loose"] / 30, err
