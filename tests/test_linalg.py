"""The counted linear-algebra seam: QR/SVD contracts and counters."""

from __future__ import annotations

import numpy as np
import pytest

from lowrank_core import _linalg
from lowrank_core._linalg import Counters

from ._helpers import eps_of, to_numpy

DTYPES = ["float32", "float64", "complex64", "complex128"]


def _random(rng, shape, dtype):
    X = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        X = X + 1j * rng.standard_normal(shape)
    return X


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9, 4), (3, 9, 4), (2, 2, 5, 5), (4, 7)])
def test_thin_qr_contract(xp, dtype, shape):
    """Q orthonormal, R upper triangular with real non-negative diagonal, QR = X; X untouched."""
    rng = np.random.default_rng(0)
    X = _random(rng, shape, dtype)
    Xx = xp.asarray(X, dtype=getattr(xp, dtype))
    c = Counters()
    Q, R = _linalg.thin_qr(Xx, xp, c)
    Qn, Rn = to_numpy(Q), to_numpy(R)
    m, k = shape[-2:]
    p = min(m, k)
    assert Qn.shape == (*shape[:-2], m, p)
    assert Rn.shape == (*shape[:-2], p, k)
    eps = eps_of(dtype)
    # Householder QR is backward stable: residuals of order m * eps * ||X||.
    assert np.max(np.abs(Qn @ Rn - X)) <= 20 * m * eps * np.max(np.abs(X))
    assert np.max(np.abs(np.conj(np.swapaxes(Qn, -1, -2)) @ Qn - np.eye(p))) <= 20 * m * eps
    d = np.diagonal(Rn, axis1=-2, axis2=-1)
    assert np.all(np.abs(d.imag) <= 10 * eps * np.max(np.abs(X)))
    assert np.all(d.real >= 0)
    assert np.allclose(np.tril(Rn, -1), 0)
    assert np.array_equal(to_numpy(Xx), X.astype(np.dtype(dtype)))
    batch = int(np.prod(shape[:-2]))
    assert c.qr == batch
    assert c.qr_shapes == {(m, k): batch}
    assert c.qr_flops == pytest.approx(batch * _linalg.qr_flops(m, k, complex_=dtype.startswith("complex")))


@pytest.mark.parametrize("dtype", DTYPES)
def test_thin_svd_contract(xp, dtype):
    rng = np.random.default_rng(1)
    X = _random(rng, (3, 10, 6), dtype)
    c = Counters()
    U, s, V = _linalg.thin_svd(xp.asarray(X, dtype=getattr(xp, dtype)), xp, c)
    Un, sn, Vn = to_numpy(U), to_numpy(s), to_numpy(V)
    eps = eps_of(dtype)
    rec = (Un * sn[..., None, :]) @ np.conj(np.swapaxes(Vn, -1, -2))
    assert np.max(np.abs(rec - X)) <= 50 * 10 * eps * np.max(np.abs(X))
    assert np.all(np.diff(sn, axis=-1) <= 0)
    assert np.allclose(sn, np.linalg.svd(X, compute_uv=False), rtol=100 * eps)
    assert c.svd == 3
    assert c.svd_shapes == {(10, 6): 3}


def test_flop_models():
    # geqrf + orgqr for m x k: 2 (2 m k^2 - 2 k^3 / 3)
    assert _linalg.qr_flops(100, 10) == pytest.approx(4 * 100 * 100 - 4 * 1000 / 3)
    assert _linalg.qr_flops(100, 10, complex_=True) == pytest.approx(4 * _linalg.qr_flops(100, 10))
    assert _linalg.svd_flops(8, 8) == pytest.approx(min(14 * 512 + 8 * 512, 6 * 512 + 20 * 512))


def test_breakdown_is_reported():
    X = np.full((5, 3), np.nan)
    with pytest.raises(_linalg.LinAlgBreakdown, match="SVD"):
        _linalg.thin_svd(X, __import__("array_api_compat.numpy").numpy)
