"""The QR-savings benchmark compares the methods at equal rank and at equal accuracy,
and its tolerance per unit time makes every method's error fall as the step shrinks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lowrank_core as lc
from lowrank_core.bench._qr_savings import (
    QR_SAVINGS_CASES,
    equal_accuracy_table,
    equal_rank_table,
    prepare_cases,
    resolve_backend,
    run_qr_savings,
)
from lowrank_core.integrators import METHODS
from lowrank_core.problems import PROBLEMS

#: Factor over the best rank-r error that counts as "on the truncation plateau".  At rank
#: r no method can beat the best rank-r approximation, and the robust error bounds of
#: every method here are (best rank-r error) * (1 + O(h)) + O(h^p) once the stepping
#: error is below the plateau; the measured plateau errors lie within 1.4x of the best
#: approximation (heat, abc-PSI: 3.8e-8 against 2.75e-8), so a factor 2 separates the
#: plateau from a step size whose error still falls.
PLATEAU = 2.0


@pytest.fixture(scope="module")
def quick_run():
    """The quick problem set (two step sizes per problem), every registered method."""
    backend = resolve_backend("numpy")
    prepared = prepare_cases(None, backend, quick=True)
    return prepared, run_qr_savings(prepared, None, backend)


def test_every_method_ends_at_the_same_rank_on_every_problem(quick_run):
    """Every method ends at the case's rank r at every step size, so the errors compare
    methods and not ranks.

    Guards against rank-adaptive methods going up to their 2r default (the old
    benchmark's max_rank = 2r) or dropping below r, which made the plots compare ranks.
    """
    prepared, rows = quick_run
    table = equal_rank_table(rows)
    assert [t["problem"] for t in table] == list(QR_SAVINGS_CASES)
    for p, t in zip(prepared, table, strict=True):
        assert t["methods"] == list(METHODS)
        assert t["rank"] == p.reference.Y0.rank
        assert t["dts"] == t["all_dts"]
    assert all(r["equal_rank"] for r in rows)


def test_every_error_decreases_with_dt_up_to_the_plateau(quick_run):
    """With the tolerance per unit time, each method's error at the final time does not
    grow as dt shrinks: off the truncation plateau it falls; on it (within ``PLATEAU``
    times the best rank-r error) it stays there.

    Guards against an absolute per-step tolerance (``tol_per_unit_time=False`` in the
    benchmark): the truncation error then adds up like ``theta/h`` and the rank falls
    below r (planted: heat, RA-BUG ends at rank 5 and its error grows from 1.53e-6 to
    1.57e-6 as dt halves; parallel BUG's augmented directions shrink with h and fall
    below an absolute tolerance).
    """
    prepared, rows = quick_run
    for p in prepared:
        t1 = p.reference.t_span[1]
        plateau = PLATEAU * p.reference.best_error(t1, p.reference.Y0.rank)
        large, small = sorted(p.dts, reverse=True)[:2]
        for method in METHODS:
            by_dt = {r["dt"]: r for r in rows if r["problem"] == p.case.problem and r["method"] == method}
            e_large, e_small = by_dt[large]["error"], by_dt[small]["error"]
            where = f"{p.case.problem} {method}: {e_large:.3g} at dt={large:.3g}, {e_small:.3g} at dt={small:.3g}"
            assert math.isfinite(e_small), where
            if e_large <= plateau:
                assert e_small <= plateau, where
            else:
                assert e_small < e_large, where


def test_equal_accuracy_takes_the_largest_step_reaching_the_target(quick_run):
    """The equal-accuracy row of a method is its largest dt whose error is <= the target,
    with that solve's counts; methods that never reach it have no dt.

    Guards against taking the smallest step size (the most decompositions) or a step
    size whose error misses the target.
    """
    _, rows = quick_run
    table = equal_accuracy_table(rows)
    assert len(table) == len(QR_SAVINGS_CASES) * len(METHODS)
    for entry in table:
        mine = [r for r in rows if r["problem"] == entry["problem"] and r["method"] == entry["method"]]
        hits = [r for r in mine if r["error"] <= entry["target"] * (1 + 1e-9)]
        if not hits:
            assert entry["dt"] is None
            continue
        best = max(hits, key=lambda r: r["dt"])
        assert entry["dt"] == best["dt"]
        assert entry["decompositions"] == best["qr"] + best["svd"]
        assert entry["flops"] == best["qr_flops"] + best["svd_flops"]
    # the default target is reached by at least half of the methods on every problem
    for problem in QR_SAVINGS_CASES:
        reached = [e for e in table if e["problem"] == problem and e["dt"] is not None]
        assert len(reached) >= len(METHODS) / 2, problem


def test_explicit_targets_replace_the_default():
    """A target no solve reaches gives no step size; a loose one gives the largest.

    Guards against ``targets`` being ignored."""
    rows = [
        {
            "problem": "p",
            "method": "m",
            "dt": dt,
            "status": "ok",
            "error": err,
            "rank": 3,
            "qr": q,
            "svd": 0,
            "decompositions": q,
            "qr_flops": 1.0,
            "svd_flops": 0.0,
            "flops": 1.0,
            "rhs_evals": q,
            "wall_time": 0.1,
        }
        for dt, err, q in ((0.1, 1e-2, 10), (0.05, 1e-3, 20))
    ]
    assert equal_accuracy_table(rows, {"p": 1e-6})[0]["dt"] is None
    assert equal_accuracy_table(rows, {"p": 2e-3})[0]["dt"] == 0.05
    assert equal_accuracy_table(rows, {"p": 1.0})[0]["dt"] == 0.1


@pytest.fixture(scope="module")
def riccati():
    return PROBLEMS["riccati"](m=16, r=4, t_end=0.01)


@pytest.mark.parametrize("method", ["ra-bug", "parallel-bug", "abc-psi"])
def test_tol_per_unit_time_is_tol_times_dt(riccati, method):
    """``tol_per_unit_time=True`` truncates exactly as ``tol * dt`` per step (same
    factors, bit for bit) and keeps more rank than the unscaled ``tol``.

    Guards against scaling by another power of dt or not scaling at all."""
    dt = riccati.suggested_dt
    kw = {"method": method, "max_rank": 8}
    per_time = lc.solve(riccati.problem, riccati.Y0, riccati.t_span, dt, tol=0.1, tol_per_unit_time=True, **kw)
    per_step = lc.solve(riccati.problem, riccati.Y0, riccati.t_span, dt, tol=0.1 * dt, **kw)
    unscaled = lc.solve(riccati.problem, riccati.Y0, riccati.t_span, dt, tol=0.1, **kw)
    assert per_time.step_ranks == per_step.step_ranks
    np.testing.assert_array_equal(per_time.Y.to_dense(), per_step.Y.to_dense())
    # theta = 0.1 per step truncates to rank 1; 0.1 * dt = 4e-5 keeps the initial rank
    assert per_time.Y.rank > unscaled.Y.rank


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tol": 1e-3, "tol_per_unit_time": 1}, TypeError, "`tol_per_unit_time` must be True or False; got 1"),
        ({"tol_per_unit_time": True}, ValueError, "needs a truncation tolerance: pass `tol` or `rtol`"),
        ({"tol": 1e-3, "tol_per_unit_time": True, "dt": None}, ValueError, "but `dt` is None"),
        ({"tol": 1e-3, "tol_per_unit_time": True, "method": lc.RABUG(tol=1e-3)}, ValueError, "integrator instance"),
        ({"tol": 1e-3, "tol_per_unit_time": True, "method": "ksl"}, ValueError, "`tol` was given, but method 'ksl'"),
    ],
)
def test_tol_per_unit_time_bad_input(riccati, kwargs, error, match):
    """Bad combinations name `tol_per_unit_time` (or the offending argument) and the fix."""
    kw = {"dt": riccati.suggested_dt, "method": "ra-bug", **kwargs}
    with pytest.raises(error, match=match):
        lc.solve(riccati.problem, riccati.Y0, riccati.t_span, **kw)


def test_training_cost_counts_each_optimizers_decompositions():
    """One cycle per optimizer: abc-PSI does one m x 2r QR and one n x 2r SVD, RA-BUG two
    QRs and a 2r x 2r SVD, PSI two rank-r QRs; the time split adds up to the cycle.

    Guards against timing a different unit than one basis update (a cycle), or against
    a split whose parts do not come from the cycle's own decompositions."""
    from lowrank_core.bench._training_cost import run_training_cost

    rows = run_training_cost(layers=[(40, 30)], ranks=[4], optimizers=["psi", "abc-psi", "ra-bug"], repeat=1)
    by_name = {r["optimizer"]: r for r in rows}
    assert by_name["psi"]["qr_shapes"] == {"30x4": 1, "40x4": 1}
    assert by_name["psi"]["svd"] == 0
    assert by_name["abc-psi"]["qr_shapes"] == {"40x8": 1}
    assert by_name["abc-psi"]["svd_shapes"] == {"30x8": 1}
    assert by_name["ra-bug"]["qr_shapes"] == {"30x8": 1, "40x8": 1}
    assert by_name["ra-bug"]["svd_shapes"] == {"8x8": 1}
    for r in rows:
        assert r["products_ms"] >= 0
        assert r["products_ms"] == pytest.approx(max(r["cycle_ms"] - r["qr_ms"] - r["svd_ms"], 0.0))
