r"""Ganapol's analytic plane-source benchmark: the scalar flux of an isotropic pulse in an
infinite homogeneous medium (one-speed transport in slab geometry), with the smoothed
(Gaussian) source of the papers by convolution."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np
from scipy.integrate import quad_vec
from scipy.special import erf

from ._common import _real, _time

#: Gauss-Legendre nodes per cell of the convolution with the source Gaussian.
_CONV_NODES = 24


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
