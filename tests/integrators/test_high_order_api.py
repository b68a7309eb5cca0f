"""The second- and higher-order integrators: costs per step, backends and stacks, options
and bad input (midpoint-bug, parallel-bug-2, rk-bug, projected-rk; docs/methods.md)."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc

from .._helpers import dense, to_numpy

M, N, R, STEPS = 40, 30, 3, 4


def _setup(batch=()):
    rng = np.random.default_rng(0)
    B = rng.standard_normal((*batch, M, N))
    Y0 = lc.LowRank.from_dense(rng.standard_normal((*batch, M, N)), rank=R)
    return B, Y0


_RNG = np.random.default_rng(1)
W1, W2 = 0.3 * _RNG.standard_normal((M, M)), 0.3 * _RNG.standard_normal((N, N))


def _f(B, xp=np):
    """``F(t, Y) = W1 Y - Y W2 + cos(t) B``: no structure that makes an augmented basis
    rank deficient (with ``B - Y`` the block ``F V½`` would contain ``B V0``, already in
    ``U½``, and the extra QR columns would be arbitrary)."""
    w1, w2 = xp.asarray(W1), xp.asarray(W2)

    def f(t, Y):
        return w1 @ Y - Y @ w2 + float(np.cos(t)) * B

    return f


def _solve(method, **kw):
    B, Y0 = _setup()
    return lc.solve(lc.MatrixODE(_f(B)), Y0, (0.0, 1.0), 1.0 / STEPS, method=method, **kw)


@pytest.mark.parametrize(
    ("method", "kw", "qr_shapes", "svd_shapes", "points"),
    [
        (
            "midpoint-bug",
            {"substep": "euler"},
            {(M, 2 * R): 1, (N, 2 * R): 1, (M, 4 * R): 1, (N, 4 * R): 1},
            {(4 * R, 4 * R): 1},
            2,
        ),
        (
            "parallel-bug-2",
            {"substep": "euler"},
            {(M, 2 * R): 1, (N, 2 * R): 1, (M, 4 * R): 1, (N, 4 * R): 1},
            {(4 * R, 4 * R): 1},
            2,
        ),
        (
            "rk-bug",
            {"tableau": "heun"},
            {(M, 2 * R): 1, (N, 2 * R): 1, (M, 3 * R): 1, (N, 3 * R): 1},
            {(2 * R, 2 * R): 1, (3 * R, 3 * R): 1},
            2,
        ),
        (
            "rk-bug",
            {"tableau": "ssprk3"},
            {(M, 2 * R): 1, (N, 2 * R): 1, (M, 3 * R): 1, (N, 3 * R): 1, (M, 4 * R): 1, (N, 4 * R): 1},
            {(2 * R, 2 * R): 1, (3 * R, 3 * R): 1, (4 * R, 4 * R): 1},
            3,
        ),
        (
            "rk-bug",
            {"tableau": "rk4"},
            {
                (M, 2 * R): 1,
                (N, 2 * R): 1,
                (M, 3 * R): 1,
                (N, 3 * R): 1,
                (M, 4 * R): 1,
                (N, 4 * R): 1,
                (M, 5 * R): 1,
                (N, 5 * R): 1,
            },
            {(2 * R, 2 * R): 1, (3 * R, 3 * R): 1, (4 * R, 4 * R): 1, (5 * R, 5 * R): 1},
            4,
        ),
        (
            "projected-rk",
            {"tableau": "heun"},
            {(M, 2 * R): 1, (N, 2 * R): 1, (M, 4 * R): 1, (N, 4 * R): 1},
            {(2 * R, 2 * R): 1, (4 * R, 4 * R): 1},
            2,
        ),
        (
            "projected-rk",
            {"tableau": "rk4"},
            {(M, 2 * R): 1, (N, 2 * R): 1, (M, 3 * R): 2, (N, 3 * R): 2, (M, 8 * R): 1, (N, 8 * R): 1},
            {(2 * R, 2 * R): 1, (3 * R, 3 * R): 2, (8 * R, 8 * R): 1},
            4,
        ),
    ],
)
def test_counts_per_step_equal_the_documented_costs(method, kw, qr_shapes, svd_shapes, points):
    """The QR/SVD shapes and F points per step are those of the README table and
    docs/methods.md.  Guards against an uncounted decomposition (a QR or SVD outside the
    step kit) and against a stage evaluated twice."""
    st = _solve(method, **kw).stats
    assert st["steps"] == STEPS
    assert st["qr_shapes"] == {k: v * STEPS for k, v in qr_shapes.items()}
    assert st["svd_shapes"] == {k: v * STEPS for k, v in svd_shapes.items()}
    assert st["rhs_evals"] == STEPS * points


def test_midpoint_bug_with_rk4_substeps_counts_the_substep_stages():
    """RK4 half step: K and L share F(t0, Y0) (1 + 3 + 3 points), the S-step shares it too
    (+3), then the midpoint point: 11 per step."""
    assert _solve("midpoint-bug").stats["rhs_evals"] == 11 * STEPS


CASES = [
    ("midpoint-bug", {}),
    ("parallel-bug-2", {}),
    ("rk-bug", {"tableau": "ssprk3"}),
    ("rk-bug", {"tableau": "rk4", "rtol": 1e-6}),
    ("projected-rk", {"tableau": "heun"}),
    ("midpoint-bug", {"tol": 1e-8, "max_rank": 6}),
]


@pytest.mark.parametrize(("method", "kw"), CASES)
def test_backends_and_stacks_agree_with_numpy(xp, method, kw):
    """A stack of two problems on every backend: each member equals the unbatched NumPy
    solve of that member to ``1e3 eps`` relative (the same operations in another library;
    a shared rank for rank-adaptive options, so rtol is only checked for the rank), and the
    arrays come back in the input's library.  Guards against a product or concat written
    for NumPy only (array_api_strict rejects them) and against mixing members."""
    B, Y0 = _setup(batch=(2,))
    Yx = lc.LowRank(*(xp.asarray(f) for f in (Y0.U, Y0.S, Y0.V)))
    sol = lc.solve(lc.MatrixODE(_f(xp.asarray(B), xp)), Yx, (0.0, 0.5), 0.25, method=method, **kw)
    assert type(sol.Y.U) is type(Yx.U)
    got = dense(sol.Y)
    for i in range(2):
        Yi = lc.LowRank(Y0.U[i], Y0.S[i], Y0.V[i])
        ref = lc.solve(lc.MatrixODE(_f(B[i])), Yi, (0.0, 0.5), 0.25, method=method, **kw)
        if sol.Y.rank == ref.Y.rank:
            np.testing.assert_allclose(got[i], dense(ref.Y), atol=1e3 * np.finfo(float).eps * np.abs(got[i]).max())
    np.testing.assert_array_equal(to_numpy(Y0.U), to_numpy(Yx.U))  # the caller's arrays are untouched


def test_rank_adaptive_options():
    """rk-bug, midpoint-bug and parallel-bug-2 read tol/max_rank like ra-bug: the full-rank
    target ``cos(t) B`` makes a tight tolerance raise the rank up to ``max_rank``, and a
    loose one (``rtol = 0.9``, most of the norm may go) lowers it to ``min_rank``."""
    for method in ("rk-bug", "midpoint-bug", "parallel-bug-2"):
        assert _solve(method, tol=1e-12, max_rank=5).Y.rank == 5
        assert _solve(method, rtol=0.9).Y.rank == 1


def test_substep_does_not_change_the_runge_kutta_methods():
    """The tableau replaces the substep solver: rk-bug and projected-rk give the same
    result whatever ``substep`` says (it is accepted for a uniform interface)."""
    for method in ("rk-bug", "projected-rk"):
        a = _solve(method, substep="euler").Y
        b = _solve(method, substep="rk4").Y
        np.testing.assert_array_equal(dense(a), dense(b))


def test_tableau_is_chosen_by_name():
    assert lc.RKBUG("heun").order == 2
    assert lc.ProjectedRK("ssprk3").order == 3
    assert _solve("rk-bug", tableau="heun").method.tableau.name == "heun"
    assert repr(lc.RKBUG("ssprk3", rtol=1e-3)).startswith("RKBUG(tableau='ssprk3'")


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        ({"method": "rk-bug", "tableau": "rk5"}, ValueError, r"unknown `tableau` 'rk5'.*\['heun', 'rk4', 'ssprk3'\]"),
        ({"method": "projected-rk", "tableau": 4}, TypeError, r"`tableau` of method 'projected-rk' must be a name"),
        ({"method": "ra-bug", "tableau": "rk4"}, ValueError, r"`tableau` applies to 'rk-bug' and 'projected-rk' only"),
        ({"method": "projected-rk", "tol": 1e-3}, ValueError, r"`tol` was given, but method 'projected-rk' has fixed"),
        ({"method": lc.RKBUG(), "tableau": "heun"}, ValueError, r"`tableau` cannot be combined with an integrator"),
    ],
)
def test_bad_input_is_named(kw, exc, match):
    B, Y0 = _setup()
    with pytest.raises(exc, match=match):
        lc.solve(lc.MatrixODE(_f(B)), Y0, (0.0, 1.0), 0.5, **kw)
