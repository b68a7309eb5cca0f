"""``lowrank-core demo``: a short guided run on one reference problem.

It solves one problem of :mod:`lowrank_core.problems` with one method, tells what the
integrator did (error against the exact solution and against the best approximation
of that rank, rank history, QR/SVD decompositions with their shapes, right-hand-side
evaluations, flops, wall time), then runs every method on the same problem at the same
step size and prints the comparison table.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ..integrators import METHODS
from ._qr_savings import Backend, prepare_cases, solve_case
from ._report import QR_SAVINGS_COLUMNS, format_shapes, format_table

__all__ = ["run_demo"]


def _first_line(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0].rstrip(".")


def _narrate(row: dict[str, Any], r0: int, t_span: tuple[float, float], out: TextIO) -> None:
    steps = row["steps"]
    hits = row["max_rank_hits"]
    rank_note = f"{r0} -> {row['rank']} (largest {row['max_rank']})"
    if hits:
        rank_note += f"; in {hits} of {steps} steps the tolerance asked for more than max_rank"
    lines = [
        (f"error at t = {t_span[1]:g}", f"{row['error']:.2e}  (relative Frobenius norm, against the exact solution)"),
        (f"best at rank {row['rank']}", f"{row['best_error']:.2e}  (no matrix of this rank is closer to the solution)"),
        ("rank", rank_note),
        ("QR decompositions", f"{row['qr']} = {format_shapes(row['qr_shapes'])}: {row['qr'] / steps:g} per step"),
        ("SVD decompositions", f"{row['svd']} = {format_shapes(row['svd_shapes'])}: {row['svd'] / steps:g} per step"),
        ("F evaluations", f"{row['rhs_evals']}: {row['rhs_evals'] / steps:g} per step"),
        ("flops (QR + SVD)", f"{row['flops'] / 1e6:.3g} Mflop (LAPACK operation counts of the decompositions)"),
        ("wall time", f"{1e3 * row['wall_time']:.1f} ms for the solve; the warm-up solve before it (compiling the"),
        ("", f"kernels on a first run) took {1e3 * row['warmup_time']:.1f} ms and is not included"),
    ]
    for label, text in lines:
        print(f"  {label:<20}{text}", file=out)


def _savings(row: dict[str, Any], rows: list[dict[str, Any]]) -> str | None:
    """A sentence on the methods that spent more QR for a comparable error (within 1.5x), if any."""
    peers = [
        r for r in rows
        if r["method"] != row["method"] and r.get("status") == "ok" and r["qr"] > row["qr"]
        and row["error"] / 1.5 <= r["error"] <= 1.5 * row["error"]
    ]
    if not peers:
        return None
    others = ", ".join(f"{r['method']} {r['qr']} QR for {r['error']:.2e}" for r in peers)
    return f"QR savings: {row['method']} spent {row['qr']} QR for error {row['error']:.2e}; {others}."


def run_demo(
    problem: str,
    method: str,
    backend: Backend,
    *,
    dt: float | None = None,
    stream: TextIO | None = None,
) -> list[dict[str, Any]]:
    """Solve ``problem`` with ``method``, explain the result, then compare every method.

    Parameters
    ----------
    problem : str
        A key of :data:`lowrank_core.bench._qr_savings.QR_SAVINGS_CASES`.
    method : str
        A key of :data:`lowrank_core.METHODS`, the method narrated first.
    backend : Backend
        Where the problem is built and solved.
    dt : float, optional
        Step size (default: the second step size of the benchmark case).
    stream : file, optional
        Where the text goes (default ``sys.stdout``).

    Returns
    -------
    list of dict
        One row per method (the narrated method first), as from
        :func:`lowrank_core.bench._qr_savings.solve_case`.
    """
    out = stream or sys.stdout
    if method not in METHODS:
        msg = f"unknown method {method!r}; choose from {', '.join(METHODS)}."
        raise ValueError(msg)
    [prepared] = prepare_cases([problem], backend, dts=None if dt is None else [dt])
    case, ref = prepared.case, prepared.reference
    if dt is None:
        dt = prepared.dts[min(1, len(prepared.dts) - 1)]
    m, n = ref.shape
    r0 = ref.Y0.rank
    cls = METHODS[method]
    row = solve_case(prepared, method, dt, backend)
    if row["status"] != "ok":
        msg = f"{method} failed on {problem} at dt = {dt:g}: {row['status']}; try a smaller --dt."
        raise ValueError(msg)

    print("lowrank-core demo: one reference problem, one integrator, and what it did.\n", file=out)
    print(f"Problem   {problem}: {case.title}", file=out)
    print(f"          dY/dt = F(t, Y), Y of size {m}×{n}, t in [{ref.t_span[0]:g}, {ref.t_span[1]:g}];", file=out)
    print("          the exact (or high-accuracy reference) solution X(t) is known.", file=out)
    print(
        f"Start     Y0 = U S V^H of rank {r0}: U {m}×{r0}, S {r0}×{r0}, V {n}×{r0} "
        f"({backend.label}, {ref.Y0.dtype}).",
        file=out,
    )
    adaptive = (
        f"rank-adaptive, tol = {case.tol:g} per unit time, max_rank = {r0} (the rank of the fixed-rank methods)"
        if cls.rank_adaptive
        else "fixed rank"
    )
    print(f"Method    {method}: {_first_line(cls)}", file=out)
    print(f"          dt = {dt:g} -> {row['steps']} steps, {case.substep!r} substeps, {adaptive}.\n", file=out)
    print("What happened", file=out)
    _narrate(row, r0, ref.t_span, out)

    rows = [row] + [solve_case(prepared, name, dt, backend) for name in METHODS if name != method]
    columns = [c for c in QR_SAVINGS_COLUMNS if c.key not in ("problem", "dt", "svd_shapes")]
    print(f"\nEvery method on the same problem, dt = {dt:g}:\n", file=out)
    print(format_table(rows, columns), file=out)
    sentence = _savings(row, rows)
    if sentence:
        print(f"\n{sentence}", file=out)
    print(
        "\nNext: `lowrank-core bench qr-savings` runs every method on all reference problems at several"
        "\nstep sizes and writes tables and plots; `lowrank-core demo --help` lists the options.",
        file=out,
    )
    return rows
