"""The 1D1V Vlasov-Poisson discretisation (Fourier spectral derivatives, the field by FFT)
and the problem's container with its field and invariants (see
:mod:`lowrank_core.problems.vlasov`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
import scipy.sparse.linalg as spla

from .._conservation import Conservation
from .._lowrank import LowRank
from .._namespace import conj_transpose
from ._base import ReferenceProblem
from ._common import _state_namespace


# ====================================================================== discretisation
def _wavenumbers(n: int, length: float) -> np.ndarray:
    """Angular wave numbers of the FFT of ``n`` points on a period ``length``; the
    Nyquist mode of an even ``n`` is set to 0, so the derivative is real and
    antisymmetric."""
    k = 2.0 * np.pi * np.fft.fftfreq(n, length / n)
    if n % 2 == 0:
        k[n // 2] = 0.0
    return k


def _spectral_derivative(n: int, length: float, dtype: Any) -> spla.LinearOperator:
    """The periodic Fourier derivative as a matrix-free LinearOperator (two FFTs per
    block of columns; real and antisymmetric, so its adjoint is its negative)."""
    k = _wavenumbers(n, length)

    def apply(X: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(X):
            return apply(X.real) + 1j * apply(X.imag)
        out = np.fft.ifft(1j * k[:, None] * np.fft.fft(X, axis=0), axis=0).real
        return out.astype(X.dtype, copy=False)

    return spla.LinearOperator(
        (n, n),
        matvec=lambda u: apply(np.reshape(u, (n, 1)))[:, 0],
        matmat=apply,
        rmatvec=lambda u: -apply(np.reshape(u, (n, 1)))[:, 0],
        rmatmat=lambda X: -apply(X),
        dtype=dtype,
    )


def _field_host(rho: np.ndarray, length: float) -> np.ndarray:
    """``E`` with ``E_x = 1 - rho``, zero mean, by FFT (host NumPy, any leading axes last)."""
    k = _wavenumbers(rho.shape[-1], length)
    rk = np.fft.fft(-rho, axis=-1)
    Ek = np.zeros_like(rk)
    nz = k != 0
    Ek[..., nz] = rk[..., nz] / (1j * k[nz])
    return np.fft.ifft(Ek, axis=-1).real


# ====================================================================== the problem
@dataclass(frozen=True, eq=False, kw_only=True)
class VlasovPoissonProblem(ReferenceProblem):
    r"""A 1D1V Vlasov–Poisson problem with its grids, field and invariants.

    Attributes
    ----------
    x : array (nx,)
        Periodic grid ``x_i = i L / nx`` on ``[0, L)``, ``L = 2 pi / k``.
    v : array (nv,)
        Velocity grid ``v_j = -v_max + j hv`` on ``[-v_max, v_max)``, ``hv = 2 v_max / nv``.
    hx, hv : float
        Grid spacings (the quadrature weights of the rectangle rule, exact for
        periodic trigonometric polynomials).
    k, alpha : float
        Wave number and amplitude of the initial perturbation ``1 + alpha cos(k x)``.
    linear_rate : float
        ``Im omega`` of the linear-theory mode (``vlasov.linear_dispersion``, computed for
        the problem's parameters): the exponential rate of the electric-field amplitude
        ``||E||``; the electric energy changes at ``2 linear_rate``.
    linear_frequency : float
        ``Re omega`` (the amplitude of a damped mode oscillates at ``|Re omega|``, its
        energy at ``2 |Re omega|``).
    conservation : Conservation
        The kept basis of the conservative truncation: ``left`` the constant in ``x``,
        ``right`` the columns ``1, v, v^2``.  ``lc.solve(p.problem, p.Y0, p.t_span, dt,
        method="ra-bug", conserve=p.conservation)`` conserves the discrete mass to
        round-off.

    Notes
    -----
    ``conserved`` holds ``"mass"`` (``hx hv sum_ij Y_ij``), ``"momentum"``
    (``hx hv sum_ij Y_ij v_j``) and ``"energy"`` (kinetic ``hx hv sum_ij Y_ij v_j^2 / 2``
    plus electric ``hx sum_i E_i^2 / 2``), each computed from the factors of a
    :class:`~lowrank_core.LowRank` in ``O((nx + nv) r)`` operations.  The semi-discrete
    system conserves the mass exactly; momentum and energy up to the truncation of
    ``f`` at the velocity box edge and the spectral-collocation (aliasing) error.
    """

    x: Any
    v: Any
    hx: float
    hv: float
    k: float
    alpha: float
    linear_rate: float
    linear_frequency: float
    conservation: Conservation

    # -- field --------------------------------------------------------------------
    def density(self, Y: Any) -> Any:
        r"""``rho_i = hv sum_j Y_ij`` (array ``(nx,)``), from the factors for a LowRank."""
        xp, is_lowrank = self._check(Y)
        if is_lowrank:
            w = xp.full((Y.shape[-1],), self.hv, dtype=Y.dtype, device=Y.device)
            return Y.U @ (Y.S @ (conj_transpose(Y.V, xp) @ w))
        return self.hv * xp.sum(Y, axis=-1)

    def electric_field(self, Y: Any) -> Any:
        r"""``E(x_i)`` (array ``(nx,)``) with ``E_x = 1 - rho``, zero mean (FFT for NumPy,
        the same linear map as a dense ``nx x nx`` matrix for other namespaces)."""
        rho = self.density(Y)
        if array_api_compat.is_numpy_array(rho):
            return _field_host(rho, self.hx * int(self.x.shape[0])).astype(rho.dtype, copy=False)
        return self.__dict__["_field_matrix"] @ rho

    def electric_energy(self, Y: Any) -> float:
        r"""``hx sum_i E_i^2 / 2``."""
        E = self.electric_field(Y)
        xp = array_api_compat.array_namespace(E)
        return float(0.5 * self.hx * xp.sum(E * E))

    def field_amplitude(self, Y: Any) -> float:
        r"""``||E||_{L^2} = (hx sum_i E_i^2)^{1/2}``: decays (Landau) or grows (two-stream)
        at ``linear_rate`` in the linear regime."""
        return math.sqrt(2.0 * self.electric_energy(Y))

    # -- invariants ---------------------------------------------------------------
    def _moments(self, Y: Any) -> tuple[float, float, float]:
        """``hx hv sum_ij Y_ij v_j^p`` for ``p = 0, 1, 2``."""
        xp, is_lowrank = self._check(Y)
        v = self.v
        vv = xp.stack([xp.ones_like(v), v, v * v], axis=1)  # (nv, 3)
        if is_lowrank:
            ones = xp.ones((Y.shape[-2],), dtype=Y.dtype, device=Y.device)
            m = (ones @ Y.U) @ (Y.S @ (conj_transpose(Y.V, xp) @ vv))
        else:
            m = xp.sum(Y @ vv, axis=0)
        m = self.hx * self.hv * m
        return float(m[0]), float(m[1]), float(m[2])

    def mass(self, Y: Any) -> float:
        """Discrete mass ``hx hv sum_ij Y_ij``."""
        return self._moments(Y)[0]

    def momentum(self, Y: Any) -> float:
        """Discrete momentum ``hx hv sum_ij Y_ij v_j``."""
        return self._moments(Y)[1]

    def energy(self, Y: Any) -> float:
        """Total energy: kinetic ``hx hv sum_ij Y_ij v_j^2 / 2`` plus electric ``hx sum_i E_i^2 / 2``."""
        return 0.5 * self._moments(Y)[2] + self.electric_energy(Y)

    def _check(self, Y: Any) -> tuple[Any, bool]:
        return _state_namespace(Y, self.v, self.shape), isinstance(Y, LowRank)
