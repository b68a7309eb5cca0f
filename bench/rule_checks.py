"""The measurements behind the kernels' size rules, rerunnable.

For each rule, interleaved timings (median over rounds of the per-round ratio) of the
contenders the rule chooses between, on shapes on both sides of its threshold:

* ``qr``: CholeskyQR2 (the real default) against Householder and ``numpy.linalg.qr``,
  including small single matrices;
* ``qr_rows``: one real tall matrix (the augmentation QR of a KSL/BUG step and larger),
  idle and with two CPU-bound background processes (``background_load`` of bench/_common.py):
  CholeskyQR2 with its rows split across our threads against the same kernel on the
  calling thread, both with BLAS pinned to one thread, Householder, ``numpy.linalg.qr``
  and ``batched_qr``'s default, behind ``QR_ROWS_PARALLEL_MIN_WORK``;
* ``svd_single``: one real SVD, square cores and tall blocks, idle and with two
  CPU-bound processes: ``batched_svd`` against ``numpy.linalg.svd``, behind
  ``lowrank_core._linalg.KERNEL_SVD_TALL_RATIO`` (run it like ``qr_rows``);
* ``qr_torch``: one float32 PyTorch CPU matrix, QR and tall SVD through the kernels
  against ``torch.linalg``, alone and right after a torch product (as inside a training
  step), idle and with two CPU-bound processes, behind
  ``lowrank_core._linalg.TORCH_LINALG_MIN_K`` and ``TORCH_LINALG_MAX_RATIO`` (run it
  like ``qr_rows``);
* ``qr_complex128``: the complex Householder kernel against ``numpy.linalg.qr``, behind the
  seam's rule that keeps few complex128 blocks with ``k >= 16`` on LAPACK
  (``lowrank_core._linalg.KERNEL_QR_C128_MIN_BATCH``);
* ``svd``: Jacobi against LAPACK ``gesdd`` per matrix (both on our threads) and
  ``numpy.linalg.svd``, behind ``SVD_JACOBI_MAX_K`` (real);
* ``svd_complex``: the same contenders on complex128 and complex64 stacks around
  ``SVD_JACOBI_MAX_K_COMPLEX``;
* ``svd_tall``: for tall real stacks, the stacked CholeskyQR2 first (``A = Q R``, SVD of
  ``R``, ``U = Q U_R``) against the SVD kernel's own per-matrix Householder QR, and NumPy,
  behind ``SVD_TALL_QR_MIN_MATRIX`` and ``SVD_TALL_QR_MIN_WORK``;
* ``matmul``: the parallel batched-product kernel against ``numpy.matmul`` on the
  product shapes of a stacked solve, behind ``MATMUL_MIN_WORK`` and ``MATMUL_MIN_PRODUCT``.

Writes ``bench/results/rule_checks.json``.  Run: ``OPENBLAS_NUM_THREADS=1 python
bench/rule_checks.py [--rules svd_complex ...]`` (``--rules`` reruns those rules only and
keeps the other rules' last rows in the file).  ``qr_rows`` compares against the BLAS as
a user has it (threaded, the pinned contenders pin it themselves), so run it apart::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/rule_checks.py --rules qr_rows svd_single qr_torch

(the workplace's ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` slow current OpenBLAS).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import RESULTS, check_environment, compare, save

import lowrank_kernels as lk
from lowrank_kernels import _api

QR_REAL = [
    (10000, 64, 8),
    (1000, 256, 16),
    (100, 1024, 32),
    (1, 64, 8),
    (1, 128, 8),
    (1, 64, 16),
    (1, 512, 16),
    (30, 128, 8),
]
QR_SINGLE = [(1000, 20), (4000, 20), (64000, 20), (8000, 32), (32000, 32), (100000, 32), (300000, 32), (100000, 64)]
QR_C128 = [(1000, 64, 8), (100, 256, 16), (16, 512, 16), (1, 128, 8), (1, 256, 16), (1, 512, 16), (2, 1000, 20)]
SVD = [(1000, 8, 8), (1000, 16, 16), (200, 24, 24), (200, 32, 32), (1000, 64, 8)]
SVD_COMPLEX = [(1000, 2, 2), (1000, 4, 4), (1000, 6, 6), (1000, 8, 8), (1000, 64, 4), (1000, 64, 8), (200, 16, 16)]
SVD_TALL = [
    (1000, 64, 8),
    (300, 64, 8),
    (1000, 64, 4),
    (16, 128, 8),
    (1000, 128, 8),
    (4, 256, 16),
    (1, 256, 8),
    (1, 1024, 16),
    (1000, 256, 16),
    (100, 1024, 32),
    (10, 4096, 64),
    (1, 100000, 32),
]

MATMUL = [
    (m, n, p, b)
    for (m, n, p) in [(64, 64, 8), (64, 4, 8), (4, 64, 8), (64, 4, 64), (8, 8, 8), (4, 4, 8)]
    for b in (16, 64, 256, 1000)
]


def _svd_tall(a: np.ndarray, *, stacked_qr: bool) -> None:
    """``batched_svd`` of a real ``(B, m, k)`` stack by either path of the ``svd_tall`` rule."""
    from lowrank_kernels import _cpu

    nb, m, k = a.shape
    code = _cpu.SVD_JACOBI if lk.svd_algorithm(a.shape, a.dtype) == "jacobi" else _cpu.SVD_LAPACK
    u, s, v = np.empty_like(a), np.empty((nb, k), a.dtype), np.empty((nb, k, k), a.dtype)
    (_api._svd_tall_stack if stacked_qr else _api._svd_stack)(a, u, s, v, code, _api._work_proto(a.dtype))


def _matrices(shape: tuple[int, int, int], dtype: str) -> np.ndarray:
    rng = np.random.default_rng(sum(shape))
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _report(rows: list[dict[str, Any]], row: dict[str, Any]) -> None:
    rows.append(row)
    label = {k: v for k, v in row.items() if k in ("rule", "op", "dtype", "shape", "auto", "auto_kernel", "load")}
    print(*label.values(), {k: round(v, 3) for k, v in row.items() if k not in label})


def qr_rows(repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for dt in ("float64", "float32"):
        for shape in QR_REAL:
            a = _matrices(shape, dt)
            res = compare(
                {
                    "numpy": lambda a=a: np.linalg.qr(a),
                    "householder": lambda a=a: lk.batched_qr(a, algorithm="householder"),
                    "cholqr2": lambda a=a: lk.batched_qr(a, algorithm="cholqr2"),
                },
                repeat,
                "numpy",
            )
            _report(rows, {"rule": "qr", "dtype": dt, "shape": shape, **res})
    return rows


def qr_single_rows(repeat: int) -> list[dict[str, Any]]:
    import numba
    from _common import background_load

    from lowrank_kernels import _cpu

    threads = numba.get_num_threads()
    wp = _api._work_proto(np.dtype(np.float64))

    def kernel(a: np.ndarray, split: bool) -> None:
        m, k = a.shape
        q, r = np.empty_like(a), np.empty((k, k))
        with _api._blas_pinned_to_one_thread(m * k * k):
            if split:
                _cpu.qr_rows_parallel(a, q, r, threads)
            else:
                _cpu.qr_batch_serial(a[None], q[None], r[None], _cpu.QR_CHOLQR2, 1, wp)

    rows: list[dict[str, Any]] = []
    for load in (0, 2):
        with background_load(load, settle=2.0) as info:
            for m, k in QR_SINGLE:
                a = _matrices((1, m, k), "float64")[0]
                res = compare(
                    {
                        "numpy": lambda a=a: np.linalg.qr(a),
                        "householder": lambda a=a: lk.batched_qr(a, algorithm="householder"),
                        "rows_parallel": lambda a=a: kernel(a, split=True),
                        "serial": lambda a=a: kernel(a, split=False),
                        "auto": lambda a=a: lk.batched_qr(a),
                    },
                    repeat,
                    "numpy",
                )
                auto = "rows_parallel" if m * k * k >= lk.QR_ROWS_PARALLEL_MIN_WORK and threads > 1 else "serial"
                row = {"rule": "qr_rows", "dtype": "float64", "shape": (m, k), "auto": auto, "load": load, **res}
                _report(rows, row)
        for row in rows:
            if row["load"] == load:
                row["threads"] = threads
                row["load_cpu_share"] = info.get("cpu_share")
    return rows


SVD_SINGLE = [(8, 8), (16, 16), (40, 40), (200, 16), (1000, 20), (1000, 40), (4000, 40), (100000, 32)]


def svd_single_rows(repeat: int) -> list[dict[str, Any]]:
    from _common import background_load

    from lowrank_core._linalg import KERNEL_SVD_TALL_RATIO

    rows: list[dict[str, Any]] = []
    for load in (0, 2):
        with background_load(load, settle=2.0):
            for m, k in SVD_SINGLE:
                a = _matrices((1, m, k), "float64")[0]
                res = compare(
                    {
                        "numpy": lambda a=a: np.linalg.svd(a, full_matrices=False),
                        "kernel": lambda a=a: lk.batched_svd(a),
                    },
                    repeat,
                    "numpy",
                )
                auto = "kernel" if m >= KERNEL_SVD_TALL_RATIO * k else "numpy"
                row = {"rule": "svd_single", "dtype": "float64", "shape": (m, k), "auto": auto, "load": load}
                _report(rows, {**row, **res})
    return rows


QR_TORCH = [(256, 128), (784, 128), (1024, 128), (4096, 128), (256, 256), (784, 256), (1024, 256), (4096, 256),
            (1024, 512)]  # fmt: skip


def qr_torch_rows(repeat: int) -> list[dict[str, Any]]:
    """A single float32 PyTorch CPU matrix: QR and tall SVD through the kernels (the
    seam under ``"kernels"``) against ``torch.linalg`` (the seam under ``"xp"``), alone
    and *warm*: right after a torch product of the training step's size (784 x 1024 by
    1024 x 128, untimed), as inside an optimizer step, whose OpenMP threads are then
    still spinning.  Idle and with two CPU-bound processes; behind
    ``lowrank_core._linalg.TORCH_LINALG_MIN_K`` and ``TORCH_LINALG_MAX_RATIO``."""
    import time

    import array_api_compat
    import torch
    from _common import background_load

    from lowrank_core import _linalg

    xp = array_api_compat.array_namespace(torch.empty(1))
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(784, 1024, generator=gen), torch.randn(1024, 128, generator=gen)
    rows: list[dict[str, Any]] = []
    for load in (0, 2):
        with background_load(load, settle=2.0):
            for op in ("qr", "svd"):
                for m, k in QR_TORCH:
                    m = max(m, 2 * k) if op == "svd" else m  # tall SVDs only (square cores are LAPACK's anyway)
                    x = torch.randn(m, k, generator=gen)
                    decompose = _linalg.thin_qr if op == "qr" else _linalg.thin_svd
                    times: dict[str, list[float]] = {
                        f"{p}_{w}": [] for p in ("kernels", "xp") for w in ("alone", "warm")
                    }
                    for rnd in range(repeat + 1):
                        for name in times:
                            path, warm = name.split("_")
                            if warm == "warm":
                                a @ b
                            with _linalg.use_linalg(path):
                                t0 = time.perf_counter()
                                decompose(x, xp)
                                dt = time.perf_counter() - t0
                            if rnd:  # round 0 warms up
                                times[name].append(dt)
                    med = {n: statistics.median(v) for n, v in times.items()}
                    auto = "xp" if _linalg._torch_linalg_preferred(x) else "kernels"
                    row = {"rule": "qr_torch", "dtype": "float32", "shape": (m, k), "op": op, "auto": auto,
                           "load": load}  # fmt: skip
                    res = {f"ms_{n}": 1e3 * v for n, v in med.items()}
                    for w in ("alone", "warm"):
                        res[f"kernels_over_xp_{w}"] = statistics.median(
                            c / t for c, t in zip(times[f"kernels_{w}"], times[f"xp_{w}"], strict=True)
                        )
                    _report(rows, {**row, **res})
    return rows


def qr_complex_rows(repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for shape in QR_C128:
        a = _matrices(shape, "complex128")
        res = compare(
            {
                "numpy": lambda a=a: np.linalg.qr(a),
                "householder": lambda a=a: lk.batched_qr(a, algorithm="householder"),
            },
            repeat,
            "numpy",
        )
        _report(rows, {"rule": "qr_complex128", "dtype": "complex128", "shape": shape, **res})
    return rows


def _svd_rows(rule: str, dtypes: tuple[str, ...], shapes: list, repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for dt in dtypes:
        for shape in shapes:
            a = _matrices(shape, dt)
            res = compare(
                {
                    "numpy": lambda a=a: np.linalg.svd(a, full_matrices=False),
                    "jacobi": lambda a=a: lk.batched_svd(a, algorithm="jacobi"),
                    "lapack": lambda a=a: lk.batched_svd(a, algorithm="lapack"),
                },
                repeat,
                "numpy",
            )
            _report(rows, {"rule": rule, "dtype": dt, "shape": shape, "auto": lk.svd_algorithm(shape, dt), **res})
    return rows


def svd_rows(repeat: int) -> list[dict[str, Any]]:
    return _svd_rows("svd", ("float64", "float32"), SVD, repeat)


def svd_complex_rows(repeat: int) -> list[dict[str, Any]]:
    return _svd_rows("svd_complex", ("complex128", "complex64"), SVD_COMPLEX, repeat)


def svd_tall_rows(repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for dt in ("float64", "float32"):
        for shape in SVD_TALL:
            a = _matrices(shape, dt)
            res = compare(
                {
                    "numpy": lambda a=a: np.linalg.svd(a, full_matrices=False),
                    "stacked_qr": lambda a=a: _svd_tall(a, stacked_qr=True),
                    "in_kernel_qr": lambda a=a: _svd_tall(a, stacked_qr=False),
                },
                repeat,
                "numpy",
            )
            auto = "stacked_qr" if _api._svd_via_stacked_qr(shape, dt) else "in_kernel_qr"
            _report(rows, {"rule": "svd_tall", "dtype": dt, "shape": shape, "auto": auto, **res})
    return rows


def matmul_rows(repeat: int) -> list[dict[str, Any]]:
    from lowrank_kernels import _cpu

    rows: list[dict[str, Any]] = []
    for m, n, p, b in MATMUL:
        x, y = _matrices((b, m, n), "float64"), _matrices((b, n, p), "float64")
        z = np.empty((b, m, p))
        res = compare(
            {
                "numpy": lambda x=x, y=y: np.matmul(x, y),
                "kernel": lambda x=x, y=y, z=z: _cpu.matmul_batch(x, y, z, False, False, min(len(z), 8)),
            },
            repeat,
            "numpy",
        )
        auto = lk.matmul_uses_kernel((b, m, n), (b, n, p))
        _report(rows, {"rule": "matmul", "dtype": "float64", "shape": (b, m, n, p), "auto_kernel": auto, **res})
    return rows


RULES: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "qr": qr_rows,
    "qr_rows": qr_single_rows,
    "svd_single": svd_single_rows,
    "qr_torch": qr_torch_rows,
    "qr_complex128": qr_complex_rows,
    "svd": svd_rows,
    "svd_complex": svd_complex_rows,
    "svd_tall": svd_tall_rows,
    "matmul": matmul_rows,
}


def main(argv: list[str] | None = None, repeat: int = 5) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", nargs="+", choices=list(RULES), help="rerun these rules only")
    args = parser.parse_args(argv)
    check_environment()
    out = RESULTS / "rule_checks.json"
    chosen = args.rules or list(RULES)
    kept = json.loads(out.read_text())["rows"] if args.rules and out.exists() else []
    rows = [row for row in kept if row["rule"] not in chosen and row["rule"] in RULES]
    for rule in chosen:
        rows += RULES[rule](repeat)
    rows.sort(key=lambda row: list(RULES).index(row["rule"]))
    print(f"wrote {save('rule-checks', rows, out=out, load=[0, 2], rules=chosen)}")


if __name__ == "__main__":
    main()
