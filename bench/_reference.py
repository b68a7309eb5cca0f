"""Reference solutions and error measures that the theory scripts in ``bench/`` compare against.

Benchmarks never import ``tests/``, so that a script runs without the test tree and a
change to a test helper cannot silently change a published figure.  A reference method
that a benchmark and a test both need lives in the library instead, in
:mod:`lowrank_core.bench` (for example ``naive_factor_euler``, explicit Euler on the
factor ODEs of the DLRA, the contrast of ``bench/robustness.py``).  This module keeps the
theory scripts' own helpers (the test suite has small helpers of its own in
``tests/_helpers.py`` and ``tests/theory/_problems.py``):

* :class:`NonTangentProblem` -- a time- and state-dependent, non-tangent ``F`` whose
  reference is the DLRA solution itself (the gauged factor ODEs solved with DOP853).
* :func:`rel_err`, :func:`loglog_slope`, :func:`dense`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

import lowrank_core as lc

__all__ = ["NonTangentProblem", "dense", "loglog_slope", "rel_err"]


def dense(Y: lc.LowRank) -> np.ndarray:
    """Dense NumPy copy of a NumPy-backed :class:`lowrank_core.LowRank`."""
    return np.asarray(Y.to_dense())


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b||_F / ||b||_F``."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def loglog_slope(hs: Any, errors: Any) -> float:
    """Least-squares slope of ``log(error)`` against ``log(h)`` (the observed order)."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


def _skew(rng: np.random.Generator, n: int, norm: float) -> np.ndarray:
    """Random real skew-symmetric matrix with spectral norm ``norm``."""
    X = rng.standard_normal((n, n))
    W = X - X.T
    return W * (norm / np.linalg.norm(W, 2))


class NonTangentProblem:
    """Time- and Y-dependent, non-tangent ``F`` with a well-separated rank-``r`` spectrum.

    ``F(t, Y) = a(t) A0 Y + b(t) Y B0^T + c(t) Y Y^H Y + d(t) G`` with
    ``a = 1 + cos(3t)/2``, ``b = 1/2 + sin(2t)``, ``c = -(1 + t)``, ``d = cos(t)/2``, real,
    ``m = 30``, ``n = 25``, ``r = 4``, ``S0 = diag(1, 0.7, 0.5, 0.3)``.  The reference is
    the DLRA solution itself: the gauged factor ODEs solved with DOP853 at rtol 1e-12
    (valid because ``S`` stays well conditioned, ``sigma_min ~ 0.4``), so that the
    error of a method is its own time-stepping error, without a modelling error.
    """

    def __init__(self, m: int = 30, n: int = 25, r: int = 4, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.A0 = rng.standard_normal((m, m)) / np.sqrt(m) + _skew(rng, m, 2.0)
        self.B0 = rng.standard_normal((n, n)) / np.sqrt(n) + _skew(rng, n, 2.0)
        self.G = rng.standard_normal((m, n)) / np.sqrt(m * n)
        U = np.linalg.qr(rng.standard_normal((m, r)))[0]
        V = np.linalg.qr(rng.standard_normal((n, r)))[0]
        self.factors = (U, np.diag([1.0, 0.7, 0.5, 0.3][:r]), V)
        self.m, self.n, self.r = m, n, r

    def f_np(self, t: float, Y: np.ndarray) -> np.ndarray:
        """``F(t, Y)`` on a dense NumPy array."""
        return (
            (1 + 0.5 * np.cos(3 * t)) * (self.A0 @ Y)
            + (0.5 + np.sin(2 * t)) * (Y @ self.B0.T)
            - (1 + t) * (Y @ Y.conj().T @ Y)
            + 0.5 * np.cos(t) * self.G
        )

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def reference(self, T: float) -> np.ndarray:
        """The DLRA solution at time ``T`` (dense), from the factor ODEs."""
        m, n, r = self.m, self.n, self.r
        U, S, V = self.factors

        def unpack(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return y[: m * r].reshape(m, r), y[m * r : m * r + r * r].reshape(r, r), y[m * r + r * r :].reshape(n, r)

        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            U_, S_, V_ = unpack(y)
            F = self.f_np(t, U_ @ S_ @ V_.T)
            FV, FhU = F @ V_, F.T @ U_
            Sinv = np.linalg.inv(S_)
            dU = (FV - U_ @ (U_.T @ FV)) @ Sinv
            dV = (FhU - V_ @ (V_.T @ FhU)) @ Sinv.T
            return np.concatenate([dU.ravel(), (U_.T @ FV).ravel(), dV.ravel()])

        y0 = np.concatenate([U.ravel(), S.ravel(), V.ravel()])
        sol = solve_ivp(rhs, (0.0, T), y0, method="DOP853", rtol=1e-12, atol=1e-13)
        U_, S_, V_ = unpack(sol.y[:, -1])
        return U_ @ S_ @ V_.T
