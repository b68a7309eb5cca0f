"""The Burgers right-hand side ``F(Y) = -(1/2) D (Y ⊙ Y) + nu L Y`` (periodic, one column
per sample), dense or from the factors of a low-rank ``Y``."""

from __future__ import annotations

from typing import Any

from .._lowrank import LowRank
from .._namespace import namespace_of_named
from .._problem import RHSValue
from ._common import _int, _real
from ._pde import _check_real_state, _d2dx2, _ddx, _GridODE, _kr_apply, _kr_gram


# ====================================================================== the matrix ODE
class _BurgersProducts(RHSValue):
    """``F = -(1/2) D (Y ⊙ Y) + nu L Y`` at one point, from the factors ``Y = A B^T``."""

    def __init__(self, ode: BurgersODE, Y: LowRank) -> None:
        self.ode, self.xp = ode, Y.xp
        self.A, self.B = Y.U @ Y.S, Y.V

    def F_V(self, W: Any) -> Any:  # noqa: N802
        xp, h, A, B = self.xp, self.ode.h, self.A, self.B
        quad = _kr_apply(A, _kr_gram(B, W, 2, xp), 2, xp)
        return -0.5 * _ddx(quad, h, xp) + self.ode.nu * _d2dx2(A @ (xp.matrix_transpose(B) @ W), h, xp)

    def FH_U(self, Z: Any) -> Any:  # noqa: N802
        # D^T = -D and L^T = L for the periodic centred stencils.
        xp, h, A, B = self.xp, self.ode.h, self.A, self.B
        quad = _kr_apply(B, _kr_gram(A, _ddx(Z, h, xp), 2, xp), 2, xp)
        return 0.5 * quad + self.ode.nu * (B @ (xp.matrix_transpose(A) @ _d2dx2(Z, h, xp)))


class BurgersODE(_GridODE):
    r"""Viscous Burgers ``u_t + (u^2/2)_x = nu u_xx``, periodic in ``x``, one column per sample.

    ``dY/dt = F(Y) = -(1/2) D (Y ⊙ Y) + nu L Y`` for ``Y (m, n)``: row ``i`` is the
    grid point ``x_i = i h``, column ``j`` the sample ``j``; ``D`` is the centred
    difference ``(w_{i+1} - w_{i-1}) / (2h)`` and ``L`` the second difference
    ``(w_{i+1} - 2 w_i + w_{i-1}) / h^2``, both periodic.  The columns are independent
    Burgers solves; every column of ``F`` sums to zero (``1^T D = 1^T L = 0``), so
    the mass ``h sum_i Y_ij`` of each sample is conserved by the exact flow.

    Parameters
    ----------
    m : int
        Grid points, ``m >= 3``.
    nu : float
        Viscosity, ``nu > 0``.
    length : float, default 1.0
        Period of the domain (``h = length / m``).
    products : {"auto", "factored", "dense"}, default "auto"
        ``"factored"``: ``Y ⊙ Y = (A • A)(B • B)^T`` with ``Y = A B^T``, ``A = U S``,
        ``B = V``, products in ``O((m + n) r^2 k)`` flops without any ``m x n`` array;
        ``"dense"``: form ``F`` once per evaluation point (``O(m n)`` memory);
        ``"auto"``: dense when ``m n <= min((m + n) r^2, 2^22)``, else factored.

    Notes
    -----
    Works in any array-API namespace (the stencils are ``xp.roll``); real states only.
    """

    _POWER = 2
    _FACTORED = _BurgersProducts

    def __init__(self, m: int, nu: float, *, length: float = 1.0, products: str = "auto") -> None:
        self.m = _int(m, "m", 3)
        self.nu = _real(nu, "nu", positive=True)
        self._set_grid(self.m, length, products)

    def check_state(self, Y0: LowRank) -> None:
        _check_real_state(Y0, self.m, None, "BurgersODE")

    def dense(self, Y: Any) -> Any:
        """The dense right-hand side ``F(Y)`` of a dense ``Y (m, n)`` (any namespace)."""
        xp = namespace_of_named(Y=Y)
        return -0.5 * _ddx(Y * Y, self.h, xp) + self.nu * _d2dx2(Y, self.h, xp)

    def __repr__(self) -> str:
        return f"BurgersODE(m={self.m}, nu={self.nu:g}, length={self.length:g}, products={self.products!r})"
