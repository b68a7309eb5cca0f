"""Baselines for the training tests and the benchmark: heavy ball on the raw factors."""

from __future__ import annotations

import numpy as np


def factor_heavy_ball(B: np.ndarray, A0: np.ndarray, C0: np.ndarray, *, lr: float, beta: float, steps: int,
                      target: float) -> tuple[int, list[float]]:
    """Heavy ball on ``W = A C^T`` for ``L = ||W - B||^2 / 2`` (methods.md §3.3).

    ``grad_A = G C``, ``grad_C = G^T A`` with ``G = W - B``; momentum ``M <- beta M + grad``,
    ``X <- X - lr M`` for both factors.  Returns the number of steps until ``L < target``
    (``steps`` if never) and the loss history.
    """
    A, C = A0.copy(), C0.copy()
    MA, MC = np.zeros_like(A), np.zeros_like(C)
    losses = []
    for k in range(steps):
        G = A @ C.T - B
        loss = 0.5 * float(np.sum(G * G))
        losses.append(loss)
        if loss < target:
            return k, losses
        if not np.isfinite(loss) or loss > 1e12:
            return steps, losses
        MA, MC = beta * MA + G @ C, beta * MC + G.T @ A
        A, C = A - lr * MA, C - lr * MC
    return steps, losses
