"""Problems of the theory suite (built in NumPy, moved to any backend), and its probes.

* :class:`NonTangentProblem` -- time- and state-dependent, non-tangent ``F`` with the DLRA
  solution as reference (order tests); :class:`StackedNonTangent` stacks members in a batch.
* :func:`spectral_path` -- a matrix path ``A(t) = e^{tW1} U0 diag(sigma) V0^H e^{-tW2}`` of
  rank ``r`` with a prescribed (drawn) spectrum: :func:`lowrank_core.problems.prescribed_path`
  generalised to any spectrum, rectangular shapes, complex dtypes and batches.
* :func:`record_truncations` -- records the singular values and kept rank of every
  truncation (the probe for per-step truncation errors and conditioning).
* :func:`stack_lowrank` -- stacks unbatched states (e.g. of ``lowrank_core.problems``) into
  one batched state; :func:`tangent_project`, :func:`one_step`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np
import scipy.linalg
from scipy.integrate import solve_ivp

import lowrank_core as lc

from .._helpers import random_orthonormal, random_skew, to_numpy


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
            # Python floats: a NumPy scalar times an array-API array is not an array-API array.
            YH = xp.conj(xp.matrix_transpose(Y)) if xp.isdtype(dtype, "complex floating") else xp.matrix_transpose(Y)
            return (
                (1 + 0.5 * math.cos(3 * t)) * (A0 @ Y)
                + (0.5 + math.sin(2 * t)) * (Y @ B0T)
                - (1 + t) * (Y @ (YH @ Y))
                + 0.5 * math.cos(t) * G
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


class StackedNonTangent:
    """Independent :class:`NonTangentProblem` members stacked along leading batch dimensions.

    ``F`` acts on each member with that member's ``A0``, ``B0``, ``G`` (the same formula,
    broadcast), so the stacked DLRA solution is the stack of the members' references.
    """

    f_xp = NonTangentProblem.f_xp

    def __init__(self, members, batch):
        self.members, self.batch = tuple(members), tuple(batch)

        def stack(xs):
            return np.stack(xs).reshape(*self.batch, *xs[0].shape)

        self.A0, self.B0, self.G = (stack([getattr(p, a) for p in self.members]) for a in ("A0", "B0", "G"))
        self.factors = tuple(stack([p.factors[i] for p in self.members]) for i in range(3))

    def reference(self, T):
        return np.stack([p.reference(T) for p in self.members]).reshape(*self.batch, *self.G.shape[-2:])


def spectral_path(xp, dtype, W1, W2, factors, *, growth=0.0):
    """``MatrixPath`` of ``A(t) = e^{t W1} (U0 S0 V0^H) e^{-t W2} e^{growth t}`` (stacked over batches).

    ``W1``, ``W2`` skew(-Hermitian), so ``sigma_j(A(t)) = e^{growth t} sigma_j(S0)``: the
    rank and the spectrum of ``factors = (U0, S0, V0)`` are kept for all ``t``, and
    ``dA/dt = W1 A - A W2 + growth A``.  Returns ``(problem, Y0, A)`` with ``A(t)`` the
    exact solution as a NumPy array.
    """
    U0, S0, V0 = factors
    A0 = U0 @ S0 @ np.swapaxes(V0, -1, -2).conj()
    dt = getattr(xp, dtype)

    @functools.lru_cache(maxsize=8)
    def exact(t):
        return np.exp(growth * t) * (scipy.linalg.expm(t * W1) @ A0 @ scipy.linalg.expm(-t * W2))

    def A(t):
        return xp.asarray(exact(t), dtype=dt)

    def dA(t):
        a = exact(t)
        return xp.asarray(W1 @ a - a @ W2 + growth * a, dtype=dt)

    Y0 = lc.LowRank(*(xp.asarray(f, dtype=dt) for f in factors))
    return lc.MatrixPath(A, dA), Y0, exact


def full_rank_path(xp, dtype, sigma, m, n, W1, W2, seed):
    """:func:`spectral_path` of a full-rank ``A0 = P diag(sigma) Q^H`` (random orthonormal ``P``,
    ``Q`` from ``seed``) growing like ``e^t``: the Ceruti-Lubich path of methods.md §6.1 with a
    drawn spectrum.  ``sigma (*batch, k)`` stacks independent paths (one ``P``, ``Q`` and
    spectrum per batch member, the generators shared).  Returns ``(problem, A)``."""
    rng = np.random.default_rng(seed)
    cplx = dtype.startswith("complex")
    sigma = np.asarray(sigma, dtype=float)
    batch, k = sigma.shape[:-1], sigma.shape[-1]
    members = [
        (random_orthonormal(rng, m, k, cplx), s, random_orthonormal(rng, n, k, cplx))
        for s in sigma.reshape(-1, k)
    ]
    P, S, Q = (
        np.stack(x).reshape(*batch, *x[0].shape)
        for x in zip(*((P, np.diag(s).astype(P.dtype), Q) for P, s, Q in members), strict=True)
    )
    problem, _, A = spectral_path(xp, dtype, W1, W2, (P, S, Q), growth=1.0)
    return problem, A


def stack_lowrank(xp, states, batch):
    """One :class:`LowRank` of batch shape ``batch`` from ``prod(batch)`` equally shaped ``states``."""
    def stack(f):
        x = xp.stack([getattr(Y, f) for Y in states])
        return xp.reshape(x, (*batch, *x.shape[1:]))

    return lc.LowRank(stack("U"), stack("S"), stack("V"))


def configure(name: str, kit: type | None = None, **options: Any) -> lc.integrators.AbstractIntegrator:
    """Method ``name`` configured as ``lc.solve(method=name, **options)`` would
    (``from_options``), its steps built from the kit class ``kit`` (default: the library's
    :class:`~lowrank_core.integrators.StepKit`).  ``kit`` is the public hook through which
    the planted-bug tests swap one building block of a step: a subclass of ``StepKit``
    overriding one method, set with ``dataclasses.replace(method, kit=...)``."""
    method = lc.METHODS[name].from_options(**options)
    return method if kit is None else dataclasses.replace(method, kit=kit)


def one_step(method, problem, t0, t1, Y0):
    """One step of ``method`` from ``Y0``."""
    Y1, _, _ = method.step(problem, t0, t1, Y0, method.init(problem, t0, Y0))
    return Y1


def tangent_project(U: np.ndarray, V: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """``P(Y) Z = U U^H Z + Z V V^H - U U^H Z V V^H`` for ``Y = U S V^H`` (NumPy, per batch member)."""
    PU = U @ np.swapaxes(U, -1, -2).conj()
    ZPV = Z @ V @ np.swapaxes(V, -1, -2).conj()
    return PU @ Z + ZPV - PU @ ZPV


def record_truncations(method: Any) -> tuple[Any, list[tuple[np.ndarray, int]]]:
    """``method`` with a kit that records ``(s, r1)`` of every truncation, and the records.

    Through the public ``kit`` hook: the kit is a subclass of ``method.kit`` (so a planted
    kit keeps its bug) whose :meth:`~lowrank_core.integrators.StepKit.truncate` appends,
    after the truncation, ``s (..., p)``, the singular values of the augmented core (NumPy),
    and ``r1``, the kept rank, so ``||Y1 - Y_half||_F = (sum_{j > r1} s_j^2)^{1/2}`` per
    batch member.  Every use of the returned method (every step of a solve) appends to
    the same list.  Conservative truncations (``conserve=``) are not recorded.
    """
    records: list[tuple[np.ndarray, int]] = []

    class RecordingKit(method.kit):
        def truncate(self, truncation, left, u, s, v, right, rank_in):
            Y1 = super().truncate(truncation, left, u, s, v, right, rank_in)
            records.append((to_numpy(s), Y1.rank))
            return Y1

    return dataclasses.replace(method, kit=RecordingKit), records


def truncation_tail(records: list[tuple[np.ndarray, int]]) -> float:
    """Largest discarded Frobenius tail ``(sum_{j > r1} s_j^2)^{1/2}`` over the recorded truncations."""
    return max((float(np.max(np.sqrt(np.sum(s[..., r1:] ** 2, axis=-1)))) for s, r1 in records), default=0.0)


def truncation_condition(records: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Per batch member, the largest ``s_1 / (s_r1 - s_r1+1)`` over the recorded truncations: the
    amplification of a perturbation of the core into the truncated result (Wedin).  1 when
    nothing was cut.  Shape: the batch shape (a 0-d array without a batch)."""
    worst = np.ones(records[0][0].shape[:-1]) if records else np.float64(1.0)
    for s, r1 in records:
        if r1 < s.shape[-1]:
            gap = np.maximum(s[..., r1 - 1] - s[..., r1], np.finfo(float).tiny)
            worst = np.maximum(worst, s[..., 0] / gap)
    return worst


def as_numpy_state(Y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return to_numpy(Y.U), to_numpy(Y.S), to_numpy(Y.V)
