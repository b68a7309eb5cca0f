"""Gradient flow of a quadratic loss, with its rank-r optimum (Eckart-Young)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._lowrank import LowRank
from .._problem import MatrixODE
from ._base import ReferenceProblem, _assemble, _recorded
from ._common import _Backend, _dense_like, _fro, _haar, _int, _rank, _real, _Reference, _rng

__all__ = ["QuadraticProblem", "quadratic_flow"]


@dataclass(frozen=True, eq=False, kw_only=True)
class QuadraticProblem(ReferenceProblem):
    r"""Gradient flow of ``L(W) = ||W - B||_F^2 / 2`` with its known optimum on rank ``r``.

    Attributes
    ----------
    B : array (m, n)
        Target matrix with prescribed singular values.
    optimal_loss : float
        ``min_{rank W <= r} L(W) = (1/2) sum_{j > r} sigma_j(B)^2`` (Eckart-Young).
    optimum : LowRank
        The rank-``r`` minimiser (truncated SVD of ``B``; unique when
        ``sigma_r(B) > sigma_{r+1}(B)``).
    """

    B: Any
    optimal_loss: float
    optimum: LowRank

    def loss(self, Y: Any) -> float:
        """``L(Y) = ||Y - B||_F^2 / 2`` for a :class:`~lowrank_core.LowRank` or a dense ``(m, n)`` array."""
        dense, xp = _dense_like(Y, self.B)
        return 0.5 * _fro(dense - self.B, xp) ** 2


@_recorded
def quadratic_flow(
    m: int = 60,
    n: int = 40,
    r: int = 5,
    *,
    spectrum: Any = None,
    t_end: float = 10.0,
    init_scale: float = 1e-2,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> QuadraticProblem:
    r"""Gradient flow of ``L(W) = ||W - B||_F^2 / 2`` (methods.md §6.6).

    ``dW/dt = -grad L(W) = B - W``, so ``W(t) = B + e^{-t} (W0 - B)``.  On the rank-``r``
    manifold the minimiser is the truncated SVD ``B_r`` of ``B`` (Eckart-Young), with
    ``L(B_r) = (1/2) sum_{j > r} sigma_j(B)^2``; the other critical points are saddles.

    Parameters
    ----------
    m, n : int, default 60, 40
        Shape of ``W``.
    r : int, default 5
        Rank of ``Y0``.
    spectrum : sequence of float, optional
        Singular values of ``B`` (non-negative; sorted descending; at most
        ``min(m, n)`` values, the rest are zero).  Default
        ``sigma_j = 2^{-(j-1)/2}``, ``j = 1..min(m, n)``: a strictly decreasing spectrum,
        so ``sigma_r / sigma_{r+1} = sqrt(2)`` and the minimiser is unique.
    t_end : float, default 10.0
        Final time (``e^{-10} ~ 4.5e-5``: the flow has essentially converged).
    init_scale : float, default 1e-2
        ``||W0||_F = init_scale ||B||_F``: ``W0 = Y0`` is a small random rank-``r``
        matrix (product of Gaussian factors).
    xp, dtype, device : optional
        Target array namespace (default NumPy), dtype (default float64) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of the singular vectors of ``B`` and of ``W0``.

    Returns
    -------
    QuadraticProblem
        ``problem = MatrixODE(lambda t, Y: B - Y)`` (dense, generic); ``loss(Y)``,
        ``optimal_loss`` and ``optimum`` describe the optimisation problem.
    """
    m = _int(m, "m", 1)
    n = _int(n, "n", 1)
    r = _rank(r, m, n)
    t_end = _real(t_end, "t_end", positive=True)
    init_scale = _real(init_scale, "init_scale", positive=True)
    k = min(m, n)
    if spectrum is None:
        sigma = 2.0 ** (-np.arange(k, dtype=np.float64) / 2.0)
    else:
        if isinstance(spectrum, (str, bytes)):
            msg = f"`spectrum` must be a sequence of non-negative real numbers; got {spectrum!r}."
            raise TypeError(msg)
        try:
            items = list(spectrum)
            if any(isinstance(s, (bool, np.bool_, str, bytes)) for s in items):
                raise TypeError
            values = [float(s) for s in items]
        except (TypeError, ValueError):
            msg = f"`spectrum` must be a sequence of non-negative real numbers; got {spectrum!r}."
            raise TypeError(msg) from None
        if not 1 <= len(values) <= k:
            msg = f"`spectrum` must have between 1 and min(m, n) = {k} values; got {len(values)}."
            raise ValueError(msg)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            msg = f"`spectrum` must contain finite, non-negative values; got {values}."
            raise ValueError(msg)
        sigma = np.zeros(k)
        sigma[: len(values)] = sorted(values, reverse=True)
        if sigma[0] == 0:
            msg = "`spectrum` must contain at least one positive value (B = 0 is not a useful target)."
            raise ValueError(msg)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="quadratic_flow")
    rng = _rng(seed)
    P = _haar(rng, m)[:, :k]
    Q = _haar(rng, n)[:, :k]
    B = (P * sigma) @ Q.T
    W0 = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    W0 = W0 * (init_scale * np.linalg.norm(B) / np.linalg.norm(W0))

    def host(t: float) -> np.ndarray:
        return B + math.exp(-t) * (W0 - B)

    ref = _Reference(host, to_xp)
    B_xp = to_xp(B)

    def f(t: float, Y: Any) -> Any:
        return B_xp - Y

    Y0 = LowRank.from_dense(ref(0.0), r)
    optimum = LowRank(to_xp(P[:, :r]), to_xp(np.diag(sigma[:r])), to_xp(Q[:, :r]))
    optimal_loss = 0.5 * float(np.sum(sigma[r:] ** 2))
    gap = sigma[r - 1] / sigma[r] if r < k and sigma[r] > 0 else math.inf
    notes = (
        f"B = P diag(sigma) Q^T ({m} x {n}, Haar P, Q, seed {seed!r}), sigma_r / sigma_(r+1) = {gap:.3g}; "
        f"W0 = Y0 random rank-{r} with ||W0|| = {init_scale:g} ||B||. reference(t) = B + e^-t (W0 - B) (the full "
        "flow); the rank-r flow converges to the Eckart-Young truncation `optimum`."
    )
    dt, optimal = min(0.01, t_end), {"B": B_xp, "optimal_loss": optimal_loss, "optimum": optimum}
    return _assemble(QuadraticProblem, "quadratic", MatrixODE(f), Y0, t_end, ref, notes, dt, **optimal)
