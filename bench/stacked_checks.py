"""Checks behind two design choices for stacked problems, measured in one run.

1. ``complex_operator``: a complex operator applied as ``A^H W`` through
   ``lowrank_core._linalg.matmul_h`` (``conj(A^T conj(W))``: the operator is read in
   place) against the explicit ``conj_transpose(A) @ W`` (a conjugated copy of ``A`` at
   every product), on a ``(500, 64, 64)`` complex128 stack with ``W (500, 64, 8)``; and
   the time of a whole stacked Schroedinger-type solve (``LinearMatrixODE(-iH, -iH)``,
   abc-PSI, 10 Euler steps).
2. ``chunked_solve``: one stacked solve of 1000 structured 64 x 64 rank-4 problems (the
   ``bench_kernels.py`` problem) against the same problems solved in chunks of 250 and 64
   (so that each chunk's operators stay in a core's L2 cache).
3. ``floor``: what bounds the stacked-solve speed-up of ``bench_kernels.py`` (1000
   problems of 64 x 64, rank 4, abc-PSI, 10 Euler steps) on this machine.  Per step,
   the work no implementation of the method can skip, timed alone with the library's
   own calls: for the dense problem ``dY/dt = T - Y``, forming ``Y0`` densely, the
   user's ``f`` (``T - Y``), and the two products with ``F`` (``F V0``, ``F^H Û``);
   for the structured problem, the four operator products (``A X``, ``A^T W`` with 4
   columns for the K-step, 8 for the L-step).  Then the two factorizations of the step
   (thin QR and thin SVD of ``(1000, 64, 8)``).  The ratio of the separate solves
   (timed in the same run) to ten such steps is the speed-up that a stacked solve
   could reach if everything else in a step took no time.

Medians over interleaved rounds.  Writes ``bench/results/stacked_checks.json``.
Run: ``OPENBLAS_NUM_THREADS=1 python bench/stacked_checks.py [--only floor]`` (``--only``
keeps the other checks' last results in the file).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable

import array_api_compat.numpy as xnp
import numpy as np
from _common import RESULTS, check_environment, save, stacked_problems

import lowrank_core as lc
from lowrank_core._linalg import matmul, matmul_h
from lowrank_core._namespace import conj_transpose
from lowrank_core.bench import time_rounds


def _median_times(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each function over ``rounds`` interleaved rounds (after a warm-up)."""
    return {f"s_{n}": statistics.median(v) for n, v in time_rounds(fns, rounds).items()}


def complex_operator(rounds: int = 9) -> dict:
    rng = np.random.default_rng(0)
    batch, m = 500, 64
    G = (rng.standard_normal((batch, m, m)) + 1j * rng.standard_normal((batch, m, m))) / np.sqrt(m)
    A = -0.5j * (G + np.conj(np.swapaxes(G, -1, -2)))
    W = rng.standard_normal((batch, m, 8)) + 1j * rng.standard_normal((batch, m, 8))
    res = _median_times(
        {
            "in_place": lambda: matmul_h(A, W, xnp),
            "conjugated_copy": lambda: conj_transpose(A, xnp) @ W,
        },
        rounds,
    )
    Y0 = lc.LowRank.from_dense(rng.standard_normal((batch, m, m)) + 1j * rng.standard_normal((batch, m, m)), rank=4)
    problem = lc.LinearMatrixODE(A, A)
    kw = {"method": "abc-psi", "substep": "euler", "dt": 0.1}
    res |= _median_times({"solve": lambda: lc.solve(problem, Y0, (0.0, 1.0), **kw)}, max(3, rounds // 3))
    return {"shape": [batch, m, m], **res, "copy_over_in_place": res["s_conjugated_copy"] / res["s_in_place"]}


def chunked_solve(rounds: int = 5) -> dict:
    batch = 1000
    Y0, make = stacked_problems(batch, "structured", 64, 4)
    A = make(None).A
    kw = {"method": "abc-psi", "substep": "euler", "dt": 0.1}

    def run(chunk: int) -> None:
        for lo in range(0, batch, chunk):
            sl = slice(lo, lo + chunk)
            lc.solve(lc.LinearMatrixODE(A[sl], A[sl]), lc.LowRank(Y0.U[sl], Y0.S[sl], Y0.V[sl]), (0.0, 1.0), **kw)

    return {"batch": batch, **_median_times({f"chunk_{c}": (lambda c=c: run(c)) for c in (1000, 250, 64)}, rounds)}


def floor(rounds: int = 5) -> dict:
    import lowrank_kernels as lk

    batch, m, r, steps = 1000, 64, 4, 10
    rng = np.random.default_rng(1)
    W4, W8 = rng.standard_normal((batch, m, r)), rng.standard_normal((batch, m, 2 * r))
    out: dict = {"batch": batch, "shape": [m, m], "rank": r, "steps": steps}
    kw = {"method": "abc-psi", "substep": "euler", "dt": 1.0 / steps}
    fact = _median_times({"qr": lambda: lk.batched_qr(W8), "svd": lambda: lk.batched_svd(W8)}, rounds)
    out |= {f"ms_{k[2:]}": 1e3 * v for k, v in fact.items()}
    for kind in ("dense", "structured"):
        Y0, make = stacked_problems(batch, kind, m, r)
        problem = make(None)
        if kind == "dense":
            D, F = Y0.to_dense(), problem.evaluate(0.0, Y0)
            parts = _median_times(
                {
                    "to_dense": Y0.to_dense,
                    "f": lambda D=D, problem=problem: problem.f(0.0, D),
                    "F_V": lambda F=F: F.F_V(W4),
                    "FH_U": lambda F=F: F.FH_U(W8),
                },
                rounds,
            )
        else:
            A = problem.A
            parts = _median_times(
                {
                    "A_X4": lambda A=A: matmul(A, W4, xnp),
                    "AT_W4": lambda A=A: matmul(np.swapaxes(A, -1, -2), W4, xnp),
                    "A_X8": lambda A=A: matmul(A, W8, xnp),
                    "AT_W8": lambda A=A: matmul(np.swapaxes(A, -1, -2), W8, xnp),
                },
                rounds,
            )
        ms_passes = 1e3 * sum(parts.values())
        singles = [(make(i), lc.LowRank(Y0.U[i], Y0.S[i], Y0.V[i])) for i in range(batch)]
        solves = _median_times(
            {
                "stacked": lambda make=make, Y0=Y0: lc.solve(make(None), Y0, (0.0, 1.0), **kw),
                "separate": lambda singles=singles: [lc.solve(p, y, (0.0, 1.0), **kw) for p, y in singles],
            },
            3,
        )
        step_floor = ms_passes + out["ms_qr"] + out["ms_svd"]
        out[kind] = {
            **{f"ms_{k[2:]}": 1e3 * v for k, v in parts.items()},
            "ms_passes_per_step": ms_passes,
            "ms_passes_and_factorizations_per_step": step_floor,
            "ms_stacked_per_step": 1e3 * solves["s_stacked"] / steps,
            **solves,
            "bound_passes_only": solves["s_separate"] / (steps * ms_passes / 1e3),
            "bound_with_factorizations": solves["s_separate"] / (steps * step_floor / 1e3),
            "speedup_measured": solves["s_separate"] / solves["s_stacked"],
        }
    return out


CHECKS: dict[str, Callable[[], dict]] = {
    "complex_operator": complex_operator,
    "chunked_solve": chunked_solve,
    "floor": floor,
}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(CHECKS), help="run these checks only")
    args = parser.parse_args(argv)
    check_environment()
    path = RESULTS / "stacked_checks.json"
    old = json.loads(path.read_text())["rows"] if args.only and path.exists() else []
    out = {row["check"]: {k: v for k, v in row.items() if k != "check"} for row in old}
    for name in args.only or CHECKS:
        out[name] = CHECKS[name]()
    for name, res in out.items():
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()})
    rows = [{"check": name, **res} for name, res in out.items()]
    print(f"wrote {save('stacked-checks', rows, out=path)}")


if __name__ == "__main__":
    main()
