"""Small problems for the integrator tests (built in NumPy, moved to any backend)."""

from __future__ import annotations

import functools

import numpy as np
from scipy.integrate import solve_ivp

from .._helpers import random_skew


class NonTangentProblem:
    """Time- and Y-dependent, non-tangent F with a well-separated rank-r spectrum.

    ``F(t, Y) = a(t) A0 Y + b(t) Y B0^T + c(t) Y Y^H Y + d(t) G``.  The reference is the
    DLRA solution itself: the gauged factor ODEs (U, S, V) solved with DOP853 at
    rtol 1e-12 (valid because S stays well conditioned, sigma_min ~ 0.4).
    """

    def __init__(self, m=30, n=25, r=4, complex_=False, seed=0):
        rng = np.random.default_rng(seed)
        cast = (lambda x: x + 1j * rng.standard_normal(x.shape) / np.sqrt(x.size)) if complex_ else (lambda x: x)
        self.A0 = cast(rng.standard_normal((m, m)) / np.sqrt(m) + random_skew(rng, m, 2.0))
        self.B0 = cast(rng.standard_normal((n, n)) / np.sqrt(n) + random_skew(rng, n, 2.0))
        self.G = cast(rng.standard_normal((m, n)) / np.sqrt(m * n))
        dt = complex if complex_ else float
        U = np.linalg.qr(cast(rng.standard_normal((m, r))))[0]
        V = np.linalg.qr(cast(rng.standard_normal((n, r))))[0]
        self.factors = (U, np.diag([1.0, 0.7, 0.5, 0.3][:r]).astype(dt), V)
        self.m, self.n, self.r = m, n, r

    def f_np(self, t, Y):
        return (
            (1 + 0.5 * np.cos(3 * t)) * (self.A0 @ Y)
            + (0.5 + np.sin(2 * t)) * (Y @ self.B0.T)
            - (1 + t) * (Y @ Y.conj().T @ Y)
            + 0.5 * np.cos(t) * self.G
        )

    def f_xp(self, xp, dtype):
        A0, B0, G = (xp.asarray(a, dtype=dtype) for a in (self.A0, self.B0, self.G))
        B0T = xp.matrix_transpose(B0)

        def f(t, Y):
            YH = xp.conj(xp.matrix_transpose(Y)) if xp.isdtype(dtype, "complex floating") else xp.matrix_transpose(Y)
            return (
                (1 + 0.5 * np.cos(3 * t)) * (A0 @ Y)
                + (0.5 + np.sin(2 * t)) * (Y @ B0T)
                - (1 + t) * (Y @ (YH @ Y))
                + 0.5 * np.cos(t) * G
            )

        return f

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def reference(self, T):
        m, n, r = self.m, self.n, self.r
        U, S, V = self.factors
        cplx = np.iscomplexobj(U)

        def unpack(y):
            y = y[: y.size // 2] + 1j * y[y.size // 2 :] if cplx else y
            return y[: m * r].reshape(m, r), y[m * r : m * r + r * r].reshape(r, r), y[m * r + r * r :].reshape(n, r)

        def pack(*xs):
            y = np.concatenate([x.ravel() for x in xs])
            return np.concatenate([y.real, y.imag]) if cplx else y

        def rhs(t, y):
            U_, S_, V_ = unpack(y)
            F = self.f_np(t, U_ @ S_ @ V_.conj().T)
            FV, FhU = F @ V_, F.conj().T @ U_
            Sinv = np.linalg.inv(S_)
            return pack(
                (FV - U_ @ (U_.conj().T @ FV)) @ Sinv,
                U_.conj().T @ FV,
                (FhU - V_ @ (V_.conj().T @ FhU)) @ Sinv.conj().T,
            )

        sol = solve_ivp(rhs, (0.0, T), pack(U, S, V), method="DOP853", rtol=1e-12, atol=1e-13)
        U_, S_, V_ = unpack(sol.y[:, -1])
        return U_ @ S_ @ V_.conj().T
