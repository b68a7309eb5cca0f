"""Rank-adaptive methods: error c1 h + c2 theta/h (methods.md §4.3)."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core import problems

from .._helpers import loglog_slope


@pytest.fixture(scope="module")
def path():
    # Start at rank 24: the initial error delta = tail of 2^-j beyond 24 (~1e-7) is far
    # below the truncation errors studied, so only the theta term varies.
    return problems.prescribed_path(N=60, r=24, w_norm=1.0)


@pytest.mark.parametrize("method", ["ra-bug", "abc-psi"])
def test_error_grows_linearly_with_theta(path, method):
    """At fixed h the error grows like theta (slope 1 in log-log, measured 0.996): for the
    geometric spectrum sigma_j ~ 2^-j each doubling of theta drops one rank and doubles
    the error.  Exact substeps isolate the truncation term."""
    thetas = [1e-6, 2e-6, 4e-6, 8e-6, 1.6e-5, 3.2e-5]
    errs, ranks = [], []
    for th in thetas:
        sol = lc.solve(path.problem, path.Y0, path.t_span, 0.02, method=method, substep="exact", tol=th, max_rank=40)
        errs.append(path.error(sol.Y, path.t_span[1]))
        ranks.append(sol.Y.rank)
    assert abs(loglog_slope(thetas, errs) - 1.0) < 0.2, errs
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[-1]


@pytest.mark.parametrize("method", ["ra-bug", "abc-psi", "parallel-bug"])
def test_theta_proportional_to_h_squared_recovers_first_order(path, method):
    """With theta = c h^2 the theta/h term is O(h): the error converges at least at first
    order (measured slope ~2 on this path since the h-term is small)."""
    hs = [0.1, 0.05, 0.025, 0.0125]
    errs = [
        path.error(
            lc.solve(path.problem, path.Y0, path.t_span, h, method=method, substep="exact", tol=0.1 * h**2, max_rank=40).Y,
            path.t_span[1],
        )
        for h in hs
    ]
    assert loglog_slope(hs, errs) > 0.9, errs


def test_fixed_theta_leaves_an_error_floor(path):
    """The contrast: with theta fixed, refining h does not reduce the error below the
    theta/h-driven floor (the error even grows as more truncations are made)."""
    errs = [
        path.error(lc.solve(path.problem, path.Y0, path.t_span, h, method="ra-bug", substep="exact", tol=1e-5).Y, 1.0)
        for h in [0.05, 0.025, 0.0125]
    ]
    assert errs[-1] >= 0.5 * errs[0]


def test_relative_tolerance_scales_with_the_norm():
    """rtol: theta = rtol ||Y||_F, so scaling the problem by 1000 keeps the ranks."""
    rng = np.random.default_rng(0)
    B = lc.LowRank.from_dense(rng.standard_normal((30, 20)), rank=10).to_dense()
    B = B * (2.0 ** -np.arange(20))  # graded columns -> graded spectrum
    Y0 = lc.LowRank.from_dense(rng.standard_normal((30, 20)), rank=3)
    ranks = []
    for scale in (1.0, 1000.0):
        sol = lc.solve(lc.MatrixODE(lambda t, Y, s=scale: s * B - Y), lc.LowRank(Y0.U, scale * Y0.S, Y0.V),
                       (0.0, 10.0), 1.0, method="ra-bug", substep="euler", rtol=1e-3)
        ranks.append(sol.ranks)
    assert ranks[0] == ranks[1]
