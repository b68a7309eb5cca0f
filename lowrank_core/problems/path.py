"""Matrix path with prescribed singular values (Ceruti & Lubich 2022)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._lowrank import LowRank
from .._problem import MatrixPath
from ._base import ReferenceProblem, _assemble, _recorded
from ._common import _LRU, _Backend, _int, _rank, _real, _Reference, _rng, _time

__all__ = ["prescribed_path"]


@_recorded
def prescribed_path(
    N: int = 100,
    r: int = 8,
    *,
    w_norm: float | None = 1.0,
    exact_rank: int | None = None,
    t_end: float = 1.0,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> ReferenceProblem:
    r"""Matrix path with prescribed singular values (Ceruti & Lubich 2022; methods.md §6.1).

    ``A(t) = e^{t W1} e^t D e^{t W2}`` on ``[0, t_end]`` with ``D = diag(2^{-j})``,
    ``j = 1..N``, and random skew-symmetric ``W1``, ``W2``; hence
    ``sigma_j(A(t)) = e^t 2^{-j}`` exactly.  The problem is the
    :class:`~lowrank_core.MatrixPath` with ``dA/dt = W1 A + A + A W2``, usable with every
    substep solver (``"exact"`` uses the increments ``A(t1) - A(t0)``).

    Parameters
    ----------
    N : int, default 100
        Size of the square matrix ``A(t)``.
    r : int, default 8
        Rank of ``Y0``, the truncated SVD of ``A(0) = D``.
    w_norm : float or None, default 1.0
        Spectral norm of ``W1`` and ``W2`` (random standard normal ``G - G^T``
        rescaled); ``None`` keeps the unscaled ``G - G^T`` (``||W||_2 ~ 2 sqrt(2N)``).
    exact_rank : int, optional
        Keep only the first ``exact_rank`` entries of ``D`` non-zero: a path of rank
        exactly ``exact_rank`` (for the exactness theorems of methods.md §4.1).
    t_end : float, default 1.0
        Final time.
    xp, dtype, device : optional
        Target array namespace (default NumPy), dtype (default float64) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of ``W1`` and ``W2``.

    Returns
    -------
    ReferenceProblem
        ``reference(t) = A(t)``.

    Notes
    -----
    ``e^{tW}`` is evaluated from one Hermitian eigendecomposition ``i W = P diag(mu) P^H``
    as ``Re(P diag(e^{-i mu t}) P^H)`` (exact for the normal matrix ``W``; agrees with
    ``scipy.linalg.expm`` to round-off and costs two matrix products per time).
    """
    N = _int(N, "N", 1)
    r = _rank(r, N, N)
    t_end = _real(t_end, "t_end", positive=True)
    if w_norm is not None:
        w_norm = _real(w_norm, "w_norm", nonnegative=True)
    if exact_rank is not None:
        exact_rank = _int(exact_rank, "exact_rank", 1)
        if exact_rank > N:
            msg = f"`exact_rank` must satisfy 1 <= exact_rank <= N = {N}; got {exact_rank}."
            raise ValueError(msg)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="prescribed_path")
    rng = _rng(seed)

    def skew() -> np.ndarray:
        G = rng.standard_normal((N, N))
        W = G - G.T
        if w_norm is not None:
            nrm = np.linalg.norm(W, 2)
            W = W * (w_norm / nrm) if nrm > 0 else W
        return W

    W1, W2 = skew(), skew()
    d = 2.0 ** -np.arange(1, N + 1, dtype=np.float64)
    if exact_rank is not None:
        d[exact_rank:] = 0.0

    def skew_exp(W: np.ndarray) -> Callable[[float], np.ndarray]:
        mu, P = np.linalg.eigh(1j * W)
        PH = P.conj().T
        return lambda t: ((P * np.exp(-1j * mu * t)) @ PH).real

    E1, E2 = skew_exp(W1), skew_exp(W2)

    def A_host(t: float) -> np.ndarray:
        if t == 0.0:
            return np.diag(d)
        return (E1(t) * (math.exp(t) * d)) @ E2(t)

    ref = _Reference(A_host, to_xp)
    dA_cache = _LRU(16)

    def dA(t: float) -> Any:
        def compute() -> Any:
            a = ref.host(t)
            return to_xp(W1 @ a + a + a @ W2)

        return dA_cache.get(_time(t), compute)

    Y0 = LowRank.from_dense(ref(0.0), r)
    label = f"rank-{exact_rank}" if exact_rank is not None else "full-rank"
    notes = (
        f"A(t) = expm(t W1) e^t D expm(t W2), N = {N}, D = diag(2^-j) ({label}), "
        f"||W_i||_2 = {w_norm if w_norm is not None else 'unscaled'}, seed {seed!r}. "
        "sigma_j(A(t)) = e^t 2^-j; Y0 is the rank-r truncated SVD of A(0). "
        "F does not depend on Y, so substep='exact' is available."
    )
    dt = min(0.01, t_end)
    return _assemble(ReferenceProblem, "prescribed-path", MatrixPath(ref, dA), Y0, t_end, ref, notes, dt)
