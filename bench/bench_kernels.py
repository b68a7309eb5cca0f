"""Kernel benchmark: batched QR/SVD throughput, stacked vs separate solves, start-up times.

Run from the repository root::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python bench/bench_kernels.py          # ~10 min
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python bench/bench_kernels.py --quick  # /10
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python bench/bench_kernels.py \
        --solves-only --methods ksl bug bc-psi abc-psi

Writes ``bench/results/bench_kernels.json`` (``--solves-only``: ``stacked_solves.json``;
or ``--out``) in the common envelope of ``bench/_common.py``: ``rows`` are the kernel
cases (the row schema of ``lowrank-core bench kernels``' ``kernels.json``), the sections
``stacked_solve`` and ``startup`` the other two measurements.  NumPy is timed with the BLAS
threads of the environment; ``OPENBLAS_NUM_THREADS=1`` is its best setting on the
2-core development machine (docs/kernels.md), so the ratios are against NumPy at its best.

Three measurements, each a ratio taken within one run:

1. ``rows``: :func:`lowrank_core.bench.kernels` -- every (B, m, k) case of the
   kernels issue, float64 and float32, kernel vs ``numpy.linalg`` on the stack vs a
   per-matrix SciPy loop, interleaved rounds, median of per-round ratios.
2. ``stacked_solve``: one ``solve`` of ``B`` stacked problems (64 x 64, rank 4) against
   ``B`` separate solves of the same problems, same method and steps, for a dense
   gradient flow and for a structured linear ODE (interleaved rounds, median of the
   per-round ratios).
3. ``startup``: a fresh process's import + first stacked solve, with a cold (empty) and a
   warm Numba cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, check_environment, save, stacked_problems

import lowrank_core as lc
import lowrank_core.bench as lcb
from lowrank_core.bench import kernel_environment
from lowrank_core.bench._report import KERNEL_COLUMNS, format_table

_STARTUP = """
import time
t0 = time.perf_counter()
import numpy as np, lowrank_core as lc
rng = np.random.default_rng(0)
B = rng.standard_normal((8, 64, 64))
Y0 = lc.LowRank.from_dense(rng.standard_normal((8, 64, 64)), rank=4)
lc.solve(lc.MatrixODE(lambda t, Y: B - Y), Y0, (0.0, 1.0), dt=0.1, substep="euler")
print(time.perf_counter() - t0)
"""


def _profile_breakdown(run) -> dict:
    """Seconds (cProfile ``tottime``) of one run, grouped: the QR, SVD and batched-product
    kernels, the rest of the right-hand side's products (``lowrank_core/_problem.py``,
    ``_lowrank.py``: NumPy ``matmul`` calls below the kernel's size rule), the rest."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(run)
    groups = {"qr_kernel": 0.0, "svd_kernel": 0.0, "matmul_kernel": 0.0, "rhs_products": 0.0, "other": 0.0}
    for (path, _, name), row in pstats.Stats(prof).stats.items():
        key = "other"
        if path.endswith("_cpu.py") and name.startswith("_qr"):
            key = "qr_kernel"
        elif path.endswith("_cpu.py") and name.startswith(("_svd", "_lift")):
            key = "svd_kernel"
        elif path.endswith("_cpu.py") and name.startswith("matmul"):
            key = "matmul_kernel"
        elif path.endswith(("_problem.py", "_lowrank.py")):
            key = "rhs_products"
        groups[key] += row[2]
    return groups


def stacked_solve(batch: int, kind: str = "dense", steps: int = 10, method: str = "abc-psi", rounds: int = 3) -> dict:
    """One solve of ``batch`` stacked problems against ``batch`` separate solves.

    ``rounds`` interleaved rounds (stacked, then separate); the speed-up is the median of
    the per-round ratios, the times are medians.
    """
    m, r = 64, 4
    Y0, make = stacked_problems(batch, kind, m, r)
    kw = {"method": method, "substep": "euler", "dt": 1.0 / steps}
    # warm-up (compilation) of every path timed below: one step of the stack, one single solve
    lc.solve(make(None), Y0, (0.0, kw["dt"]), **kw)
    lc.solve(make(0), lc.LowRank(Y0.U[0], Y0.S[0], Y0.V[0]), (0.0, kw["dt"]), **kw)
    singles = [(make(i), lc.LowRank(Y0.U[i], Y0.S[i], Y0.V[i])) for i in range(batch)]
    t_stacked, t_separate = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        together = lc.solve(make(None), Y0, (0.0, 1.0), **kw)
        t_stacked.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        separate = [lc.solve(problem, y0, (0.0, 1.0), **kw) for problem, y0 in singles]
        t_separate.append(time.perf_counter() - t0)
    breakdown = _profile_breakdown(lambda: lc.solve(make(None), Y0, (0.0, 1.0), **kw))
    # compared outside the timed loop
    dense_all = together.Y.to_dense()
    worst = max(
        float(np.linalg.norm(one.Y.to_dense() - dense_all[i]) / np.linalg.norm(dense_all[i]))
        for i, one in enumerate(separate)
    )
    return {
        "problem": "dY/dt = T - Y (dense F)" if kind == "dense" else "dY/dt = A Y + Y A^T (structured)",
        "batch": batch,
        "shape": [m, m],
        "rank": r,
        "method": method,
        "steps": steps,
        "rounds": rounds,
        "s_stacked": statistics.median(t_stacked),
        "s_separate": statistics.median(t_separate),
        "speedup": statistics.median(sep / st for st, sep in zip(t_stacked, t_separate, strict=True)),
        "speedup_per_round": [sep / st for st, sep in zip(t_stacked, t_separate, strict=True)],
        "kernel_calls_stacked": together.stats["kernel_calls"],
        "stacked_profile_s": breakdown,
        "max_rel_difference": worst,
    }


def startup() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold", "warm"):
            res = subprocess.run([sys.executable, "-c", _STARTUP], env=env, capture_output=True, text=True, check=True)
            out[f"s_{label}"] = float(res.stdout.strip().splitlines()[-1])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch sizes / 10, 3 rounds")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=None, help="default bench/results/bench_kernels.json (stacked_solves.json)"
    )
    parser.add_argument(
        "--methods", nargs="+", default=["abc-psi"], help="integrators of the stacked-vs-separate solves"
    )
    parser.add_argument(
        "--solves-only",
        action="store_true",
        help="only the stacked-vs-separate solves (default output bench/results/stacked_solves.json)",
    )
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    check_environment()
    out = args.out or RESULTS / ("stacked_solves.json" if args.solves_only else "bench_kernels.json")

    def progress(done: int, total: int, label: str) -> None:
        print(f"[{done}/{total}] {label}", file=sys.stderr, flush=True)

    rows = [] if args.solves_only else lcb.kernels(repeat=repeat, quick=args.quick, progress=progress).rows
    if rows:
        print(format_table(rows, KERNEL_COLUMNS))
    solve_res = [
        stacked_solve(100 if args.quick else 1000, kind, method=method)
        for method in args.methods
        for kind in ("dense", "structured")
    ]
    for res in solve_res:
        print(
            f"{res['method']}: stacked solve of {res['batch']} problems {res['problem']}: {res['s_stacked']:.3f} s vs "
            f"{res['s_separate']:.2f} s separately ({res['speedup']:.1f}x, per round "
            + ", ".join(f"{x:.1f}x" for x in res["speedup_per_round"])
            + "); profiled stacked solve, seconds: "
            + ", ".join(f"{k} {v:.3f}" for k, v in res["stacked_profile_s"].items())
        )
    settings = {"environment": kernel_environment(), "quick": args.quick, "methods": args.methods}
    if args.solves_only:
        path = save("stacked-solves", solve_res, out=out, **settings)
    else:
        start = startup()
        print(
            f"first stacked solve in a fresh process: cold cache {start['s_cold']:.1f} s, warm {start['s_warm']:.2f} s"
        )
        sections = {"stacked_solve": solve_res, "startup": start}
        path = save("bench-kernels", rows, out=out, sections=sections, **settings)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
