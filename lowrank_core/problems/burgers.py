r"""The viscous Burgers equation with a random initial condition, sample by sample
(uncertainty quantification: state ``Y[x, sample]``).  Its quadratic term is applied
from the factors of a low-rank ``Y`` by the Khatri-Rao products of ``_pde``
(:func:`hadamard_power_product`, ``O((m + n) r^2 k)`` flops, no ``m x n`` array).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._lowrank import LowRank
from ._base import ReferenceProblem, _assemble, _recorded
from ._burgers_ode import BurgersODE
from ._common import _IVP, _Backend, _int, _rank, _real, _Reference, _rng, _stable_dt, _state_namespace
from ._pde import hadamard_power_product as hadamard_power_product  # re-exported: its home before the split

__all__ = ["BurgersODE", "StochasticBurgersProblem", "stochastic_burgers"]

#: Largest ``m * n`` of the full-rank reference solve.
_REFERENCE_MAX = 2**16


# ====================================================================== the reference problem
def _mean_profile(x: np.ndarray) -> np.ndarray:
    """Hou, Luo, Rozovskii & Zhou (2006) initial profile ``0.5 (e^{cos 2 pi x} - 1.5) sin(2 pi (x + 0.37))``."""
    return 0.5 * (np.exp(np.cos(2 * np.pi * x)) - 1.5) * np.sin(2 * np.pi * (x + 0.37))


@dataclass(frozen=True, eq=False, kw_only=True)
class StochasticBurgersProblem(ReferenceProblem):
    r"""Burgers' equation with a random initial condition, with its sample statistics.

    Attributes
    ----------
    x : numpy.ndarray (m,)
        Grid points ``x_i = i / m`` of the periodic domain ``[0, 1)`` (host).
    xi : numpy.ndarray (n, d)
        The random parameters of the samples, uniform on ``[-1, 1]`` (host).
    nu : float
        Viscosity.
    h : float
        Grid spacing ``1 / m``.
    """

    x: Any
    xi: Any
    nu: float
    h: float

    def _factors(self, Y: Any) -> tuple[Any, Any, Any]:
        """``(A, B, xp)`` with ``Y = A B^T`` (``B`` is ``None`` for a dense ``Y = Y I^T``)."""
        xp = _state_namespace(Y, self.Y0.U, self.shape)
        return (Y.U @ Y.S, Y.V, xp) if isinstance(Y, LowRank) else (Y, None, xp)

    def masses(self, Y: Any) -> Any:
        r"""Mass ``h sum_i Y_ij`` of each sample ``j``: array ``(n,)``, from the factors
        (``h (1^T U S) V^T``) for a :class:`~lowrank_core.LowRank`."""
        A, B, xp = self._factors(Y)
        colsum = xp.sum(A, axis=0) * self.h
        return colsum if B is None else B @ colsum

    def mass(self, Y: Any) -> float:
        r"""Sample mean of the masses, ``(h / n) sum_ij Y_ij`` (conserved by the exact flow)."""
        A, B, xp = self._factors(Y)
        total = xp.sum(A, axis=0) if B is None else xp.sum(A, axis=0) * xp.sum(B, axis=0)
        return float(xp.sum(total)) * self.h / self.shape[1]

    def mean(self, Y: Any) -> Any:
        r"""Sample mean ``E[u](x_i) = (1/n) sum_j Y_ij``: array ``(m,)``, ``O((m + n) r)``."""
        A, B, xp = self._factors(Y)
        n = self.shape[1]
        return xp.sum(A, axis=1) / n if B is None else A @ xp.sum(B, axis=0) / n

    def variance(self, Y: Any) -> Any:
        r"""Unbiased sample variance ``Var[u](x_i) = sum_j (Y_ij - E[u](x_i))^2 / (n - 1)``:
        array ``(m,)``.  For ``Y = A B^T``: with ``B_c = B - 1 (1^T B) / n`` and
        ``G = B_c^T B_c`` it is ``rowsum((A G) ⊙ A) / (n - 1)``, ``O((m + n) r^2)``."""
        A, B, xp = self._factors(Y)
        n = self.shape[1]
        if n < 2:
            msg = "the sample variance needs at least two samples (n >= 2)."
            raise ValueError(msg)
        if B is None:
            c = A - xp.mean(A, axis=1)[:, None]
            return xp.sum(c * c, axis=1) / (n - 1)
        Bc = B - xp.mean(B, axis=0)[None, :]
        G = xp.matrix_transpose(Bc) @ Bc
        return xp.sum((A @ G) * A, axis=1) / (n - 1)


@_recorded
def stochastic_burgers(
    m: int = 128,
    n: int = 64,
    r: int = 8,
    *,
    nu: float = 0.005,
    sigma: float = 0.1,
    d: int = 4,
    t_end: float = 0.3,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> StochasticBurgersProblem:
    r"""Viscous Burgers' equation with a random initial condition, ``Y[x, sample]``.

    ``u_t + (u^2 / 2)_x = nu u_xx`` on the periodic domain ``[0, 1)``, for ``n``
    Monte-Carlo samples of the random initial condition

    .. math:: u_0(x, \xi) = \bar u(x) + \sigma \sum_{k=1}^{d} \xi_k \frac{\sin(2\pi k x)}{k},
              \qquad \bar u(x) = \tfrac12 \big(e^{\cos 2\pi x} - 1.5\big) \sin(2\pi (x + 0.37)),

    ``xi_k`` independent uniform on ``[-1, 1]``.  The mean profile ``ū`` and the
    viscosity ``nu = 0.005`` are those of the stochastic Burgers benchmark of Hou, Luo,
    Rozovskii & Zhou (J. Comput. Phys. 216, 2006), used for dynamically orthogonal /
    bi-orthogonal methods by Cheng, Hou & Zhang (J. Comput. Phys. 242, 2013); there the
    randomness enters as a forcing, here (as in the DLRA setting of Kusch, Ceruti,
    Einkemmer & Frank, Int. J. Uncertain. Quantif. 12, 2022, and the DO analysis of
    Musharbash, Nobile & Zhou, SISC 37, 2015) through the initial condition: the
    Karhunen-Loève-type perturbation with ``d`` modes and amplitude ``sigma`` is this
    library's choice.  Space: ``m`` points, centred differences (:class:`BurgersODE`).

    ``u_0`` has rank ``d + 1`` exactly (``[ū, sin(2 pi k x)/k] [1, sigma xi_k]^T``), so
    ``Y0`` is built from thin factors at any size; the nonlinearity raises the rank
    as fronts form at sample-dependent places (``t >~ 0.2``).

    Parameters
    ----------
    m : int, default 128
        Grid points in ``x`` (up to ``10^6`` and more: the products are factored).
    n : int, default 64
        Samples.
    r : int, default 8
        Rank of ``Y0``: the truncated SVD of ``u_0`` when ``r < d + 1``; when
        ``r > d + 1`` the extra singular values are zero (seeded orthonormal padding).
    nu : float, default 0.005
        Viscosity.  The centred scheme needs the cell Péclet number
        ``max|u| h / nu < 2`` to stay free of grid oscillations (``max|u_0| ~ 0.7 + sigma
        H_d``, ``H_d`` the harmonic number): ``m >= 128`` at the default.
    sigma : float, default 0.1
        Amplitude of the random perturbation (``>= 0``).
    d : int, default 4
        Random dimensions (KL modes), ``1 <= d``.
    t_end : float, default 0.3
        Final time (fronts have formed; ``t_end`` may be larger).
    xp, dtype, device : optional
        Target array namespace (default NumPy), real dtype (default float64; complex
        dtypes raise ``TypeError``) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of the samples ``xi`` (and of the padding of ``Y0``).

    Returns
    -------
    StochasticBurgersProblem
        ``problem = BurgersODE(m, nu)``; ``conserved = {"mass": mass}`` (the sample
        mean of ``∫ u dx``; :meth:`~StochasticBurgersProblem.masses` gives each
        sample's), ``mean(Y)`` and ``variance(Y)`` the sample statistics from the
        factors.  ``reference(t)`` is the DOP853 solution (rtol = atol =
        ``REFERENCE_TOL``) of the full ``m x n`` system (the ``n`` independent 1-D
        solves) from ``u_0``; it is available for ``m n <= 2^16`` only and raises
        ``ValueError`` above.  ``suggested_dt`` is 80 % of the RK4 bound for the
        spectral radius ``4 nu / h^2 + 2 max|u_0| / h``.
    """
    m = _int(m, "m", 3)
    n = _int(n, "n", 1)
    d = _int(d, "d", 1)
    r = _rank(r, m, n)
    nu = _real(nu, "nu", positive=True)
    sigma = _real(sigma, "sigma", nonnegative=True)
    t_end = _real(t_end, "t_end", positive=True)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="stochastic_burgers", real_only=True)
    rng = _rng(seed)
    h = 1.0 / m
    x = np.arange(m) * h
    xi = rng.uniform(-1.0, 1.0, size=(n, d))
    k = np.arange(1, d + 1)
    # u_0 = P Q^T with P = [u_bar, sin(2 pi k x) / k] (m, d + 1), Q = [1, sigma xi] (n, d + 1)
    P = np.concatenate([_mean_profile(x)[:, None], np.sin(2 * np.pi * np.outer(x, k)) / k], axis=1)
    Q = np.concatenate([np.ones((n, 1)), sigma * xi], axis=1)
    Qp, Rp = np.linalg.qr(P)
    Qq, Rq = np.linalg.qr(Q)
    W, s, Zt = np.linalg.svd(Rp @ Rq.T)
    Ul, Vl = Qp @ W, Qq @ Zt.T
    q = Ul.shape[1]
    if r <= q:
        U0, s0, V0 = Ul[:, :r], s[:r], Vl[:, :r]
    else:  # zero singular values on a seeded orthonormal complement
        pad_u = rng.standard_normal((m, r - q))
        pad_v = rng.standard_normal((n, r - q))
        U0 = np.linalg.qr(np.concatenate([Ul, pad_u - Ul @ (Ul.T @ pad_u)], axis=1))[0]
        V0 = np.linalg.qr(np.concatenate([Vl, pad_v - Vl @ (Vl.T @ pad_v)], axis=1))[0]
        U0[:, :q], V0[:, :q] = Ul, Vl
        s0 = np.concatenate([s, np.zeros(r - q)])
    Y0 = LowRank(to_xp(U0), to_xp(np.diag(s0)), to_xp(V0))
    umax = float(np.max(np.abs(_mean_profile(x)))) + sigma * float(np.sum(1.0 / k))
    ode = BurgersODE(m, nu)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        Y = y.reshape(m, n)
        Y2 = Y * Y
        return (
            -0.25 / h * (np.roll(Y2, -1, axis=0) - np.roll(Y2, 1, axis=0))
            + nu / h**2 * (np.roll(Y, -1, axis=0) + np.roll(Y, 1, axis=0) - 2.0 * Y)
        ).ravel()

    Y_init = P @ Q.T if m * n <= _REFERENCE_MAX else None

    def host(t: float) -> np.ndarray:
        if Y_init is None:
            msg = (
                f"the full-rank reference of stochastic_burgers is computed for m n <= {_REFERENCE_MAX} only; "
                f"this problem has m n = {m * n}. Use a smaller `m` or `n` for comparisons with the reference."
            )
            raise ValueError(msg)
        return ivp(t).reshape(m, n)

    ivp = _IVP(rhs, 0.0, None if Y_init is None else Y_init.ravel(), t_end, method="DOP853")
    ref = _Reference(host, to_xp)
    rho = 4 * nu / h**2 + 2 * umax / h
    notes = (
        f"Burgers u_t + (u^2/2)_x = nu u_xx on [0, 1) periodic, m = {m} points (centred differences), n = {n} "
        f"samples, nu = {nu:g}; u_0 = u_bar + sigma sum_k xi_k sin(2 pi k x)/k, sigma = {sigma:g}, d = {d}, xi_k "
        f"~ U(-1, 1) (seed {seed!r}); u_bar and nu = 0.005 from Hou, Luo, Rozovskii & Zhou 2006 (DyBO benchmark "
        "of Cheng, Hou & Zhang 2013); uncertain initial data as in Kusch, Ceruti, Einkemmer & Frank 2022. "
        f"Y0: rank-{r} truncation of u_0 (rank {q}). reference(t): DOP853, rtol = atol = 1e-10, on the full "
        f"m x n system (m n <= {_REFERENCE_MAX}). Each sample's mass h sum_i u_i is conserved by the exact flow "
        "(DLRA keeps it up to the projection error). suggested_dt: 80% of the RK4 bound for "
        f"rho = 4 nu / h^2 + 2 max|u_0| / h = {rho:.4g}. Cell Peclet number max|u_0| h / nu = {umax * h / nu:.2g}"
        " (centred differences want < 2)."
    )
    dt, stats = _stable_dt(rho, t_end), {"x": x, "xi": xi, "nu": nu, "h": h}
    return _assemble(
        StochasticBurgersProblem, "stochastic-burgers", ode, Y0, t_end, ref, notes, dt, conserved=("mass",), **stats
    )
