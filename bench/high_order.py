"""Error per F evaluation and per QR flop of the integrators on reference problems.

Every method runs at fixed rank ``r`` (the rank-adaptive ones without a tolerance are
truncated back to ``r``) with its default substeps (RK4) on two reference problems of
``lowrank_core.problems`` at several step sizes; for each run the relative error at the
final time against the problem's reference, the F points (``stats["rhs_evals"]``), the
QR flops and all decomposition flops are recorded.  Every method runs the base ladder
of step sizes; a method still above the target at the finest base step continues with
the refinement ladder (halving ``h``) until its error reaches the target or the ladder
ends.  For each problem and method the cost to reach a target error (log-log
interpolation between the two runs that bracket it) gives the ranking of
docs/choosing.md; a method that does not reach it is listed with its finest step, its
error there and the observed order of its last halving (``log2`` of the error ratio).
The ranks are chosen so that the best-approximation plateau (``best_error``) lies
below the target: prescribed path ``N = 100``, ``r = 20`` (plateau 9.5e-7, target 1e-5);
Schrödinger ``N = 48``, ``r = 20`` (target 2e-4).

Run (about 5-10 minutes on one busy CPU core)::

    python bench/high_order.py            # writes bench/results/high_order.json
    python bench/high_order.py --quick    # two step sizes per problem, no file written
    python bench/high_order.py --only "midpoint-bug[euler]"   # rerun some, merge into the file
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

import lowrank_core as lc
from lowrank_core import problems

METHODS = [
    ("ksl-strang", {}),
    ("bug", {}),
    ("ra-bug", {}),
    ("abc-psi", {}),
    ("midpoint-bug", {}),
    ("midpoint-bug", {"substep": "euler"}),
    ("parallel-bug-2", {}),
    ("parallel-bug-2", {"substep": "euler"}),
    ("rk-bug", {"tableau": "heun"}),
    ("rk-bug", {"tableau": "ssprk3"}),
    ("rk-bug", {"tableau": "rk4"}),
    ("projected-rk", {"tableau": "heun"}),
    ("projected-rk", {"tableau": "rk4"}),
]

#: problem name -> (constructor keyword arguments, base step sizes, refinement step
#: sizes (run only while the target is not reached), target relative error)
PROBLEMS = {
    "prescribed-path": (
        {"N": 100, "r": 20, "w_norm": 2.0},
        (0.2, 0.1, 0.05, 0.025),
        tuple(0.2 / 2**k for k in range(4, 7)),
        1e-5,
    ),
    "schrodinger": (
        {"N": 48, "r": 20},
        (0.1, 0.05, 0.025, 0.0125),
        tuple(0.1 / 2**k for k in range(4, 9)),
        2e-4,
    ),
}


def label(method: str, kw: dict) -> str:
    return method + "".join(f"[{v}]" for v in kw.values())


def run(
    problem_name: str,
    kwargs: dict,
    dts: tuple[float, ...],
    refine: tuple[float, ...] = (),
    target: float = 0.0,
    only: set[str] | None = None,
) -> list[dict]:
    """Rows of every method at the step sizes ``dts``, then at ``refine`` while the
    method's smallest error so far is above ``target``."""
    ref = problems.get(problem_name, **kwargs)
    t1 = ref.t_span[1]
    rows = []
    for method, kw in METHODS:
        if only is not None and label(method, kw) not in only:
            continue
        best = math.inf
        for i, dt in enumerate((*dts, *refine)):
            if i >= len(dts) and best <= target:
                break
            start = time.perf_counter()
            try:
                sol = lc.solve(ref.problem, ref.Y0, ref.t_span, dt, method=method, **kw)
            except lc.LowRankIntegrationError as exc:
                rows.append({"problem": problem_name, "method": label(method, kw), "dt": dt, "status": str(exc)})
                continue
            st = sol.stats
            err = float(ref.error(sol.Y, t1))
            if np.isfinite(err):
                best = min(best, err)
            rows.append(
                {
                    "problem": problem_name,
                    "method": label(method, kw),
                    "dt": dt,
                    "status": "ok",
                    "error": err,
                    "best_error": float(ref.best_error(t1, sol.Y.rank)),
                    "rank": sol.Y.rank,
                    "rhs_evals": st["rhs_evals"],
                    "qr": st["qr"],
                    "svd": st["svd"],
                    "qr_flops": st["qr_flops"],
                    "flops": st["flops"],
                    "wall_time": time.perf_counter() - start,
                }
            )
    return rows


def cost_to_reach(rows: list[dict], key: str, target: float) -> float:
    """``key`` (a cost) at error ``target``, interpolated in log-log between the two runs
    that bracket it; ``nan`` when no run reaches it."""
    pts = sorted((r[key], r["error"]) for r in rows if r.get("status") == "ok" and np.isfinite(r["error"]))
    for (c0, e0), (c1, e1) in zip(pts, pts[1:], strict=False):
        if e0 >= target >= e1 and e0 > e1:
            w = (math.log(e0) - math.log(target)) / (math.log(e0) - math.log(e1))
            return float(math.exp(math.log(c0) + w * (math.log(c1) - math.log(c0))))
    if pts and pts[0][1] <= target:
        return float(pts[0][0])  # already below the target at the largest step size
    return float("nan")


def ranking(rows: list[dict], targets: dict[str, float]) -> dict[str, list[dict]]:
    """Per problem, every method's F points and QR flops to reach the target (``nan`` when
    not reached), fewest F points first, with its finest step size, the error there and
    the observed order of the last halving of the step size."""
    out = {}
    for name, target in targets.items():
        entries = []
        for method, kw in METHODS:
            mine = [r for r in rows if r["problem"] == name and r["method"] == label(method, kw)]
            ok = sorted((r for r in mine if r.get("status") == "ok"), key=lambda r: -r["dt"])
            entry = {
                "method": label(method, kw),
                "rhs_evals": cost_to_reach(mine, "rhs_evals", target),
                "qr_flops": cost_to_reach(mine, "qr_flops", target),
            }
            if ok:
                entry["finest_dt"] = ok[-1]["dt"]
                entry["finest_error"] = ok[-1]["error"]
            if len(ok) >= 2 and ok[-2]["error"] > 0 and ok[-1]["error"] > 0:
                ratio_e, ratio_h = ok[-2]["error"] / ok[-1]["error"], ok[-2]["dt"] / ok[-1]["dt"]
                entry["last_order"] = math.log(ratio_e) / math.log(ratio_h)
            entries.append(entry)
        entries.sort(key=lambda e: (math.isnan(e["rhs_evals"]), e["rhs_evals"]))
        out[name] = entries
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two step sizes per problem, print only")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "high_order.json"))
    parser.add_argument(
        "--only", default=None, help="comma-separated method labels to (re)run, merged into the existing --out file"
    )
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    rows = []
    if only is not None and Path(args.out).exists():
        rows = [r for r in json.loads(Path(args.out).read_text())["rows"] if r["method"] not in only]
    targets = {}
    for name, (kwargs, dts, refine, target) in PROBLEMS.items():
        if args.quick:
            rows += run(name, kwargs, dts[:2], only=only)
        else:
            rows += run(name, kwargs, dts, refine, target, only)
        targets[name] = target
    ranks = ranking(rows, targets)
    for name, entries in ranks.items():
        print(f"\n{name}: cost to reach relative error {targets[name]:.0e}")
        print(f"  {'method':24s} {'F points':>10s} {'QR flops':>12s}")
        for e in entries:
            line = f"  {e['method']:24s} {e['rhs_evals']:10.4g} {e['qr_flops']:12.4g}"
            if math.isnan(e["rhs_evals"]) and "finest_dt" in e:
                line += f"   not reached: error {e['finest_error']:.2e} at h = {e['finest_dt']:.3g}"
                line += f", order {e.get('last_order', float('nan')):.2f} over the last halving"
            print(line)
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": "python bench/high_order.py",
            "problems": {
                k: {"kwargs": v[0], "dts": v[1], "refine_dts": v[2], "target": v[3]} for k, v in PROBLEMS.items()
            },
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows, "ranking": ranks}, indent=1))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
