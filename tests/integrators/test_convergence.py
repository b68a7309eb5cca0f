"""Convergence theory of the projector-splitting family (methods.md §4.1, §4.2, §4.7, §4.8)."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc

from .._helpers import dense, loglog_slope, rel_err
from ..theory._problems import NonTangentProblem

@pytest.mark.parametrize(
    ("method", "order"),
    [("ksl", 1), ("bc-psi", 1), ("abc-psi", 1), ("ksl-strang", 2), ("bug", 1), ("ra-bug", 1), ("parallel-bug", 1)],
)
@pytest.mark.parametrize("complex_", [False, True])
def test_order_on_time_and_state_dependent_problem(method, order, complex_):
    """Log-log slope of the error against the DLRA solution matches the classical order.

    Non-tangent, time- and Y-dependent F (see NonTangentProblem) with a well-separated
    spectrum, RK4 substeps (so substep errors are negligible), T = 1.  Strang is second
    order only for separated spectra (methods.md §4.7).  A slope within ±0.25 of the
    order separates order 1 from order 2 clearly.
    """
    prob = NonTangentProblem(complex_=complex_)
    f = prob.f_np
    Y0 = lc.LowRank(*prob.factors)
    hs = [0.1, 0.05, 0.025, 0.0125]
    ref = prob.reference(1.0)
    errs = [rel_err(dense(lc.solve(lc.MatrixODE(f), Y0, (0.0, 1.0), h, method=method, substep="rk4").Y), ref) for h in hs]
    assert abs(loglog_slope(hs, errs) - order) < 0.25, errs


def test_wrong_stage_time_is_caught_by_order_test():
    """A planted bug (RK4 with all stage times at t0) destroys Strang's second order."""

    class BadRK4(lc.RK4):
        def solve(self, flow, t0, t1, X0, first=None):
            h = t1 - t0
            k1 = flow.field(t0, X0, first)
            k2 = flow.field(t0, X0 + (0.5 * h) * k1)
            k3 = flow.field(t0, X0 + (0.5 * h) * k2)
            k4 = flow.field(t0, X0 + h * k3)
            return X0 + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    prob = NonTangentProblem()
    Y0 = lc.LowRank(*prob.factors)
    hs = [0.1, 0.05, 0.025, 0.0125]
    ref = prob.reference(1.0)
    errs = [rel_err(dense(lc.solve(lc.MatrixODE(prob.f_np), Y0, (0.0, 1.0), h, method=lc.KSLStrang(substep=BadRK4())).Y), ref) for h in hs]
    assert loglog_slope(hs, errs) < 1.5


def test_backward_correction_is_second_order_locally():
    """||S̃_PSI - S̃_BC|| = O(h^2): the ratio per halving of h tends to 4 (methods.md §4.8)."""
    rng = np.random.default_rng(0)
    m, n, r = 40, 30, 4
    B = rng.standard_normal((m, n))
    B /= np.linalg.norm(B, 2)
    A0 = rng.standard_normal((m, m)) / np.sqrt(m)
    problem = lc.MatrixODE(lambda t, Y: A0 @ Y - Y @ Y.T @ Y + np.cos(t) * B)
    Y0 = lc.LowRank.from_dense(B, rank=r)
    diffs = []
    hs = [0.04, 0.02, 0.01, 0.005]
    for h in hs:
        kit = lc.KSL(substep="euler").kit(problem, Y0, lc.Counters())
        U1, S_hat = kit.qr(kit.k_step(0.0, h, Y0.U @ Y0.S, Y0.V))
        S_psi = kit.s_step(0.0, h, S_hat, U1, Y0.V, sign=-1.0)
        S_bc = (U1.T @ Y0.U) @ Y0.S
        diffs.append(np.linalg.norm(S_psi - S_bc))
    ratios = np.array(diffs[:-1]) / np.array(diffs[1:])
    assert np.all((ratios > 3.5) & (ratios < 4.5)), ratios
