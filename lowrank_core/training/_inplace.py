r"""In-place arithmetic on an optimizer's own arrays: one implementation for every library.

The optimizer steps between basis updates (``AbstractLowRankOptimizer._update_``) are written with these functions.
On PyTorch they are the fused in-place tensor methods (``add_(x, alpha=a)``,
``addcmul_``, ``addmm_``): no temporary and no fresh allocation, which is what an SGD,
heavy-ball or Adam step between basis updates costs beyond reading its operands.
Elsewhere they are in-place operators (NumPy, array-api-strict), and on libraries
without mutation (JAX, Dask) the same operators rebind, so every function returns its
result and callers always use the return value.

The first argument is overwritten where the library allows: callers pass arrays they
own (the functional :meth:`step` copies first).
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .._linalg import matmul
from .._namespace import is_complex_dtype

__all__ = ["abs2_average", "add_matmul", "adam_direction", "average", "axpy", "minus_matmul"]


def _torch(xp: Any) -> bool:
    return array_api_compat.is_torch_namespace(xp)


def axpy(y: Any, a: float, x: Any, xp: Any) -> Any:
    """``y <- y + a x``."""
    if _torch(xp):
        return y.add_(x, alpha=a)
    y += a * x
    return y


def average(y: Any, b: float, a: float, x: Any, xp: Any) -> Any:
    """``y <- b y + a x`` (a momentum or first-moment update).

    On PyTorch one pass over ``y`` where the form allows: ``x + b y`` for ``a = 1`` (a
    momentum buffer), ``lerp`` for ``a = 1 - b`` (Adam's moments).
    """
    if _torch(xp):
        if a == 1.0:
            import torch  # imported already: the arrays are torch tensors

            return torch.add(x, y, alpha=b, out=y)
        if a == 1.0 - b:
            return y.lerp_(x, a)
        return y.mul_(b).add_(x, alpha=a)
    y *= b
    y += a * x
    return y


def abs2_average(v: Any, b: float, a: float, x: Any, xp: Any) -> Any:
    """``v <- b v + a |x|^2`` element-wise, ``v`` real (a second-moment update)."""
    if _torch(xp):
        v.mul_(b)
        if is_complex_dtype(x.dtype, xp):
            return v.add_(x.abs().square_(), alpha=a)
        return v.addcmul_(x, x, value=a)
    v *= b
    v += a * xp.abs(x) ** 2
    return v


def add_matmul(y: Any, a: float, A: Any, B: Any, xp: Any) -> Any:
    """``y <- y + a A @ B`` (matrices or equal stacks of them)."""
    if _torch(xp):
        if y.ndim == 2:
            return y.addmm_(A, B, alpha=a)
        if y.ndim == 3:
            return y.baddbmm_(A, B, alpha=a)
        return y.add_(A @ B, alpha=a)
    y += a * matmul(A, B, xp)
    return y


def minus_matmul(x: Any, A: Any, B: Any, xp: Any) -> Any:
    """``x - A @ B``, a new array (``x`` is not modified; one fused call on PyTorch)."""
    if _torch(xp):
        import torch

        if x.ndim == 2:
            return torch.addmm(x, A, B, alpha=-1)
        if x.ndim == 3:
            return torch.baddbmm(x, A, B, alpha=-1)
    return x - matmul(A, B, xp)


def adam_direction(m: Any, v: Any, c2: float, eps: float, xp: Any) -> Any:
    """``m / (sqrt(v) / c2 + eps)``, a new array (``m`` and ``v`` are not modified)."""
    if _torch(xp):
        import torch

        denom = v.sqrt().div_(c2).add_(eps)
        return m / denom if m.is_complex() else torch.div(m, denom, out=denom)
    return m / (xp.sqrt(v) / c2 + eps)
