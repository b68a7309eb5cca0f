"""The linear-algebra seam: every QR and SVD of the library goes through here.

Each call records how many decompositions of which shape were taken and their
operation count in a :class:`Counters` object that the caller passes in (there is no
global counter).  This module is also the single place where accelerated kernels from
``lowrank_kernels`` will plug in; today it dispatches to ``xp.linalg``.

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

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ._namespace import conj_transpose, is_complex_dtype

__all__ = ["Counters", "LinAlgBreakdown", "qr_flops", "svd_flops", "thin_qr", "thin_svd"]


class LinAlgBreakdown(ArithmeticError):
    """A decomposition failed (for example an SVD that did not converge on NaN input)."""


@dataclass
class Counters:
    """Tallies of the work done by an integrator.

    Decompositions and right-hand-side evaluations are counted per matrix: a batched
    call on a stack of ``B`` matrices counts ``B``.  ``max_rank_hits`` and
    ``rejections`` count steps (a batch shares one rank).

    Attributes
    ----------
    rhs_evals : int
        Number of distinct points ``(t, Y)`` at which ``F`` was evaluated (exact
        increments ``A(t1) - A(t0)`` count one each).
    qr, svd : int
        Number of thin QR / SVD decompositions.
    qr_shapes, svd_shapes : collections.Counter
        Decompositions per matrix shape ``(rows, cols)``.
    qr_flops, svd_flops : float
        Operation counts of those decompositions (see module docstring).
    max_rank_hits : int
        Steps in which the truncation tolerance asked for more than ``max_rank``.
    rejections : int
        Rejected (and repeated) steps of integrators with step rejection.
    """

    rhs_evals: int = 0
    qr: int = 0
    svd: int = 0
    qr_shapes: Counter = field(default_factory=Counter)
    svd_shapes: Counter = field(default_factory=Counter)
    qr_flops: float = 0.0
    svd_flops: float = 0.0
    max_rank_hits: int = 0
    rejections: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict view used for ``Solution.stats``."""
        return {
            "rhs_evals": self.rhs_evals,
            "qr": self.qr,
            "svd": self.svd,
            "qr_shapes": dict(self.qr_shapes),
            "svd_shapes": dict(self.svd_shapes),
            "qr_flops": self.qr_flops,
            "svd_flops": self.svd_flops,
            "flops": self.qr_flops + self.svd_flops,
            "max_rank_hits": self.max_rank_hits,
            "rejections": self.rejections,
        }


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
        Note: ``V``, not ``V^H``; ``p = min(m, k)``.
    """
    _record(counters, "svd", x, xp)
    try:
        u, s, vh = xp.linalg.svd(x, full_matrices=False)
    except Exception as exc:
        msg = f"SVD of a {tuple(x.shape)} array failed: {exc}"
        raise LinAlgBreakdown(msg) from exc
    return u, s, conj_transpose(vh, xp)
