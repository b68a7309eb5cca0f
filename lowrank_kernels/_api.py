"""Public front end of the kernels: validation, the per-shape algorithm rule, dispatch."""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "BLAS_MIN_ENTRIES",
    "SERIAL_MAX_WORK",
    "SVD_JACOBI_MAX_K",
    "batched_qr",
    "batched_svd",
    "qr_algorithm",
    "svd_algorithm",
]

_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
_QR_ALGOS = ("auto", "householder", "cholqr2", "cholqr2-blas")
_SVD_ALGOS = ("auto", "jacobi", "lapack")

#: Real matrices with at least this many entries (``m * k``) are factored by BLAS-3
#: CholeskyQR2 (``syrk`` + ``potrf`` + ``trsm`` through SciPy), guarded, with the
#: Householder kernel as per-matrix fallback.  Parallel across matrices, or across row
#: blocks of a single matrix, when the BLAS can be pinned to one thread (threadpoolctl,
#: or ``OPENBLAS_NUM_THREADS=1``); otherwise one matrix at a time, threaded by the BLAS.
BLAS_MIN_ENTRIES = 65536
#: Square cores up to this size use the one-sided Jacobi kernel; larger use LAPACK
#: ``gesdd`` per matrix inside a parallel loop.
SVD_JACOBI_MAX_K = 16


def _is_cuda_array(a: Any) -> bool:
    """CUDA Array Interface objects (CuPy, numba device arrays) and the simulator's
    device arrays (which lack the interface)."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__module__.startswith("numba.cuda")


def _check_dtype(fn: str, dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.type not in _DTYPES:
        msg = (
            f"{fn}: argument 'a' has dtype {dt}; pass float32, float64, complex64 or complex128 "
            "(for example a.astype(numpy.float64))."
        )
        raise TypeError(msg)
    return dt


def _check_shape(fn: str, shape: tuple[int, ...], *, thin: bool) -> None:
    if len(shape) < 2:
        msg = f"{fn}: argument 'a' must have at least 2 dimensions (..., m, k); got shape {shape}."
        raise ValueError(msg)
    if thin and shape[-2] < shape[-1]:
        msg = (
            f"{fn}: thin QR needs m >= k, got shape {shape} (m={shape[-2]}, k={shape[-1]}); "
            "factor the conjugate transpose, or use numpy.linalg.qr for wide matrices."
        )
        raise ValueError(msg)


def _cuda_result(fn: str, a: Any, algorithm: str, choices: tuple[str, ...], *, thin: bool, out: Any) -> Any:
    """Validate ``algorithm``; for a CUDA array, validate it and run the CUDA kernel.

    Returns the CUDA kernel's outputs, or ``None`` when ``a`` is not a CUDA array (the
    caller then runs the CPU path).
    """
    if algorithm not in choices:
        msg = f"{fn}: argument 'algorithm' must be one of {choices}, got {algorithm!r}."
        raise ValueError(msg)
    if not _is_cuda_array(a):
        return None
    _check_dtype(fn, a.dtype)
    _check_shape(fn, tuple(a.shape), thin=thin)
    from . import _cuda

    return getattr(_cuda, fn)(a, out=out)


def _cpu_input(fn: str, a: Any, *, thin: bool) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        msg = (
            f"{fn}: argument 'a' must be a numpy.ndarray (CPU) or a CUDA array such as a CuPy array; "
            f"got {type(a).__module__}.{type(a).__name__}. Convert other CPU arrays with numpy.from_dlpack."
        )
        raise TypeError(msg)
    dt = _check_dtype(fn, a.dtype)
    _check_shape(fn, a.shape, thin=thin)
    if not dt.isnative:
        return a.astype(dt.newbyteorder("="))
    x = np.ascontiguousarray(a)
    # Read-only inputs are copied once: the kernels never write to ``a``, but a
    # read-only array is a different Numba type and would double the compile work.
    return x if x.flags.writeable else x.copy()


def _work_proto(dt: np.dtype) -> np.ndarray:
    return np.zeros(1, dtype=np.complex128 if dt.kind == "c" else np.float64)


def _real_dtype(dt: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dt in (np.float32, np.complex64) else np.dtype(np.float64)


def _outputs(fn: str, out: Any, specs: list[tuple[str, tuple[int, ...], np.dtype]], a: np.ndarray) -> list:
    if out is None:
        return [np.empty(shape, dtype=dt) for _, shape, dt in specs]
    if not isinstance(out, (tuple, list)) or len(out) != len(specs):
        names = ", ".join(name for name, _, _ in specs)
        msg = f"{fn}: argument 'out' must be a tuple ({names}) of preallocated arrays; got {type(out).__name__}."
        raise TypeError(msg)
    for arr, (name, shape, dt) in zip(out, specs, strict=True):
        if not isinstance(arr, np.ndarray):
            msg = f"{fn}: out array {name!r} must be a numpy.ndarray, got {type(arr).__name__}."
            raise TypeError(msg)
        if arr.dtype != dt:
            msg = f"{fn}: out array {name!r} has dtype {arr.dtype}; it must be {dt}."
            raise TypeError(msg)
        if arr.shape != shape:
            msg = f"{fn}: out array {name!r} has shape {arr.shape}; it must be {shape}."
            raise ValueError(msg)
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            msg = f"{fn}: out array {name!r} must be C-contiguous and writeable."
            raise ValueError(msg)
        if np.shares_memory(arr, a):
            msg = f"{fn}: out array {name!r} overlaps the input 'a'; pass separate memory."
            raise ValueError(msg)
    return list(out)


#: Below this many flops (``B * m * k**2``) a call runs serially: waking Numba's thread
#: pool costs more than the work (and, on a loaded machine, far more).
SERIAL_MAX_WORK = 2.0e6


def _driver(kind: str, nb: int, m: int, k: int) -> tuple[Any, int]:
    """The parallel or serial Numba driver for this work size, and its chunk count."""
    import numba

    from . import _cpu

    if nb * m * k * k < SERIAL_MAX_WORK or numba.get_num_threads() == 1:
        return getattr(_cpu, f"{kind}_batch_serial"), 1
    return getattr(_cpu, f"{kind}_batch"), max(1, min(nb, 4 * numba.get_num_threads()))


@contextlib.contextmanager
def _blas_pinned_to_one_thread() -> Iterator[bool]:
    """Yield whether BLAS runs single-threaded inside the block, so that our own threads
    may call it concurrently without oversubscribing the cores.

    With ``threadpoolctl`` installed the BLAS is limited to one thread for the block;
    without it, only an environment that already pins it (``OPENBLAS_NUM_THREADS=1``,
    ``OMP_NUM_THREADS=1`` or ``MKL_NUM_THREADS=1``) counts.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield any(os.environ.get(v) == "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"))
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield True


def _cholqr2_blas(a: np.ndarray, q: np.ndarray, r: np.ndarray, pool: Any = None, nblocks: int = 1) -> bool:
    """BLAS-3 CholeskyQR2 of one real C-contiguous ``a`` (m, k) in float64 into ``q``, ``r``.

    Works on ``A^T`` (k, m) (F-ordered, so a view of ``a`` for float64): ``G = A^T A``
    by a ``gemm``, ``R = chol(G)`` by ``dpotrf``, ``Q^T = R^{-T} A^T`` by a ``gemm``
    with the triangular inverse (``dtrtri``); twice.  NumPy's ``matmul`` releases the
    GIL, so with a thread ``pool`` the ``nblocks`` row blocks run concurrently.
    Returns ``False`` (outputs undefined) under the same guards as the Numba
    ``cholqr2`` (non-finite input, Cholesky breakdown, ``max/min diag(R1) > 1e6``,
    ``||Q1^T Q1 - I||_max > 0.1``); the second pass repairs the orthogonality lost
    to the explicit inverse.
    """
    from scipy.linalg import lapack

    from ._cpu import _CHOL_COND_MAX, _CHOL_ORTH_MAX

    m, k = a.shape
    src = a.T if a.dtype == np.float64 else a.T.astype(np.float64, order="F")
    if not np.isfinite(src).all():
        return False
    dst = np.empty((k, m), order="F")
    bounds = [(i * m) // nblocks for i in range(nblocks + 1)]
    spans = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
    run = pool.map if pool is not None and len(spans) > 1 else map
    rtot = np.eye(k)
    for p in range(2):
        g = sum(run(lambda s, x=src: x[:, s[0] : s[1]] @ x[:, s[0] : s[1]].T, spans))
        if p == 1 and not np.abs(g - np.eye(k)).max() <= _CHOL_ORTH_MAX:
            return False
        c, info = lapack.dpotrf(g, lower=0, clean=1)
        if info != 0:
            return False
        d = np.diagonal(c)
        if p == 0 and not d.max() <= _CHOL_COND_MAX * d.min():
            return False
        ci, info = lapack.dtrtri(c, lower=0)
        if info != 0:
            return False
        cit = np.ascontiguousarray(ci.T)

        def solve(s: tuple[int, int], x: np.ndarray = src, y: np.ndarray = dst, w: np.ndarray = cit) -> None:
            np.matmul(w, x[:, s[0] : s[1]], out=y[:, s[0] : s[1]])

        list(run(solve, spans))
        src, dst = dst, (np.empty((k, m), order="F") if p == 0 else None)
        rtot = c @ rtot
    q[...] = src.T
    r[...] = np.triu(rtot)
    return True


def _qr_blas_batch(x3: np.ndarray, q3: np.ndarray, r3: np.ndarray) -> list[int]:
    """``cholqr2-blas`` over a stack; returns the indices that need the fallback.

    When the BLAS can be pinned to one thread, Numba's thread count of workers share
    the work: across matrices for a batch, across row blocks for a single matrix.
    """
    import numba

    nb = x3.shape[0]
    workers = numba.get_num_threads()
    with _blas_pinned_to_one_thread() as pinned:
        if not pinned or workers == 1:
            return [b for b in range(nb) if not _cholqr2_blas(x3[b], q3[b], r3[b])]
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            if nb >= workers:
                ok = list(pool.map(lambda b: _cholqr2_blas(x3[b], q3[b], r3[b]), range(nb)))
            else:
                ok = [_cholqr2_blas(x3[b], q3[b], r3[b], pool, workers) for b in range(nb)]
    return [b for b in range(nb) if not ok[b]]


def qr_algorithm(shape: tuple[int, ...], dtype: Any = np.float64) -> str:
    """The kernel ``batched_qr(..., algorithm="auto")`` runs for this input.

    The rule (from the measurements in ``docs/kernels.md``):

    * ``"cholqr2-blas"`` for real matrices with ``m * k >= BLAS_MIN_ENTRIES`` (tall or
      large blocks): BLAS-3 CholeskyQR2 (``gemm`` products, GIL released), parallel over
      the matrices, or over row blocks of a single matrix, when the BLAS can be pinned to
      one thread; with the guards of ``"cholqr2"`` and a per-matrix Householder fallback;
    * ``"householder"`` otherwise: one matrix per thread, unconditionally stable.

    ``"cholqr2"`` (the Numba loop version, same guards and fallback) is never chosen
    automatically: on this machine it was not faster than Householder for small
    blocks; request it explicitly to compare.
    """
    m, k = shape[-2], shape[-1]
    if np.dtype(dtype).kind == "f" and m * k >= BLAS_MIN_ENTRIES:
        return "cholqr2-blas"
    return "householder"


def svd_algorithm(shape: tuple[int, ...], dtype: Any = np.float64) -> str:
    """The kernel ``batched_svd(..., algorithm="auto")`` runs for this input.

    ``"jacobi"`` (one-sided Jacobi, after a QR when ``m > k``) when
    ``min(m, k) <= SVD_JACOBI_MAX_K``; ``"lapack"`` (``gesdd`` per matrix in a parallel
    loop) otherwise.
    """
    del dtype
    return "jacobi" if min(shape[-2], shape[-1]) <= SVD_JACOBI_MAX_K else "lapack"


def batched_qr(a: Any, *, algorithm: str = "auto", out: Any = None) -> tuple[Any, Any]:
    """Batched thin QR ``A = Q R`` with a real, non-negative diagonal of ``R``.

    Parameters
    ----------
    a : numpy.ndarray or CUDA array (CuPy), shape (..., m, k), ``m >= k``
        float32, float64, complex64 or complex128.  Never modified; non-contiguous or
        read-only inputs are copied once.
    algorithm : {"auto", "householder", "cholqr2"}
        ``"auto"`` applies :func:`qr_algorithm`.  ``"cholqr2"`` is CholeskyQR2 in
        float64/complex128 work precision with a guaranteed per-matrix Householder
        fallback (taken on Cholesky breakdown, ``max/min diag(R1) > 1e6``, or
        ``||Q1^H Q1 - I||_max > 0.1``).
    out : tuple (Q, R) of arrays, optional
        Preallocated C-contiguous outputs (CPU only); saves the allocation and first-touch
        page faults of large outputs.

    Returns
    -------
    Q : array, shape (..., m, k)
        Orthonormal columns, ``Q^H Q = I``.
    R : array, shape (..., k, k)
        Upper triangular, ``R[..., i, i] >= 0`` (real).

    Notes
    -----
    A matrix that contains NaN or Inf gets NaN in all of its outputs; the other matrices
    of the batch are unaffected.  Empty batches return empty outputs.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank_kernels import batched_qr
    >>> a = np.random.default_rng(0).standard_normal((3, 50, 4))
    >>> q, r = batched_qr(a)
    >>> bool(np.allclose(q @ r, a)), bool(np.allclose(q.transpose(0, 2, 1) @ q, np.eye(4)))
    (True, True)
    """
    fn = "batched_qr"
    gpu = _cuda_result(fn, a, algorithm, _QR_ALGOS, thin=True, out=out)
    if gpu is not None:
        return gpu
    x = _cpu_input(fn, a, thin=True)
    *batch, m, k = x.shape
    dt = x.dtype
    q, r = _outputs(fn, out, [("Q", x.shape, dt), ("R", (*batch, k, k), dt)], a)
    nb = math.prod(batch)
    if nb == 0 or k == 0:
        return q, r
    from . import _cpu

    x3 = x.reshape(nb, m, k)
    q3 = q.reshape(nb, m, k)
    r3 = r.reshape(nb, k, k)
    wp = _work_proto(dt)
    choice = qr_algorithm(x.shape, dt) if algorithm == "auto" else algorithm
    if choice == "cholqr2-blas":
        if dt.kind != "f":
            msg = f"{fn}: algorithm 'cholqr2-blas' takes real dtypes; got {dt}."
            raise TypeError(msg)
        for b in _qr_blas_batch(x3, q3, r3):
            _cpu.qr_batch_serial(x3[b : b + 1], q3[b : b + 1], r3[b : b + 1], _cpu.QR_HOUSEHOLDER, 1, wp)
        return q, r
    code = _cpu.QR_CHOLQR2 if choice == "cholqr2" else _cpu.QR_HOUSEHOLDER
    driver, nchunks = _driver("qr", nb, m, k)
    driver(x3, q3, r3, code, nchunks, wp)
    return q, r


def batched_svd(a: Any, *, algorithm: str = "auto", out: Any = None) -> tuple[Any, Any, Any]:
    """Batched thin SVD ``A = U diag(s) V^H``, singular values descending.

    Parameters
    ----------
    a : numpy.ndarray or CUDA array (CuPy), shape (..., m, k)
        Square cores ``(k, k)`` or thin ``(m, k)`` blocks (wide inputs are handled through
        the conjugate transpose); float32, float64, complex64 or complex128.  Never
        modified.
    algorithm : {"auto", "jacobi", "lapack"}
        ``"auto"`` applies :func:`svd_algorithm`.  ``"jacobi"``: one-sided Jacobi in
        float64/complex128 work precision (high relative accuracy of small singular
        values), preceded by a Householder QR when ``m > k``; if the sweeps do not
        converge the matrix is redone with LAPACK.  ``"lapack"``: ``gesdd`` per matrix
        in a parallel loop.
    out : tuple (U, s, V) of arrays, optional
        Preallocated C-contiguous outputs (CPU only).

    Returns
    -------
    U : array, shape (..., m, p)
    s : array, shape (..., p), real, descending
    V : array, shape (..., k, p)
        ``V`` itself, not ``V^H``; ``p = min(m, k)``.

    Notes
    -----
    A matrix that contains NaN or Inf gets NaN in all of its outputs; the other matrices
    of the batch are unaffected.  Left singular vectors belonging to zero singular
    values are completed to an orthonormal set.  On the CPU the phase of every singular
    pair is canonical: the largest-magnitude entry of each column of ``U`` (the first,
    on ties) is real positive, so the factors are unique for distinct singular values.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank_kernels import batched_svd
    >>> a = np.random.default_rng(0).standard_normal((2, 6, 6))
    >>> u, s, v = batched_svd(a)
    >>> bool(np.allclose((u * s[:, None, :]) @ v.transpose(0, 2, 1), a))
    True
    >>> bool(np.allclose(s, np.linalg.svd(a, compute_uv=False)))
    True
    """
    fn = "batched_svd"
    gpu = _cuda_result(fn, a, algorithm, _SVD_ALGOS, thin=False, out=out)
    if gpu is not None:
        return gpu
    x = _cpu_input(fn, a, thin=False)
    *batch, m, k = x.shape
    if m < k:
        # SVD of A^H: A^H = U' s V'^H  =>  A = V' s U'^H.
        xh = np.ascontiguousarray(np.conj(np.swapaxes(x, -1, -2)))
        swapped = out[::-1] if isinstance(out, (tuple, list)) else out
        v, s, u = batched_svd(xh, algorithm=algorithm, out=swapped)
        return u, s, v
    dt = x.dtype
    u, s, v = _outputs(
        fn, out, [("U", x.shape, dt), ("s", (*batch, k), _real_dtype(dt)), ("V", (*batch, k, k), dt)], a
    )
    nb = math.prod(batch)
    if nb == 0 or k == 0:
        return u, s, v
    from . import _cpu

    choice = svd_algorithm(x.shape, dt) if algorithm == "auto" else algorithm
    code = _cpu.SVD_JACOBI if choice == "jacobi" else _cpu.SVD_LAPACK
    tol = math.sqrt(k) * float(np.finfo(dt).eps)
    driver, nchunks = _driver("svd", nb, m, k)
    driver(
        x.reshape(nb, m, k), u.reshape(nb, m, k), s.reshape(nb, k), v.reshape(nb, k, k),
        code, nchunks, _work_proto(dt), tol,
    )
    return u, s, v
