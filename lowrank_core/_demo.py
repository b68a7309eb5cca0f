"""The built-in QR-savings demo: every integrator on the reference problems.

Run with ``python -m lowrank_core demo`` (or ``lowrank-core demo``).  For each problem
and method it prints the relative error at the final time next to the best rank-r
error, the final rank, the numbers of QR and SVD decompositions with their shapes,
the right-hand-side evaluations, the decomposition flops and the wall time, and can
write the rows to a JSON file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ._integrate import solve
from .integrators import METHODS

__all__ = ["DEMO_CASES", "run_demo"]


def _path_case(quick: bool) -> dict[str, Any]:
    from .problems import prescribed_path

    ref = prescribed_path(N=100, r=8, w_norm=1.0)
    return {
        "title": "§6.1 matrix path A(t) = e^{tW1} e^t D e^{tW2}, N = 100, r = 8 (exact increments)",
        "reference": ref,
        "substep": "exact",
        "dts": [0.1] if quick else [0.1, 0.01],
        "tol": 1e-6,
    }


def _heat_case(quick: bool) -> dict[str, Any]:
    from .problems import heat_lyapunov

    ref = heat_lyapunov(size=24, r=8, t_end=0.05)
    # The heat problem is stiff: explicit RK4 substeps are stable only for
    # h < 2.785 / (2 ||A||_2); the problem's `suggested_dt` is 80 % of that limit.
    dt = ref.suggested_dt
    return {
        "title": "§6.4a heat equation dX/dt = AX + XA + C, 24 x 24, r = 8 (RK4 substeps, stiff: dt below the RK4 limit)",
        "reference": ref,
        "substep": "rk4",
        "dts": [dt] if quick else [dt, dt / 2],
        "tol": 1e-8,
    }


DEMO_CASES = {"path": _path_case, "heat": _heat_case}


def _fmt_shapes(d: dict) -> str:
    if not d:
        return "-"
    return ", ".join(f"{count}×({a}x{b})" for (a, b), count in sorted(d.items()))


def run_demo(
    methods: Sequence[str] | None = None,
    problems: Sequence[str] | None = None,
    *,
    quick: bool = False,
    json_path: str | None = None,
    stream: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Solve the reference problems with each method and print a comparison table.

    Parameters
    ----------
    methods : sequence of str, optional
        Method names (default: all of :data:`lowrank_core.METHODS`).
    problems : sequence of str, optional
        Keys of :data:`DEMO_CASES` (default: all).
    quick : bool
        One step size per problem instead of two.
    json_path : str, optional
        Write the rows as JSON to this file.
    stream : file, optional
        Where the table goes (default ``sys.stdout``).

    Returns
    -------
    list of dict
        One row per (problem, method, dt) with the error, best-approximation error,
        rank and ``sol.stats``.
    """
    out = stream or sys.stdout
    methods = list(methods or METHODS)
    for m in methods:
        if m not in METHODS:
            msg = f"unknown method {m!r}; choose from {sorted(METHODS)}."
            raise ValueError(msg)
    keys = list(problems or DEMO_CASES)
    for k in keys:
        if k not in DEMO_CASES:
            msg = f"unknown demo problem {k!r}; choose from {sorted(DEMO_CASES)}."
            raise ValueError(msg)
    rows: list[dict[str, Any]] = []
    header = f"{'method':<13} {'dt':>8} {'rel.err':>9} {'best@rank':>9} {'rank':>4} {'QR':>5} {'SVD':>4} {'F':>5} {'Mflop':>8} {'ms':>7}  QR / SVD shapes"
    for key in keys:
        case = DEMO_CASES[key](quick)
        ref = case["reference"]
        t1 = ref.t_span[1]
        print(f"\n{case['title']}; rank-adaptive methods: tol = {case['tol']:g}, max_rank = 2r", file=out)
        print(header, file=out)
        print("-" * len(header), file=out)
        for dt in case["dts"]:
            for name in methods:
                kwargs: dict[str, Any] = {}
                if METHODS[name].rank_adaptive:
                    kwargs["tol"] = case["tol"]
                    kwargs["max_rank"] = 2 * ref.Y0.rank
                sol = solve(ref.problem, ref.Y0, ref.t_span, dt, method=name, substep=case["substep"], **kwargs)
                err = ref.error(sol.Y, t1)
                best = ref.best_error(t1, sol.Y.rank)  # best error at the rank the method ended with
                st = sol.stats
                row = {
                    "problem": key,
                    "method": name,
                    "dt": dt,
                    "error": err,
                    "best_error": best,
                    "rank": sol.Y.rank,
                    **{k: v for k, v in st.items() if not k.endswith("_shapes")},
                    "qr_shapes": {f"{a}x{b}": c for (a, b), c in st["qr_shapes"].items()},
                    "svd_shapes": {f"{a}x{b}": c for (a, b), c in st["svd_shapes"].items()},
                }
                rows.append(row)
                shapes = f"{_fmt_shapes(st['qr_shapes'])} / {_fmt_shapes(st['svd_shapes'])}"
                print(
                    f"{name:<13} {dt:>8.2g} {err:>9.2e} {best:>9.2e} {sol.Y.rank:>4d} {st['qr']:>5d} {st['svd']:>4d} "
                    f"{st['rhs_evals']:>5d} {st['flops'] / 1e6:>8.2f} {1e3 * st['wall_time']:>7.1f}  {shapes}",
                    file=out,
                )
    print(
        "\nbest@rank = best approximation error at the final rank; F = right-hand-side evaluations"
        "\n(exact increments for the path); Mflop = QR + SVD operation counts.",
        file=out,
    )
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2, default=str)
        print(f"wrote {json_path}", file=out)
    return rows
