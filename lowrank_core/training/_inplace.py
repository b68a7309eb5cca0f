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

import math
from typing import Any

import array_api_compat

from .._linalg import matmul
from .._namespace import is_complex_dtype

__all__ = ["abs2_average", "adam_directions", "add_matmul", "average", "axpy", "minus_matmul"]


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


def adam_directions(
    ms: list[Any], vs: list[Any], gs: list[Any], betas: tuple[float, float], t: int, t_v: int, eps: float, xp: Any
) -> list[Any]:
    r"""Adam's moment updates in place and its bias-corrected directions, new arrays.

    For each triple ``(m, v, g)``: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) |g|^2``
    (``v`` real), and the direction

    .. math::

        D = \frac{m / (1 - b_1^t)}{\sqrt{v / (1 - b_2^{t_v})} + \epsilon} ,

    the step being ``-lr D``.  On real PyTorch CPU tensors of one dtype, with ``t = t_v``,
    this is one pass over the arrays: ``torch._fused_adam_`` (the kernel of
    ``torch.optim.Adam(fused=True)``) applied to zeroed directions with ``lr = -1``.
    That kernel reads raw memory, so a strided view would be read and written wrongly:
    arrays that are not contiguous go through contiguous copies (the moments copied
    back), so the result does not depend on the layout.  Complex dtypes, other devices
    and ``t != t_v`` take the composed in-place operations (seven passes), which
    round differently.  The lists ``ms`` and ``vs`` hold the updated moments on return
    (the same arrays, or new ones on libraries without mutation).
    """
    b1, b2 = betas
    if _torch(xp) and t == t_v and _fusable(ms + vs + gs):
        import torch

        mc, vc = [m.contiguous() for m in ms], [v.contiguous() for v in vs]
        ds = [torch.zeros_like(g, memory_format=torch.contiguous_format) for g in gs]
        step = torch.tensor(float(t))
        torch._fused_adam_(
            ds, [g.contiguous() for g in gs], mc, vc, [], [step] * len(ds), lr=-1.0, beta1=b1, beta2=b2,
            weight_decay=0.0, eps=eps, amsgrad=False, maximize=False,
        )  # fmt: skip
        for x, y in zip(ms + vs, mc + vc, strict=True):
            if x is not y:  # a copy: write the moment back
                x.copy_(y)
        return ds
    c1, c2 = 1.0 - b1**t, math.sqrt(1.0 - b2**t_v)  # bias corrections
    out = []
    for i, g in enumerate(gs):
        m = ms[i] = average(ms[i], b1, 1.0 - b1, g, xp)
        v = vs[i] = abs2_average(vs[i], b2, 1.0 - b2, g, xp)
        if _torch(xp):
            import torch

            denom = v.sqrt().mul_(c1 / c2).add_(c1 * eps)
            out.append(m / denom if m.is_complex() else torch.div(m, denom, out=denom))
        else:
            out.append(m / (xp.sqrt(v) * (c1 / c2) + c1 * eps))
    return out


def _fusable(arrays: list[Any]) -> bool:
    """Whether ``torch._fused_adam_`` applies: CPU tensors of one real floating dtype."""
    dt = arrays[0].dtype
    return dt.is_floating_point and all(a.device.type == "cpu" and a.dtype == dt for a in arrays)
