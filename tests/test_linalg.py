"""The counted linear-algebra seam: QR/SVD contracts and counters."""

from __future__ import annotations

import numpy as np
import pytest

from lowrank_core import Counters, _linalg

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


# ----------------------------------------------------------------------------- kernel routing
def _stacked_problem(L=6, m=30, n=20, r=3, seed=11):
    import lowrank_core as lc

    rng = np.random.default_rng(seed)
    B = rng.standard_normal((L, m, 5)) @ rng.standard_normal((L, 5, n))  # rank 5 target
    Y0 = lc.LowRank.from_dense(rng.standard_normal((L, m, n)), rank=r)
    return lc.MatrixODE(lambda t, Y: B - Y), Y0


@pytest.mark.parametrize("method", ["abc-psi", "ra-bug", "ksl"])
def test_stacked_solve_uses_kernels_and_matches_xp(method):
    """Batched problems go to the kernels under "auto"; forcing "xp" gives the same
    solution and the same counted decompositions.  Agreement is to round-off for the
    fixed-rank methods; RA-BUG's augmented bases [K1, U0] become numerically
    rank-deficient once the rank settles, and two correct QRs complete them with
    different round-off directions, which truncation removes again: the solutions then
    agree to the truncation tolerance per step (10 steps x 1e-6)."""
    import lowrank_core as lc

    problem, Y0 = _stacked_problem()
    kw = {"tol": 1e-6} if method == "ra-bug" else {}
    auto = lc.solve(problem, Y0, (0.0, 1.0), dt=0.1, method=method, substep="euler", **kw)
    xp_ = lc.solve(problem, Y0, (0.0, 1.0), dt=0.1, method=method, substep="euler", linalg="xp", **kw)
    assert auto.stats["kernel_calls"] > 0
    assert xp_.stats["kernel_calls"] == 0
    for key in ("qr", "svd", "qr_shapes", "svd_shapes", "rhs_evals"):
        assert auto.stats[key] == xp_.stats[key]
    diff = np.linalg.norm(auto.Y.to_dense() - xp_.Y.to_dense())
    bound = 10 * 1e-6 * np.sqrt(Y0.U.shape[0]) if method == "ra-bug" else 1e-10 * np.linalg.norm(xp_.Y.to_dense())
    assert diff <= bound


def test_use_linalg_scopes_and_validates():
    import lowrank_core as lc

    problem, Y0 = _stacked_problem(L=2)
    with lc.use_linalg("xp"):
        inner = lc.solve(problem, Y0, (0.0, 0.2), dt=0.1)
        with lc.use_linalg("kernels"):
            forced = lc.solve(problem, Y0, (0.0, 0.2), dt=0.1)
    after = lc.solve(problem, Y0, (0.0, 0.2), dt=0.1)
    assert inner.stats["kernel_calls"] == 0
    assert forced.stats["kernel_calls"] > 0
    assert after.stats["kernel_calls"] > 0
    with pytest.raises(ValueError, match="linalg"):
        lc.solve(problem, Y0, (0.0, 0.2), dt=0.1, linalg="fast")


def test_forcing_kernels_on_an_unsupported_backend_names_the_reason():
    import array_api_strict as xps

    c = Counters()
    x = xps.asarray(np.random.default_rng(0).standard_normal((3, 8, 2)))
    with _linalg.use_linalg("kernels"), pytest.raises(ValueError, match="not supported by the kernels"):
        _linalg.thin_qr(x, xps, c)
    q, _ = _linalg.thin_qr(x, xps, c)  # "auto" falls back to xp.linalg
    assert c.kernel_calls == 0
    assert q.shape == (3, 8, 2)


def test_single_svd_goes_to_the_kernels_only_when_tall():
    """Under "auto" a single square core's SVD stays on LAPACK ``gesdd`` (as fast or
    faster there), a single tall block (``m >= KERNEL_SVD_TALL_RATIO k``, the 1000 x 40
    SVD of an abc-PSI step at r = 20) goes to the kernels, which reduce it by a QR first
    (1.8x faster idle, 3.6x under load: ``bench/rule_checks.py --rules svd_single``), and a stack always does.  Guards
    against the old rule that sent every single SVD to LAPACK, which made abc-PSI's
    step 1.2-3.5x slower than the kernels on a busy machine."""
    import array_api_compat.numpy as xnp

    rng = np.random.default_rng(6)

    def calls(shape):
        c = Counters()
        x = rng.standard_normal(shape)
        u, s, v = _linalg.thin_svd(x, xnp, c)
        # Weyl: backward-stable SVDs agree to c max(m, k) eps sigma_1
        tol = 8 * max(shape) * np.finfo(np.float64).eps * float(np.max(s))
        np.testing.assert_allclose(s, np.linalg.svd(x, compute_uv=False), rtol=0, atol=tol)
        return c.kernel_calls

    ratio = _linalg.KERNEL_SVD_TALL_RATIO
    assert calls((40, 40)) == 0
    assert calls((ratio * 40 - 1, 40)) == 0
    assert calls((ratio * 40, 40)) == 1
    assert calls((1000, 40)) == 1
    assert calls((2, 40, 40)) == 1


def test_size_rule_keeps_wide_single_torch_matrices_in_torch_linalg():
    """Under "auto" a PyTorch CPU matrix (or a stack of at most
    ``TORCH_LINALG_MAX_BATCH``) with ``min(m, k) >= TORCH_LINALG_MIN_K`` and at most
    ``TORCH_LINALG_MAX_RATIO`` times as long as wide (the ``1024 x 256`` augmentation QR
    of a training step at r = 128) is factored by ``torch.linalg``, measured faster there
    (``bench/rule_checks.py --rules qr_torch``, ``bench/training_step.py``); narrower or
    much taller matrices, larger stacks and the forced kernel path take the kernels, and
    every path returns a valid factorization.  Guards against the rule catching large
    stacks or narrow blocks (where the kernels are faster), or not applying to SVDs."""
    torch = pytest.importorskip("torch")
    import array_api_compat

    xp = array_api_compat.array_namespace(torch.empty(1))
    k0, ratio = _linalg.TORCH_LINALG_MIN_K, _linalg.TORCH_LINALG_MAX_RATIO
    gen = torch.Generator().manual_seed(7)

    def calls(op, shape, path="auto"):
        c = Counters()
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        with _linalg.use_linalg(path):
            if op == "qr":
                q, r = _linalg.thin_qr(x, xp, c)
                y = q @ r
            else:
                u, s, v = _linalg.thin_svd(x, xp, c)
                y = (u * s[..., None, :]) @ v.mT
        # backward error of a Householder/CholeskyQR2 QR or an SVD: c m u ||X|| (Higham Thm 19.4)
        eps = torch.finfo(torch.float64).eps
        assert torch.linalg.norm(y - x) <= 8 * max(shape[-2:]) * eps * torch.linalg.norm(x)
        return c.kernel_calls

    assert calls("qr", (k0 + 44, k0)) == 0
    assert calls("qr", (ratio * k0, k0)) == 0
    assert calls("qr", (ratio * k0 + 1, k0)) == 1
    assert calls("qr", (k0 + 44, k0 // 2)) == 1
    assert calls("qr", (_linalg.TORCH_LINALG_MAX_BATCH, k0 + 44, k0)) == 0
    assert calls("qr", (_linalg.TORCH_LINALG_MAX_BATCH + 1, k0 + 44, k0)) == 1
    assert calls("qr", (k0 + 44, k0), "kernels") == 1
    assert calls("svd", (2 * k0, k0)) == 0
    assert calls("svd", (2 * k0, k0 // 2)) == 1


def test_size_rule_keeps_small_complex128_qr_on_lapack():
    """Under "auto", a few complex128 blocks with k >= 16 stay on LAPACK (measured
    faster there); a stack of them, small k, complex64 and a forced path take the kernels."""
    import array_api_compat.numpy as xnp

    rng = np.random.default_rng(5)

    def calls(shape, dtype, path="auto"):
        c = Counters()
        x = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
        with _linalg.use_linalg(path):
            q, r = _linalg.thin_qr(x, xnp, c)
        # backward error of Householder QR: ||QR - X|| <= c m u ||X|| (Higham Thm 19.4);
        # an elementwise allclose would judge complex64 entries near zero by float64 atol
        eps = np.finfo(dtype).eps
        assert np.linalg.norm(q @ r - x) <= 8 * shape[-2] * eps * np.linalg.norm(x)
        return c.kernel_calls

    assert calls((2, 256, 16), np.complex128) == 0
    assert calls((2, 256, 16), np.complex128, "kernels") == 1
    assert calls((_linalg.KERNEL_QR_C128_MIN_BATCH, 256, 16), np.complex128) == 1
    assert calls((2, 256, 8), np.complex128) == 1
    assert calls((2, 256, 16), np.complex64) == 1


def test_matmul_seam_routes_large_numpy_stacks(monkeypatch):
    """``_linalg.matmul`` sends large equal-shaped NumPy stacks to
    ``lowrank_kernels.batched_matmul`` and everything else (``use_linalg("xp")``, other
    backends, broadcasting, large strided operands) to ``@``; the values agree either way."""
    import array_api_compat.numpy as xnp
    import array_api_strict as xps
    import numba

    import lowrank_kernels

    used = []
    real = lowrank_kernels.batched_matmul
    monkeypatch.setattr(lowrank_kernels, "batched_matmul", lambda a, b: used.append(a.shape) or real(a, b))
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((300, 64, 16)), rng.standard_normal((300, 16, 8))

    def routed(x, y, xp=xnp):
        used.clear()
        out = _linalg.matmul(x, y, xp)
        ref = np.asarray(x) @ np.asarray(y) if xp is xnp else x @ y
        assert np.allclose(to_numpy(out), to_numpy(ref), rtol=1e-13, atol=1e-13)
        return bool(used)

    threads = numba.get_num_threads() > 1
    assert routed(a, b) == threads
    assert routed(np.swapaxes(np.swapaxes(a, -1, -2).copy(), -1, -2), b) == threads  # transposed stack, no copy
    assert routed(a, np.concatenate([b, b], axis=-1)[..., :8]) == threads  # small strided core: copied
    assert not routed(np.concatenate([a, a], axis=-1)[..., :16], b)  # large strided operand: stays with @
    assert not routed(a, b[0])  # broadcasting
    assert not routed(a[:10], b[:10])  # too little work
    with _linalg.use_linalg("xp"):
        assert not routed(a, b)
    assert not routed(xps.asarray(a), xps.asarray(b), xps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [(), (300,)])
def test_conjugated_operator_products(xp, dtype, batch):
    """``matmul_h(a, b) = a^H b`` and ``matmul_conj(a, b) = conj(a) b`` (computed without
    forming ``a^H`` / ``conj(a)``) match the explicit products to the rounding of one
    matrix product, ``4 n eps`` relative to ``|a| |b|``; the operands are untouched."""
    rng = np.random.default_rng(7)
    a = _random(rng, (*batch, 64, 64), dtype)
    b = _random(rng, (*batch, 64, 8), dtype)
    ax, bx = (xp.asarray(x, dtype=getattr(xp, dtype)) for x in (a, b))
    a_, b_ = to_numpy(ax).copy(), to_numpy(bx).copy()
    bound = 4 * 64 * eps_of(dtype) * (np.abs(a_) @ np.abs(b_))
    got_h = to_numpy(_linalg.matmul_h(ax, bx, xp))
    got_c = to_numpy(_linalg.matmul_conj(ax, bx, xp))
    bound_h = 4 * 64 * eps_of(dtype) * (np.abs(np.swapaxes(a_, -1, -2)) @ np.abs(b_))
    assert np.all(np.abs(got_h - np.conj(np.swapaxes(a_, -1, -2)) @ b_) <= bound_h)
    assert np.all(np.abs(got_c - np.conj(a_) @ b_) <= bound)
    assert np.array_equal(to_numpy(ax), a_)
    assert np.array_equal(to_numpy(bx), b_)


def test_torch_cpu_tensors_share_memory_with_the_kernels():
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xpt

    x = torch.randn(4, 12, 3, dtype=torch.float64)
    c = Counters()
    q, r = _linalg.thin_qr(x, xpt, c)
    assert c.kernel_calls == 1
    assert isinstance(q, torch.Tensor)
    assert q.dtype == torch.float64
    assert torch.allclose(q @ r, x, atol=1e-13)
    u, s, v = _linalg.thin_svd(x, xpt, c)
    assert c.kernel_calls == 2
    assert isinstance(s, torch.Tensor)
    assert torch.allclose((u * s[..., None, :]) @ v.mT, x, atol=1e-13)
    xg = x.clone().requires_grad_(True)  # autograd tensors stay on torch.linalg
    _linalg.thin_qr(xg, xpt, c)
    assert c.kernel_calls == 2


def test_svd_phases_are_canonical_on_every_path():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 10, 4)) + 1j * rng.standard_normal((3, 10, 4))
    import array_api_compat.numpy as xnp

    with _linalg.use_linalg("xp"):
        u1, s1, v1 = _linalg.thin_svd(x, xnp)
    with _linalg.use_linalg("kernels"):
        u2, s2, v2 = _linalg.thin_svd(x, xnp)
    assert np.allclose(u1, u2, atol=1e-12)
    assert np.allclose(v1, v2, atol=1e-12)
    piv = np.take_along_axis(u1, np.argmax(np.abs(u1), axis=-2)[..., None, :], axis=-2)
    assert np.allclose(piv.imag, 0, atol=1e-15)
    assert np.all(piv.real > 0)
