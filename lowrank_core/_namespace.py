"""Thin layer over array-api-compat.

The namespace ``xp`` is always derived from the caller's arrays (never from global
state) and passed down explicitly.  Nothing here converts user data to NumPy.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

__all__ = [
    "conj_transpose",
    "device_of",
    "eye_like",
    "is_complex_dtype",
    "is_floating_dtype",
    "namespace_of",
    "real_dtype",
]


def namespace_of(*arrays: Any) -> Any:
    """Return the array-API namespace shared by ``arrays``.

    Raises
    ------
    TypeError
        If the arrays come from different libraries, or an argument is not an array.
    """
    try:
        return array_api_compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = ", ".join(sorted({type(a).__module__ + "." + type(a).__name__ for a in arrays}))
        msg = (
            f"could not find a common array namespace for inputs of types {kinds}: {exc}. "
            "Pass arrays of one array-API library (NumPy, CuPy, PyTorch, JAX, ...)."
        )
        raise TypeError(msg) from exc


def device_of(x: Any) -> Any:
    """Return the device of array ``x``."""
    return array_api_compat.device(x)


def is_floating_dtype(dtype: Any, xp: Any) -> bool:
    """True for real or complex floating dtypes."""
    return bool(xp.isdtype(dtype, ("real floating", "complex floating")))


def is_complex_dtype(dtype: Any, xp: Any) -> bool:
    """True for complex floating dtypes."""
    return bool(xp.isdtype(dtype, "complex floating"))


def real_dtype(dtype: Any, xp: Any) -> Any:
    """The real floating dtype of the same precision as ``dtype``."""
    if dtype == xp.complex64:
        return xp.float32
    if dtype == xp.complex128:
        return xp.float64
    return dtype


def conj_transpose(x: Any, xp: Any) -> Any:
    """Conjugate transpose of the last two axes (plain transpose for real dtypes)."""
    xt = xp.matrix_transpose(x)
    if is_complex_dtype(x.dtype, xp):
        return xp.conj(xt)
    return xt


def eye_like(k: int, x: Any, xp: Any, *, batch_shape: tuple[int, ...] = ()) -> Any:
    """Identity of size ``k`` with the dtype and device of ``x``, broadcast to ``batch_shape``."""
    eye = xp.eye(k, dtype=x.dtype, device=device_of(x))
    if batch_shape:
        eye = xp.broadcast_to(eye, (*batch_shape, k, k))
    return eye
