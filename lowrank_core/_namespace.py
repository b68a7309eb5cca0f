"""Thin layer over array-api-compat.

The namespace ``xp`` is always derived from the caller's arrays (never from global
state) and passed down explicitly.  Nothing here converts user data to NumPy.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

__all__ = [
    "check_array",
    "conj_transpose",
    "device_of",
    "eye_like",
    "is_complex_dtype",
    "is_floating_dtype",
    "namespace_of",
    "namespace_of_named",
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


def _kind(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__qualname__}"


def check_array(x: Any, name: str) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``x`` is an array of an array-API library.

    Lists, tuples, scalars and ``None`` are refused rather than converted: converting
    would copy the data to NumPy, whatever library the caller works in.
    """
    if not array_api_compat.is_array_api_obj(x) or isinstance(x, (bool, int, float, complex)):
        msg = (
            f"`{name}` must be an array (NumPy, CuPy, PyTorch, JAX, Dask, ...); got {_kind(x)}. "
            "Convert it with your array library first, e.g. numpy.asarray(...)."
        )
        raise TypeError(msg)


def namespace_of_named(**arrays: Any) -> Any:
    """The namespace shared by the keyword ``arrays``; errors name the arguments.

    Raises ``TypeError`` naming an argument that is not an array, or the arguments and
    their libraries when they come from different libraries.
    """
    for name, x in arrays.items():
        check_array(x, name)
    try:
        return array_api_compat.array_namespace(*arrays.values())
    except TypeError:
        kinds = ", ".join(f"`{n}` is {_kind(x)}" for n, x in arrays.items())
        msg = (
            f"{', '.join(f'`{n}`' for n in arrays)} must come from one array library; {kinds}. "
            "Convert them to one library (and device) first."
        )
        raise TypeError(msg) from None


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
