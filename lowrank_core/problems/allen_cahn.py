r"""The Allen-Cahn equation ``u_t = eps Δu + u - u^3`` on a periodic square, ``Y[x, y]``,
with its Ginzburg-Landau energy (which decreases; nothing is conserved)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._lowrank import LowRank
from .._namespace import namespace_of_named
from .._problem import RHSValue
from ._allen_cahn_initial import _cross_symmetric, initial_value
from ._base import ReferenceProblem, _assemble, _recorded
from ._common import _IVP, _Backend, _int, _rank, _real, _Reference, _stable_dt, _state_namespace, _symmetric_lowrank
from ._pde import (
    _DENSE_MAX,
    _check_real_state,
    _d2dx2,
    _GridODE,
    _kr_apply,
    _kr_gram,
    _kr_self_gram,
)

__all__ = ["AllenCahnODE", "AllenCahnProblem", "allen_cahn"]

#: Largest ``N^2`` of the full-rank reference solve.
_REFERENCE_MAX = 2**14


def _cubic(A: Any, B: Any, W: Any, xp: Any) -> Any:
    """``(A B^T)^{⊙3} W`` from the factors: ``A^{•3} ((B^{•3})^T W)``."""
    return _kr_apply(A, _kr_gram(B, W, 3, xp), 3, xp)


class _AllenCahnProducts(RHSValue):
    """``F = eps (L Y + Y L) + Y - Y^{⊙3}`` at one point, from the factors ``Y = A B^T``."""

    def __init__(self, ode: AllenCahnODE, Y: LowRank) -> None:
        self.ode, self.xp = ode, Y.xp
        self.A, self.B = Y.U @ Y.S, Y.V

    def _apply(self, A: Any, B: Any, W: Any) -> Any:
        # F(A B^T) W with L symmetric: eps (L A (B^T W) + A ((L B)^T W)) + A (B^T W) - cube
        xp, ode = self.xp, self.ode
        BtW = xp.matrix_transpose(B) @ W
        lin = ode.eps * (_d2dx2(A @ BtW, ode.h, xp) + A @ (xp.matrix_transpose(B) @ _d2dx2(W, ode.h, xp)))
        return lin + A @ BtW - _cubic(A, B, W, xp)

    def F_V(self, W: Any) -> Any:  # noqa: N802
        return self._apply(self.A, self.B, W)

    def FH_U(self, Z: Any) -> Any:  # noqa: N802
        # F(Y)^T = F(Y^T) for the symmetric Laplacian, and Y^T = B A^T.
        return self._apply(self.B, self.A, Z)


class AllenCahnODE(_GridODE):
    r"""Allen-Cahn ``u_t = eps (u_xx + u_yy) + u - u^3`` on a periodic ``N x N`` grid.

    ``dY/dt = F(Y) = eps (L Y + Y L) + Y - Y ⊙ Y ⊙ Y`` with ``Y[i, j] = u(x_i, y_j)``
    and ``L`` the periodic second difference ``(w_{i+1} - 2 w_i + w_{i-1}) / h^2``,
    ``h = length / N``.  It is the gradient flow ``dY/dt = -grad E(Y) / h^2`` of the
    discrete Ginzburg-Landau energy (see :meth:`AllenCahnProblem.energy`).

    Parameters
    ----------
    N : int
        Grid points per dimension, ``N >= 3``.
    eps : float
        Diffusion coefficient (squared interface width), ``eps > 0``.
    length : float, default 2 pi
        Period of the square domain.
    products : {"auto", "factored", "dense"}, default "auto"
        ``"factored"``: ``Y^{⊙3} = A^{•3} (B^{•3})^T`` with ``Y = A B^T``, ``A = U S``,
        ``B = V`` (row-wise Kronecker powers, rank ``r^3``), products in
        ``O(N r^3 k)`` flops and row blocks, no ``N x N`` array; ``"dense"``: form
        ``F`` once per evaluation point; ``"auto"``: dense when
        ``N^2 <= min(2 N r^3, 2^22)``, else factored.

    Notes
    -----
    Works in any array-API namespace (the stencil is ``xp.roll``); real states only.
    ``F(Y^T) = F(Y)^T``, so symmetric data stay symmetric.
    """

    _POWER = 3
    _FACTORED = _AllenCahnProducts

    def __init__(self, N: int, eps: float, *, length: float = 2 * np.pi, products: str = "auto") -> None:
        self.N = _int(N, "N", 3)
        self.eps = _real(eps, "eps", positive=True)
        self._set_grid(self.N, length, products)

    def check_state(self, Y0: LowRank) -> None:
        _check_real_state(Y0, self.N, self.N, "AllenCahnODE")

    def dense(self, Y: Any) -> Any:
        """The dense right-hand side ``F(Y)`` of a dense ``Y (N, N)`` (any namespace)."""
        xp = namespace_of_named(Y=Y)
        lap = _d2dx2(Y, self.h, xp) + xp.matrix_transpose(_d2dx2(xp.matrix_transpose(Y), self.h, xp))
        return self.eps * lap + Y - Y * Y * Y

    def __repr__(self) -> str:
        return f"AllenCahnODE(N={self.N}, eps={self.eps:g}, length={self.length:g}, products={self.products!r})"


@dataclass(frozen=True, eq=False, kw_only=True)
class AllenCahnProblem(ReferenceProblem):
    r"""The Allen-Cahn problem, with its (decreasing) Ginzburg-Landau energy.

    Attributes
    ----------
    eps : float
        Diffusion coefficient.
    h : float
        Grid spacing ``2 pi / N``.

    Notes
    -----
    ``conserved`` is empty: the flow conserves nothing; it *decreases*
    :meth:`energy` (``dE/dt = -h^2 ||F||_F^2``), also along the exact DLRA flow
    (``dE/dt = -h^2 ||P(Y) F||_F^2``, ``P(Y)`` the tangent projection).
    """

    eps: float
    h: float

    def energy(self, Y: Any) -> float:
        r"""Discrete Ginzburg-Landau energy

        .. math:: E(Y) = h^2 \sum_{ij} \Big[\frac{\varepsilon}{2} \big((\delta_x Y)_{ij}^2
                  + (\delta_y Y)_{ij}^2\big) + \frac14 (Y_{ij}^2 - 1)^2\Big],

        ``δ`` the periodic forward differences, so that ``F = -grad E / h^2``.

        Parameters
        ----------
        Y : LowRank or array (N, N)
            For a :class:`~lowrank_core.LowRank` ``Y = A B^T`` (``A = U S``, ``B = V``;
            factors need not be orthonormal) the energy is computed from the factors:
            the gradient part from ``A^T L A`` and ``B^T L B`` (``O(N r^2)``), the
            quartic part ``sum Y^4 = <(A•A)^T (A•A), (B•B)^T (B•B)>`` in ``O(N r^4)``.

        Returns
        -------
        float
        """
        N = self.shape[0]
        h, eps = self.h, self.eps
        xp = _state_namespace(Y, self.Y0.U, self.shape)
        if isinstance(Y, LowRank):
            A, B = Y.U @ Y.S, Y.V
            At, Bt = xp.matrix_transpose(A), xp.matrix_transpose(B)
            AA, BB = At @ A, Bt @ B
            # <Y, L Y + Y L> = tr(A^T L A B^T B) + tr(A^T A B^T L B)
            quad = float(xp.sum((At @ _d2dx2(A, h, xp)) * BB) + xp.sum(AA * (Bt @ _d2dx2(B, h, xp))))
            sq = float(xp.sum(AA * BB))
            quartic = float(xp.sum(_kr_self_gram(A, xp) * _kr_self_gram(B, xp)))
        else:
            lap = _d2dx2(Y, h, xp) + xp.matrix_transpose(_d2dx2(xp.matrix_transpose(Y), h, xp))
            quad = float(xp.sum(Y * lap))
            Y2 = Y * Y
            sq = float(xp.sum(Y2))
            quartic = float(xp.sum(Y2 * Y2))
        return h**2 * (-0.5 * eps * quad + 0.25 * (quartic - 2.0 * sq + N * N))


@_recorded
def allen_cahn(
    N: int = 64,
    r: int = 10,
    *,
    eps: float = 0.01,
    t_end: float = 1.0,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> AllenCahnProblem:
    r"""Allen-Cahn equation on the periodic square ``[0, 2 pi)^2`` as a matrix ODE ``Y[x, y]``.

    ``u_t = eps Δu + u - u^3`` with ``eps = 0.01`` and the initial condition of Rodgers &
    Venturi (J. Sci. Comput. 97, 2023; ``allen_cahn.initial_value``), the setting of the
    Allen-Cahn experiments of Carrel, Gander & Vandereycken ("Low-rank Parareal", BIT
    63, 2023) and Carrel & Vandereycken ("Projected exponential methods for stiff
    dynamical low-rank approximation problems", arXiv:2312.00172).  Space: ``N`` points
    per dimension, second-order central differences (:class:`AllenCahnODE`; the cited
    papers discretise with finite differences too, at other ``N``).

    Parameters
    ----------
    N : int, default 64
        Grid points per dimension (up to ``10^6``: the products are factored and ``Y0``
        comes from a cross approximation when ``N^2 > 2^22``).
    r : int, default 10
        Rank of ``Y0``: the eigen-truncation of the symmetric ``u_0`` (``U = V``).
    eps : float, default 0.01
        Diffusion coefficient.
    t_end : float, default 1.0
        Final time.
    xp, dtype, device : optional
        Target array namespace (default NumPy), real dtype (default float64; complex
        dtypes raise ``TypeError``) and device.
    seed : int, default 0
        Unused (the problem is deterministic); accepted for a uniform signature.

    Returns
    -------
    AllenCahnProblem
        ``problem = AllenCahnODE(N, eps)``; ``energy(Y)`` the Ginzburg-Landau energy
        (decreasing; ``conserved`` is empty).  ``reference(t)`` is the DOP853 solution
        (rtol = atol = ``REFERENCE_TOL``) of the full ``N x N`` system from ``u_0``,
        for ``N^2 <= 2^14`` only (``ValueError`` above).  ``suggested_dt`` is 80 % of
        the RK4 bound for ``rho = 8 eps / h^2 + 2`` (``|1 - 3 u^2| <= 2`` for
        ``|u| <= 1``), at most ``t_end / 20``.
    """
    N = _int(N, "N", 3)
    r = _rank(r, N, N)
    eps = _real(eps, "eps", positive=True)
    t_end = _real(t_end, "t_end", positive=True)
    _int(seed, "seed", 0)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="allen_cahn", real_only=True)
    length = 2 * np.pi
    h = length / N
    grid = np.arange(N) * h
    ode = AllenCahnODE(N, eps)
    small = N * N <= _DENSE_MAX
    if small:
        Y0 = _symmetric_lowrank(initial_value(grid[:, None], grid[None, :]), r, to_xp)
    else:
        P, lam = _cross_symmetric(grid, r)
        U = to_xp(P)
        Y0 = LowRank(U, to_xp(np.diag(lam)), U)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        Y = y.reshape(N, N)
        lap = (np.roll(Y, -1, 0) + np.roll(Y, 1, 0) + np.roll(Y, -1, 1) + np.roll(Y, 1, 1) - 4.0 * Y) / h**2
        return (eps * lap + Y - Y**3).ravel()

    with_ref = N * N <= _REFERENCE_MAX
    ivp = _IVP(
        rhs, 0.0, initial_value(grid[:, None], grid[None, :]).ravel() if with_ref else None, t_end, method="DOP853"
    )

    def host(t: float) -> np.ndarray:
        if not with_ref:
            msg = (
                f"the full-rank reference of allen_cahn is computed for N^2 <= {_REFERENCE_MAX} only; this problem "
                f"has N = {N}. Use a smaller `N` for comparisons with the reference."
            )
            raise ValueError(msg)
        return ivp(t).reshape(N, N)

    ref = _Reference(host, to_xp)
    rho = 8 * eps / h**2 + 2.0
    dt = min(_stable_dt(rho, t_end), t_end / 20)
    notes = (
        f"Allen-Cahn u_t = eps (u_xx + u_yy) + u - u^3 on [0, 2 pi)^2 periodic, N = {N} points per dimension "
        f"(central differences), eps = {eps:g}; u_0 of Rodgers & Venturi 2023 as in Carrel, Gander & "
        "Vandereycken 2023 and Carrel & Vandereycken 2023. Y0: rank-r eigen-truncation of the symmetric u_0 "
        f"({'exact' if small else 'from a cross approximation'}). reference(t): DOP853, rtol = atol = 1e-10, on "
        f"the full N x N system (N^2 <= {_REFERENCE_MAX}). Nothing is conserved: the Ginzburg-Landau energy "
        f"`energy(Y)` decreases. suggested_dt: 80% of the RK4 bound for rho = 8 eps / h^2 + 2 = {rho:.4g}, at most "
        "t_end / 20."
    )
    return _assemble(AllenCahnProblem, "allen-cahn", ode, Y0, t_end, ref, notes, dt, symmetric=True, eps=eps, h=h)
