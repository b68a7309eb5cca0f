"""Step benchmark: cost of one integrator step versus a dense full-matrix RK4 step.

For each integrator and size (m = n, rank r) it measures the median wall time of one
step on a structured problem (``LinearMatrixODE`` with a low-rank source, products in
O((m + n) r^2)) and on the generic dense problem (``MatrixODE``, which forms F once per
point), together with the QR/SVD counts, shapes and flops of the step.  The baseline is
what a user without this library would run: one classical RK4 step of the full
``m x n`` matrix ODE (NumPy).

Usage::

    python bench/bench_step.py                 # writes bench/results/step_benchmark.json
    python bench/bench_step.py --sizes 200 1000 --rank 8 --repeat 5 --out FILE

All ratios in the output are measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

import lowrank_core as lc


def _problems(m: int, r: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, m)) / np.sqrt(m)
    B = rng.standard_normal((m, m)) / np.sqrt(m)
    C = lc.LowRank.from_dense(rng.standard_normal((m, 2)) @ rng.standard_normal((2, m)), rank=2)
    Y0 = lc.LowRank.from_dense(rng.standard_normal((m, r)) @ rng.standard_normal((r, m)), rank=r)
    structured = lc.LinearMatrixODE(A, B, C)
    Cd = C.to_dense()
    dense = lc.MatrixODE(lambda t, Y: A @ Y + Y @ B.T + Cd)
    return structured, dense, Y0, (A, B, Cd)


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def run(sizes, rank, repeat, dt=1e-2):
    rows = []
    for m in sizes:
        structured, dense, Y0, (A, B, Cd) = _problems(m, rank)
        Yd = Y0.to_dense()

        def f(Y, A=A, B=B, Cd=Cd):
            return A @ Y + Y @ B.T + Cd

        def rk4_dense(Yd=Yd, f=f):
            k1 = f(Yd)
            k2 = f(Yd + 0.5 * dt * k1)
            k3 = f(Yd + 0.5 * dt * k2)
            k4 = f(Yd + dt * k3)
            return Yd + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

        base = _time(rk4_dense, repeat)
        rows.append({"m": m, "n": m, "r": rank, "method": "dense-rk4 (baseline)", "problem": "dense", "seconds": base,
                     "qr": 0, "svd": 0, "rhs_evals": 4, "flops": 0.0, "speedup_vs_dense": 1.0})
        for name, cls in lc.METHODS.items():
            for label, problem in (("structured", structured), ("dense", dense)):
                method = cls(substep="rk4")

                def one_step(method=method, problem=problem, Y0=Y0):
                    return method.step(problem, 0.0, dt, Y0, None)[2]  # the step's StepInfo

                sec = _time(one_step, repeat)
                c = one_step()
                rows.append({
                    "m": m, "n": m, "r": rank, "method": name, "problem": label, "seconds": sec,
                    "qr": c.qr, "svd": c.svd,
                    "qr_shapes": {f"{a}x{b}": v for (a, b), v in c.qr_shapes.items()},
                    "svd_shapes": {f"{a}x{b}": v for (a, b), v in c.svd_shapes.items()},
                    "rhs_evals": c.rhs_evals, "flops": c.qr_flops + c.svd_flops,
                    "speedup_vs_dense": base / sec,
                })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "step_benchmark.json"))
    args = parser.parse_args(argv)
    rows = run(args.sizes, args.rank, args.repeat)
    print(f"{'m':>6} {'method':<22} {'problem':<10} {'ms/step':>9} {'x dense':>8} {'QR':>3} {'SVD':>3} {'F':>3}")
    for row in rows:
        print(f"{row['m']:>6} {row['method']:<22} {row['problem']:<10} {1e3 * row['seconds']:>9.3f} "
              f"{row['speedup_vs_dense']:>8.1f} {row['qr']:>3} {row['svd']:>3} {row['rhs_evals']:>3}")
    meta = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "lowrank_core": lc.__version__}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
