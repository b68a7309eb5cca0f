"""The CPU kernels at extreme scales: every algorithm the rule can pick, any representable scale.

Guards against the squared column norms of the one-sided Jacobi SVD (and of the Gram matrix
of CholeskyQR2, and of the Householder norms of float32 inputs) overflowing or underflowing:
before the fix, Jacobi returned singular values 39 % off and a U with an orthonormality
defect of 0.89 for float64 entries around 1e100 or 1e-200, and float32 QRs of entries near
1e-20 lost orthogonality, all without an error.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_kernels as lk

# (dtype, decimal exponents of the scale): the ranges the kernels promise (1e-300 ... 1e300
# for float64/complex128, 1e-30 ... 1e30 for float32/complex64), chosen so that every column
# norm of the test shapes is itself representable.
_RANGES = {
    np.float64: (-300, 300),
    np.complex128: (-300, 300),
    np.float32: (-30, 30),
    np.complex64: (-30, 30),
}
# Shapes that reach every algorithm of the rules: square Jacobi cores, tall Jacobi with the
# in-kernel QR, the stacked-CholeskyQR2 tall SVD (B m k^2 >= 2e5), LAPACK cores (k > 24),
# Householder QR (small work) and CholeskyQR2 (large work).
_SHAPES = [(3, 8, 8), (3, 40, 6), (4, 300, 16), (2, 30, 30), (2, 12, 3), (1, 1000, 20)]


def _scaled(dtype, shape, exponent, graded, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    if graded:  # columns spanning four decades: the scale varies inside the matrix too
        a = a * np.logspace(0, -4, shape[-1])
    return a, (a * 10.0**exponent).astype(dtype)


@given(
    dtype=st.sampled_from(list(_RANGES)),
    shape=st.sampled_from(_SHAPES),
    frac=st.floats(0.0, 1.0),
    graded=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_factorizations_hold_at_every_scale(dtype, shape, frac, graded, seed):
    """Singular values to ``c k eps`` relative (against LAPACK on the unit-scale matrix),
    ``U``/``Q`` orthonormal to ``c m eps``, ``Q R = A`` to ``c eps ||A||``.

    The constants: one-sided Jacobi and Householder QR are backward stable with errors of a
    few ``k eps`` (singular values, relative to ``s_max``) and ``m eps`` (orthogonality);
    ``c = 50`` leaves margin for the float64 work precision's own rounding.  A planted
    scaling bug (dropping ``_scale_to_unit``, or squaring float32 entries in float32) gives
    errors of order one and fails by many orders of magnitude.
    """
    lo, hi = _RANGES[dtype]
    exponent = round(lo + frac * (hi - lo))
    base, a = _scaled(dtype, shape, exponent, graded, seed)
    scale = 10.0**exponent
    eps = float(np.finfo(dtype).eps)
    m, k = shape[-2:]
    s_ref = np.linalg.svd(base, compute_uv=False)
    for algorithm in ("jacobi", "lapack"):
        u, s, v = lk.batched_svd(a, algorithm=algorithm)
        err = np.max(np.abs(s.astype(np.float64) / scale - s_ref) / s_ref[..., :1])
        assert err <= 50 * k * eps, (algorithm, exponent, err)
        uo = np.max(np.abs(np.conj(np.swapaxes(u, -1, -2)).astype(np.complex128) @ u - np.eye(u.shape[-1])))
        assert uo <= 50 * m * eps, (algorithm, exponent, uo)
    for algorithm in ("householder", "cholqr2"):
        q, r = lk.batched_qr(a, algorithm=algorithm)
        qo = np.max(np.abs(np.conj(np.swapaxes(q, -1, -2)).astype(np.complex128) @ q - np.eye(k)))
        assert qo <= 50 * m * eps, (algorithm, exponent, qo)
        # residual of the unit-scale problem (dividing by the power of ten first keeps the
        # check itself from overflowing or underflowing)
        res = np.linalg.norm(q.astype(np.complex128) @ (r / scale) - a / scale, axis=(-2, -1))
        assert np.all(res <= 50 * k * eps * np.linalg.norm(a / scale, axis=(-2, -1))), (algorithm, exponent)


@pytest.mark.parametrize("exponent", [-300, -200, -170, 77, 100, 200, 300])
def test_jacobi_svd_reported_scales(exponent):
    """The scales of the report (wrong at 1e77 and 1e-170 before the fix), for the default
    ``"auto"`` rule on a stack of 8 x 8 cores: singular values to ``50 k eps`` relative."""
    base, a = _scaled(np.float64, (64, 8, 8), exponent, False, 0)
    _, s, _ = lk.batched_svd(a)
    s_ref = np.linalg.svd(base, compute_uv=False)
    assert np.max(np.abs(s / 10.0**exponent - s_ref) / s_ref[..., :1]) <= 50 * 8 * np.finfo(np.float64).eps
