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
copies).  Numba is a required dependency; it is imported on the first kernel call (not
at ``import lowrank_kernels``, to keep imports fast), and the kernels compile lazily,
once per dtype, cached on disk (``NUMBA_CACHE_DIR``).  The CUDA kernels need the
optional numba-cuda and a GPU (:func:`has_cuda`).  Which matrices each device's kernels take is one rule,
:func:`kernel_fits` (with the reason from :func:`kernel_fit_reason`).

This package never imports ``lowrank_core``; ``lowrank_core._linalg`` is the one module of
``lowrank_core`` that calls it.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ._api import (
    MATMUL_MIN_PRODUCT,
    MATMUL_MIN_WORK,
    QR_HOUSEHOLDER_MAX_WORK,
    QR_ROWS_PARALLEL_MIN_WORK,
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
    "QR_ROWS_PARALLEL_MIN_WORK",
    "SERIAL_MAX_WORK",
    "SVD_JACOBI_MAX_K",
    "SVD_JACOBI_MAX_K_COMPLEX",
    "SVD_SERIAL_MAX_WORK",
    "SVD_TALL_QR_MIN_MATRIX",
    "SVD_TALL_QR_MIN_WORK",
    "batched_matmul",
    "batched_qr",
    "batched_svd",
    "has_cuda",
    "kernel_fit_reason",
    "kernel_fits",
    "matmul_uses_kernel",
    "qr_algorithm",
    "svd_algorithm",
]


def has_cuda() -> bool:
    """True when numba-cuda can launch kernels: a visible GPU, or the CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - depends on the driver
        return False


_KERNEL_DTYPE_NAMES = ("float32", "float64", "complex64", "complex128")
_KERNEL_OPS = ("qr", "svd")
_KERNEL_DEVICES = ("cpu", "cuda")


def _dtype_name(dtype: Any) -> str:
    """``float64`` for ``numpy.float64``, ``"float64"``, ``torch.float64``, ..."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


def kernel_fit_reason(op: str, shape: tuple[int, ...], dtype: Any, device: str = "cpu") -> str | None:
    """Why the kernels of ``device`` do not take a stack of ``shape`` and ``dtype`` for ``op``.

    The one size rule of this package for both devices (:func:`kernel_fits` is its
    yes/no form); callers that route between the kernels and another library's
    ``linalg`` ask it instead of repeating its conditions.

    * ``device="cpu"`` (NumPy arrays): float32, float64, complex64 or complex128, at
      least two dimensions, and ``m >= k`` for the thin QR (the SVD takes wide matrices
      through the conjugate transpose).  Size does not matter.
    * ``device="cuda"`` (CUDA arrays): the same dtypes and QR condition, and each
      matrix fits one thread block: at most ``_cuda.MAX_SHARED_BYTES`` (32 KiB) of
      shared memory, and ``min(m, k) <= _cuda.MAX_SVD_K`` (32) for the SVD, which takes
      ``m < k`` through the conjugate transpose (see ``lowrank_kernels._cuda.misfit``).

    Parameters
    ----------
    op : {"qr", "svd"}
        The factorization.
    shape : tuple of int
        Shape ``(..., m, k)`` of the stack.
    dtype : dtype or dtype name
        A NumPy dtype, its name, or another library's dtype whose name ends in one of
        the four names (``torch.float32``).
    device : {"cpu", "cuda"}
        Which kernels.

    Returns
    -------
    str or None
        ``None`` when the kernels take the stack, otherwise the reason (a phrase).

    Raises
    ------
    TypeError
        If ``shape`` is not a sequence of ints.
    ValueError
        If ``op`` or ``device`` is not one of the accepted values, or ``shape`` has a
        negative size.

    Examples
    --------
    >>> import lowrank_kernels as lk
    >>> lk.kernel_fit_reason("qr", (4, 3, 8), "float64")
    'the thin QR kernels need m >= k, got m=3, k=8'
    >>> print(lk.kernel_fit_reason("svd", (4, 40, 40), "float32", "cuda"))
    the CUDA Jacobi SVD takes min(m, k) <= 32, got 40
    >>> lk.kernel_fit_reason("svd", (4, 40, 40), "float32") is None
    True
    """
    if op not in _KERNEL_OPS:
        msg = f"kernel_fit_reason: argument 'op' must be one of {_KERNEL_OPS}, got {op!r}."
        raise ValueError(msg)
    if device not in _KERNEL_DEVICES:
        msg = f"kernel_fit_reason: argument 'device' must be one of {_KERNEL_DEVICES}, got {device!r}."
        raise ValueError(msg)
    try:
        shape = tuple(operator.index(n) for n in shape)
    except TypeError:
        msg = f"kernel_fit_reason: argument 'shape' must be a tuple of ints (..., m, k), got {shape!r}."
        raise TypeError(msg) from None
    if any(n < 0 for n in shape):
        msg = f"kernel_fit_reason: argument 'shape' must not have negative sizes, got {shape}."
        raise ValueError(msg)
    if len(shape) < 2:
        return f"the kernels need at least 2 dimensions (..., m, k), got shape {shape}"
    m, k = shape[-2], shape[-1]
    name = _dtype_name(dtype)
    if device == "cuda":
        from . import _cuda

        return _cuda.misfit(op, m, k, name if name in _KERNEL_DTYPE_NAMES else dtype)
    if name not in _KERNEL_DTYPE_NAMES:
        return f"the kernels take float32/float64/complex64/complex128, not {dtype}"
    if op == "qr" and m < k:
        return f"the thin QR kernels need m >= k, got m={m}, k={k}"
    return None


def kernel_fits(op: str, shape: tuple[int, ...], dtype: Any, device: str = "cpu") -> bool:
    """Whether the kernels of ``device`` take a stack of ``shape`` and ``dtype`` for ``op``.

    ``kernel_fit_reason(op, shape, dtype, device) is None``; see
    :func:`kernel_fit_reason` for the rule and the parameters.

    Examples
    --------
    >>> import lowrank_kernels as lk
    >>> lk.kernel_fits("qr", (3, 600, 16), "float64"), lk.kernel_fits("qr", (3, 600, 16), "float64", "cuda")
    (True, False)
    >>> lk.kernel_fits("svd", (2, 6, 20), "complex64", "cuda")
    True
    """
    return kernel_fit_reason(op, shape, dtype, device) is None
