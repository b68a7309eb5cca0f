"""Where the CholeskyQR2 guards hand matrices to Householder, and what accuracy results.

Sweeps cond(A) (graded singular values) per dtype and shape, runs ``batched_qr(...,
algorithm="cholqr2")`` and records how many matrices fell back to Householder and the
worst ``||Q^H Q - I||_max`` and ``||QR - A||_F / ||A||_F``, in units of the dtype's eps.
The test bound is ``8 max(m, k) eps``.  Writes ``bench/results/cholqr2_guard.json``.

It also times the worst case of the guarded default, a stack in which every matrix is
exactly rank deficient (so every matrix runs the failed first pass, then Householder),
against Householder alone and ``numpy.linalg.qr``: medians of 5 interleaved rounds
(``compare`` of bench/_common.py).

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python bench/cholqr2_guard.py``
(rows: the guard sweep; section ``all_fallback_timing``).
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import check_environment, compare, save

import lowrank_kernels as lk
from lowrank_kernels import _cpu

CONDS = {"float32": [1e1, 1e2, 1e3, 3e3, 1e4, 1e5], "float64": [1e4, 1e6, 1e7, 1e8, 1e9]}
SHAPES = [(200, 64, 8), (100, 256, 16), (20, 1024, 32)]


def graded(rng: np.random.Generator, shape: tuple[int, int, int], cond: float) -> np.ndarray:
    b, m, k = shape
    out = np.empty(shape)
    sig = np.logspace(0, -np.log10(cond), k)
    for i in range(b):
        u, _ = np.linalg.qr(rng.standard_normal((m, k)))
        v, _ = np.linalg.qr(rng.standard_normal((k, k)))
        out[i] = (u * sig) @ v.T
    return out


def fallback_cost(rng: np.random.Generator) -> list[dict]:
    """Rank-deficient stacks (rank k/2): every matrix falls back."""
    rows = []
    for dt in ("float64", "float32"):
        for b, m, k in [(10000, 64, 8), (1000, 256, 16), (100, 1024, 32)]:
            a = (rng.standard_normal((b, m, k // 2)) @ rng.standard_normal((b, k // 2, k))).astype(dt)
            runs = {
                "numpy": lambda a=a: np.linalg.qr(a),
                "householder": lambda a=a: lk.batched_qr(a, algorithm="householder"),
                "auto": lambda a=a: lk.batched_qr(a),
            }
            res = compare(runs, 5, "numpy")
            rows.append({"dtype": dt, "B": b, "m": m, "k": k, "rank": k // 2, **res})
            print(
                f"rank-deficient {dt} {(b, m, k)}: auto {res['ms_auto']:.1f} ms, householder "
                f"{res['ms_householder']:.1f} ms, numpy {res['ms_numpy']:.1f} ms "
                f"(auto is {res['numpy_over_auto']:.2f}x numpy)"
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="default bench/results/cholqr2_guard.json")
    args = parser.parse_args(argv)
    check_environment()
    rng = np.random.default_rng(0)
    rows = []
    for dt, conds in CONDS.items():
        eps = float(np.finfo(dt).eps)
        for shape in SHAPES:
            b, m, k = shape
            for cond in conds:
                a = graded(rng, shape, cond).astype(dt)
                q, r = np.empty_like(a), np.empty((b, k, k), dt)
                fallbacks = int(_cpu.qr_batch_serial(a, q, r, _cpu.QR_CHOLQR2, 1, np.zeros(1)))
                orth = float(np.abs(np.swapaxes(q, 1, 2) @ q - np.eye(k)).max()) / eps
                res = float((np.linalg.norm(q @ r - a, axis=(1, 2)) / np.linalg.norm(a, axis=(1, 2))).max()) / eps
                rows.append(
                    {
                        "dtype": dt,
                        "B": b,
                        "m": m,
                        "k": k,
                        "cond": cond,
                        "fallbacks": fallbacks,
                        "orth_over_eps": orth,
                        "residual_over_eps": res,
                        "test_bound_over_eps": 8 * m,
                    }
                )
                print(
                    f"{dt} {shape} cond {cond:.0e}: {fallbacks}/{b} to Householder, "
                    f"orth {orth:.1f} eps, residual {res:.1f} eps (test bound {8 * m} eps)"
                )
    cost = fallback_cost(rng)
    path = save("cholqr2-guard", rows, out=args.out, sections={"all_fallback_timing": cost}, conds=CONDS, shapes=SHAPES)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
