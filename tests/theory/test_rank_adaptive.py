"""Rank-adaptive methods: every truncation within theta, error ``c1 h + c2 theta / h`` (methods.md §4.3).

Hypotheses: a path ``A(t) = e^{t W1} e^t A0 e^{-t W2}`` with full-rank graded spectrum
``sigma_j = q^{-j}`` (``q`` drawn in ``[2, 4]``), exact increments (no substep error, and
the local error of RA-BUG and abc-PSI vanishes for ``Y``-independent ``F`` up to the
truncation, §4.1), ``Y0`` the truncated SVD of ``A(0)`` at the smallest rank whose tail is
below ``theta_min / 100`` (so ``delta`` is negligible), ``max_rank = N``.

Conclusions (CKL 2022, CKL 2024, paper 1):

* per step, the discarded tail ``||Y1 - Y_half||_F`` is at most ``theta`` and the rank is
  the smallest with that property (the rule ``T_theta`` of §1);
* at fixed ``h`` the error is ``n`` truncations of size ``<= theta`` -- it grows linearly
  in ``theta / h``: for the geometric spectrum each doubling of ``theta`` drops ranks in
  steps of ``q``, so a slope fitted over ``theta`` in ``[1, 32] theta_min`` is 1 up to
  ``log(q) / log(32) <= 0.4``.  Parallel BUG has the same bound, but its ``c1 h`` term
  (the dropped block) dominates at any ``h`` we can afford, so it is not included here;
* with ``theta = c h^2`` the ``theta / h`` term is ``O(h)`` and first order is recovered
  for all three methods (slope ``>= 0.9`` over ``h = 0.1, 0.05, 0.025``).

Dtypes: float64 only; the tolerances ``theta >= 1e-6`` are within a decade of float32
round-off of a step (``20 N eps ~ 4e-5``), so the ``theta``-dependence could not be resolved.

Batches: an example stacks independent paths (own bases per member, shared generators).  A
batch shares one rank, the largest any member asks for, so per member the discarded tail is
still ``<= theta`` (checked per member) and minimality holds for the member that set the
rank (checked as "some member"); the members share the spectrum ``q^{-j}``, so the extra
rank a member receives does not change its ``theta``-dependence, and the slopes and errors
are checked per member.  The scale-invariance property stacks two states on every backend.
The ``theta``-floor contrast uses ``lowrank_core.problems.prescribed_path``, which has no
batch support, and the planted bug runs unbatched on NumPy (it patches the
backend-independent rank rule).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import lowrank_core as lc
from lowrank_core import problems

from .._helpers import dense, loglog_slope, random_skew
from ._problems import configure, full_rank_path, record_truncations
from .strategies import scaled, skew_generators

N, T, THETA_MIN = 30, 0.5, 1e-6
#: batched example added to the properties that ci draws only once (the minimal, unbatched one)
BATCHED = (2.5, random_skew(np.random.default_rng(4), N, 0.5), random_skew(np.random.default_rng(5), N, 0.5), 0,
           (2,))


@st.composite
def graded_full_rank(draw):
    q = draw(st.floats(2.0, 4.0))
    W1 = draw(skew_generators(N, norm=(0.2, 1.0)))
    W2 = draw(skew_generators(N, norm=(0.2, 1.0)))
    return q, W1, W2, draw(st.integers(0, 2**16)), draw(st.sampled_from(((), (2,), (1, 2))))


def build(xp, example):
    q, W1, W2, seed, batch = example
    sigma = np.broadcast_to(q ** -np.arange(N, dtype=float), (*batch, N))
    problem, A = full_rank_path(xp, "float64", sigma, N, N, W1, W2, seed)
    tails = np.sqrt(np.cumsum(sigma[..., ::-1] ** 2, axis=-1))[..., ::-1].reshape(-1, N)[0]  # ||sigma[k:]||
    r0 = int(np.argmax(tails <= THETA_MIN / 100))
    return problem, lc.LowRank.from_dense(xp.asarray(A(0.0), dtype=xp.float64), rank=r0), A


def check_truncations(records, theta):
    """Tail ``<= theta`` (to round-off of the SVD, ``100 eps ||s||``) and minimal rank, over
    at least one recorded truncation (an empty record would pass vacuously)."""
    assert records, "no truncation was recorded"
    for s, r1 in records:
        tail = np.sqrt(np.sum(s[..., r1:] ** 2, axis=-1))
        slack = 100 * np.finfo(float).eps * np.linalg.norm(s, axis=-1)
        assert np.all(tail <= theta + slack), (tail, theta)
        if r1 > 1:
            assert np.any(np.sqrt(np.sum(s[..., r1 - 1:] ** 2, axis=-1)) > theta - slack), "rank not minimal"


def member_errors(Y, ref):
    """Relative Frobenius error of each batch member."""
    return np.linalg.norm(dense(Y) - ref, axis=(-2, -1)) / np.linalg.norm(ref, axis=(-2, -1))


def member_slopes(xs, errs):
    """Log-log slope of each member; ``errs`` is a list over ``xs`` of batch-shaped errors."""
    e = np.stack(errs, axis=-1)
    return np.reshape([loglog_slope(xs, row) for row in e.reshape(-1, len(xs))], e.shape[:-1])


def theta_slope(xp, example, method, kit=None):
    problem, Y0, A = build(xp, example)
    thetas = THETA_MIN * 2.0 ** np.arange(6)
    errs = []
    for theta in thetas:
        method_, records = record_truncations(configure(method, kit, substep="exact", tol=theta, max_rank=N))
        sol = lc.solve(problem, Y0, (0.0, T), 0.05, method=method_)
        check_truncations(records, theta)
        errs.append(member_errors(sol.Y, A(T)))
    return member_slopes(thetas, errs), errs


def check_linear_in_theta(xp, example, method, kit=None):
    slopes, errs = theta_slope(xp, example, method, kit)
    assert np.all(np.abs(slopes - 1.0) < 0.4), (slopes, errs)


@pytest.mark.parametrize("name", ["abc-psi", "ra-bug"])
@scaled(0.07, minimum=1)
@given(example=graded_full_rank())
@example(example=BATCHED)
def test_error_grows_linearly_with_theta(xp, name, example):
    check_linear_in_theta(xp, example, name)


@pytest.mark.parametrize("name", ["abc-psi", "parallel-bug", "ra-bug"])
@scaled(0.07, minimum=1)
@given(example=graded_full_rank())
@example(example=BATCHED)
def test_theta_proportional_to_h_squared_recovers_first_order(xp, name, example):
    problem, Y0, A = build(xp, example)
    hs = [0.1, 0.05, 0.025]
    errs = []
    for h in hs:
        method, records = record_truncations(configure(name, substep="exact", tol=0.1 * h**2, max_rank=N))
        sol = lc.solve(problem, Y0, (0.0, T), h, method=method)
        check_truncations(records, 0.1 * h**2)
        errs.append(member_errors(sol.Y, A(T)))
    assert np.all(member_slopes(hs, errs) > 0.9), errs


def test_fixed_theta_leaves_an_error_floor():
    """The contrast: with theta fixed, refining h does not reduce the error below the
    theta/h-driven floor (the error even grows as more truncations are made)."""
    path = problems.prescribed_path(N=60, r=24, w_norm=1.0)
    errs = [
        path.error(lc.solve(path.problem, path.Y0, path.t_span, h, method="ra-bug", substep="exact", tol=1e-5).Y, 1.0)
        for h in [0.05, 0.025, 0.0125]
    ]
    assert errs[-1] >= 0.5 * errs[0]


@given(scale=st.integers(-20, 20).map(lambda k: 2.0**k), seed=st.integers(0, 2**16),
       batch=st.sampled_from(((), (2,))))
def test_relative_tolerance_is_scale_invariant(xp, scale, seed, batch):
    """``theta = rtol ||Y||``: ``F`` linear, so scaling ``Y0`` and the source by ``c`` scales
    the exact flow by ``c``, and with a relative tolerance the ranks are the same.  ``c`` is a
    power of two, so the scaling is exact in floating point and no rank decision at the
    threshold can flip by round-off (per member, hence for the shared rank of a batch)."""
    rng = np.random.default_rng(seed)
    B = lc.LowRank.from_dense(rng.standard_normal((*batch, 30, 20)), rank=10).to_dense() * 2.0 ** -np.arange(20)
    B = xp.asarray(B, dtype=xp.float64)
    Y0 = lc.LowRank.from_dense(xp.asarray(rng.standard_normal((*batch, 30, 20)), dtype=xp.float64), rank=3)
    ranks = []
    for c in (1.0, scale):
        sol = lc.solve(lc.MatrixODE(lambda t, Y, c=c: c * B - Y), lc.LowRank(Y0.U, c * Y0.S, Y0.V),
                       (0.0, 5.0), 1.0, method="ra-bug", substep="euler", rtol=1e-3)
        ranks.append(sol.ranks)
    assert ranks[0] == ranks[1]


class UnsquaredTruncation(lc.Truncation):
    """The planted bug: the squared tail compared with ``theta`` instead of ``theta^2``."""

    def choose_rank(self, s, rank_in, xp):
        tails = np.cumsum((np.asarray(s) ** 2)[..., ::-1], axis=-1)[..., ::-1]
        wanted = int(np.max(np.sum(tails > self.theta(s, xp)[..., None], axis=-1)))  # bug: theta, not theta**2
        return max(wanted, self.min_rank), False


class UnsquaredKit(lc.integrators.StepKit):
    """Truncates with :class:`UnsquaredTruncation` (same settings)."""

    def truncate(self, truncation, left, u, s, v, right, rank_in):
        planted = UnsquaredTruncation(**dataclasses.asdict(truncation))
        return super().truncate(planted, left, u, s, v, right, rank_in)


def test_theta_property_catches_an_unsquared_tolerance(np_xp):
    """Planted bug: the rank rule compares the *squared* tail with ``theta`` instead of
    ``theta^2``, so the effective tolerance is ``sqrt(theta)``: the error grows like
    ``theta^{1/2}`` and every truncation overshoots ``theta``."""
    rng = np.random.default_rng(0)
    example = (2.5, random_skew(rng, N, 0.5), random_skew(rng, N, 0.5), 1, ())
    check_linear_in_theta(np_xp, example, "ra-bug")
    with pytest.raises(AssertionError):
        check_linear_in_theta(np_xp, example, "ra-bug", kit=UnsquaredKit)
