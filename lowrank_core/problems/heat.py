"""The 2-D heat equation as a Lyapunov-type matrix ODE, with its closed-form solution."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._lowrank import LowRank
from .._problem import LinearMatrixODE
from ._base import ReferenceProblem, _recorded, _stiff_symmetric
from ._common import _Backend, _int, _orth, _rank, _real, _Reference, _rng, _sym

__all__ = ["heat_lyapunov"]


def _dirichlet_laplacian(size: int) -> np.ndarray:
    dx = 1.0 / (size + 1)
    return (np.diag(-2.0 * np.ones(size)) + np.diag(np.ones(size - 1), 1) + np.diag(np.ones(size - 1), -1)) / dx**2


@_recorded
def heat_lyapunov(
    size: int = 64,
    r: int = 8,
    *,
    t_end: float = 0.1,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> ReferenceProblem:
    r"""2-D heat equation with a constant low-rank source (Lyapunov form; methods.md §6.4(a)).

    ``dX/dt = A X + X A + C`` with ``A = tridiag(1, -2, 1) / dx^2`` (homogeneous
    Dirichlet, ``size`` interior points of ``[0, 1]``, ``dx = 1 / (size + 1)``) and
    ``C = Q diag(logspace(0, -16, 5)) Q^T``, ``Q = orth(rand(size, 5))``.  The initial
    value is ``X_init = X(0.01)``, the closed-form solution at ``t = 0.01`` from the
    symmetric rank-21 matrix ``X_0 = P diag(logspace(0, -20, 21)) P^T``,
    ``P = orth(rand(size, 21))`` (smoothing away the random initial data), and the time
    is then reset to 0.

    Parameters
    ----------
    size : int, default 64
        Number of interior grid points per direction; the state is ``size x size``.
    r : int, default 8
        Rank of ``Y0`` (the rank-``r`` truncation of ``X_init``, with ``U = V``).
    t_end : float, default 0.1
        Final time.
    xp, dtype, device : optional
        Target array namespace (default NumPy), dtype (default float64) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of ``Q`` and ``P``.

    Returns
    -------
    ReferenceProblem
        ``problem = LinearMatrixODE(A, A, C)`` with ``C`` a :class:`~lowrank_core.LowRank`;
        ``reference(t) = e^{tA} X_init e^{tA} + Z(t)``, ``A Z + Z A = e^{tA} C e^{tA} - C``.

    Notes
    -----
    The closed form is evaluated in the eigenbasis ``A = Q_A diag(lam) Q_A^T``, where
    the Sylvester solve is elementwise:
    ``Z~_ij = C~_ij (e^{t(lam_i + lam_j)} - 1) / (lam_i + lam_j)`` (``expm1``, accurate
    for all ``t``).  The problem is stiff (``||A||_2 ~ 4 / dx^2``): explicit RK4 substeps
    need ``dt`` below ``2.785 / (2 ||A||_2)``, see ``suggested_dt``.  For ``size < 21``
    (or ``< 5``) the ranks of ``X_0`` (and ``C``) are reduced to ``size``.
    """
    size = _int(size, "size", 2)
    r = _rank(r, size, size)
    t_end = _real(t_end, "t_end", positive=True)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="heat_lyapunov")
    rng = _rng(seed)
    t_smooth = 0.01

    A = _dirichlet_laplacian(size)
    q = min(5, size)
    s_C = np.logspace(0, -16, 5)[:q]
    Q_C = _orth(rng.random((size, q)))
    k0 = min(21, size)
    s_0 = np.logspace(0, -20, 21)[:k0]
    P_0 = _orth(rng.random((size, k0)))
    X_0 = (P_0 * s_0) @ P_0.T

    lam, QA = np.linalg.eigh(A)
    L = lam[:, None] + lam[None, :]  # < 0 for the Dirichlet Laplacian
    Ct = _sym(QA.T @ ((Q_C * s_C) @ Q_C.T) @ QA)

    def propagate(Xt: np.ndarray, t: float) -> np.ndarray:
        return np.exp(t * L) * Xt + Ct * (np.expm1(t * L) / L)

    Xt_init = propagate(_sym(QA.T @ X_0 @ QA), t_smooth)

    def host(t: float) -> np.ndarray:
        return _sym(QA @ propagate(Xt_init, t) @ QA.T)

    ref = _Reference(host, to_xp)
    A_xp = to_xp(A)
    Q_C_xp = to_xp(Q_C)
    C = LowRank(Q_C_xp, to_xp(np.diag(s_C)), Q_C_xp)
    description = (
        f"2-D heat, Dirichlet, size = {size}, dx = 1/(size+1); C = Q diag(logspace(0,-16,5)) Q^T, "
        f"X_init = closed-form X(0.01) from P diag(logspace(0,-20,21)) P^T (Q, P = orth(rand), seed {seed!r}). "
        "reference(t) is the closed form from the full X_init"
    )
    return _stiff_symmetric(
        "heat", LinearMatrixODE(A_xp, A_xp, C), ref, r, to_xp, float(np.max(np.abs(lam))), t_end, description
    )
