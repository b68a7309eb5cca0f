"""Decomposition and evaluation counts per step (methods.md §2.8)."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc

M, N, R, STEPS = 30, 20, 4, 5


def _solve(method, substep="euler", **kw):
    rng = np.random.default_rng(0)
    B = rng.standard_normal((M, N))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((M, N)), rank=R)
    return lc.solve(lc.MatrixODE(lambda t, Y: B - Y), Y0, (0.0, 1.0), 1.0 / STEPS, method=method, substep=substep, **kw)


@pytest.mark.parametrize(
    ("method", "qr_shapes", "svd_shapes", "points"),
    [
        ("ksl", {(M, R): 1, (N, R): 1}, {}, 3),
        ("ksl-strang", {(M, R): 2, (N, R): 1}, {}, 5),
        ("bc-psi", {(M, R): 1, (N, R): 1}, {}, 2),
        ("abc-psi", {(M, 2 * R): 1}, {(N, 2 * R): 1}, 1),
        ("bug", {(M, R): 1, (N, R): 1}, {}, 2),
        ("ra-bug", {(M, 2 * R): 1, (N, 2 * R): 1}, {(2 * R, 2 * R): 1}, 1),
        ("parallel-bug", {(M, 2 * R): 1, (N, 2 * R): 1}, {(2 * R, 2 * R): 1}, 1),
    ],
)
def test_counts_per_step_with_euler(method, qr_shapes, svd_shapes, points):
    sol = _solve(method)
    st = sol.stats
    assert st["steps"] == STEPS
    assert st["qr_shapes"] == {k: v * STEPS for k, v in qr_shapes.items()}
    assert st["svd_shapes"] == {k: v * STEPS for k, v in svd_shapes.items()}
    assert st["qr"] == STEPS * sum(qr_shapes.values())
    assert st["svd"] == STEPS * sum(svd_shapes.values())
    assert st["rhs_evals"] == STEPS * points
    assert st["flops"] == pytest.approx(st["qr_flops"] + st["svd_flops"])
    assert st["flops"] > 0
    assert st["wall_time"] > 0


def test_abc_psi_variants_differ_in_qr_count():
    """The default (min-qr) spends 1 QR per step, the authors' variant 2; same result."""
    a = _solve("abc-psi")
    b = _solve("abc-psi", variant="two-qr")
    assert a.stats["qr"] == STEPS
    assert b.stats["qr"] == 2 * STEPS
    assert b.stats["svd_shapes"] == {(2 * R, 2 * R): STEPS}
    assert np.allclose(a.Y.to_dense(), b.Y.to_dense(), atol=1e-12)


def test_rk4_reuses_the_shared_first_stage():
    """abc-PSI with RK4: K and L steps share their first stage at Y0 -> 1 + 3 + 3 points."""
    assert _solve("abc-psi", substep="rk4").stats["rhs_evals"] == 7 * STEPS
    assert _solve("ksl", substep="rk4").stats["rhs_evals"] == 12 * STEPS


def test_batched_counts_are_per_matrix():
    rng = np.random.default_rng(1)
    B = rng.standard_normal((3, M, N))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((3, M, N)), rank=R)
    sol = lc.solve(lc.MatrixODE(lambda t, Y: B - Y), Y0, (0.0, 1.0), 0.5, method="ksl", substep="euler")
    assert sol.stats["qr"] == 3 * 2 * 2
    assert sol.stats["rhs_evals"] == 3 * 3 * 2


def test_max_rank_hits_are_reported():
    rng = np.random.default_rng(2)
    B = rng.standard_normal((M, N))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((M, N)), rank=2)
    sol = lc.solve(lc.MatrixODE(lambda t, Y: B - Y), Y0, (0.0, 2.0), 0.5, method="abc-psi", substep="euler",
                   tol=1e-10, max_rank=3)
    assert max(sol.ranks) == 3
    assert sol.stats["max_rank_hits"] == sol.stats["steps"]


def test_parallel_bug_rejection_is_counted_and_grows_rank():
    """With a tight tolerance the neglected block exceeds theta/h: the step is rejected,
    repeated from the enlarged (rank 2r) representation of the same Y0, and counted."""
    rng = np.random.default_rng(3)
    B = rng.standard_normal((M, N))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((M, N)), rank=2)
    problem = lc.MatrixODE(lambda t, Y: B - Y)
    plain = lc.solve(problem, Y0, (0.0, 1.0), 0.5, method=lc.ParallelBUG(substep="euler", tol=1e-6, max_rank=16))
    rejecting = lc.ParallelBUG(substep="euler", tol=1e-6, max_rank=16, reject=True)
    rej = lc.solve(problem, Y0, (0.0, 1.0), 0.5, method=rejecting)
    assert plain.stats["rejections"] == 0
    assert rej.stats["rejections"] > 0
    assert rej.ranks[1] > plain.ranks[1]
    assert rej.stats["qr"] > plain.stats["qr"]
    with pytest.raises(ValueError, match="`reject=True` needs"):
        lc.ParallelBUG(reject=True)


def test_rejection_is_not_counted_when_the_rank_cannot_grow():
    """Rejections stop once the truncated rank reaches max_rank: repeating could not raise it."""
    rng = np.random.default_rng(4)
    B = rng.standard_normal((M, N))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((M, N)), rank=4)
    problem = lc.MatrixODE(lambda t, Y: B - Y)
    rejecting = lc.ParallelBUG(substep="euler", tol=1e-8, max_rank=8, reject=True)
    capped = lc.solve(problem, Y0, (0.0, 1.0), 0.5, method=rejecting)
    assert capped.stats["rejections"] == 0
    assert capped.ranks[-1] == 8


def test_fixed_rank_is_clamped_by_explicit_bounds():
    """Without tol, min_rank/max_rank clamp the kept rank instead of being ignored."""
    sol = _solve("abc-psi", max_rank=3)
    assert sol.ranks[1:] == [3] * STEPS
    assert sol.stats["max_rank_hits"] == 0
