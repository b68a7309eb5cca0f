"""lowrank_kernels: batched thin QR and small SVD (Numba on the CPU, numba-cuda on the GPU).

The integrators of ``lowrank_core`` spend their linear algebra on many small factorizations
of equal shape (thin QR of ``m x r`` / ``m x 2r`` blocks, SVD of ``r x r`` / ``2r x 2r``
cores), over the layers of a network or a stack of independent problems.  This package
factors a whole stack in one call:

* :func:`batched_qr` -- ``(..., m, k) -> Q (..., m, k), R (..., k, k)``, ``diag(R) >= 0``;
* :func:`batched_svd` -- ``(..., m, k) -> U, s, V`` with ``A = U diag(s) V^H``, ``s``
  descending;
* :func:`batched_matmul` -- ``(..., m, n) @ (..., n, p)`` with the stack split across
  the threads (NumPy arrays; ``numpy.matmul`` runs a stack on one thread);

for float32/float64/complex64/complex128 NumPy arrays (Numba CPU kernels, parallel over the
batch) and CUDA arrays such as CuPy's (numba-cuda kernels, one thread block per matrix, no
copies).  Kernels compile lazily, once per dtype, and are cached on disk
(``NUMBA_CACHE_DIR``).

This package never imports ``lowrank_core``; ``lowrank_core._linalg`` is the one module of
``lowrank_core`` that calls it.
"""

from __future__ import annotations

import importlib.util

from ._api import (
    MATMUL_MIN_PRODUCT,
    MATMUL_MIN_WORK,
    QR_HOUSEHOLDER_MAX_WORK,
    SERIAL_MAX_WORK,
    SVD_JACOBI_MAX_K,
    SVD_JACOBI_MAX_K_COMPLEX,
    SVD_SERIAL_MAX_WORK,
    SVD_TALL_QR_MIN_MATRIX,
    SVD_TALL_QR_MIN_WORK,
    batched_matmul,
    batched_qr,
    batched_svd,
    matmul_uses_kernel,
    qr_algorithm,
    svd_algorithm,
)

__all__ = [
    "MATMUL_MIN_PRODUCT",
    "MATMUL_MIN_WORK",
    "QR_HOUSEHOLDER_MAX_WORK",
    "SERIAL_MAX_WORK",
    "SVD_JACOBI_MAX_K",
    "SVD_JACOBI_MAX_K_COMPLEX",
    "SVD_SERIAL_MAX_WORK",
    "SVD_TALL_QR_MIN_MATRIX",
    "SVD_TALL_QR_MIN_WORK",
    "batched_matmul",
    "batched_qr",
    "batched_svd",
    "has_cpu",
    "has_cuda",
    "matmul_uses_kernel",
    "qr_algorithm",
    "svd_algorithm",
]


def has_cpu() -> bool:
    """True when Numba is importable (CPU kernels can be compiled)."""
    return importlib.util.find_spec("numba") is not None


def has_cuda() -> bool:
    """True when numba-cuda can launch kernels: a visible GPU, or the CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``)."""
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - depends on the driver
        return False
