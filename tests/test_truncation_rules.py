"""The two truncation rules: Frobenius tail (``"tail"``) and singular-value threshold
(``"threshold"``), through ``Truncation`` and through ``solve``.

Guards against a threshold rule that reads the tail (or the reverse), a threshold
relative to the norm instead of ``sigma_1``, a relative tolerance taken over the whole
stack instead of per member, and the option being silently dropped on its way from
``solve`` to the integrator.
"""

from __future__ import annotations

import array_api_compat.numpy as xnp
import numpy as np
import pytest

import lowrank_core as lc

from ._helpers import random_orthonormal

SIGMA = np.array([1.0, 0.5, 8e-4, 8e-4, 8e-4, 8e-4])


def test_rules_on_a_spectrum_where_they_differ():
    """sigma = (1, 0.5, 8e-4 x 4), rtol = 1e-3: the threshold 1e-3 sigma_1 keeps the two
    values above it; the tail rule (theta = 1e-3 ||sigma|| = 1.118e-3) may drop one
    8e-4 but not two (tail 1.13e-3), so it keeps five.  Absolute tolerances: the
    threshold keeps sigma_i > tol."""
    assert lc.Truncation(rtol=1e-3, rule="threshold").choose_rank(SIGMA, 2, xnp) == (2, False)
    assert lc.Truncation(rtol=1e-3).choose_rank(SIGMA, 2, xnp) == (5, False)
    assert lc.Truncation(tol=7e-4, rule="threshold").choose_rank(SIGMA, 2, xnp) == (6, False)
    assert lc.Truncation(tol=0.6, rule="threshold").choose_rank(SIGMA, 2, xnp) == (1, False)
    # per member: a member scaled by 1e3 keeps the same rank under a relative threshold
    stack = np.stack([SIGMA * 1e3, SIGMA])
    assert lc.Truncation(rtol=1e-3, rule="threshold").choose_rank(stack, 2, xnp) == (2, False)
    with pytest.raises(ValueError, match="`truncation_rule` must be one of"):
        lc.Truncation(rule="values")


class _Constant:
    def __init__(self, A):
        self.A = A

    def __call__(self, t):
        return self.A


@pytest.mark.parametrize("method", ["ra-bug", "abc-psi", "parallel-bug"])
def test_solve_passes_the_rule_to_every_rank_adaptive_method(method):
    """A constant path with that spectrum (exact increments: the augmented factorization
    of the first step is the path itself) goes to rank 2 in its first step under the
    threshold rule and to 5 under the tail rule, also for a stack whose second member is
    scaled by 1e3.  (The tail rule's tolerance is per step: in the next step it may drop
    one more 8e-4, the threshold rule never does.)"""
    rng = np.random.default_rng(0)
    U, V = random_orthonormal(rng, 20, 6), random_orthonormal(rng, 15, 6)
    A = (U * SIGMA) @ V.T
    stack = np.stack([A, 1e3 * A])
    Y0 = lc.LowRank.from_dense(stack, rank=6)
    for rule, rank in (("threshold", 2), ("tail", 5)):
        sol = lc.solve(
            lc.MatrixPath(_Constant(stack)),
            Y0,
            (0.0, 0.3),
            0.1,
            method=method,
            substep="exact",
            rtol=1e-3,
            truncation_rule=rule,
        )
        assert sol.step_ranks[1] == rank, (rule, sol.step_ranks)
        if rule == "threshold":
            assert sol.step_ranks == [6, 2, 2, 2]
        assert sol.method.truncation.rule == rule
