"""The initial condition of the Allen-Cahn problem (Rodgers & Venturi 2023) and its
rank-``r`` symmetric approximation from ``O(N r)`` evaluations (adaptive cross), for
grids too large to sample whole."""

from __future__ import annotations

import numpy as np


def initial_value(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Rodgers & Venturi's initial condition on ``[0, 2 pi)^2`` (host, NumPy):

    .. math:: u_0(x, y) = \frac{\big(e^{-\tan^2 x} + e^{-\tan^2 y}\big) \sin x \sin y}
                              {1 + e^{|\csc(-x/2)|} + e^{|\csc(-y/2)|}}

    for broadcastable ``x``, ``y`` (``u_0 = 0`` where ``csc`` is infinite).
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        bx = np.exp(np.abs(1.0 / np.sin(-x / 2)))
        by = np.exp(np.abs(1.0 / np.sin(-y / 2)))
        num = (np.exp(-(np.tan(x) ** 2)) + np.exp(-(np.tan(y) ** 2))) * np.sin(x) * np.sin(y)
        out = num / (1.0 + bx + by)
    return np.where(np.isfinite(out), out, 0.0)


def _cross_symmetric(grid: np.ndarray, r: int, tol: float = 1e-13) -> tuple[np.ndarray, np.ndarray]:
    """Rank-``r`` symmetric approximation ``P diag(lam) P^T`` of ``u_0`` on ``grid x grid``
    from ``O(N k)`` evaluations (adaptive cross approximation with partial pivoting picks
    the index set ``J``; then ``u_0 ~ C W^+ C^T`` with ``C = u_0(:, J)``,
    ``W = u_0(J, J)``, recompressed by a thin QR and an eigendecomposition)."""
    N = grid.size
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    pivots: list[int] = []
    i = N // 3
    norm2 = 0.0
    for _ in range(min(N, r + 10)):
        row = initial_value(grid[i], grid) - sum(u[i] * v for u, v in zip(us, vs, strict=True))
        row[pivots] = 0.0
        j = int(np.argmax(np.abs(row)))
        if abs(row[j]) == 0.0:
            break
        v = row / row[j]
        u = initial_value(grid, grid[j]) - sum(v_[j] * u_ for u_, v_ in zip(us, vs, strict=True))
        us.append(u)
        vs.append(v)
        pivots += [i, j]
        step = float(np.linalg.norm(u) * np.linalg.norm(v))
        norm2 += step**2
        if step <= tol * np.sqrt(norm2) and len(us) >= r:
            break
        score = np.abs(u)
        score[pivots] = -1.0
        i = int(np.argmax(score))
    J = np.unique(pivots)
    C = np.stack([initial_value(grid, grid[j]) for j in J], axis=1)  # column by column: O(N) temporaries
    Wm = C[J, :]
    Q, R = np.linalg.qr(C)
    core = R @ np.linalg.pinv(0.5 * (Wm + Wm.T), rcond=1e-13, hermitian=True) @ R.T
    lam, Pc = np.linalg.eigh(0.5 * (core + core.T))
    idx = np.argsort(-np.abs(lam), kind="stable")[:r]
    return Q @ Pc[:, idx], lam[idx]
