"""Linear theory of 1D1V Vlasov-Poisson: the electrostatic dispersion relation of a sum of
Maxwellian beams, through the plasma dispersion function ``Z``."""

from __future__ import annotations

import math

from scipy.optimize import newton
from scipy.special import wofz


def _Z(z: complex) -> complex:
    """Plasma dispersion function ``Z(z) = i sqrt(pi) w(z)`` (Faddeeva ``w``)."""
    return 1j * math.sqrt(math.pi) * complex(wofz(z))


def linear_dispersion(k: float, beams: tuple[tuple[float, float], ...], guess: complex) -> complex:
    r"""Root ``omega`` of the linear dispersion relation of a sum of unit-temperature Maxwellians.

    For ``f0(v) = sum_b n_b exp(-(v - u_b)^2 / 2) / sqrt(2 pi)`` (``sum n_b = 1``) the
    electrostatic dielectric function is

    ``eps(omega, k) = 1 + k^{-2} sum_b n_b [1 + z_b Z(z_b)]``,
    ``z_b = (omega - k u_b) / (sqrt(2) k)``,

    with ``Z`` the plasma dispersion function (Fried & Conte), ``Z(z) = i sqrt(pi) w(z)``
    (:func:`scipy.special.wofz`).  A mode ``e^{i(kx - omega t)}`` has amplitude rate
    ``Im omega`` (negative: Landau damping; positive: instability); the electric
    energy changes at ``2 Im omega``.

    Parameters
    ----------
    k : float
        Wave number.
    beams : tuple of (n_b, u_b)
        Weights and drift velocities.
    guess : complex
        Starting point of the Newton iteration (selects the root).

    Returns
    -------
    complex
        ``omega`` with ``|eps(omega, k)| < 1e-12``.
    """

    def eps(w: complex) -> complex:
        total = 1.0 + 0j
        for n_b, u_b in beams:
            z = (w - k * u_b) / (math.sqrt(2.0) * k)
            total += n_b * (1.0 + z * _Z(z)) / k**2
        return total

    omega = complex(newton(eps, guess, tol=1e-14, maxiter=200))
    if not abs(eps(omega)) < 1e-12:  # pragma: no cover - the guesses below converge
        msg = f"the dispersion relation did not converge for k = {k} (|eps| = {abs(eps(omega)):.2e})."
        raise RuntimeError(msg)
    return omega
