"""LowRank: construction, validation, conversions, on every backend."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc

from ._helpers import dense, eps_of, random_lowrank_np, to_numpy

DTYPES = ["float32", "float64", "complex64", "complex128"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_dense_is_eckart_young(xp, dtype):
    """from_dense returns the best rank-r approximation: error = tail of singular values."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((12, 9))
    if dtype.startswith("complex"):
        A = A + 1j * rng.standard_normal((12, 9))
    Ax = xp.asarray(A, dtype=getattr(xp, dtype))
    Y = lc.LowRank.from_dense(Ax, rank=4)
    assert Y.rank == 4
    assert Y.shape == (12, 9)
    assert Y.dtype == getattr(xp, dtype)
    assert type(Y.U) is type(Ax)
    s = np.linalg.svd(A, compute_uv=False)
    err = np.linalg.norm(dense(Y) - A)
    # The SVD is backward stable: error within a few eps * ||A|| of the exact tail.
    assert err == pytest.approx(np.sqrt(np.sum(s[4:] ** 2)), abs=50 * eps_of(dtype) * s[0])
    assert np.allclose(to_numpy(Y.singular_values()), s[:4], rtol=50 * eps_of(dtype))
    assert float(Y.norm()) == pytest.approx(np.sqrt(np.sum(s[:4] ** 2)), rel=50 * eps_of(dtype))


def test_batched_from_dense_and_to_dense(xp):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((2, 3, 7, 5))
    Y = lc.LowRank.from_dense(xp.asarray(A), rank=5)
    assert Y.batch_shape == (2, 3)
    assert Y.shape == (2, 3, 7, 5)
    assert np.allclose(dense(Y), A, atol=1e-12)


def test_constructor_validates_shapes_and_rank():
    rng = np.random.default_rng(2)
    U, S, V = random_lowrank_np(rng, 6, 5, [1.0, 0.5])
    with pytest.raises(ValueError, match="factor shapes do not match"):
        lc.LowRank(U, S[:1, :1], V)
    with pytest.raises(ValueError, match="factor shapes do not match"):
        lc.LowRank(U, S, V[:, :1])
    with pytest.raises(ValueError, match="batch"):
        lc.LowRank(np.stack([U, U]), S, V)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        lc.LowRank(U[:, 0], S, V)
    U7 = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    V7 = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    with pytest.raises(ValueError, match="min\\(m, n\\)"):
        lc.LowRank(U7, np.eye(6), np.concatenate([V7, V7[:, :1]], axis=1))
    with pytest.raises(ValueError, match="`rank`"):
        lc.LowRank.from_dense(rng.standard_normal((4, 3)), rank=4)
    with pytest.raises(ValueError, match="`rank`"):
        lc.LowRank.from_dense(rng.standard_normal((4, 3)), rank=0)
    with pytest.raises(TypeError, match="`rank`"):
        lc.LowRank.from_dense(rng.standard_normal((4, 3)), rank=1.5)


def test_constructor_validates_dtype_orthonormality_and_finiteness():
    rng = np.random.default_rng(3)
    U, S, V = random_lowrank_np(rng, 6, 5, [1.0, 0.5])
    with pytest.raises(TypeError, match="share one dtype"):
        lc.LowRank(U, S.astype(np.float32), V)
    with pytest.raises(TypeError, match="must have dtype float32, float64"):
        lc.LowRank(U, S.astype(np.int64), V)
    with pytest.raises(ValueError, match="orthonormal"):
        lc.LowRank(2.0 * U, S, V)
    bad = S.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        lc.LowRank(U, bad, V)
    with pytest.raises(TypeError, match="must have dtype float32, float64"):
        lc.LowRank.from_dense(np.ones((3, 3), dtype=np.int64), rank=1)


def test_mixed_backends_are_rejected():
    import array_api_strict as xps

    rng = np.random.default_rng(4)
    U, S, V = random_lowrank_np(rng, 6, 5, [1.0, 0.5])
    with pytest.raises(TypeError, match="one array library; `U` is numpy.ndarray, `S` is array_api_strict"):
        lc.LowRank(U, xps.asarray(S), V)
