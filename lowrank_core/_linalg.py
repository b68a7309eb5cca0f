"""The linear-algebra seam: every QR and SVD of the library goes through here.

Each call records how many decompositions of which shape were taken and their
operation count in a :class:`~lowrank_core.Counters` object (``_stats``) that the caller passes in (there is no
global counter).  This module is also the only place in ``lowrank_core`` that calls the
batched kernels of ``lowrank_kernels``; its :func:`matmul` hands large NumPy stacks of
matrix products to ``lowrank_kernels.batched_matmul`` (not counted).

Which path runs (the *size rule*, see ``docs/kernels.md``):

* ``"auto"`` (default): the kernels of ``lowrank_kernels`` when the backend can share
  the array with them, their one fit rule :func:`lowrank_kernels.kernel_fits` (the same
  function for both devices) takes the stack, and two measured preferences do not send
  it to the array library instead:

  - backends: NumPy arrays and PyTorch CPU tensors that do not require grad (shared
    through DLPack, no copy) go to the Numba CPU kernels; CuPy arrays go to the
    numba-cuda kernels when a GPU is usable (:func:`lowrank_kernels.has_cuda`); every
    other library (array-api-strict, JAX, GPU or autograd tensors, ...) uses
    ``xp.linalg``;
  - fit (``kernel_fits(op, shape, dtype, device)``): float32/float64/complex64/
    complex128, and ``m >= k`` for the thin QR, on both devices; on the GPU also at most
    32 KiB per matrix (one thread block's shared memory) and, for the SVD,
    ``min(m, k) <= 32``.  The SVD takes ``m < k`` on both devices (through the conjugate
    transpose).  So an ``m x 2r`` augmentation QR of a CuPy solve with
    ``m * 2r * itemsize > 32 KiB`` runs in ``cupy.linalg``;
  - preferences (measured on the CPU with ``bench/rule_checks.py``; applied to CuPy
    arrays too, where they are unmeasured): an SVD needs a stack of at least
    ``KERNEL_SVD_MIN_BATCH`` matrices, except on the CPU a tall one,
    ``m >= KERNEL_SVD_TALL_RATIO * k`` (a single square core is as fast or faster through
    LAPACK ``gesdd`` directly; a tall one is faster reduced by the kernels' QR first,
    much more so on a busy machine), and complex128 thin QRs of fewer than
    ``KERNEL_QR_C128_MIN_BATCH`` matrices with ``k >= 16`` and ``m k <= 65536`` stay on
    LAPACK, where the complex Householder kernel was slower; and a PyTorch CPU matrix
    (or a stack of at most ``TORCH_LINALG_MAX_BATCH`` = 4) with
    ``min(m, k) >= TORCH_LINALG_MIN_K`` (256) and
    ``max(m, k) <= TORCH_LINALG_MAX_RATIO * min(m, k)`` (4) stays in ``torch.linalg``
    (MKL), which was faster there.

  Whatever runs, the decomposition is counted in :class:`Counters` (``qr``, ``svd``,
  their shapes and flops) before the path is chosen; ``kernel_calls`` counts only the
  calls served by the kernels.
* ``"kernels"``: the kernels wherever the backend and the fit rule allow them, whatever
  the preferences say; a ``ValueError`` names the reason where they do not (for example
  a CuPy matrix larger than one thread block);
* ``"xp"``: always ``xp.linalg``.

Choose per call with the ``linalg=`` argument of :func:`lowrank_core.solve`, or for a
block of code with the context manager :func:`use_linalg`.  The choice lives in a
:class:`contextvars.ContextVar`, so it is scoped to the ``with`` block, thread and task.

Conventions (the contract every backend path must meet):

* ``thin_qr(X)`` for ``X`` of shape ``(..., m, k)`` returns ``Q (..., m, p)`` and
  ``R (..., p, k)`` with ``p = min(m, k)``, orthonormal columns in ``Q`` and a real,
  non-negative diagonal in ``R`` (this makes the factorization unique for full-rank
  ``X`` and the results reproducible across backends).
* ``thin_svd(X)`` for ``X`` of shape ``(..., m, k)`` returns ``U (..., m, p)``,
  ``s (..., p)`` (real, descending) and ``V (..., k, p)`` with ``X = U diag(s) V^H``.

Operation counts use the standard LAPACK estimates (Golub & Van Loan, *Matrix
Computations*, 4th ed., §5.2 and §8.6): Householder QR with explicit thin ``Q`` costs
``4 m k^2 - 4 k^3 / 3`` flops (``geqrf`` + ``orgqr``), a thin SVD with vectors costs
``min(14 m k^2 + 8 k^3, 6 m k^2 + 20 k^3)`` (Golub-Reinsch vs. R-SVD).  Complex
arithmetic counts 4 real flops per complex multiply-add, hence a factor 4.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import array_api_compat

from ._checks import choice
from ._namespace import conj_transpose, is_complex_dtype

if TYPE_CHECKING:
    from ._stats import Counters

__all__ = [
    "KERNEL_QR_C128_MIN_BATCH",
    "KERNEL_SVD_MIN_BATCH",
    "KERNEL_SVD_TALL_RATIO",
    "TORCH_LINALG_MAX_BATCH",
    "TORCH_LINALG_MAX_RATIO",
    "TORCH_LINALG_MIN_K",
    "LINALG_PATHS",
    "LinAlgBreakdown",
    "matmul",
    "matmul_conj",
    "matmul_h",
    "qr_flops",
    "svd_flops",
    "thin_qr",
    "thin_svd",
    "use_linalg",
]

#: Accepted values of ``linalg=`` / :func:`use_linalg`.
LINALG_PATHS = ("auto", "kernels", "xp")
#: Under ``"auto"``, SVDs go to the kernels only for stacks of at least this many
#: matrices, or on the CPU for tall matrices (``m >= KERNEL_SVD_TALL_RATIO * k``).
KERNEL_SVD_MIN_BATCH = 2
#: A single SVD this tall goes to the kernels (QR, then the small SVD): 1.2-2.3x faster
#: than ``gesdd`` idle from 200 x 16 to 100000 x 32, 1.5-4.5x with two CPU-bound
#: processes; single square cores were level or up to 22 % slower in the kernels
#: (``bench/rule_checks.py``, rule ``svd_single``).
KERNEL_SVD_TALL_RATIO = 2
#: Under ``"auto"``, complex128 thin QRs with ``k >= 16`` and ``m k <= 65536`` go to the
#: kernels only for stacks of at least this many matrices.
KERNEL_QR_C128_MIN_BATCH = 16
#: Under ``"auto"``, a single PyTorch CPU matrix whose QR or SVD has
#: ``min(m, k) >= TORCH_LINALG_MIN_K`` and is at most ``TORCH_LINALG_MAX_RATIO`` times
#: as long as wide goes to ``torch.linalg`` (MKL), not to the kernels.  Measured
#: (``bench/rule_checks.py --rules qr_torch``, float32, idle): ``torch.linalg`` is 1.0-2.9x
#: faster for the QR and 1.3-1.6x for the SVD from ``256 x 256`` to ``1024 x 256`` and at
#: ``1024 x 512``, the kernels 1.1-1.7x faster at ``k = 128`` and for ``4096 x 256``.
#: Inside a training step the gap is larger: the optimizers' ``1024 x 256`` and
#: ``784 x 256`` augmentation QRs and tall SVDs at ``r = 128`` made the basis updates of
#: parallel BUG, abc-PSI and RA-BUG 1.4-2.3x slower through the kernels
#: (``bench/training_step.py``).  Stacks of up to ``TORCH_LINALG_MAX_BATCH`` such
#: matrices too: three equal ``1024 x 1024`` layers stacked (``(3, 1024, 256)`` QRs)
#: took 1.05-1.28x the unstacked time per step through the kernels and 0.98-1.06x through
#: ``torch.linalg`` (``bench/training_step.py``, ``stacking``).
TORCH_LINALG_MIN_K = 256
TORCH_LINALG_MAX_RATIO = 4
TORCH_LINALG_MAX_BATCH = 4

_LINALG_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("lowrank_core_linalg_path", default="auto")


def _check_path(path: Any) -> str:
    return choice(path, "linalg", LINALG_PATHS)


@contextlib.contextmanager
def use_linalg(path: str) -> Iterator[None]:
    """Route the QR/SVD decompositions of the enclosed code through ``path``.

    Parameters
    ----------
    path : {"auto", "kernels", "xp"}
        ``"kernels"`` forces the batched ``lowrank_kernels`` kernels (an error if the
        backend cannot use them), ``"xp"`` forces the array library's own
        ``linalg``, ``"auto"`` applies the size rule of this module.

    Examples
    --------
    >>> import numpy as np, lowrank_core as lc
    >>> Y0 = lc.LowRank.from_dense(np.random.default_rng(0).standard_normal((30, 20)), rank=3)
    >>> problem = lc.MatrixODE(lambda t, Y: -Y)
    >>> with lc.use_linalg("xp"):
    ...     a = lc.solve(problem, Y0, (0.0, 1.0), dt=0.25)
    >>> b = lc.solve(problem, Y0, (0.0, 1.0), dt=0.25, linalg="kernels")
    >>> a.stats["kernel_calls"], b.stats["kernel_calls"] > 0
    (0, True)
    >>> bool(np.allclose(a.Y.to_dense(), b.Y.to_dense()))
    True
    """
    token = _LINALG_PATH.set(_check_path(path))
    try:
        yield
    finally:
        _LINALG_PATH.reset(token)


class LinAlgBreakdown(ArithmeticError):
    """A decomposition failed (for example an SVD that did not converge on NaN input).

    ``members`` lists the batch indices of the matrices at fault (ints for a stack with
    one batch dimension, tuples otherwise; empty when unknown or unbatched).
    """

    def __init__(self, message: str, members: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.members = members


#: Whether decompositions of stacks leave non-finite members as NaN outputs instead of
#: raising (set by ``solve(..., on_member_failure="isolate")`` for the solve's duration).
_ISOLATE_MEMBERS: contextvars.ContextVar[bool] = contextvars.ContextVar("lowrank_core_isolate", default=False)


@contextlib.contextmanager
def isolating_members(isolate: bool) -> Iterator[None]:
    """Within the block, non-finite members of a stack get NaN factors (if ``isolate``)."""
    token = _ISOLATE_MEMBERS.set(isolate)
    try:
        yield
    finally:
        _ISOLATE_MEMBERS.reset(token)


def member_indices(bad: Any, xp: Any) -> tuple[Any, ...]:
    """Batch indices where the boolean array ``bad`` (the batch shape, at least 1-D) is true."""
    idx = [[int(i) for i in list(xp.reshape(ax, (-1,)))] for ax in xp.nonzero(bad)]
    if len(idx) == 1:
        return tuple(idx[0])
    return tuple(zip(*idx, strict=True))


def nonfinite_members(x: Any, xp: Any) -> Any | None:
    """``None`` if ``x (..., m, k)`` is finite, otherwise the boolean batch mask of its
    members with a NaN or Inf."""
    finite = xp.isfinite(x)
    if math.prod(x.shape) == 0 or bool(xp.all(finite)):
        return None
    return xp.logical_not(xp.all(finite, axis=(-2, -1)))


def _guarded(kind: str, factor: Any, x: Any, xp: Any) -> tuple[Any, ...]:
    """``factor(x)`` (a QR or SVD) of a stack that may hold non-finite members.

    The cheap check is on the result's small factor (``R`` or ``s``, index 1), which is
    non-finite exactly when a member's input is (or the decomposition broke down); only
    then is the input scanned for the members at fault.  By default the error names
    them; inside :func:`isolating_members` the bad members are replaced by zero matrices
    and factored again (every path factors the members of a stack independently, so the
    others come out exactly as without them), and their outputs are set to NaN.
    """
    try:
        out = factor(x)
        failure = None if bool(xp.all(xp.isfinite(out[1]))) else "non-finite factors"
    except LinAlgBreakdown as exc:
        out, failure = None, str(exc)
    if failure is None:
        return out
    bad = nonfinite_members(x, xp)
    if bad is None:
        msg = failure if out is None else f"{kind} of a {tuple(x.shape)} array gave {failure} from finite input"
        raise LinAlgBreakdown(msg)
    members = member_indices(bad, xp) if bad.ndim else ()
    if not _ISOLATE_MEMBERS.get() or bad.ndim == 0 or bool(xp.all(bad)):
        where = f" in batch members {list(members)}" if members else ""
        msg = f"{kind} of a {tuple(x.shape)} array failed: non-finite input{where}"
        raise LinAlgBreakdown(msg, members)
    mask = bad[..., None, None]
    out = factor(xp.where(mask, xp.zeros_like(x), x))
    nan = float("nan")
    return tuple(xp.where(mask if y.ndim == x.ndim else bad[..., None], xp.full_like(y, nan), y) for y in out)


def _batch_size(x: Any) -> int:
    return math.prod(x.shape[:-2])


def qr_flops(m: int, k: int, *, complex_: bool = False) -> float:
    """Flops of a thin Householder QR of an ``m x k`` matrix, ``Q`` formed explicitly."""
    p = min(m, k)
    flops = 4.0 * m * k * p - 4.0 * p**3 / 3.0
    return 4.0 * flops if complex_ else flops


def svd_flops(m: int, k: int, *, complex_: bool = False) -> float:
    """Flops of a thin SVD with singular vectors of an ``m x k`` matrix."""
    big, small = max(m, k), min(m, k)
    flops = min(14.0 * big * small**2 + 8.0 * small**3, 6.0 * big * small**2 + 20.0 * small**3)
    return 4.0 * flops if complex_ else flops


def _record(counters: Counters | None, kind: str, x: Any, xp: Any) -> None:
    if counters is None:
        return
    m, k = x.shape[-2], x.shape[-1]
    b = _batch_size(x)
    cplx = is_complex_dtype(x.dtype, xp)
    if kind == "qr":
        counters.qr += b
        counters.qr_shapes[(m, k)] += b
        counters.qr_flops += b * qr_flops(m, k, complex_=cplx)
    else:
        counters.svd += b
        counters.svd_shapes[(m, k)] += b
        counters.svd_flops += b * svd_flops(m, k, complex_=cplx)


def _diag(x: Any, xp: Any) -> Any:
    return xp.linalg.diagonal(x) if hasattr(xp, "linalg") else xp.diagonal(x)


def _cuda_usable() -> bool:
    """Whether numba-cuda can launch the CUDA kernels here (a visible GPU, or the CUDA
    simulator); asked per call, so a process that gains or loses the device sees it."""
    import lowrank_kernels

    return lowrank_kernels.has_cuda()


def _tall(x: Any) -> bool:
    """``m >= KERNEL_SVD_TALL_RATIO * k``: the kernels reduce such an SVD by a QR first."""
    m, k = x.shape[-2:]
    return m >= KERNEL_SVD_TALL_RATIO * k


def _qr_c128_small(x: Any) -> bool:
    """A complex128 QR for which LAPACK beats the kernels (see the module docstring)."""
    m, k = x.shape[-2], x.shape[-1]
    return (
        str(x.dtype).rsplit(".", 1)[-1] == "complex128"
        and _batch_size(x) < KERNEL_QR_C128_MIN_BATCH
        and k >= 16
        and m * k <= 65536
    )


def _torch_linalg_preferred(x: Any) -> bool:
    """A PyTorch CPU matrix (or a stack of at most ``TORCH_LINALG_MAX_BATCH``) that
    ``torch.linalg`` factors faster (``TORCH_LINALG_MIN_K``, ``TORCH_LINALG_MAX_RATIO``)."""
    if not array_api_compat.is_torch_array(x) or _batch_size(x) > TORCH_LINALG_MAX_BATCH:
        return False
    short, long = sorted(x.shape[-2:])
    return short >= TORCH_LINALG_MIN_K and long <= TORCH_LINALG_MAX_RATIO * short


def _kernel_route(x: Any, xp: Any, op: str) -> tuple[Any, Any] | None:
    """How to hand ``x`` to the kernels: ``(array for the kernels, back-conversion)``.

    Applies the size rule of the module docstring: the backend decides the device
    (``"cpu"`` or ``"cuda"``), :func:`lowrank_kernels.kernel_fit_reason` whether the
    kernels of that device take the stack, and, under ``"auto"`` only, the measured
    preferences (``KERNEL_SVD_MIN_BATCH``, the complex128 small-QR rule,
    ``TORCH_LINALG_MIN_K``).

    Returns ``None`` when the active path and the size rule say ``xp.linalg``; raises a
    ``ValueError`` naming the reason when the path is ``"kernels"`` but they cannot run.
    """
    path = _LINALG_PATH.get()
    if path == "xp":
        return None
    forced = path == "kernels"

    def refuse(reason: str) -> None:
        if forced:
            msg = (
                f"linalg='kernels' cannot run the {op} of a {tuple(x.shape)} {x.dtype} array: {reason}; "
                "use linalg='auto' (which falls back to xp.linalg for such calls) or linalg='xp'."
            )
            raise ValueError(msg)

    if array_api_compat.is_numpy_array(x):
        device = "cpu"
    elif array_api_compat.is_torch_array(x):
        if x.device.type != "cpu" or x.requires_grad:
            refuse("only CPU tensors that do not require grad are shared with the kernels")
            return None
        device = "cpu"
    elif array_api_compat.is_cupy_array(x):
        if not _cuda_usable():
            refuse("no usable CUDA device")
            return None
        device = "cuda"
    else:
        refuse(f"{type(x).__module__} arrays are not supported by the kernels (NumPy, PyTorch CPU, CuPy are)")
        return None

    import lowrank_kernels

    reason = lowrank_kernels.kernel_fit_reason(op, tuple(x.shape), x.dtype, device)
    if reason is not None:
        refuse(reason)
        return None
    if not forced and op == "svd" and _batch_size(x) < KERNEL_SVD_MIN_BATCH and not (device == "cpu" and _tall(x)):
        return None
    if not forced and op == "qr" and _qr_c128_small(x):
        return None
    if not forced and _torch_linalg_preferred(x):
        return None
    if array_api_compat.is_torch_array(x):
        import numpy as np
        import torch

        return np.from_dlpack(x.detach()), torch.from_dlpack
    return x, _same


def _same(y: Any) -> Any:
    """The back-conversion of arrays the kernels take as they are (NumPy, CuPy)."""
    return y


def _gemm_layout(x: Any) -> bool:
    """C-contiguous, or the transpose of a C-contiguous stack: usable without a copy."""
    return x.flags.c_contiguous or x.swapaxes(-1, -2).flags.c_contiguous


def matmul(a: Any, b: Any, xp: Any) -> Any:
    """``a @ b``, with large NumPy stacks split across threads.

    Equal-shaped stacks of NumPy arrays (same batch shape, same floating dtype, each a
    C-contiguous stack, a transpose of one, or at most a quarter of the result's size)
    for which
    :func:`lowrank_kernels.matmul_uses_kernel` holds go to
    :func:`lowrank_kernels.batched_matmul` (one ``gemm`` per matrix, the stack split
    across Numba's threads); everything else, and everything under
    ``use_linalg("xp")``, is ``a @ b`` of the array library.  ``xp`` is the namespace
    of ``a`` and ``b``.  Products are not counted.
    """
    if (
        a.ndim >= 3
        and array_api_compat.is_numpy_namespace(xp)
        and a.shape[:-2] == b.shape[:-2]
        and a.dtype == b.dtype
        and a.dtype.char in "fdFD"  # float32/64, complex64/128 (a C attribute: cheap)
        and _LINALG_PATH.get() != "xp"
    ):
        import lowrank_kernels

        out_size = a.size // a.shape[-1] * b.shape[-1]
        # Operands in other layouts are copied by the kernel: worth it only when they
        # are much smaller than the result (column slices of small cores).
        if lowrank_kernels.matmul_uses_kernel(a.shape, b.shape) and all(
            _gemm_layout(x) or 4 * x.size <= out_size for x in (a, b)
        ):
            return lowrank_kernels.batched_matmul(a, b)
    return a @ b


def matmul_h(a: Any, b: Any, xp: Any) -> Any:
    """``a^H @ b`` without forming ``a^H``: for complex ``a`` it is
    ``conj(a^T @ conj(b))``, so only the (small) ``b`` and the result are conjugated and
    the (large) operator ``a`` is read in place, through a transposed view."""
    at = xp.matrix_transpose(a)
    if not is_complex_dtype(a.dtype, xp):
        return matmul(at, b, xp)
    return xp.conj(matmul(at, xp.conj(b), xp))


def matmul_conj(a: Any, b: Any, xp: Any) -> Any:
    """``conj(a) @ b`` without forming ``conj(a)``: ``conj(a @ conj(b))`` for complex ``a``."""
    if not is_complex_dtype(a.dtype, xp):
        return matmul(a, b, xp)
    return xp.conj(matmul(a, xp.conj(b), xp))


def _canonical_signs(u: Any, v: Any, xp: Any) -> tuple[Any, Any]:
    """Fix the phase of each singular pair: the largest-magnitude entry of every column
    of ``U`` becomes real positive (``U -> U D``, ``V -> V D``, ``|D| = I``).

    SVD factors are unique only up to these phases; fixing them makes the kernels, every
    backend's LAPACK and every batch layout return the same factors (for distinct
    singular values), so that algorithms that are not phase-invariant (elementwise
    optimizer states, for example) do not depend on the path taken.
    """
    idx = xp.argmax(xp.abs(u), axis=-2)
    if hasattr(xp, "take_along_axis"):
        pivot = xp.take_along_axis(u, idx[..., None, :], axis=-2)[..., 0, :]
    else:
        rows = xp.arange(u.shape[-2], device=array_api_compat.device(u))
        pivot = xp.sum(u * xp.astype(rows[:, None] == idx[..., None, :], u.dtype), axis=-2)
    pmag = xp.abs(pivot)
    one = xp.ones_like(pivot)
    nz = pmag > 0
    phase = xp.where(nz, xp.conj(pivot) / xp.where(nz, xp.astype(pmag, pivot.dtype), one), one)
    return u * phase[..., None, :], v * phase[..., None, :]


def _count_kernel(counters: Counters | None) -> None:
    if counters is not None:
        counters.kernel_calls += 1


def thin_qr(x: Any, xp: Any, counters: Counters | None = None) -> tuple[Any, Any]:
    """Thin QR with non-negative real diagonal of ``R``.

    Parameters
    ----------
    x : array, shape (..., m, k)
        Matrix or stack of matrices; not modified.
    xp : namespace
        Array-API namespace of ``x``.
    counters : Counters, optional
        Where the decomposition is recorded.

    Returns
    -------
    Q : array, shape (..., m, p)
        Orthonormal columns, ``p = min(m, k)``.
    R : array, shape (..., p, k)
        Upper triangular with ``R[..., i, i] >= 0`` (real), ``x = Q @ R``.
    """
    _record(counters, "qr", x, xp)
    if array_api_compat.is_dask_namespace(xp):  # TSQR on the row chunks (lowrank_core._dask)
        from . import _dask

        return _dask.thin_qr(x)
    return _guarded("thin QR", lambda y: _thin_qr(y, xp, counters), x, xp)


def _thin_qr(x: Any, xp: Any, counters: Counters | None) -> tuple[Any, Any]:
    route = _kernel_route(x, xp, "qr")
    if route is not None:
        import lowrank_kernels

        arr, back = route
        q, r = lowrank_kernels.batched_qr(arr)
        _count_kernel(counters)
        return back(q), back(r)
    try:
        q, r = xp.linalg.qr(x, mode="reduced")
    except Exception as exc:  # numpy LinAlgError, torch _LinAlgError, ...
        msg = f"thin QR of a {tuple(x.shape)} array failed: {exc}"
        raise LinAlgBreakdown(msg) from exc
    d = _diag(r, xp)
    if is_complex_dtype(x.dtype, xp):
        mag = xp.abs(d)
        one = xp.ones_like(d)
        phase = xp.where(mag > 0, d / xp.where(mag > 0, xp.astype(mag, d.dtype), one), one)
    else:
        phase = xp.where(d < 0, -xp.ones_like(d), xp.ones_like(d))
    # Q <- Q diag(phase), R <- diag(conj(phase)) R keeps Q R unchanged.
    q = q * phase[..., None, :]
    r = xp.conj(phase)[..., :, None] * r if is_complex_dtype(x.dtype, xp) else phase[..., :, None] * r
    return q, r


def thin_svd(x: Any, xp: Any, counters: Counters | None = None) -> tuple[Any, Any, Any]:
    """Thin SVD ``x = U diag(s) V^H`` with descending singular values.

    Parameters
    ----------
    x : array, shape (..., m, k)
    xp : namespace
    counters : Counters, optional

    Returns
    -------
    U : array, shape (..., m, p)
    s : array, shape (..., p), real, descending
    V : array, shape (..., k, p)
        Note: ``V``, not ``V^H``; ``p = min(m, k)``.  The phase of each singular pair is
        fixed (the largest entry of each column of ``U`` is real positive), so every path
        returns the same factors for distinct singular values.
    """
    _record(counters, "svd", x, xp)
    if array_api_compat.is_dask_namespace(xp):  # TSQR + in-memory SVD of R (lowrank_core._dask)
        from . import _dask

        return _dask.thin_svd(x)
    return _guarded("SVD", lambda y: _thin_svd(y, xp, counters), x, xp)


def _thin_svd(x: Any, xp: Any, counters: Counters | None) -> tuple[Any, Any, Any]:
    route = _kernel_route(x, xp, "svd")
    if route is not None:
        import lowrank_kernels

        arr, back = route
        u, s, v = lowrank_kernels.batched_svd(arr)
        _count_kernel(counters)
        s = back(s)
        if not bool(xp.all(xp.isfinite(s))):
            msg = f"SVD of a {tuple(x.shape)} array failed: non-finite input"
            raise LinAlgBreakdown(msg)
        if array_api_compat.is_cupy_array(x):  # the CPU kernels return canonical phases already
            u, v = _canonical_signs(u, v, xp)
        return back(u), s, back(v)
    try:
        u, s, vh = xp.linalg.svd(x, full_matrices=False)
    except Exception as exc:
        msg = f"SVD of a {tuple(x.shape)} array failed: {exc}"
        raise LinAlgBreakdown(msg) from exc
    u, v = _canonical_signs(u, conj_transpose(vh, xp), xp)
    return u, s, v
