"""Public front end of the kernels: validation, the per-shape algorithm rule, dispatch."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import operator
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "QR_HOUSEHOLDER_MAX_WORK",
    "QR_ROWS_PARALLEL_MIN_WORK",
    "SERIAL_MAX_WORK",
    "SVD_SERIAL_MAX_WORK",
    "SVD_TALL_QR_MIN_MATRIX",
    "SVD_TALL_QR_MIN_WORK",
    "SVD_JACOBI_MAX_K",
    "SVD_JACOBI_MAX_K_COMPLEX",
    "MATMUL_MIN_PRODUCT",
    "MATMUL_MIN_WORK",
    "batched_matmul",
    "batched_qr",
    "batched_svd",
    "matmul_uses_kernel",
    "qr_algorithm",
    "svd_algorithm",
]

_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
_QR_ALGOS = ("auto", "householder", "cholqr2")
_SVD_ALGOS = ("auto", "jacobi", "lapack")

#: Real cores up to this size (``min(m, k)``) use the one-sided Jacobi kernel; larger
#: ones use LAPACK ``gesdd`` per matrix inside a parallel loop (at 32 x 32 the two were
#: level on one thread).
SVD_JACOBI_MAX_K = 24
#: The same limit for complex cores, where complex arithmetic makes Jacobi slower: at
#: 6 x 6 and 8 x 8 (and 64 x 8) ``gesdd`` per matrix beat it, at 4 x 4 and below Jacobi
#: won (``bench/rule_checks.py``, rule ``svd_complex``).
SVD_JACOBI_MAX_K_COMPLEX = 4


def _is_cuda_array(a: Any) -> bool:
    """CUDA Array Interface objects (CuPy, numba device arrays) and the simulator's
    device arrays (which lack the interface)."""
    if isinstance(a, np.ndarray):
        return False
    return hasattr(a, "__cuda_array_interface__") or type(a).__module__.startswith("numba.cuda")


def _check_dtype(fn: str, dtype: Any, name: str = "a") -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in _DTYPES:
        msg = (
            f"{fn}: `{name}` must have dtype float32, float64, complex64 or complex128; got dtype {dtype}. "
            f"Cast it first (for example {name}.astype(numpy.float64))."
        )
        raise TypeError(msg)
    return dt


def _check_shape(fn: str, shape: tuple[int, ...], *, thin: bool) -> None:
    if len(shape) < 2:
        msg = f"{fn}: `a` must have at least 2 dimensions (..., m, k); got shape {shape}."
        raise ValueError(msg)
    if thin and shape[-2] < shape[-1]:
        msg = (
            f"{fn}: `a` must have m >= k for the thin QR; got shape {shape} (m={shape[-2]}, k={shape[-1]}). "
            "Factor the conjugate transpose, or use numpy.linalg.qr for wide matrices."
        )
        raise ValueError(msg)


def _check_algorithm(fn: str, algorithm: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(algorithm, str):
        msg = (
            f"{fn}: `algorithm` must be one of {choices} (a string); got {algorithm!r} of type "
            f"{type(algorithm).__name__}."
        )
        raise TypeError(msg)
    if algorithm not in choices:
        msg = f"{fn}: `algorithm` must be one of {choices}; got {algorithm!r}."
        raise ValueError(msg)


def _shape_argument(fn: str, shape: Any, name: str) -> tuple[int, ...]:
    """A shape ``(..., rows, cols)``: a sequence of at least two non-negative ints (not bools)."""
    if type(shape) is tuple and len(shape) >= 2 and all(type(n) is int and n >= 0 for n in shape):
        return shape  # the common case, checked cheaply (the size rules run per product)
    try:
        if isinstance(shape, (str, bytes)):
            raise TypeError
        items = tuple(shape)
        if any(isinstance(n, (bool, np.bool_)) for n in items):
            raise TypeError
        items = tuple(operator.index(n) for n in items)
    except TypeError:
        msg = f"{fn}: `{name}` must be a tuple of ints (..., rows, cols); got {shape!r}."
        raise TypeError(msg) from None
    if len(items) < 2:
        msg = f"{fn}: `{name}` must have at least 2 entries (..., rows, cols); got {items}."
        raise ValueError(msg)
    if any(n < 0 for n in items):
        msg = f"{fn}: `{name}` must not have negative sizes; got {items}."
        raise ValueError(msg)
    return items


def _dtype_argument(fn: str, dtype: Any) -> np.dtype:
    """A NumPy dtype (or its name, or another library's dtype named like one) of the four."""
    if dtype is None:
        dt = None
    else:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            try:
                dt = np.dtype(str(dtype).rsplit(".", 1)[-1])  # torch.float64, cupy's dtypes
            except TypeError:
                dt = None
    if dt is None or dt.type not in _DTYPES:
        msg = f"{fn}: `dtype` must be float32, float64, complex64 or complex128; got {dtype!r}."
        raise TypeError(msg)
    return dt


def _cuda_result(fn: str, a: Any, algorithm: str, choices: tuple[str, ...], *, thin: bool, out: Any) -> Any:
    """Validate ``algorithm``; for a CUDA array, validate it and run the CUDA kernel.

    Returns the CUDA kernel's outputs, or ``None`` when ``a`` is not a CUDA array (the
    caller then runs the CPU path).
    """
    _check_algorithm(fn, algorithm, choices)
    if not _is_cuda_array(a):
        return None
    _check_dtype(fn, a.dtype)
    _check_shape(fn, tuple(a.shape), thin=thin)
    from . import _cuda

    return getattr(_cuda, fn)(a, out=out)


def _cpu_input(fn: str, a: Any, *, thin: bool) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        msg = (
            f"{fn}: `a` must be a numpy.ndarray (CPU) or a CUDA array such as a CuPy array; "
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
        msg = f"{fn}: `out` must be a tuple ({names}) of preallocated arrays; got {type(out).__name__}."
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


#: Below this many flops (``B * m * k**2``) a QR call runs serially: waking Numba's
#: thread pool costs more than the work (and, on a loaded machine, far more).
SERIAL_MAX_WORK = 2.0e6
#: The same threshold for SVDs, whose work per ``m k^2`` is about 100x that of a QR
#: (Jacobi sweeps): 50 Jacobi SVDs of 8 x 8 already ran faster on two threads.
SVD_SERIAL_MAX_WORK = 2.0e4


#: A single real matrix (or fewer matrices than threads) has its rows split across our
#: threads by CholeskyQR2 only from this much work (``m k^2``) per matrix; below, one
#: thread factors it (BLAS pinned to one thread), and no parallel region is entered.  On
#: two threads with two CPU-bound processes running, the serial kernel won up to
#: 100000 x 32 (``m k^2 = 1.0e8``: 48 against 49 ms; 1000 x 20: 0.08 against 18 ms) and
#: lost from 300000 x 32 (``3.1e8``: 151 against 116 ms); idle the split wins from a few
#: thousand rows, by at most 2x below the threshold (``bench/rule_checks.py``, rule
#: ``qr_rows``).
QR_ROWS_PARALLEL_MIN_WORK = 2.0e8


@contextlib.contextmanager
def _openmp_thread_counts_kept() -> Iterator[None]:
    """Restore, on leaving, the thread counts that the process's OpenMP runtimes had on entering.

    Those seen by ``threadpoolctl`` (when installed), and PyTorch's (when imported) through
    ``torch.set_num_threads``.
    """
    restore = []
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import ThreadpoolController

        def counts() -> list[Any]:
            return ThreadpoolController().select(user_api="openmp").lib_controllers

        before = {c.filepath: c.num_threads for c in counts()}

        def restore_openmp() -> None:
            for c in counts():
                if before.get(c.filepath, c.num_threads) != c.num_threads:
                    c.set_num_threads(before[c.filepath])

        restore.append(restore_openmp)
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        torch_threads = torch.get_num_threads()

        def restore_torch() -> None:
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)

        restore.append(restore_torch)
    try:
        yield
    finally:
        for f in restore:
            f()


def _numba_threads() -> int:
    """``numba.get_num_threads()``, launching Numba's thread pool without touching other libraries' threads.

    Numba launches its pool on first use, and its OpenMP threading layer then calls
    ``omp_set_num_threads(NUMBA_NUM_THREADS)`` on the calling thread.  PyTorch's CPU
    build runs on the same OpenMP runtime, so that silently undid a user's
    ``torch.set_num_threads(1)``: the next torch operations ran on every core (measured:
    ``torch.get_num_threads()`` 1 -> 2 after the first of our kernels on this 2-core
    machine, and torch Adam's step 1.2-1.6 -> 5.6-6.0 ms under load).  The launch is
    therefore wrapped in :func:`_openmp_thread_counts_kept`; later parallel regions do not
    change the count.
    """
    import numba
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", False):
        return numba.get_num_threads()
    with _openmp_thread_counts_kept():
        return numba.get_num_threads()


def _driver(kind: str, nb: int, m: int, k: int) -> tuple[Any, int]:
    """The parallel or serial Numba driver for this work size, and its chunk count.

    One matrix is one chunk: it always runs serially (a parallel region with one chunk
    only pays the wake-up of the thread pool)."""
    from . import _cpu

    limit = SVD_SERIAL_MAX_WORK if kind == "svd" else SERIAL_MAX_WORK
    threads = 1 if nb == 1 or nb * m * k * k < limit else _numba_threads()  # small work never starts the pool
    if threads == 1:
        return getattr(_cpu, f"{kind}_batch_serial"), 1
    return getattr(_cpu, f"{kind}_batch"), max(1, min(nb, 4 * threads))


#: OpenBLAS threads a ``gemm`` once ``M * N * K`` reaches this size; below it our own
#: threads may call the BLAS concurrently even when it cannot be pinned to one thread.
_BLAS_THREADED_GEMM = 262144

_controller: list[Any] = []
# Process-wide pin shared by every thread: the first thread to enter records the BLAS
# libraries' thread counts and sets them to one, the last to leave restores them (a plain
# threadpoolctl ``limit`` per caller, entered and left by several threads at once, left
# the BLAS at one thread for good).
_pin_lock = threading.Lock()
_pin_state: dict[str, Any] = {"depth": 0, "limiter": None}


@contextlib.contextmanager
def _shared_blas_pin() -> Iterator[None]:
    with _pin_lock:
        if _pin_state["depth"] == 0:
            if not _controller:
                # After SciPy's BLAS is loaded (Numba calls it), so that the controller sees it.
                import scipy.linalg.cython_blas  # noqa: F401
                from threadpoolctl import ThreadpoolController

                _controller.append(ThreadpoolController())
            _pin_state["limiter"] = _controller[0].limit(limits=1, user_api="blas")
        _pin_state["depth"] += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin_state["depth"] -= 1
            if _pin_state["depth"] == 0:
                _pin_state["limiter"].restore_original_limits()
                _pin_state["limiter"] = None


@contextlib.contextmanager
def _blas_pinned_to_one_thread(mnk: int) -> Iterator[bool]:
    """Yield whether BLAS runs single-threaded inside the block for products of size
    ``mnk`` (``M * N * K``), so that our own threads may call it concurrently without
    oversubscribing the cores.

    Products below ``_BLAS_THREADED_GEMM`` are never threaded by the BLAS: nothing is
    done (pinning would cost more than such products).  Larger ones: with
    ``threadpoolctl`` installed the BLAS libraries are limited to one thread for the
    block, shared by all threads (the first to enter pins, the last to leave restores the
    original counts, under a lock); without it, only an environment
    that already pins them (``OPENBLAS_NUM_THREADS=1``, ``OMP_NUM_THREADS=1`` or
    ``MKL_NUM_THREADS=1``) counts.
    """
    if mnk < _BLAS_THREADED_GEMM:
        yield True
        return
    if importlib.util.find_spec("threadpoolctl") is None:
        yield any(os.environ.get(v) == "1" for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"))
        return
    with _shared_blas_pin():
        yield True


#: Real QRs below this work (``B * m * k**2``) use Householder: for such tiny
#: factorizations the ``gemm`` calls of CholeskyQR2 cost more than the loops
#: (``bench/rule_checks.py``; the two were level around 128 x 8).
QR_HOUSEHOLDER_MAX_WORK = 8.0e3


def qr_algorithm(shape: tuple[int, ...], dtype: Any = np.float64) -> str:
    """The kernel ``batched_qr(..., algorithm="auto")`` runs for this input.

    The rule (from the measurements in ``docs/kernels.md``, rerun by
    ``bench/rule_checks.py``):

    * ``"cholqr2"`` for real dtypes: CholeskyQR2 with BLAS ``gemm`` products in the input
      precision, guarded, with a per-matrix Householder fallback.  Our threads split the
      batch (one matrix per thread, BLAS pinned to one thread), or the rows of a single
      tall matrix when the batch is smaller than the thread count and each matrix has
      ``m k^2 >= QR_ROWS_PARALLEL_MIN_WORK``; a single smaller matrix is factored on the
      calling thread and never enters a parallel region;
    * ``"householder"`` for complex dtypes, where the CholeskyQR2 loops were slower, and
      for real calls of less than ``QR_HOUSEHOLDER_MAX_WORK`` (``B m k^2``).

    ``shape`` must be a tuple of at least two non-negative ints and ``dtype`` one of the
    four kernel dtypes (``TypeError`` / ``ValueError`` naming the argument otherwise).
    """
    fn = "qr_algorithm"
    return _qr_algorithm(_shape_argument(fn, shape, "shape"), _dtype_argument(fn, dtype))


def _qr_algorithm(shape: tuple[int, ...], dtype: Any) -> str:
    m, k = shape[-2], shape[-1]
    work = math.prod(shape[:-2]) * m * k * k
    return "cholqr2" if np.dtype(dtype).kind == "f" and work >= QR_HOUSEHOLDER_MAX_WORK else "householder"


#: Tall real SVDs are reduced by the stacked CholeskyQR2 (then ``U = Q U_R``) when each
#: matrix has ``m k^2`` of at least ``SVD_TALL_QR_MIN_MATRIX`` and the call at least
#: ``SVD_TALL_QR_MIN_WORK`` (``B m k^2``); below, the SVD kernel's own per-matrix
#: Householder QR was as fast or faster (``bench/rule_checks.py``, rule ``svd_tall``).
SVD_TALL_QR_MIN_MATRIX = 8192
SVD_TALL_QR_MIN_WORK = 2.0e5


def _svd_via_stacked_qr(shape: tuple[int, ...], dtype: Any) -> bool:
    m, k = shape[-2], shape[-1]
    per_matrix = m * k * k
    return (
        m > k
        and np.dtype(dtype).kind == "f"
        and per_matrix >= SVD_TALL_QR_MIN_MATRIX
        and math.prod(shape[:-2]) * per_matrix >= SVD_TALL_QR_MIN_WORK
    )


def svd_algorithm(shape: tuple[int, ...], dtype: Any = np.float64) -> str:
    """The kernel ``batched_svd(..., algorithm="auto")`` runs for this input.

    ``"jacobi"`` (one-sided Jacobi, after a QR when ``m > k``) when ``min(m, k)`` is at
    most ``SVD_JACOBI_MAX_K`` (real dtypes) or ``SVD_JACOBI_MAX_K_COMPLEX`` (complex);
    ``"lapack"`` (``gesdd`` per matrix in a parallel loop) otherwise.  Tall real inputs
    with ``m k^2 >= SVD_TALL_QR_MIN_MATRIX`` and ``B m k^2 >= SVD_TALL_QR_MIN_WORK`` are
    first factored ``A = Q R`` by the stacked CholeskyQR2 (with its Householder
    fallback); the chosen algorithm then works on the ``k x k`` factors ``R``, and
    ``U = Q U_R`` is one ``gemm`` per matrix.  Other tall inputs get a Householder QR
    per matrix inside the SVD kernel.

    ``shape`` must be a tuple of at least two non-negative ints and ``dtype`` one of the
    four kernel dtypes (``TypeError`` / ``ValueError`` naming the argument otherwise).
    """
    fn = "svd_algorithm"
    return _svd_algorithm(_shape_argument(fn, shape, "shape"), _dtype_argument(fn, dtype))


def _svd_algorithm(shape: tuple[int, ...], dtype: Any) -> str:
    limit = SVD_JACOBI_MAX_K_COMPLEX if np.dtype(dtype).kind == "c" else SVD_JACOBI_MAX_K
    return "jacobi" if min(shape[-2], shape[-1]) <= limit else "lapack"


def batched_qr(a: Any, *, algorithm: str = "auto", out: Any = None) -> tuple[Any, Any]:
    """Batched thin QR ``A = Q R`` with a real, non-negative diagonal of ``R``.

    Parameters
    ----------
    a : numpy.ndarray or CUDA array (CuPy), shape (..., m, k), ``m >= k``
        float32, float64, complex64 or complex128.  Never modified; non-contiguous or
        read-only inputs are copied once.
    algorithm : {"auto", "householder", "cholqr2"}
        ``"auto"`` applies :func:`qr_algorithm`.  ``"householder"``: unconditionally
        stable, one matrix per thread.  ``"cholqr2"``: CholeskyQR2 (real inputs: BLAS
        ``gemm`` products in the input precision, Cholesky and triangular inverse in
        float64; complex inputs: loops in complex128) with a guaranteed per-matrix
        Householder fallback, taken on Cholesky breakdown, ``R1[j, j] < 1e-6 ||a_j||``,
        or ``||Q1^H Q1 - I||_max > 0.1``, which bounds ``cond(A)`` to about
        ``0.3 / sqrt(eps)`` of the input dtype.  The second pass is skipped when the first
        already gives ``||Q1^H Q1 - I||_max <= k eps``.
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
    choice = _qr_algorithm(x.shape, dt) if algorithm == "auto" else algorithm
    if choice == "householder":
        driver, nchunks = _driver("qr", nb, m, k)
        driver(x3, q3, r3, _cpu.QR_HOUSEHOLDER, nchunks, wp)
        return q, r
    _cholqr2_stack(x3, q3, r3, wp)
    return q, r


def _cholqr2_stack(x3: np.ndarray, q3: np.ndarray, r3: np.ndarray, wp: np.ndarray) -> None:
    """CholeskyQR2 (with its Householder fallback) of a ``(B, m, k)`` stack."""
    from . import _cpu

    nb, m, k = x3.shape
    threads = _numba_threads()
    product = m * k * k
    with _blas_pinned_to_one_thread(product) as pinned:
        if not pinned:
            # The BLAS threads these products itself: one matrix at a time.
            _cpu.qr_batch_serial(x3, q3, r3, _cpu.QR_CHOLQR2, 1, wp)
        elif product >= QR_ROWS_PARALLEL_MIN_WORK and x3.dtype.kind == "f" and 1 < threads and nb < threads:
            # Fewer large matrices than threads: the rows of each go to the threads.
            for b in range(nb):
                if not _cpu.qr_rows_parallel(x3[b], q3[b], r3[b], threads):
                    _cpu.qr_batch_serial(x3[b : b + 1], q3[b : b + 1], r3[b : b + 1], _cpu.QR_HOUSEHOLDER, 1, wp)
        else:
            driver, nchunks = _driver("qr", nb, m, k)
            driver(x3, q3, r3, _cpu.QR_CHOLQR2, nchunks, wp)


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
        values), preceded by a QR when ``m > k``; if the sweeps do not converge the
        matrix is redone with LAPACK.  ``"lapack"``: ``gesdd`` per matrix in a parallel
        loop.  Either way, large tall real stacks are reduced to their ``k x k``
        factors ``R`` by the stacked CholeskyQR2 first (see :func:`svd_algorithm`).
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
    u, s, v = _outputs(fn, out, [("U", x.shape, dt), ("s", (*batch, k), _real_dtype(dt)), ("V", (*batch, k, k), dt)], a)
    nb = math.prod(batch)
    if nb == 0 or k == 0:
        return u, s, v
    from . import _cpu

    choice = _svd_algorithm(x.shape, dt) if algorithm == "auto" else algorithm
    code = _cpu.SVD_JACOBI if choice == "jacobi" else _cpu.SVD_LAPACK
    x3, u3, s2, v3 = x.reshape(nb, m, k), u.reshape(nb, m, k), s.reshape(nb, k), v.reshape(nb, k, k)
    wp = _work_proto(dt)
    if _svd_via_stacked_qr(x.shape, dt):
        _svd_tall_stack(x3, u3, s2, v3, code, wp)
    else:
        _svd_stack(x3, u3, s2, v3, code, wp)
    return u, s, v


def _svd_stack(x3: np.ndarray, u3: np.ndarray, s2: np.ndarray, v3: np.ndarray, code: int, wp: np.ndarray) -> None:
    """The SVD kernel (Jacobi or LAPACK per matrix, ``code``) on a ``(B, m, k)`` stack."""
    nb, m, k = x3.shape
    tol = math.sqrt(k) * float(np.finfo(x3.dtype).eps)
    driver, nchunks = _driver("svd", nb, m, k)
    # LAPACK calls from our threads (gesdd, and the fallback of Jacobi): pin the BLAS to
    # one thread where its products are large enough to be threaded.
    with _blas_pinned_to_one_thread(k**3):
        driver(x3, u3, s2, v3, code, nchunks, wp, tol)


def _svd_tall_stack(x3: np.ndarray, u3: np.ndarray, s2: np.ndarray, v3: np.ndarray, code: int, wp: np.ndarray) -> None:
    """SVD of a tall real ``(B, m, k)`` stack through the stacked CholeskyQR2: ``A = Q R``,
    the SVD kernel on the ``k x k`` factors ``R = U_R diag(s) V^H``, then ``U = Q U_R``."""
    nb, m, k = x3.shape
    q3, r3, ur3 = np.empty_like(x3), np.empty((nb, k, k), dtype=x3.dtype), np.empty((nb, k, k), dtype=x3.dtype)
    _cholqr2_stack(x3, q3, r3, wp)
    _svd_stack(r3, ur3, s2, v3, code, wp)
    driver, nchunks = _driver("lift", nb, m, k)
    with _blas_pinned_to_one_thread(m * k * k):
        driver(q3, ur3, u3, v3, nchunks)


#: ``batched_matmul`` runs the parallel kernel for stacks with at least this much work
#: (``B m n p`` multiply-adds) and products of at least ``MATMUL_MIN_PRODUCT``
#: (``m n p``); smaller calls go to ``numpy.matmul``, which was faster there
#: (``bench/rule_checks.py``, rule ``matmul``).
MATMUL_MIN_WORK = 4.0e5
MATMUL_MIN_PRODUCT = 1024


def matmul_uses_kernel(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> bool:
    """Whether :func:`batched_matmul` runs the kernel (rather than ``numpy.matmul``).

    Parameters
    ----------
    a_shape : tuple of int, ``(..., m, n)``
    b_shape : tuple of int, ``(..., n, p)``
        Shapes of the two stacks (batch size ``B`` = product of the leading axes).

    Returns
    -------
    bool
        ``True`` when ``B m n p >= MATMUL_MIN_WORK``, ``MATMUL_MIN_PRODUCT <= m n p`` and
        ``m n p`` is below the size at which the BLAS threads a single ``gemm`` (there
        ``numpy.matmul`` uses it), and Numba runs more than one thread.

    Raises
    ------
    TypeError
        A shape that is not a tuple of ints.
    ValueError
        Shapes with fewer than two entries, negative sizes, or that do not multiply
        (``n`` differs, or the batch shapes differ).
    """
    fn = "matmul_uses_kernel"
    a_shape = _shape_argument(fn, a_shape, "a_shape")
    b_shape = _shape_argument(fn, b_shape, "b_shape")
    if a_shape[-1] != b_shape[-2] or a_shape[:-2] != b_shape[:-2]:
        msg = (
            f"{fn}: `a_shape` and `b_shape` must be (..., m, n) and (..., n, p) with the same batch shape; "
            f"got {a_shape} and {b_shape}."
        )
        raise ValueError(msg)
    return _matmul_uses_kernel(a_shape, b_shape)


def _matmul_uses_kernel(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> bool:
    m, n, p = a_shape[-2], a_shape[-1], b_shape[-1]
    product = m * n * p
    return (
        MATMUL_MIN_PRODUCT <= product < _BLAS_THREADED_GEMM
        and math.prod(a_shape[:-2]) * product >= MATMUL_MIN_WORK
        and _numba_threads() > 1
    )


def _gemm_operand(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """``x`` as a C-contiguous stack, or a C-contiguous stack whose transpose it is
    (``(stack, True)``, handed to the BLAS as a transpose); other layouts are copied."""
    if x.flags.c_contiguous:
        return x, False
    xt = np.swapaxes(x, -1, -2)
    if xt.flags.c_contiguous:
        return xt, True
    return np.ascontiguousarray(x), False


def batched_matmul(a: Any, b: Any, *, out: Any = None) -> Any:
    """Batched matrix product ``C[i] = A[i] @ B[i]`` over the leading axes, in parallel.

    NumPy's ``matmul`` runs the matrices of a stack one after another on one thread;
    this splits the stack across Numba's threads, one BLAS ``gemm`` per matrix (each
    below the size at which OpenBLAS would thread it).  Calls outside
    :func:`matmul_uses_kernel`'s size rule, and non-native byte orders, go to
    ``numpy.matmul``.

    Parameters
    ----------
    a : numpy.ndarray, shape (..., m, n)
    b : numpy.ndarray, shape (..., n, p)
        The same batch shape (no broadcasting) and the same dtype, float32, float64,
        complex64 or complex128.  C-contiguous stacks and transposed views of them
        (``numpy.swapaxes(x, -1, -2)``, conjugate transposes) are used in place; other
        layouts are copied once.  Never modified.
    out : numpy.ndarray, shape (..., m, p), optional
        Preallocated C-contiguous output of the same dtype, not overlapping the inputs.

    Returns
    -------
    numpy.ndarray, shape (..., m, p)
        C-contiguous.  Equal to ``a @ b`` up to the rounding of the BLAS.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank_kernels import batched_matmul
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.standard_normal((500, 64, 64)), rng.standard_normal((500, 8, 64))
    >>> c = batched_matmul(a, np.swapaxes(b, -1, -2))
    >>> bool(np.allclose(c, a @ np.swapaxes(b, -1, -2)))
    True
    """
    fn = "batched_matmul"
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray):
            msg = (
                f"{fn}: `{name}` must be a numpy.ndarray; got {type(x).__module__}.{type(x).__name__}. "
                f"Pass '{name}' as a numpy.ndarray (numpy.asarray({name}))."
            )
            raise TypeError(msg)
        if x.ndim < 2:
            msg = f"{fn}: `{name}` must have at least 2 dimensions (..., rows, cols); got shape {x.shape}."
            raise ValueError(msg)
    dt = _check_dtype(fn, a.dtype)
    if b.dtype != dt:
        msg = f"{fn}: `a` and `b` must have the same dtype; got {a.dtype} and {b.dtype}. Cast one of them."
        raise TypeError(msg)
    if a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        msg = (
            f"{fn}: `a` and `b` must have shapes (..., m, n) and (..., n, p) with the same batch shape; got "
            f"{a.shape} and {b.shape}, which do not match (use numpy.matmul to broadcast)."
        )
        raise ValueError(msg)
    shape = (*a.shape[:-2], a.shape[-2], b.shape[-1])
    (c,) = _outputs(fn, None if out is None else (out,), [("C", shape, dt)], a)
    if out is not None and np.shares_memory(c, b):
        msg = f"{fn}: out array 'C' overlaps the input 'b'; pass separate memory."
        raise ValueError(msg)
    nb = math.prod(shape[:-2])
    if not (_matmul_uses_kernel(a.shape, b.shape) and dt.isnative) or nb == 0 or 0 in shape[-2:]:
        return np.matmul(a, b, out=c)

    from . import _cpu

    (a3, ta), (b3, tb) = _gemm_operand(a), _gemm_operand(b)
    a3 = a3.reshape(nb, *a3.shape[-2:])
    b3 = b3.reshape(nb, *b3.shape[-2:])
    _cpu.matmul_batch(a3, b3, c.reshape(nb, *shape[-2:]), ta, tb, min(nb, 4 * _numba_threads()))
    return c
