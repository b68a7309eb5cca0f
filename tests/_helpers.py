"""Test helpers: conversion to NumPy (tests only), dtype-aware tolerances, random data."""

from __future__ import annotations

from typing import Any

import numpy as np

import lowrank_core as lc


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array of any supported backend to NumPy (test helper only)."""
    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__
    if mod.startswith("torch"):
        return x.detach().cpu().numpy()
    if mod.startswith("cupy"):
        return x.get()
    return np.from_dlpack(x)


def dense(Y: lc.LowRank) -> np.ndarray:
    """Dense NumPy copy of a LowRank."""
    return to_numpy(Y.to_dense())


def eps_of(dtype: Any) -> float:
    """Machine epsilon of a (NumPy-convertible) dtype name or backend dtype."""
    name = str(dtype).split(".")[-1]
    return float(np.finfo(np.dtype(name)).eps)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def random_orthonormal(rng: np.random.Generator, m: int, r: int, complex_: bool = False) -> np.ndarray:
    X = rng.standard_normal((m, r))
    if complex_:
        X = X + 1j * rng.standard_normal((m, r))
    Q, _ = np.linalg.qr(X)
    return Q


def random_lowrank_np(
    rng: np.random.Generator, m: int, n: int, sigmas: Any, complex_: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy factors of a matrix with prescribed singular values (diagonal S)."""
    r = len(sigmas)
    U = random_orthonormal(rng, m, r, complex_)
    V = random_orthonormal(rng, n, r, complex_)
    S = np.diag(np.asarray(sigmas, dtype=float)).astype(U.dtype)
    return U, S, V


def lowrank_in(xp: Any, factors: tuple[np.ndarray, ...], dtype: Any) -> lc.LowRank:
    """LowRank from NumPy factors, converted to namespace ``xp`` and ``dtype``."""
    U, S, V = (xp.asarray(f, dtype=dtype) for f in factors)
    return lc.LowRank(U, S, V)


def random_skew(rng: np.random.Generator, n: int, norm: float, complex_: bool = False) -> np.ndarray:
    """Random skew-symmetric (skew-Hermitian if ``complex_``) matrix with spectral norm ``norm``."""
    X = rng.standard_normal((n, n))
    if complex_:
        X = X + 1j * rng.standard_normal((n, n))
    W = X - X.conj().T
    return W * (norm / np.linalg.norm(W, 2))


def loglog_slope(hs: Any, errors: Any) -> float:
    """Least-squares slope of log(error) against log(h)."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])
