"""Step-size control (``solve(..., dt=None, step_rtol=...)``) against the best fixed step.

For each problem and method: the time-stepping error of adaptive solves over decades of
``step_rtol`` (relative to a Richardson-extrapolated fine-step solve of the *same* method,
so the low-rank modelling error is not counted), and of fixed-step solves over a range of
``dt``.  For every adaptive solve the F evaluations a fixed step needs for the same error
are interpolated (log-log) from the fixed-step sweep, or extrapolated with the power law
fitted to it where the adaptive error lies outside the sweep (marked).  Writes
bench/results/step_control.json and prints a table.

Problems (lowrank_core.problems): Schrödinger (N = 12, r = 3, T = 0.1) and heat
(size = 16, r = 4, T = 0.1, explicit RK4 substeps).

Usage: python bench/step_control.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

import lowrank_core as lc
from lowrank_core import problems

OUT = Path(__file__).resolve().parent / "results" / "step_control.json"

CASES = [
    # (problem, factory kwargs, method, order, step_rtols, fixed dts, reference dt)
    ("schrodinger", {"N": 12, "r": 3, "t_end": 0.1}, "bug", 1, [1e-1, 1e-2, 1e-3, 1e-4, 1e-5],
     [2e-2, 1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4], 5e-5),
    ("schrodinger", {"N": 12, "r": 3, "t_end": 0.1}, "ksl-strang", 2, [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
     [2e-2, 1e-2, 5e-3, 2e-3, 1e-3, 5e-4], 5e-5),
    ("heat", {"size": 16, "r": 4, "t_end": 0.1}, "bug", 1, [1e-1, 1e-2, 1e-3, 1e-4],
     [1e-3, 5e-4, 2e-4, 1e-4, 5e-5], 2.5e-5),
]  # fmt: skip


def _error(Y, ref):
    return float(np.linalg.norm(Y.to_dense() - ref) / np.linalg.norm(ref))


def run_case(name, kwargs, method, order, tols, dts, dt_ref):
    p = problems.get(name, **kwargs)
    T = p.t_span[1] - p.t_span[0]
    a = lc.solve(p.problem, p.Y0, p.t_span, 2 * dt_ref, method=method).Y.to_dense()
    b = lc.solve(p.problem, p.Y0, p.t_span, dt_ref, method=method).Y.to_dense()
    ref = b + (b - a) / (2**order - 1)
    fixed = []
    for dt in dts:
        sol = lc.solve(p.problem, p.Y0, p.t_span, dt, method=method)
        err = _error(sol.Y, ref)
        fixed.append({"dt": dt, "error": err if np.isfinite(err) else None, "rhs_evals": sol.stats["rhs_evals"]})
    good = [f for f in fixed if f["error"] is not None and f["error"] < 1]
    log_e = np.log([f["error"] for f in good])
    log_n = np.log([f["rhs_evals"] for f in good])
    order_e = np.argsort(log_e)
    adaptive = []
    for tol in tols:
        sol = lc.solve(p.problem, p.Y0, p.t_span, method=method, step_rtol=tol)
        err = _error(sol.Y, ref)
        inside = bool(log_e.min() <= np.log(err) <= log_e.max())
        if inside:
            same = float(np.exp(np.interp(np.log(err), log_e[order_e], log_n[order_e])))
        else:  # outside the sweep: the power law F ~ error^slope fitted to the sweep
            slope, icpt = np.polyfit(log_e, log_n, 1)
            same = float(np.exp(icpt + slope * np.log(err)))
        adaptive.append({
            "step_rtol": tol, "error": err, "error_over_tol_T": err / (tol * T), "steps": sol.stats["steps"],
            "rejected_steps": sol.stats["rejected_steps"], "rhs_evals": sol.stats["rhs_evals"],
            "min_step": float(sol.step_sizes.min()), "max_step": float(sol.step_sizes.max()),
            "fixed_rhs_evals_same_error": same,
            "same_error_extrapolated": not inside,
        })  # fmt: skip
    ratios = [r["error_over_tol_T"] for r in adaptive]
    return {
        "problem": name, "kwargs": kwargs, "method": method, "order": order, "T": T,
        "reference": f"Richardson extrapolation of dt = {2 * dt_ref:g} and {dt_ref:g} ({method})",
        "adaptive": adaptive, "fixed": fixed, "ratio_spread": max(ratios) / min(ratios),
    }  # fmt: skip


def main() -> None:
    start = time.perf_counter()
    results = []
    for case in CASES:
        res = run_case(*case)
        results.append(res)
        print(
            f"\n{res['problem']} {res['kwargs']} {res['method']}: spread of error/(tol T) = {res['ratio_spread']:.2f}"
        )
        print(
            f"{'step_rtol':>10} {'error':>10} {'err/(tol T)':>12} {'steps':>6} {'rej':>4} {'F evals':>9} {'fixed F':>9}"
        )
        for r in res["adaptive"]:
            same = r["fixed_rhs_evals_same_error"]
            same_s = f"{same:9.0f}" + ("*" if r["same_error_extrapolated"] else " ")
            print(
                f"{r['step_rtol']:10.0e} {r['error']:10.2e} {r['error_over_tol_T']:12.3f} {r['steps']:6d} "
                f"{r['rejected_steps']:4d} {r['rhs_evals']:9d} {same_s}"
            )
        print("(* extrapolated with the power law F ~ error^slope fitted to the fixed-step sweep)")
        print(
            "fixed: "
            + ", ".join(f"dt={f['dt']:g}: {f['error'] or float('nan'):.2e} ({f['rhs_evals']} F)" for f in res["fixed"])
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": "python bench/step_control.py", "wall_time_s": time.perf_counter() - start, "cases": results}
    OUT.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
