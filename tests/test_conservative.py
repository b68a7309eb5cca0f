"""The conservative truncation (``lc.Conservation``, ``solve(..., conserve=...)``).

Guards against kept columns missing from the augmented bases or dropped by the
truncation (the linear invariants then drift at the truncation level), against the
option being accepted silently by methods that ignore it, and against unclear errors.

Tolerances: with the option, each step changes a linear invariant ``a^H Y b`` only by
round-off in the projections and decompositions, a few ulps of ``||Y||``; over tens of
steps 1e-12 relative leaves a wide margin.  Without it the truncation error of every
step enters the invariant, so the drift is far above round-off (measured below).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import lowrank_core as lc
from lowrank_core import problems as P

M, N = 30, 20


def _mass_conserving_problem(seed=0):
    """``F(Y) = A Y + Y B^T`` with ``1^T A = 0`` and ``B^T [1, w] = 0``: the mass
    ``1^T Y 1`` and the moment ``1^T Y w`` are invariants, and the solution leaves any
    low rank (so every step truncates)."""
    rng = np.random.default_rng(seed)
    w = np.linspace(-1.0, 1.0, N)
    A = rng.standard_normal((M, M))
    Pm = np.eye(M) - np.ones((M, M)) / M
    A = Pm @ A  # 1^T A = 0
    C = np.column_stack([np.ones(N), w])
    Qn = np.eye(N) - C @ np.linalg.pinv(C)
    B = Qn @ rng.standard_normal((N, N))  # B^T ... : columns orthogonal to [1, w] -> C^T B = 0
    Y0 = lc.LowRank.from_dense(rng.standard_normal((M, 6)) @ rng.standard_normal((6, N)) + 1.0, rank=6)
    keep = lc.Conservation(left=np.ones(M), right=C)
    return lc.LinearMatrixODE(A, B), Y0, keep, w


def _invariants(Y, w):
    D = Y.to_dense()
    return np.array([D.sum(), D.sum(axis=0) @ w])


@pytest.mark.parametrize("method", ["ra-bug", "abc-psi"])
@pytest.mark.parametrize("adaptive", [False, True])
def test_linear_invariants_conserved_only_with_the_option(method, adaptive):
    """With ``conserve`` the invariants ``1^T Y 1`` and ``1^T Y w`` stay at their initial
    values to 1e-12 relative, at fixed and adaptive rank, for both supported methods;
    without it they drift (measured 1e-3 to 1e-2 relative) because each truncation
    changes them.  Guards against the kept columns missing from the augmented bases or
    from the kept part of the truncation."""
    problem, Y0, keep, w = _mass_conserving_problem()
    kwargs = {"tol": 1e-2} if adaptive else {}
    q0 = _invariants(Y0, w)
    scale = np.abs(Y0.to_dense()).sum()
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.05, method=method, conserve=keep, **kwargs)
    for Y in sol.Ys:
        assert np.max(np.abs(_invariants(Y, w) - q0)) <= 1e-12 * scale
        assert Y.rank >= keep.n_kept
    plain = lc.solve(problem, Y0, (0.0, 1.0), 0.05, method=method, **kwargs)
    assert np.max(np.abs(_invariants(plain.Y, w) - q0)) > 1e-6 * scale


def test_fixed_rank_is_kept_and_adaptive_rank_counts_the_kept_columns():
    """At fixed rank the output rank is the input rank; with a tolerance the rank is the
    kept columns plus what the remainder needs, capped by ``max_rank`` (counted in
    ``max_rank_hits``)."""
    problem, Y0, keep, _ = _mass_conserving_problem()
    fixed = lc.solve(problem, Y0, (0.0, 0.2), 0.05, method="ra-bug", conserve=keep)
    assert set(fixed.step_ranks) == {6}
    capped = lc.solve(problem, Y0, (0.0, 0.2), 0.05, method="ra-bug", conserve=keep, tol=1e-12, max_rank=8)
    assert max(capped.step_ranks[1:]) == 8
    assert capped.stats["max_rank_hits"] >= 1


def test_landau_mass_drifts_without_the_option():
    """Landau damping (16 x 16, rank 4, RA-BUG, t <= 3): the discrete mass drifts at the
    truncation level without ``conserve`` (measured 1.3e-9 relative, the neglected
    singular values of each step entering the mass) and stays to 1e-12 with it
    (measured 3e-15).  The contrast shows the option matters."""
    p = P.landau_damping(nx=16, nv=16, r=4, t_end=3.0)
    runs = {
        c: lc.solve(p.problem, p.Y0, p.t_span, p.suggested_dt, method="ra-bug", conserve=c)
        for c in (None, p.conservation)
    }
    m0 = p.mass(p.Y0)
    drift = {c: max(abs(p.mass(Y) - m0) for Y in sol.Ys) / m0 for c, sol in runs.items()}
    assert drift[p.conservation] <= 1e-12
    assert drift[None] > 1e-10, drift


def test_pickling_and_repr():
    """``Conservation`` and an integrator configured with it pickle, and the copy takes the
    same steps."""
    problem, Y0, keep, _ = _mass_conserving_problem()
    method = lc.RABUG(conserve=keep)
    copy = pickle.loads(pickle.dumps(method))
    assert "conserve=Conservation(left=<30 x 1>, right=<20 x 2>)" in repr(copy)
    a = lc.solve(problem, Y0, (0.0, 0.1), 0.05, method=method)
    b = lc.solve(problem, Y0, (0.0, 0.1), 0.05, method=copy)
    np.testing.assert_array_equal(a.Y.to_dense(), b.Y.to_dense())
    assert pickle.loads(pickle.dumps(keep)).n_kept == 3


def test_callers_arrays_are_not_modified():
    left = np.ones(M)
    right = np.stack([np.ones(N), np.arange(N, dtype=float)], axis=1)
    before = (left.copy(), right.copy())
    problem, Y0, _, _ = _mass_conserving_problem()
    lc.solve(problem, Y0, (0.0, 0.1), 0.05, method="abc-psi", conserve=lc.Conservation(left, right))
    np.testing.assert_array_equal(left, before[0])
    np.testing.assert_array_equal(right, before[1])


@pytest.mark.parametrize("method", ["ksl", "ksl-strang", "bc-psi", "bug", "parallel-bug"])
def test_unsupported_methods_refuse(method):
    problem, Y0, keep, _ = _mass_conserving_problem()
    with pytest.raises(ValueError, match="`conserve` is supported by the methods 'ra-bug' and 'abc-psi' only"):
        lc.solve(problem, Y0, (0.0, 0.1), 0.05, method=method, conserve=keep)


def test_bad_configuration():
    problem, Y0, keep, _ = _mass_conserving_problem()
    solve = lambda **kw: lc.solve(problem, Y0, (0.0, 0.1), 0.05, **kw)  # noqa: E731
    with pytest.raises(TypeError, match="`conserve` must be a lowrank_core.Conservation"):
        solve(method="ra-bug", conserve=np.ones(M))
    with pytest.raises(ValueError, match="cannot be combined with an integrator instance"):
        solve(method=lc.RABUG(), conserve=keep)
    with pytest.raises(ValueError, match="`max_rank` = 2 is smaller than the 3 columns"):
        solve(method="ra-bug", conserve=keep, tol=1e-3, max_rank=2)
    Y2 = lc.LowRank.from_dense(Y0.to_dense(), rank=2)
    with pytest.raises(ValueError, match="`Y0` has rank 2, smaller than the 3 columns"):
        lc.solve(problem, Y2, (0.0, 0.1), 0.05, method="ra-bug", conserve=keep)
    # with a tolerance a low starting rank is fine: the rank grows to hold the kept part
    assert lc.solve(problem, Y2, (0.0, 0.1), 0.05, method="ra-bug", conserve=keep, tol=1e-3).Y.rank >= 3
    with pytest.raises(ValueError, match="`conserve.left` has 7 rows but the state has 30"):
        solve(method="ra-bug", conserve=lc.Conservation(left=np.ones(7)))
    with pytest.raises(TypeError, match="`conserve.right` is complex but the state is real"):
        solve(method="ra-bug", conserve=lc.Conservation(right=np.ones(N, dtype=complex)))
    with pytest.raises(TypeError, match="`conserve.left`, `Y0` must come from one array library"):
        solve(method="ra-bug", conserve=lc.Conservation(left=torch.ones(M, dtype=torch.float64)))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({}, ValueError, "needs `left` or `right`"),
        ({"left": [1.0, 1.0]}, TypeError, "`left` must be an array"),
        ({"right": np.ones(4, dtype=np.int64)}, TypeError, "`right` must be a floating"),
        ({"left": np.ones((2, 2, 2))}, ValueError, r"`left` must have shape \(k,\) or \(k, c\)"),
        ({"right": np.ones((3, 4))}, ValueError, "`right` has 4 columns but only 3 rows"),
        ({"right": np.stack([np.ones(5), 2 * np.ones(5)], axis=1)}, ValueError, "linearly dependent"),
        ({"left": np.zeros(5)}, ValueError, "linearly dependent"),
        ({"left": np.array([1.0, np.nan])}, ValueError, "NaN or Inf"),
        ({"left": np.ones(3), "right": torch.ones(3, dtype=torch.float64)}, TypeError, "one array library"),
    ],
)
def test_conservation_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        lc.Conservation(**kwargs)
