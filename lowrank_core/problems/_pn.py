r"""The :math:`P_N` discretisation of the plane source: the flux matrix ``A`` and its
upwind part ``|A|``, the periodic stencils, and the exact solution of the semi-discrete
system mode by mode (see :mod:`lowrank_core.problems.radiative`)."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import scipy.sparse as sp
from scipy.linalg import eigh_tridiagonal

from .._problem import LinearMatrixODE
from ._common import _Backend

#: Largest number of moments for the Roe stabilisation (its ``|A|`` is a dense N x N matrix).
ROE_MAX_MOMENTS = 4096
#: Largest ``nx`` and ``n_moments`` for a non-NumPy namespace (dense operators there).
DENSE_MAX_SIZE = 2048


def _pn_coupling(n_moments: int) -> np.ndarray:
    r"""The off-diagonal :math:`(\ell+1)/\sqrt{(2\ell+1)(2\ell+3)}`, ``l = 0..N-2``, of ``A``."""
    ell = np.arange(n_moments - 1, dtype=np.float64)
    return (ell + 1.0) / np.sqrt((2.0 * ell + 1.0) * (2.0 * ell + 3.0))


def pn_flux_matrix(n_moments: int) -> sp.csr_array:
    r"""Flux matrix ``A (N, N)`` of the :math:`P_{N-1}` system in orthonormal Legendre moments.

    Symmetric tridiagonal, :math:`A_{\ell,\ell+1} = (\ell+1)/\sqrt{(2\ell+1)(2\ell+3)}`; its
    eigenvalues are the ``N`` Gauss-Legendre nodes (the wave speeds of :math:`P_{N-1}`).
    """
    off = _pn_coupling(n_moments)
    return sp.diags_array([off, off], offsets=[-1, 1], shape=(n_moments, n_moments), format="csr")


def _abs_flux(n_moments: int, stabilisation: str) -> tuple[Any, float]:
    """``|A|`` (dense ``V |Lambda| V^T`` for Roe, ``lambda_max I`` for Rusanov) and ``lambda_max``."""
    off = _pn_coupling(n_moments)
    if stabilisation == "roe":
        lam, V = eigh_tridiagonal(np.zeros(n_moments), off)
        absA = (V * np.abs(lam)) @ V.T
        return 0.5 * (absA + absA.T), float(np.max(np.abs(lam)))
    lam_max = float(np.max(np.abs(eigh_tridiagonal(np.zeros(n_moments), off, eigvals_only=True))))
    return lam_max * sp.eye_array(n_moments, format="csr"), lam_max


def _periodic_stencils(nx: int, dx: float) -> tuple[sp.csr_array, sp.csr_array]:
    """Periodic ``D_x`` (centred) and ``D_xx`` (Roe stabilisation) on ``nx`` cells."""
    one = np.ones(nx)
    shift_up = sp.diags_array([one[:-1], one[:1]], offsets=[1, -(nx - 1)], shape=(nx, nx))  # (S u)_i = u_{i+1}
    shift_down = shift_up.T
    Dx = ((shift_up - shift_down) / (2.0 * dx)).tocsr()
    Dxx = ((shift_up + shift_down - 2.0 * sp.eye_array(nx)) / (2.0 * dx)).tocsr()
    return Dx, Dxx


class _FourierSolution:
    r"""Exact solution of the semi-discrete system from ``Y_init = y0 e_0^T``, mode by mode.

    The periodic stencils are circulant, so the DFT in ``x`` diagonalises them:
    :math:`D_x \to i\sin\theta_k/\Delta x`, :math:`D_{xx} \to (\cos\theta_k - 1)/\Delta x`,
    :math:`\theta_k = 2\pi k/n_x`, and each mode's moments evolve by
    :math:`\hat Y_k(t)^\top = \hat y_{0,k}\,e^{tM_k}e_0` with the ``N x N`` matrix
    :math:`M_k = -i\frac{\sin\theta_k}{\Delta x}A + \frac{\cos\theta_k - 1}{\Delta x}|A| - \mathrm{diag}(\sigma)`,
    a rank-one perturbation (the scattering source) of a normal matrix.  Its
    eigendecomposition :math:`M_k = W_k\Lambda_kW_k^{-1}` is computed once (lazily, in
    chunks; ``O(nx N^3)`` work, ``O(nx N^2)`` memory), after which each time costs
    ``O(nx N^2)``.  The eigenvector condition numbers are about 10 at the sizes we tried
    (up to ``nx = 1600``, ``N = 119``), and the result agrees with ``scipy.linalg.expm``
    to ``1e-15``.
    """

    def __init__(self, y0: np.ndarray, dx: float, A: Any, absA: Any, collision: np.ndarray) -> None:
        self.y_hat0 = np.fft.rfft(y0)
        self.nx, self.dx = y0.shape[0], dx
        self.A = A.toarray()
        self.absA = absA.toarray() if sp.issparse(absA) else np.asarray(absA)
        self.collision = collision
        self._eig: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _decompose(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.A.shape[0]
        theta = 2.0 * np.pi * np.arange(self.y_hat0.shape[0]) / self.nx
        lam = np.empty((theta.shape[0], n), dtype=np.complex128)
        W = np.empty((theta.shape[0], n, n), dtype=np.complex128)
        coef = np.empty((theta.shape[0], n), dtype=np.complex128)
        chunk = max(1, 2**20 // (n * n))
        e0 = np.zeros(n)
        e0[0] = 1.0
        for start in range(0, theta.shape[0], chunk):
            th = theta[start : start + chunk]
            M = (-1j * np.sin(th) / self.dx)[:, None, None] * self.A
            M = M + ((np.cos(th) - 1.0) / self.dx)[:, None, None] * self.absA - np.diag(self.collision)
            lam_c, W_c = np.linalg.eig(M)
            lam[start : start + chunk], W[start : start + chunk] = lam_c, W_c
            rhs = np.broadcast_to(e0, (th.shape[0], n))[..., None]
            coef[start : start + chunk] = np.linalg.solve(W_c, rhs)[..., 0] * self.y_hat0[start : start + chunk, None]
        return lam, W, coef

    def __call__(self, t: float) -> np.ndarray:
        if self._eig is None:
            self._eig = self._decompose()
        lam, W, coef = self._eig
        modes = np.einsum("kij,kj->ki", W, np.exp(t * lam) * coef)
        return np.fft.irfft(modes, n=self.nx, axis=0)


def _check_stabilisation(stabilisation: Any, n_moments: int) -> None:
    """Refuse, naming `stabilisation`, anything but ``"roe"`` or ``"rusanov"``, and the Roe
    matrix (dense ``N x N``) beyond ``ROE_MAX_MOMENTS`` moments."""
    if not isinstance(stabilisation, str):
        msg = f"`stabilisation` must be the string 'roe' or 'rusanov'; got {type(stabilisation).__name__}."
        raise TypeError(msg)
    if stabilisation not in ("roe", "rusanov"):
        msg = f"`stabilisation` must be 'roe' or 'rusanov'; got {stabilisation!r}."
        raise ValueError(msg)
    if stabilisation == "roe" and n_moments > ROE_MAX_MOMENTS:
        msg = (
            f"`n_moments` = {n_moments} is above {ROE_MAX_MOMENTS} for stabilisation='roe', whose |A| is a dense "
            "n_moments x n_moments matrix; pass stabilisation='rusanov' (sparse) or fewer moments."
        )
        raise ValueError(msg)


def _pn_system(
    nx: int, n_moments: int, dx: float, sigma_s: float, sigma_a: float, stabilisation: str, to_xp: _Backend
) -> tuple[LinearMatrixODE, tuple[Any, Any, np.ndarray, float]]:
    """The plane-source ODE ``-D_x Y A^T + D_xx Y |A|^T - Y diag(collision)`` in the target
    backend (``scipy.sparse`` operators for NumPy, dense ones up to ``DENSE_MAX_SIZE``
    otherwise), and the host ``(A, |A|, collision, max|eig A|)`` of the reference."""
    numpy_state = array_api_compat.is_numpy_namespace(to_xp.xp)
    if not numpy_state and max(nx, n_moments) > DENSE_MAX_SIZE:
        msg = (
            f"`nx` = {nx} and `n_moments` = {n_moments}: a {to_xp.xp.__name__} state gets dense operators, allowed "
            f"up to {DENSE_MAX_SIZE} (scipy.sparse operators apply to NumPy states only); pass xp=None (NumPy) "
            "for larger sizes."
        )
        raise ValueError(msg)
    Dx, Dxx = _periodic_stencils(nx, dx)
    A = pn_flux_matrix(n_moments)
    absA, lam_max = _abs_flux(n_moments, stabilisation)
    collision = np.full(n_moments, sigma_a + sigma_s)
    collision[0] = sigma_a
    B = sp.diags_array(-collision, format="csr")

    def op(M: Any) -> Any:
        if numpy_state:
            return sp.csr_array(M, dtype=to_xp.host_dtype)
        return to_xp(M.toarray() if sp.issparse(M) else M)

    problem = LinearMatrixODE(None, op(B), terms=[(op(-Dx), op(A)), (op(Dxx), op(absA))])
    return problem, (A, absA, collision, lam_max)
