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

Medians over interleaved rounds.  Writes ``bench/results/stacked_checks.json``.
Run: ``OPENBLAS_NUM_THREADS=1 python bench/stacked_checks.py``
"""

from __future__ import annotations

import json
import pathlib
import statistics
import time
from collections.abc import Callable

import array_api_compat.numpy as xnp
import numpy as np
from bench_kernels import _stacked_problems

import lowrank_core as lc
from lowrank_core._linalg import matmul_h
from lowrank_core._namespace import conj_transpose


def _median_times(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    return {f"s_{n}": statistics.median(v) for n, v in times.items()}


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
    Y0, make = _stacked_problems(batch, "structured", 64, 4)
    A = make(None).A
    kw = {"method": "abc-psi", "substep": "euler", "dt": 0.1}

    def run(chunk: int) -> None:
        for lo in range(0, batch, chunk):
            sl = slice(lo, lo + chunk)
            lc.solve(lc.LinearMatrixODE(A[sl], A[sl]), lc.LowRank(Y0.U[sl], Y0.S[sl], Y0.V[sl]), (0.0, 1.0), **kw)

    return {"batch": batch, **_median_times({f"chunk_{c}": (lambda c=c: run(c)) for c in (1000, 250, 64)}, rounds)}


def main() -> None:
    out = {"complex_operator": complex_operator(), "chunked_solve": chunked_solve()}
    for name, res in out.items():
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()})
    path = pathlib.Path(__file__).parent / "results" / "stacked_checks.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
