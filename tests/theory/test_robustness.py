"""Robust first-order error bound at fixed rank, uniformly as sigma_r -> 0 (methods.md §4.2).

Hypotheses (Kieri, Lubich & Walach 2016; Ceruti & Lubich 2022): the Ceruti-Lubich type path
``A(t) = e^{t W1} e^t A0 e^{-t W2}`` with a *full-rank graded* spectrum ``sigma_j = q^{-j}``
(``q`` in ``[1.5, 10]``, so ``sigma_r`` reaches ``1e-10`` while ``h >= 0.02``), skew
generators of norm up to 5, exact increments (F is bounded and Lipschitz, its normal
component has size ``O(eps_r)``), ``Y0`` the best rank-``r`` approximation of ``A(0)``
(``delta = eps_r``).

Conclusion: ``||Y_n - A(t_n)|| <= C (h + eps_r)`` with ``C`` independent of the singular
values, where ``eps_r`` is the relative best-approximation error.  With exact increments
the step is exact when ``eps_r = 0`` (§4.1), so the ``h`` term carries the factor ``eps_r``
too, and the bound reads ``err <= C_EPS eps_r (1 + h L)`` uniformly in ``sigma_r``, with
``L = ||W1|| + ||W2|| + 1`` the Lipschitz constant of ``F = W1 A - A W2 + A``.  The
constants of the proofs (a Gronwall factor ``e^{L T}``) are pessimistic; methods.md §4.2
measured ``err / eps_r`` = 1.1-1.5 for these methods, and ``C_EPS = 2`` is used.
Applies to KSL, Strang, BC-PSI, abc-PSI, BUG and RA-BUG at fixed rank.  Parallel BUG
converges, but only as ``h -> 0`` (a contrast below); explicit Euler on the factor ODEs
(``lowrank_core.bench.naive_factor_euler``, the ``S^{-1}`` of the gauge) must violate the bound once
``sigma_r < h / 10``.

Dtypes: float64 and complex128 only; the property is about ``sigma_r`` down to ``1e-10``,
below float32 resolution, where the round-off term would swamp ``eps_r``.

Batches: a drawn example stacks independent paths (own bases and own graded spectrum per
batch member, shared generators); the rank is fixed, so the members do not interact, and
``eps_r``, the bound and the error are computed per member.  The naive contrast and the
planted bug are unbatched and NumPy-only: ``naive_factor_euler`` is a NumPy, unbatched
reference integrator, and the planted bug patches the backend-independent step kit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_core as lc
from lowrank_core import problems
from lowrank_core.bench import naive_factor_euler

from .._helpers import dense, random_skew, rel_err
from ._problems import configure, full_rank_path
from .strategies import BATCHES, scaled, skew_generators, spectra, step_sizes

ROBUST_METHODS = ["abc-psi", "bc-psi", "bug", "ksl", "ksl-strang", "ra-bug"]
C_EPS = 2.0


@st.composite
def graded_paths(draw, dtypes=("float64", "complex128"), batches=BATCHES):
    """``(m, n, dtype, sigma (*batch, min(m, n)), r, W1, W2, h, seed)``: one graded spectrum per member."""
    m, n = draw(st.integers(14, 24)), draw(st.integers(14, 24))
    dtype = draw(st.sampled_from(dtypes))
    cplx = dtype.startswith("complex")
    batch = draw(st.sampled_from(batches))
    members = [draw(spectra(min(m, n), kinds=("graded",))) for _ in range(int(np.prod(batch, dtype=int)))]
    sigma = np.stack(members).reshape(*batch, min(m, n))
    r = draw(st.integers(2, 11))
    W1 = draw(skew_generators(m, complex_=cplx, norm=(0.5, 5.0)))
    W2 = draw(skew_generators(n, complex_=cplx, norm=(0.5, 5.0)))
    h = draw(step_sizes(0.02, 0.1))
    seed = draw(st.integers(0, 2**16))
    return m, n, dtype, sigma, r, W1, W2, h, seed


def build(xp, example):
    """``(problem, Y0, A, eps_r, sigma_r)`` of a drawn path; ``Y0`` is the truncated SVD of ``A(0)``;
    ``eps_r`` and the relative ``sigma_r`` have the batch shape (one value per member)."""
    m, n, dtype, sigma, r, W1, W2, h, seed = example
    problem, A = full_rank_path(xp, dtype, sigma, m, n, W1, W2, seed)
    Y0 = lc.LowRank.from_dense(xp.asarray(A(0.0), dtype=getattr(xp, dtype)), rank=r)
    eps_r = np.sqrt(np.sum(sigma[..., r:] ** 2, axis=-1) / np.sum(sigma**2, axis=-1))
    return problem, Y0, A, eps_r, sigma[..., r - 1] / sigma[..., 0]


def robust_bound(example, eps_r):
    """``C_EPS eps_r (1 + h L) + 100 (T / h) eps``: the robust bound plus round-off of ``T / h``
    backward-stable steps, per batch member (``eps_r`` of the batch shape)."""
    W1, W2, h = example[5], example[6], example[7]
    L = np.linalg.norm(W1, 2) + np.linalg.norm(W2, 2) + 1.0
    return C_EPS * eps_r * (1 + h * L) + 100 * np.finfo(float).eps / h


def check_robust_bound(xp, example, method, kit=None):
    problem, Y0, A, eps_r, _ = build(xp, example)
    sol = lc.solve(problem, Y0, (0.0, 1.0), example[7], method=configure(method, kit, substep="exact"))
    ref = A(1.0)
    err = np.linalg.norm(dense(sol.Y) - ref, axis=(-2, -1)) / np.linalg.norm(ref, axis=(-2, -1))
    assert np.all(err <= robust_bound(example, eps_r)), (err, eps_r)


@pytest.mark.parametrize("name", ROBUST_METHODS)
@scaled(0.2)
@given(example=graded_paths())
def test_error_is_bounded_uniformly_in_sigma_r(xp, name, example):
    check_robust_bound(xp, example, name)


@scaled(1 / 3)
@given(example=graded_paths(dtypes=("float64",), batches=((),)))
def test_naive_factor_integrator_violates_the_bound(np_xp, example):
    """The contrast: once ``sigma_r < h / 10`` the ``S^{-1}`` of the factor ODEs makes
    explicit Euler blow up or miss the bound by far."""
    problem, Y0, A, eps_r, sigma_r = build(np_xp, example)
    h = example[7]
    if sigma_r >= h / 10:
        return  # sigma_r is not small against h: the naive integrator may still be accurate
    Y = naive_factor_euler(problem.dA, Y0.U, Y0.S, Y0.V, (0.0, 1.0), h)
    assert not np.all(np.isfinite(Y)) or rel_err(Y, A(1.0)) > robust_bound(example, eps_r)


def test_parallel_bug_converges_robustly_as_h_decreases():
    """Parallel BUG truncated to rank r: markedly worse than the best approximation at large h
    (it drops a block of size O(h)), but the error falls towards eps_r as h -> 0 although
    sigma_r << h (methods.md §4.2: 7.2e-2 -> 4.2e-4)."""
    path = problems.prescribed_path(N=60, r=16, w_norm=5.0)
    errs = [
        path.error(lc.solve(path.problem, path.Y0, path.t_span, h, method="parallel-bug", substep="exact").Y, 1.0)
        for h in [0.1, 0.025, 0.00625]
    ]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < errs[0] / 10
    assert errs[0] > 10 * C_EPS * path.best_error(1.0, 16)


def shifted_cholesky_qr(X, xp, counters=None):
    """One pass of shifted Cholesky QR (NumPy): ``R^H R = X^H X + s I``, ``Q = X R^{-1}``.

    The shift ``s = 11 (m k + k (k + 1)) eps ||X||_2^2`` avoids the breakdown of plain
    Cholesky QR; the algorithm is only accurate with two more re-orthonormalising passes
    (shifted CholeskyQR3, Fukaya et al. 2020), which this planted bug omits.
    """
    m, k = X.shape[-2:]
    G = np.swapaxes(X, -1, -2).conj() @ X
    shift = 11 * (m * k + k * (k + 1)) * np.finfo(X.dtype).eps * np.linalg.norm(X, 2) ** 2
    L = np.linalg.cholesky(G + shift * np.eye(k))
    Q = np.swapaxes(np.linalg.solve(L, np.swapaxes(X, -1, -2).conj()), -1, -2).conj()
    return Q, np.swapaxes(L, -1, -2).conj()


class CholeskyQRKit(lc.integrators.StepKit):
    """The planted bug: every QR of a step by one pass of shifted Cholesky QR."""

    def qr(self, X):
        return shifted_cholesky_qr(X, self.xp, self.counters)


@pytest.mark.parametrize("name", ["abc-psi", "bug", "ksl", "ra-bug"])
def test_robust_bound_catches_a_missing_reorthonormalisation_pass(np_xp, name):
    """Planted bug: the kit's thin QR replaced by a single pass of shifted Cholesky QR, a
    common 'faster QR' that loses orthogonality like ``cond(X)^2 eps``.  It is harmless
    while ``sigma_r`` is moderate and breaks the bound as ``sigma_r -> 0`` (here
    ``sigma_j = 10^-j``, ``r = 10``), which is what the uniform bound is about."""
    rng = np.random.default_rng(5)
    sigma = 10.0 ** -np.arange(20, dtype=float)
    example = (20, 20, "float64", sigma, 10, random_skew(rng, 20, 1.0), random_skew(rng, 20, 1.0), 0.05, 3)
    check_robust_bound(np_xp, example, name)
    with pytest.raises(AssertionError):
        check_robust_bound(np_xp, example, name, kit=CholeskyQRKit)
