"""Throughput of the batched kernels of :mod:`lowrank_kernels` against the baselines a user
would otherwise pick (``lowrank-core bench kernels``, :func:`lowrank_core.bench.kernels`).

For every case ``(B, m, k)`` and dtype this times, interleaved within one process (so
that drifts of a shared machine hit all contenders alike):

* the kernel (``batched_qr`` / ``batched_svd`` with ``algorithm="auto"``);
* NumPy on the whole stack (``numpy.linalg.qr`` / ``numpy.linalg.svd``; NumPy loops LAPACK
  per matrix internally and computes float32 in float64);
* a per-matrix SciPy loop (``scipy.linalg.qr(mode="economic")`` / ``scipy.linalg.svd``),
  true single-precision LAPACK for float32 -- only for ``B <= SCIPY_LOOP_MAX_B``.

Speed-ups are medians of the per-round ratios.  The accuracy columns are the kernel's
``max ||Q^H Q - I||_max`` (or of ``U``, ``V``) and ``max ||A - QR||_F / ||A||_F`` over the
batch.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lowrank_kernels import batched_qr, batched_svd, qr_algorithm, svd_algorithm

__all__ = ["QR_CASES", "SCIPY_LOOP_MAX_B", "SVD_CASES", "environment", "run", "time_rounds"]

#: (B, m, k) of the thin-QR cases.
QR_CASES = ((10000, 64, 8), (1000, 256, 16), (100, 1024, 32), (10, 4096, 64), (1, 100000, 32))
#: (B, k, k) of the SVD cases.
SVD_CASES = ((10000, 8, 8), (1000, 16, 16), (1000, 32, 32), (100, 64, 64))
#: The per-matrix SciPy loop is timed only up to this batch size (it is call-bound).
SCIPY_LOOP_MAX_B = 10000


def _quick(cases: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out = []
    for b, m, k in cases:
        if b == 1:
            out.append((1, max(m // 5, k), k))
        else:
            out.append((max(b // 10, 2), m, k))
    return out


def _test_matrices(shape: tuple[int, int, int], dtype: np.dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if dtype.kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _orth_error(q: np.ndarray) -> float:
    k = q.shape[-1]
    g = np.conj(np.swapaxes(q, -1, -2)) @ q
    return float(np.abs(g - np.eye(k, dtype=q.dtype)).max()) if q.size else 0.0


def _recon_error(a: np.ndarray, b: np.ndarray) -> float:
    num = np.linalg.norm((a - b).astype(np.complex128 if a.dtype.kind == "c" else np.float64), axis=(-2, -1))
    den = np.linalg.norm(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64), axis=(-2, -1))
    return float((num / np.where(den > 0, den, 1.0)).max())


def time_rounds(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[float]]:
    """Time every contender ``repeat`` times, interleaved: round ``i`` runs each of ``fns`` once.

    Interleaving makes a drift of a shared machine (another process starting, a
    frequency change) hit every contender alike, so that per-round ratios stay
    meaningful.  Every function is called once before the timed rounds (warm-up and
    compilation).

    Parameters
    ----------
    fns : dict of str to callable
        The contenders, called without arguments.
    repeat : int
        Timed rounds.

    Returns
    -------
    dict of str to list of float
        Seconds of each contender, one entry per round.
    """
    for fn in fns.values():  # warm-up (and compilation)
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _case(op: str, shape: tuple[int, int, int], dtype: np.dtype, repeat: int) -> dict[str, Any]:
    import scipy.linalg

    a = _test_matrices(shape, dtype, seed=sum(shape))
    b, m, k = shape
    if op == "qr":
        q, r = batched_qr(a)
        orth = _orth_error(q)
        recon = _recon_error(a, q @ r)
        algorithm = qr_algorithm(a.shape, dtype)
        fns: dict[str, Callable[[], Any]] = {
            "kernel": lambda: batched_qr(a),
            "numpy": lambda: np.linalg.qr(a),
        }
        if b <= SCIPY_LOOP_MAX_B:
            fns["scipy_loop"] = lambda: [scipy.linalg.qr(a[i], mode="economic") for i in range(b)]
    else:
        u, s, v = batched_svd(a)
        orth = max(_orth_error(u), _orth_error(v))
        recon = _recon_error(a, (u * s[..., None, :]) @ np.conj(np.swapaxes(v, -1, -2)))
        algorithm = svd_algorithm(a.shape, dtype)
        fns = {
            "kernel": lambda: batched_svd(a),
            "numpy": lambda: np.linalg.svd(a, full_matrices=False),
        }
        if b <= SCIPY_LOOP_MAX_B:
            fns["scipy_loop"] = lambda: [scipy.linalg.svd(a[i], full_matrices=False) for i in range(b)]
    times = time_rounds(fns, repeat)

    def med_ms(name: str) -> float | None:
        return 1e3 * statistics.median(times[name]) if name in times else None

    def speedup(name: str) -> float | None:
        if name not in times:
            return None
        return statistics.median(base / kern for base, kern in zip(times[name], times["kernel"], strict=True))

    return {
        "op": op,
        "B": b,
        "m": m,
        "k": k,
        "dtype": str(dtype),
        "algorithm": algorithm,
        "ms_kernel": med_ms("kernel"),
        "ms_numpy": med_ms("numpy"),
        "ms_scipy_loop": med_ms("scipy_loop"),
        "speedup_numpy": speedup("numpy"),
        "speedup_scipy_loop": speedup("scipy_loop"),
        "max_orth_error": orth,
        "max_recon_error": recon,
        "repeat": repeat,
    }


def run(
    *,
    ops: Sequence[str] = ("qr", "svd"),
    cases: dict[str, Sequence[tuple[int, int, int]]] | None = None,
    dtypes: Sequence[str] = ("float64", "float32"),
    repeat: int = 5,
    quick: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Time the kernels against NumPy and a SciPy loop; one dict per (op, case, dtype).

    Parameters
    ----------
    ops : sequence of {"qr", "svd"}
    cases : dict, optional
        ``{"qr": [(B, m, k), ...], "svd": [(B, k, k), ...]}``; defaults to
        :data:`QR_CASES` and :data:`SVD_CASES`.
    dtypes : sequence of str
        NumPy dtype names (float32, float64, complex64, complex128).
    repeat : int
        Timed rounds per contender (after one warm-up round).
    quick : bool
        Divide the batch sizes by 10 (and the tall single matrix's rows by 5).
    progress : callable, optional
        ``progress(done, total, label)`` after every case.

    Returns
    -------
    list of dict
        Keys ``op, B, m, k, dtype, algorithm, ms_kernel, ms_numpy, ms_scipy_loop,
        speedup_numpy, speedup_scipy_loop, max_orth_error, max_recon_error, repeat``
        (``None`` where the SciPy loop was not timed).  The environment (threads) is in
        :func:`environment`.
    """
    for op in ops:
        if op not in ("qr", "svd"):
            msg = f"argument 'ops' may contain 'qr' and 'svd'; got {op!r}."
            raise ValueError(msg)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        msg = f"argument 'repeat' must be a positive integer; got {repeat!r}."
        raise ValueError(msg)
    chosen = {"qr": QR_CASES, "svd": SVD_CASES}
    if cases is not None:
        chosen.update({op: tuple(tuple(int(v) for v in c) for c in cs) for op, cs in cases.items()})
    todo = []
    for op in ops:
        op_cases = _quick(chosen[op]) if quick else list(chosen[op])
        for dt in dtypes:
            dtype = np.dtype(dt)
            todo.extend((op, tuple(c), dtype) for c in op_cases)
    rows = []
    for i, (op, shape, dtype) in enumerate(todo):
        rows.append(_case(op, shape, dtype, repeat))
        if progress is not None:
            progress(i + 1, len(todo), f"{op} {shape} {dtype}")
    return rows


def environment() -> dict[str, Any]:
    """Threads and versions that the figures depend on."""
    import numba
    import scipy

    return {
        "numba_threads": numba.get_num_threads(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
    }
