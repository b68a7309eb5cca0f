"""The naive (non-robust) factor integrator, kept in the tests as the contrast.

Explicit Euler on the gauged factor ODEs of DLRA (Koch & Lubich 2007)::

    dS/dt = U^H F V,   dU/dt = (I - U U^H) F V S^{-1},   dV/dt = (I - V V^H) F^H U S^{-H}

The ``S^{-1}`` makes it unstable once the step size exceeds the smallest singular
value; the robust integrators of the library do not have this weakness.
"""

from __future__ import annotations

import numpy as np


def naive_factor_euler(dA, U, S, V, t_span, h):
    """Integrate ``dY/dt = dA(t)`` (NumPy) with Euler on the factor ODEs; returns dense Y(t1)."""
    t0, t1 = t_span
    n = int(round((t1 - t0) / h))
    with np.errstate(all="ignore"):
        for k in range(n):
            t = t0 + k * h
            F = dA(t)
            FV, FhU = F @ V, F.conj().T @ U
            Sinv = np.linalg.pinv(S)
            dS = U.conj().T @ FV
            dU = (FV - U @ (U.conj().T @ FV)) @ Sinv
            dV = (FhU - V @ (V.conj().T @ FhU)) @ Sinv.conj().T
            U, S, V = U + h * dU, S + h * dS, V + h * dV
            if not np.all(np.isfinite(S)):
                return np.full((U.shape[0], V.shape[0]), np.inf)
    return U @ S @ V.conj().T
