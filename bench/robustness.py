"""Robustness to small singular values (methods.md §4.2): error / best-approximation error.

The problem is ``lowrank_core.problems.prescribed_path(N=60, r, w_norm=5)`` with exact
increments, T = 1; the contrast is explicit Euler on the factor ODEs
(``lowrank_core.bench.naive_factor_euler``).
Prints the ratio error / eps_r per method, rank and step size (the same setting that
tests/theory/test_robustness.py::test_error_is_bounded_uniformly_in_sigma_r asserts
stays <= 2) and writes bench/results/robustness.json.

Usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/robustness.py
(rows: one per rank and step size, ``ratio`` per method and for naive Euler).
"""

from __future__ import annotations

import numpy as np
from _common import check_environment, save

import lowrank_core as lc
from lowrank_core import problems
from lowrank_core.bench import naive_factor_euler

METHODS = ["ksl", "ksl-strang", "bc-psi", "abc-psi", "bug", "ra-bug", "parallel-bug"]


def main() -> None:
    check_environment()
    rows = []
    print(f"{'r':>3} {'h':>6} " + " ".join(f"{m:>12}" for m in METHODS) + f" {'naive Euler':>12}")
    for r in (4, 8, 16):
        path = problems.prescribed_path(N=60, r=r, w_norm=5.0)
        best = path.best_error(1.0, r)
        ref = path.reference(1.0)
        for h in (0.1, 0.05, 0.025):
            ratios = {}
            for m in METHODS:
                sol = lc.solve(path.problem, path.Y0, path.t_span, h, method=m, substep="exact")
                ratios[m] = path.error(sol.Y, 1.0) / best
            naive = naive_factor_euler(path.problem.dA, path.Y0.U, path.Y0.S, path.Y0.V, (0.0, 1.0), h)
            with np.errstate(all="ignore"):
                ratios["naive"] = float(np.linalg.norm(naive - ref) / np.linalg.norm(ref) / best)
            rows.append({"r": r, "h": h, "best_error": best, "ratio": ratios})
            print(f"{r:>3} {h:>6} " + " ".join(f"{ratios[m]:>12.3g}" for m in [*METHODS, "naive"]))
    print(f"wrote {save('robustness', rows, methods=METHODS, w_norm=5.0, N=60)}")


if __name__ == "__main__":
    main()
