r"""Radiative transfer: the plane-source problem in :math:`P_N` moments (Ceruti, Kusch & Lubich).

The one-speed linear Boltzmann (radiative transfer) equation in slab geometry,

.. math::

    \partial_t\psi + \mu\,\partial_x\psi + \sigma_t\,\psi = \frac{\sigma_s}{2}\int_{-1}^{1}\psi\,d\mu',
    \qquad \sigma_t = \sigma_a + \sigma_s,

expanded in the orthonormal Legendre polynomials
:math:`\tilde P_\ell = \sqrt{(2\ell+1)/2}\,P_\ell` of the direction :math:`\mu`,
:math:`\psi(x, \mu) \approx \sum_{\ell<N} u_\ell(x)\,\tilde P_\ell(\mu)`, gives the
:math:`P_{N-1}` system :math:`\partial_t u + A\,\partial_x u = -\sigma_a u - \sigma_s G u`
with the symmetric tridiagonal flux matrix
:math:`A_{\ell,\ell+1} = A_{\ell+1,\ell} = (\ell+1)/\sqrt{(2\ell+1)(2\ell+3)}` and
:math:`G = \mathrm{diag}(0, 1, \dots, 1)` (scattering keeps the zeroth moment).  On
``nx`` periodic cells the state is the matrix ``Y[i, l] = u_l(x_i)`` and, as in the code
of Ceruti, Kusch & Lubich, the semi-discrete system is the Roe (upwind) scheme

.. math::

    \dot Y = -D_x Y A^\top + D_{xx} Y |A|^\top - Y(\sigma_a I + \sigma_s G)^\top,

with the centred difference :math:`D_x = (\delta_{+1} - \delta_{-1})/(2\Delta x)` and the
stabilisation :math:`D_{xx} = (\delta_{+1} - 2 + \delta_{-1})/(2\Delta x)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
import scipy.sparse as sp
from scipy.integrate import quad_vec
from scipy.linalg import eigh_tridiagonal
from scipy.special import erf

from .._lowrank import LowRank
from .._namespace import check_array, namespace_of_named
from .._problem import LinearMatrixODE
from ._base import ReferenceProblem, _recorded
from ._common import _Backend, _int, _orth, _rank, _real, _Reference, _rng, _time

__all__ = ["PlaneSourceProblem", "plane_source", "plane_source_scalar_flux"]

#: Largest number of moments for the Roe stabilisation (its ``|A|`` is a dense N x N matrix).
ROE_MAX_MOMENTS = 4096
#: Largest ``nx`` and ``n_moments`` for a non-NumPy namespace (dense operators there).
DENSE_MAX_SIZE = 2048
#: Gauss-Legendre nodes per cell of the convolution with the source Gaussian.
_CONV_NODES = 24


# ============================================================== analytic benchmark
def _collided(x: np.ndarray, t: float, c: float) -> np.ndarray:
    r"""Collided part of Ganapol's plane-source flux (unit ``sigma_t``), zero for ``|x| >= t``."""
    out = np.zeros_like(x)
    eta = x / t
    inside = np.abs(eta) < 1.0
    if not np.any(inside):
        return out
    eta = eta[inside]
    logq = np.log1p(eta) - np.log1p(-eta)
    w = 1.0 - eta**2

    def integrand(u: float) -> np.ndarray:
        tan = math.tan(u / 2.0)
        xi = (logq + 1j * u) / (eta + 1j * tan)
        return (1.0 + tan * tan) * np.real(xi * xi * np.exp(0.5 * c * t * w * xi))

    integral, _ = quad_vec(integrand, 0.0, math.pi, epsabs=1e-13, epsrel=1e-11, norm="max", limit=2000)
    out[inside] = math.exp(-t) / (2.0 * t) * (c * t / (4.0 * math.pi)) * w * integral
    return out


def plane_source_scalar_flux(
    x: Any, t: Any, *, sigma_s: float = 1.0, sigma_a: float = 0.0, width: float = 0.0
) -> np.ndarray:
    r"""Scalar flux of the plane source in an infinite homogeneous medium (Ganapol's benchmark).

    The solution of :math:`\partial_t\psi + \mu\partial_x\psi + \sigma_t\psi =
    \tfrac{\sigma_s}{2}\phi`, :math:`\phi = \int_{-1}^1\psi\,d\mu`, from the isotropic unit
    pulse :math:`\psi(x, \mu, 0) = \delta(x)/2` is, for :math:`\sigma_t = 1`,
    :math:`c = \sigma_s` and :math:`\eta = x/t` (Ganapol 1999; Hauck & McClarren 2010,
    eq. (5.2); Garrett & Hauck 2013),

    .. math::

        \phi(x, t) = \frac{e^{-t}}{2t}\Big(1 + \frac{c\,t}{4\pi}(1-\eta^2)
        \int_0^\pi \sec^2\tfrac u2\,\mathrm{Re}\big[\xi^2 e^{\frac{ct}{2}(1-\eta^2)\xi}\big]du\Big)
        H(1-|\eta|),\qquad
        \xi(u) = \frac{\log\frac{1+\eta}{1-\eta} + iu}{\eta + i\tan\frac u2},

    and :math:`\phi_{\sigma_t}(x, t) = \sigma_t\,\phi(\sigma_t x, \sigma_t t)` in general.
    The first term is the uncollided flux, a flat top of mass :math:`e^{-\sigma_t t}` on
    :math:`|x| < t`; the integral is evaluated with ``scipy.integrate.quad_vec`` (absolute
    tolerance 1e-13, relative 1e-11).

    Parameters
    ----------
    x : float, sequence of float or NumPy array
        Positions (evaluated on the host with SciPy quadrature; other array libraries
        are refused: convert first, or use :meth:`PlaneSourceProblem.analytic_scalar_flux`).
    t : float
        Time, ``t > 0``.
    sigma_s, sigma_a : float, default 1.0 and 0.0
        Scattering (``> 0``) and absorption (``>= 0``) cross sections.
    width : float, default 0.0
        Standard deviation of a Gaussian source :math:`g_w(x) = e^{-x^2/(2w^2)}/(\sqrt{2\pi}w)`
        replacing :math:`\delta(x)` (the smoothed plane source of the papers): the result
        is the convolution :math:`g_w * \phi`, with the uncollided part in closed form (error
        functions) and the collided part by Gauss-Legendre quadrature over ``x +- 8 w``.

    Returns
    -------
    numpy.ndarray of float64, the shape of ``x``
        :math:`\phi(x, t)`; its integral over the line is :math:`e^{-\sigma_a t}`.

    References
    ----------
    B. D. Ganapol, *Homogeneous infinite media time-dependent analytic benchmarks*,
    LA-UR-01-1854 (2001), and *Analytical Benchmarks for Nuclear Engineering Applications*,
    OECD/NEA No. 6292 (2008); C. D. Hauck and R. G. McClarren, *Positive P_N closures*,
    SIAM J. Sci. Comput. 32 (2010) 2603-2626; C. K. Garrett and C. D. Hauck, *A comparison of
    moment closures for linear kinetic transport equations: the line source benchmark*,
    Transport Theory Statist. Phys. 42 (2013) 203-235.
    """
    if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.ndarray):
        msg = (
            "`x` must be a float, a sequence of floats or a NumPy array (the benchmark is evaluated "
            f"with SciPy quadrature on the host); got {type(x).__module__}.{type(x).__name__}. "
            "Convert it to NumPy first, or use PlaneSourceProblem.analytic_scalar_flux(t)."
        )
        raise TypeError(msg)
    try:
        xs = np.array(x, dtype=np.float64)  # a copy: the caller's array is never touched
    except (TypeError, ValueError):
        msg = f"`x` must be a float, a sequence of floats or a NumPy array; got {type(x).__name__}."
        raise TypeError(msg) from None
    if not np.all(np.isfinite(xs)):
        msg = "`x` must be finite; got NaN or Inf values."
        raise ValueError(msg)
    t = _time(t)
    if t <= 0.0:
        msg = f"`t` must be > 0 (the source is a distribution at t = 0); got {t}."
        raise ValueError(msg)
    sigma_s = _real(sigma_s, "sigma_s", positive=True)
    sigma_a = _real(sigma_a, "sigma_a", nonnegative=True)
    width = _real(width, "width", nonnegative=True)
    st = sigma_a + sigma_s
    c = sigma_s / st
    tau = st * t
    flat = xs.ravel()
    if width == 0.0:
        y = st * flat
        phi = np.where(np.abs(y) < tau, math.exp(-tau) / (2.0 * tau), 0.0) + _collided(y, tau, c)
        return (st * phi).reshape(xs.shape)
    # uncollided: (e^{-tau} / (2 t)) * P(|x - s| < t), s ~ N(0, w^2)
    s2w = math.sqrt(2.0) * width
    unc = math.exp(-tau) / (2.0 * t) * 0.5 * (erf((flat + t) / s2w) - erf((flat - t) / s2w))
    # collided: continuous, integrated against g_w over [x - 8w, x + 8w] cut to |y| < t
    nodes, weights = np.polynomial.legendre.leggauss(_CONV_NODES)
    lo = np.clip(flat - 8.0 * width, -t, t)
    hi = np.clip(flat + 8.0 * width, -t, t)
    half = 0.5 * (hi - lo)
    ys = 0.5 * (hi + lo)[:, None] + half[:, None] * nodes[None, :]
    gauss = np.exp(-0.5 * ((flat[:, None] - ys) / width) ** 2) / (math.sqrt(2.0 * math.pi) * width)
    coll = st * _collided(st * ys.ravel(), tau, c).reshape(ys.shape)
    phi = unc + half * np.sum(weights[None, :] * gauss * coll, axis=1)
    return phi.reshape(xs.shape)


# ============================================================== operators
def pn_flux_matrix(n_moments: int) -> sp.csr_array:
    r"""Flux matrix ``A (N, N)`` of the :math:`P_{N-1}` system in orthonormal Legendre moments.

    Symmetric tridiagonal, :math:`A_{\ell,\ell+1} = (\ell+1)/\sqrt{(2\ell+1)(2\ell+3)}`; its
    eigenvalues are the ``N`` Gauss-Legendre nodes (the wave speeds of :math:`P_{N-1}`).
    """
    ell = np.arange(n_moments - 1, dtype=np.float64)
    off = (ell + 1.0) / np.sqrt((2.0 * ell + 1.0) * (2.0 * ell + 3.0))
    return sp.diags_array([off, off], offsets=[-1, 1], shape=(n_moments, n_moments), format="csr")


def _abs_flux(n_moments: int, stabilisation: str) -> tuple[Any, float]:
    """``|A|`` (dense ``V |Lambda| V^T`` for Roe, ``lambda_max I`` for Rusanov) and ``lambda_max``."""
    ell = np.arange(n_moments - 1, dtype=np.float64)
    off = (ell + 1.0) / np.sqrt((2.0 * ell + 1.0) * (2.0 * ell + 3.0))
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


# ============================================================== container
@dataclass(frozen=True, eq=False, kw_only=True)
class PlaneSourceProblem(ReferenceProblem):
    r"""The plane-source problem in :math:`P_N` moments, with its scalar flux and mass.

    Attributes
    ----------
    x : numpy.ndarray (nx,)
        Cell centres on ``[-x_max, x_max]`` (host, float64).
    dx : float
        Cell width.
    sigma_s, sigma_a : float
        Scattering and absorption cross sections.
    width : float
        Standard deviation of the Gaussian source.
    stabilisation : str
        ``"roe"`` or ``"rusanov"``.
    max_speed : float
        Largest wave speed ``max |eig A|`` of the :math:`P_N` system (< 1).

    Notes
    -----
    ``Y[i, l]`` is the ``l``-th orthonormal Legendre moment in cell ``i``; the scalar flux
    is :math:`\phi_i = \int\psi\,d\mu = \sqrt2\,Y_{i0}` and the mass :math:`\Delta x\sum_i\phi_i`.
    """

    x: np.ndarray
    dx: float
    sigma_s: float
    sigma_a: float
    width: float
    stabilisation: str
    max_speed: float

    def _first_column(self, Y: Any) -> tuple[Any, Any]:
        """``Y[:, 0]`` (from the factors of a LowRank) and its namespace."""
        nx, n = self.shape
        if isinstance(Y, LowRank):
            xp = namespace_of_named(Y=Y.U, **{"the problem's arrays": self.Y0.U})
            if tuple(Y.shape) != (nx, n):
                msg = f"`Y` must have shape {(nx, n)}; got {tuple(Y.shape)}."
                raise ValueError(msg)
            v0 = xp.conj(Y.V[0, :]) if xp.isdtype(Y.V.dtype, "complex floating") else Y.V[0, :]
            return Y.U @ (Y.S @ v0), xp
        try:
            check_array(Y, "Y")
        except TypeError:
            msg = f"`Y` must be a LowRank or an array of shape {(nx, n)}; got {type(Y).__module__}.{type(Y).__name__}."
            raise TypeError(msg) from None
        xp = namespace_of_named(Y=Y, **{"the problem's arrays": self.Y0.U})
        if tuple(Y.shape) != (nx, n):
            msg = f"`Y` must have shape {(nx, n)}; got {tuple(Y.shape)}."
            raise ValueError(msg)
        return Y[:, 0], xp

    def scalar_flux(self, Y: Any) -> Any:
        r"""Scalar flux :math:`\phi_i = \sqrt2\,Y_{i0}` at the cell centres, shape ``(nx,)``.

        Parameters
        ----------
        Y : LowRank or array of shape (nx, n_moments)
            For a :class:`~lowrank_core.LowRank` ``U S V^H`` computed as
            ``sqrt(2) U (S conj(V[0, :]))``, ``O(nx r)``; ``Y`` is never formed.

        Returns
        -------
        array (nx,)
            In the namespace of ``Y``.
        """
        col, _ = self._first_column(Y)
        return math.sqrt(2.0) * col

    def mass(self, Y: Any) -> float:
        r"""Total mass :math:`\Delta x\sum_i\phi_i` (the real part; conserved when ``sigma_a = 0``)."""
        col, xp = self._first_column(Y)
        return float(xp.real(xp.sum(col))) * math.sqrt(2.0) * self.dx

    def analytic_scalar_flux(self, t: Any) -> Any:
        r"""Ganapol's benchmark flux of the smoothed plane source at the cell centres.

        :func:`plane_source_scalar_flux` with the problem's ``sigma_s``, ``sigma_a`` and
        source ``width``, in the namespace, dtype and device of ``Y0`` (the infinite-medium
        solution: the periodic box is large enough while ``t < x_max`` up to the Gaussian
        tail of the source).
        """
        t = _time(t)
        phi = plane_source_scalar_flux(self.x, t, sigma_s=self.sigma_s, sigma_a=self.sigma_a, width=self.width)
        xp = namespace_of_named(**{"the problem's arrays": self.Y0.U})
        kwargs = {"device": self.Y0.U.device} if hasattr(self.Y0.U, "device") else {}
        out = xp.asarray(np.ascontiguousarray(phi), **kwargs)
        real = xp.real(self.Y0.U[:1, :1]).dtype
        return xp.astype(out, real)

    def flux_error(self, Y: Any, t: Any) -> float:
        r"""Relative :math:`L^1` error of the scalar flux of ``Y`` against Ganapol's benchmark.

        :math:`\sum_i|\phi_i(Y) - \phi(x_i, t)| / \sum_i|\phi(x_i, t)|` (a cell-centre
        quadrature of :math:`\|\phi_Y - \phi\|_{L^1}/\|\phi\|_{L^1}`).
        """
        phi = self.scalar_flux(Y)
        ref = self.analytic_scalar_flux(t)
        xp = namespace_of_named(Y=phi, **{"the problem's arrays": ref})
        return float(xp.sum(xp.abs(xp.real(phi) - ref))) / float(xp.sum(xp.abs(ref)))


@_recorded
def plane_source(
    nx: int = 200,
    n_moments: int = 29,
    r: int = 10,
    *,
    t_end: float = 2.0,
    x_max: float = 5.0,
    sigma_s: float = 1.0,
    sigma_a: float = 0.0,
    width: float = 0.03,
    cfl: float = 0.99,
    stabilisation: str = "roe",
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> PlaneSourceProblem:
    r"""Plane source of radiative transfer in :math:`P_N` moments (Ceruti, Kusch & Lubich 2022, 2023).

    ``dY/dt = -D_x Y A^T + D_xx Y |A|^T - Y (sigma_a I + sigma_s G)`` on ``nx`` periodic
    cells of ``[-x_max, x_max]`` and ``n_moments`` orthonormal Legendre moments (see the
    module docstring), from the isotropic smoothed pulse
    :math:`\psi(x, \mu, 0) = g_w(x)/2`, :math:`g_w` the centred Gaussian of standard
    deviation ``width`` (unit mass): ``Y_init[:, 0] = bar g_i/sqrt(2)`` with
    ``bar g_i`` the cell averages of :math:`g_w` (so the discrete mass is 1; the papers'
    code samples point values), the other moments zero, a rank-1 matrix.

    The papers (rank-adaptive BUG, BIT 62 (2022) §5.2; parallel BUG, arXiv 2304.05660
    §5.1; code ``JonasKu/Publication-A-parallel-rank-adaptive-integrator-...``,
    ``5.1-PlanesourceTestcaseOfRadiativeTransfer``) use ``x_max = 5``, 2001 cells,
    2001 moments, ``sigma_s = 1``, ``sigma_a = 0``, ``width = 0.03``, CFL 0.99 and
    ``t_end`` in {2, 2.75, 5}; the defaults here are the quick size ``nx = 200``,
    ``n_moments = 29``.  Differences from that code: periodic instead of zero ghost
    cells (so the mass is conserved to round-off; the solution does not reach
    ``|x| = 5`` before ``t = 5``), and no density floor ``1e-4`` in the initial value.

    Parameters
    ----------
    nx : int, default 200
        Number of cells (``>= 2``); sparse operators, so up to ``1e6`` and beyond.
    n_moments : int, default 29
        Number of Legendre moments ``N`` (:math:`P_{N-1}`), ``>= 2``; with
        ``stabilisation="roe"`` at most ``ROE_MAX_MOMENTS = 4096`` (``|A|`` is dense).
    r : int, default 10
        Rank of ``Y0``: the rank-1 initial value padded with ``r - 1`` zero singular
        values and seeded random orthonormal directions (as the truncated SVD of the
        papers' code).
    t_end : float, default 2.0
        Final time.
    x_max : float, default 5.0
        Half width of the periodic domain.
    sigma_s, sigma_a : float, default 1.0 and 0.0
        Scattering (``> 0``) and absorption (``>= 0``) cross sections.
    width : float, default 0.03
        Standard deviation of the Gaussian source (``> 0``).
    cfl : float, default 0.99
        CFL number of ``suggested_dt``, in ``(0, 1]``.
    stabilisation : {"roe", "rusanov"}, default "roe"
        Numerical viscosity ``D_xx Y |A|^T``: the Roe matrix ``|A| = V |Lambda| V^T`` of
        the papers (dense ``N x N``), or the Rusanov (local Lax-Friedrichs) choice
        ``|A| -> max|eig A| I`` (sparse; for very many moments).
    xp, dtype, device : optional
        Target array namespace (default NumPy), real or complex dtype (default float64)
        and device.  NumPy states get ``scipy.sparse`` operators; other namespaces get
        dense operators, allowed for ``nx, n_moments <=`` ``DENSE_MAX_SIZE = 2048``.
    seed : int or numpy.random.Generator, default 0
        Seed of the padding directions of ``Y0``.

    Returns
    -------
    PlaneSourceProblem
        ``problem = LinearMatrixODE(None, sigma_a I + sigma_s G (negated),
        terms=[(-D_x, A), (D_xx, |A|)])``.  ``reference(t)``: the exact solution of the
        full ``nx x n_moments`` semi-discrete system (DFT in ``x``, one ``N x N`` eigendecomposition
        per Fourier mode, computed once: ``O(nx N^3)`` work, ``O(nx N^2)`` memory, so for
        small and moderate ``N``);
        ``analytic_scalar_flux(t)``: Ganapol's infinite-medium benchmark, against which
        ``flux_error`` measures the relative :math:`L^1` error of the scalar flux.
        ``conserved = {"mass": mass}`` when ``sigma_a = 0`` (empty otherwise).
        ``suggested_dt``: the largest ``t_end / k`` below
        ``cfl / (max|eig A| / dx + sigma_a + sigma_s)`` (see Notes).

    Notes
    -----
    Stability of ``suggested_dt``: with :math:`\alpha = \Delta t\lambda_{\max}/\Delta x` and
    :math:`\beta = \Delta t\,\sigma_t`, :math:`\alpha + \beta \le 1` puts the numerical range
    of :math:`\Delta t\,F` in the disc :math:`|z + 1| \le 1` (the transport part is normal
    with its spectrum in :math:`|z + \alpha| \le \alpha`, the collision part symmetric in
    :math:`[-\beta, 0]`), so an explicit Euler step is a contraction and RK4 (whose
    stability region contains the disc :math:`|z + 1.39| \le 1.39`) is power-bounded; the
    Galerkin substeps of the low-rank integrators (K, L and forward S) have their
    numerical range in the same disc.  The papers' ``dt = 0.99 dx`` differs by the factor
    :math:`1/(\lambda_{\max} + \sigma_t\Delta x)`.
    """
    nx = _int(nx, "nx", 2)
    n_moments = _int(n_moments, "n_moments", 2)
    r = _rank(r, nx, n_moments)
    t_end = _real(t_end, "t_end", positive=True)
    x_max = _real(x_max, "x_max", positive=True)
    sigma_s = _real(sigma_s, "sigma_s", positive=True)
    sigma_a = _real(sigma_a, "sigma_a", nonnegative=True)
    width = _real(width, "width", positive=True)
    cfl = _real(cfl, "cfl", positive=True)
    if cfl > 1.0:
        msg = f"`cfl` must be in (0, 1] (explicit substeps are unstable beyond); got {cfl}."
        raise ValueError(msg)
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
    to_xp = _Backend(xp, dtype, device, complex_=False, who="plane_source")
    numpy_state = array_api_compat.is_numpy_namespace(to_xp.xp)
    if not numpy_state and max(nx, n_moments) > DENSE_MAX_SIZE:
        msg = (
            f"`nx` = {nx} and `n_moments` = {n_moments}: a {to_xp.xp.__name__} state gets dense operators, allowed "
            f"up to {DENSE_MAX_SIZE} (scipy.sparse operators apply to NumPy states only); pass xp=None (NumPy) "
            "for larger sizes."
        )
        raise ValueError(msg)
    rng = _rng(seed)

    dx = 2.0 * x_max / nx
    x = -x_max + (np.arange(nx) + 0.5) * dx
    Dx, Dxx = _periodic_stencils(nx, dx)
    A = pn_flux_matrix(n_moments)
    absA, lam_max = _abs_flux(n_moments, stabilisation)
    collision = np.full(n_moments, sigma_a + sigma_s)
    collision[0] = sigma_a
    B = sp.diags_array(-collision, format="csr")

    # cell averages of the Gaussian: the discrete mass is 1 up to the tails beyond x_max
    edges = (np.arange(nx + 1) * dx - x_max) / (math.sqrt(2.0) * width)
    g = 0.5 * np.diff(erf(edges)) / dx
    y0 = g / math.sqrt(2.0)  # Y_init = y0 e_0^T; never formed (nx x n_moments)

    ref = _Reference(_FourierSolution(y0, dx, A, absA, collision), to_xp)

    def op(M: Any) -> Any:
        if numpy_state:
            return sp.csr_array(M, dtype=to_xp.host_dtype)
        return to_xp(M.toarray() if sp.issparse(M) else M)

    problem = LinearMatrixODE(None, op(B), terms=[(op(-Dx), op(A)), (op(Dxx), op(absA))])

    # Y0: rank-1 initial value padded with orthonormal directions and zero singular values
    U = _orth(np.column_stack([g, rng.standard_normal((nx, r - 1))]))
    V = _orth(np.column_stack([np.eye(n_moments, 1), rng.standard_normal((n_moments, r - 1))]))
    s = np.zeros(r)
    s[0] = np.linalg.norm(g) / math.sqrt(2.0)
    Y0 = LowRank(to_xp(U), to_xp(np.diag(s)), to_xp(V))

    dt_max = cfl / (lam_max / dx + sigma_a + sigma_s)
    suggested = t_end / math.ceil(t_end / dt_max)
    notes = (
        f"Plane source, P_{n_moments - 1} ({n_moments} moments), {nx} periodic cells on [-{x_max:g}, {x_max:g}], "
        f"sigma_s = {sigma_s:g}, sigma_a = {sigma_a:g}, Gaussian source width {width:g}, {stabilisation} "
        "stabilisation (Ceruti, Kusch & Lubich, BIT 62 (2022) and arXiv 2304.05660: 2001 cells, 2001 moments, "
        "[-5, 5], sigma_s = 1, width 0.03, CFL 0.99, T in {2, 2.75, 5}). Y0: the rank-1 initial value padded "
        f"to rank r with zero singular values (seed {seed!r}). reference(t): exact solution of the full "
        "semi-discrete system (DFT in x, an eigendecomposition per mode); analytic_scalar_flux(t): Ganapol's "
        "infinite-medium benchmark (convolved with the source Gaussian). "
        f"suggested_dt = t_end / ceil(t_end / ({cfl:g} / (max|eig A| / dx + sigma_t))): Euler and RK4 substeps stable."
    )
    out = PlaneSourceProblem(
        name="plane-source",
        problem=problem,
        Y0=Y0,
        t_span=(0.0, t_end),
        reference=ref,
        symmetric=False,
        norm_preserving=False,
        notes=notes,
        suggested_dt=suggested,
        x=x,
        dx=dx,
        sigma_s=sigma_s,
        sigma_a=sigma_a,
        width=width,
        stabilisation=stabilisation,
        max_speed=lam_max,
    )
    if sigma_a == 0.0:
        object.__setattr__(out, "conserved", {"mass": out.mass})
    return out
