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

import numpy as np
from scipy.special import erf

from .._lowrank import LowRank
from .._namespace import namespace_of_named
from ._base import ReferenceProblem, _assemble, _recorded
from ._common import _Backend, _int, _orth, _rank, _real, _Reference, _rng, _state_namespace, _time
from ._ganapol import plane_source_scalar_flux
from ._pn import (  # noqa: F401  (their home before the split)
    DENSE_MAX_SIZE,
    ROE_MAX_MOMENTS,
    _abs_flux,
    _check_stabilisation,
    _FourierSolution,
    _periodic_stencils,
    _pn_system,
    pn_flux_matrix,
)

__all__ = ["PlaneSourceProblem", "plane_source", "plane_source_scalar_flux"]


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
        xp = _state_namespace(Y, self.Y0.U, self.shape)
        if isinstance(Y, LowRank):
            v0 = xp.conj(Y.V[0, :]) if xp.isdtype(Y.V.dtype, "complex floating") else Y.V[0, :]
            return Y.U @ (Y.S @ v0), xp
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
    _check_stabilisation(stabilisation, n_moments)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="plane_source")
    dx = 2.0 * x_max / nx
    x = -x_max + (np.arange(nx) + 0.5) * dx
    problem, (A, absA, collision, lam_max) = _pn_system(nx, n_moments, dx, sigma_s, sigma_a, stabilisation, to_xp)
    rng = _rng(seed)

    # cell averages of the Gaussian: the discrete mass is 1 up to the tails beyond x_max
    edges = (np.arange(nx + 1) * dx - x_max) / (math.sqrt(2.0) * width)
    g = 0.5 * np.diff(erf(edges)) / dx
    y0 = g / math.sqrt(2.0)  # Y_init = y0 e_0^T; never formed (nx x n_moments)

    ref = _Reference(_FourierSolution(y0, dx, A, absA, collision), to_xp)

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
    kept = ("mass",) if sigma_a == 0.0 else ()
    physics = {"x": x, "dx": dx, "sigma_s": sigma_s, "sigma_a": sigma_a, "width": width, "max_speed": lam_max}
    physics["stabilisation"] = stabilisation
    return _assemble(
        PlaneSourceProblem, "plane-source", problem, Y0, t_end, ref, notes, suggested, conserved=kept, **physics
    )
