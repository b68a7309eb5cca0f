"""Exactness on rank-r matrix paths (methods.md §4.1).

Hypotheses: ``A(t) = e^{t W1} A0 e^{-t W2}`` with ``A0`` of rank exactly ``r`` (drawn
spectrum: separated, graded or nearly rank deficient; general factors; batches) and skew
generators of norm at most 1; ``Y0 = A(0)``; ``F = dA/dt`` given by the exact increments
``A(t_{k+1}) - A(t_k)`` (``substep="exact"``).  Then ``V(t_{k+1})^H V(t_k)`` and
``U(t_{k+1})^H U(t_k)`` are invertible (the bases rotate by at most ``h ||W|| <= 0.5``).

Conclusion: ``Y_k = A(t_k)`` for KSL and Strang (Lubich & Oseledets 2014), BC-PSI (equal to
KSL for ``Y``-independent ``F``), abc-PSI (``range Û ⊇ range A1``), BUG (Ceruti & Lubich
2022) and RA-BUG (CKL 2022) -- every method but parallel BUG, which drops the block
``Ũ^H ΔA Ṽ`` and is only first-order accurate (the contrast below).

The property runs on every backend, dtype and batch.  The parallel-BUG contrast uses
``lowrank_core.problems.prescribed_path`` (no batch support; it shows one fixed instance)
and the planted bug runs unbatched on NumPy (it patches the backend-independent substep).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_core as lc
from lowrank_core import problems

from .._helpers import dense, random_skew
from ._problems import configure, spectral_path
from .strategies import LowRankCase, lowrank_cases, scaled, skew_generators

EXACT_METHODS = ["abc-psi", "bc-psi", "bug", "ksl", "ksl-strang", "ra-bug"]


@st.composite
def rank_r_paths(draw):
    case = draw(lowrank_cases(size=(6, 16)))
    W1 = draw(skew_generators(case.m, complex_=case.complex_, norm=(0.05, 1.0)))
    W2 = draw(skew_generators(case.n, complex_=case.complex_, norm=(0.05, 1.0)))
    h = draw(st.sampled_from([0.1, 0.25, 0.5]))
    steps = draw(st.integers(1, 4))
    return case, W1, W2, h, steps


def check_exact(xp, case: LowRankCase, W1, W2, h, steps, method, kit=None):
    """``||Y_k - A(t_k)|| <= c k max(m, n) eps a^k ||A(t_k)||``: every step is backward
    stable (c = 20, as for one step in test_invariants) and its round-off is amplified by
    at most ``a = 1 / sigma_min(V(t_{k+1})^H V(t_k)) <= 1 / cos(h ||W||)`` (methods.md §4.1,
    'caution')."""
    problem, Y0, A = spectral_path(xp, case.dtype, W1, W2, case.factors())
    T = h * steps
    sol = lc.solve(problem, Y0, (0.0, T), h, method=configure(method, kit, substep="exact"))
    angle = h * max(np.linalg.norm(W1, 2), np.linalg.norm(W2, 2))
    amplification = (1.0 / np.cos(angle)) ** steps
    ref = A(T)
    err = np.linalg.norm(dense(sol.Y) - ref, axis=(-2, -1))
    bound = 20 * steps * max(case.m, case.n) * case.eps() * amplification * np.linalg.norm(ref, axis=(-2, -1))
    assert np.all(err <= bound), (err, bound)


@pytest.mark.parametrize("name", EXACT_METHODS)
@scaled(0.5)
@given(example=rank_r_paths())
def test_exact_on_rank_r_paths(xp, name, example):
    case, W1, W2, h, steps = example
    check_exact(xp, case, W1, W2, h, steps, name)


def test_parallel_bug_is_not_exact_but_converges():
    """The contrast: parallel BUG drops ``Ũ^H ΔA Ṽ``, so its error on a rank-r path is far
    above round-off, and it decreases as ``h -> 0`` (methods.md §4.1 measured 4.1e-2, 1.3e-3,
    1.2e-5 for h = 0.5, 0.1, 0.01)."""
    path = problems.prescribed_path(N=40, r=4, exact_rank=4, w_norm=1.0)
    errs = [
        path.error(lc.solve(path.problem, path.Y0, path.t_span, h, method="parallel-bug", substep="exact").Y, 1.0)
        for h in [0.5, 0.1, 0.02]
    ]
    assert errs[-1] > 1e3 * 40 * np.finfo(float).eps
    assert errs[0] > errs[1] > errs[2], errs


class UnsignedSKit(lc.integrators.StepKit):
    """The planted bug: the S-substep ignores its ``sign``."""

    def s_step(self, t0, t1, S0, U, V, *, sign=1.0, first=None):
        return super().s_step(t0, t1, S0, U, V, sign=1.0, first=first)


@pytest.mark.parametrize("name", ["ksl", "ksl-strang"])
def test_exactness_catches_a_wrong_sign_in_the_backward_s_step(np_xp, name):
    """Planted bug: the S-substep ignores its sign, so the backward (``-U^H F V``) step of
    projector splitting runs forward.  The method stays first order in the K- and L-steps
    but is no longer exact."""
    case = LowRankCase(m=12, n=10, r=3, dtype="float64", batch=(), sigma=np.array([1.0, 0.5, 0.2]), seed=1)
    rng = np.random.default_rng(2)
    W1, W2 = random_skew(rng, 12, 0.5), random_skew(rng, 10, 0.5)
    check_exact(np_xp, case, W1, W2, 0.25, 2, name)
    with pytest.raises(AssertionError):
        check_exact(np_xp, case, W1, W2, 0.25, 2, name, kit=UnsignedSKit)
