"""lowrank_kernels: batched thin QR and small SVD on the CPU (Numba) and CUDA (numba-cuda).

One file for both devices: the ``device`` fixture runs every contract test on the CPU
kernels and on the CUDA kernels (under ``NUMBA_ENABLE_CUDASIM=1`` in CI, set by
``conftest.py``; on a real GPU with ``NUMBA_ENABLE_CUDASIM=0``).  The simulator runs
about 1 s per small matrix, so CUDA cases use tiny shapes.

Tolerances: Householder QR and the SVD are backward stable, with backward errors bounded
by ``gamma_{cm} ~ c m u`` (Higham, *Accuracy and Stability*, Thm 19.4 / 19.13), hence
``TOL = 8 max(m, k) eps`` for ``||A - QR|| / ||A||``, for ``||Q^H Q - I||_max`` and (times
``sigma_1``) for singular values by Weyl's inequality.  Float32 references come from
NumPy, which computes float32 in float64, so the reference itself is exact to float32.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lowrank_kernels as lk

DTYPES = ["float32", "float64", "complex64", "complex128"]


class _Device:
    def __init__(self, name: str):
        self.name = name

    def put(self, a: np.ndarray):
        if self.name == "cpu":
            return a
        from numba import cuda

        return cuda.to_device(np.ascontiguousarray(a))

    def get(self, x) -> np.ndarray:
        if isinstance(x, np.ndarray):
            return x
        if type(x).__module__.startswith("cupy"):
            return x.get()
        return x.copy_to_host()


def _cuda_ok() -> bool:
    return lk.has_cuda()


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    if request.param == "cuda" and not _cuda_ok():
        pytest.skip("numba-cuda unavailable (no GPU and no NUMBA_ENABLE_CUDASIM=1)")
    return _Device(request.param)


def _tol(m: int, k: int, dtype) -> float:
    return 8 * max(m, k, 1) * float(np.finfo(np.dtype(dtype)).eps)


def _matrices(rng, shape, dtype, *, cond=1.0, rank=None):
    """Stack with singular values log-spaced from 1 to 1/cond (graded), optionally of
    exact rank ``rank`` (trailing singular values zero)."""
    *batch, m, k = shape
    p = min(m, k)
    sig = np.logspace(0, -np.log10(cond), p) if p else np.zeros(0)
    if rank is not None:
        sig[rank:] = 0.0
    cplx = np.dtype(dtype).kind == "c"
    out = np.empty(shape, dtype=np.complex128 if cplx else np.float64)
    for idx in np.ndindex(*batch):
        g1 = rng.standard_normal((m, p)) + (1j * rng.standard_normal((m, p)) if cplx else 0)
        g2 = rng.standard_normal((k, p)) + (1j * rng.standard_normal((k, p)) if cplx else 0)
        u, _ = np.linalg.qr(g1)
        v, _ = np.linalg.qr(g2)
        out[idx] = (u * sig) @ np.conj(v.T)
    return out.astype(dtype)


def _check_qr(a, q, r):
    *_, m, k = a.shape
    tol = _tol(m, k, a.dtype)
    assert q.shape == a.shape
    assert r.shape == (*a.shape[:-2], k, k)
    assert q.dtype == a.dtype
    assert r.dtype == a.dtype
    if a.size == 0:
        return
    scale = np.linalg.norm(a.astype(np.complex128), axis=(-2, -1))
    resid = np.linalg.norm((q @ r - a).astype(np.complex128), axis=(-2, -1))
    assert np.all(resid <= tol * np.maximum(scale, np.finfo(a.dtype).tiny))
    eye = np.eye(k)
    assert np.max(np.abs(np.conj(np.swapaxes(q, -1, -2)) @ q - eye)) <= tol
    assert np.all(np.tril(r, -1) == 0)
    d = np.diagonal(r, axis1=-2, axis2=-1)
    assert np.all(d.real >= 0)
    assert np.all(d.imag == 0)


def _check_svd(a, u, s, v):
    *_, m, k = a.shape
    p = min(m, k)
    tol = _tol(m, k, a.dtype)
    assert u.shape == (*a.shape[:-2], m, p)
    assert v.shape == (*a.shape[:-2], k, p)
    assert s.shape == (*a.shape[:-2], p)
    if a.size == 0:
        return
    ref = np.linalg.svd(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64), compute_uv=False)
    s1 = ref[..., :1]
    assert np.all(np.abs(s - ref) <= tol * np.maximum(s1, np.finfo(a.dtype).tiny))
    assert np.all(np.diff(s, axis=-1) <= 0)
    rec = (u * s[..., None, :]) @ np.conj(np.swapaxes(v, -1, -2))
    resid = np.linalg.norm((rec - a).astype(np.complex128), axis=(-2, -1))
    assert np.all(resid <= tol * np.maximum(s1[..., 0], np.finfo(a.dtype).tiny))
    for f in (u, v):
        assert np.max(np.abs(np.conj(np.swapaxes(f, -1, -2)) @ f - np.eye(p))) <= tol


# ----------------------------------------------------------------------------- contracts
@pytest.mark.parametrize("dtype", DTYPES)
def test_qr_contract_all_dtypes(device, dtype):
    shape = (3, 40, 6) if device.name == "cpu" else (2, 12, 3)
    a = _matrices(np.random.default_rng(0), shape, dtype, cond=1e3)
    keep = a.copy()
    q, r = lk.batched_qr(device.put(a))
    _check_qr(a, device.get(q), device.get(r))
    assert np.array_equal(a, keep)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 6, 6), (2, 20, 5), (3, 5, 20)])
def test_svd_contract_all_dtypes(dtype, shape):
    a = _matrices(np.random.default_rng(1), shape, dtype, cond=1e4)
    keep = a.copy()
    _check_svd(a, *lk.batched_svd(a))
    assert np.array_equal(a, keep)


@pytest.mark.parametrize("dtype", ["float64", "complex64"])
@pytest.mark.parametrize("shape", [(2, 4, 4), (2, 5, 5), (1, 9, 3)])
def test_svd_contract_cuda(dtype, shape):
    """Square (even and odd k: the round-robin pads a zero column) and thin (QR first)."""
    if not _cuda_ok():
        pytest.skip("numba-cuda unavailable (no GPU and no NUMBA_ENABLE_CUDASIM=1)")
    device = _Device("cuda")
    a = _matrices(np.random.default_rng(2), shape, dtype, cond=1e3)
    u, s, v = lk.batched_svd(device.put(a))
    _check_svd(a, device.get(u), device.get(s), device.get(v))


@pytest.mark.parametrize("algorithm", ["householder", "cholqr2"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["cond1e2", "cond1e3", "cond1e6", "cond1e8", "cond1e12", "rank-deficient"])
def test_qr_graded_and_rank_deficient(algorithm, dtype, case):
    """Both algorithms meet the same bounds on graded and rank-deficient inputs:
    CholeskyQR2 through its guaranteed per-matrix Householder fallback."""
    rng = np.random.default_rng(3)
    kw = {"rank": 3} if case == "rank-deficient" else {"cond": float(case[4:])}
    a = _matrices(rng, (6, 64, 8), dtype, **kw)
    _check_qr(a, *lk.batched_qr(a, algorithm=algorithm))


@pytest.mark.parametrize("algorithm", ["jacobi", "lapack"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["cond1e2", "cond1e12", "rank-deficient"])
def test_svd_graded_and_rank_deficient(algorithm, dtype, case):
    """Zero singular values still get an orthonormal set of left singular vectors."""
    rng = np.random.default_rng(4)
    kw = {"rank": 3} if case == "rank-deficient" else {"cond": float(case[4:])}
    for shape in [(4, 8, 8), (3, 30, 8)]:
        a = _matrices(rng, shape, dtype, **kw)
        _check_svd(a, *lk.batched_svd(a, algorithm=algorithm))


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("shape", [(0, 5, 3), (4, 5, 0), (5, 3), (2, 3, 7, 4), (2, 0, 6, 2), (1, 1, 1)])
def test_batch_shapes_including_empty(shape):
    a = _matrices(np.random.default_rng(6), shape, "float64")
    _check_qr(a, *lk.batched_qr(a))
    _check_svd(a, *lk.batched_svd(a))


def test_empty_batch_cuda(device):
    a = np.zeros((0, 6, 3))
    q, r = lk.batched_qr(device.put(a))
    assert device.get(q).shape == (0, 6, 3)
    assert device.get(r).shape == (0, 3, 3)


def test_noncontiguous_and_readonly_inputs():
    rng = np.random.default_rng(7)
    base = rng.standard_normal((4, 30, 10))
    view = base[:, ::2, ::2]  # (4, 15, 5), not contiguous
    ro = base.copy()
    ro.flags.writeable = False
    q1, r1 = lk.batched_qr(view)
    q2, r2 = lk.batched_qr(np.ascontiguousarray(view))
    assert np.array_equal(q1, q2)
    assert np.array_equal(r1, r2)
    _check_qr(ro, *lk.batched_qr(ro))
    _check_svd(ro, *lk.batched_svd(ro))


def test_out_buffers_are_filled_and_returned():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((5, 20, 4))
    q, r = np.empty_like(a), np.empty((5, 4, 4))
    q2, r2 = lk.batched_qr(a, out=(q, r))
    assert q2 is q
    assert r2 is r
    _check_qr(a, q, r)
    u, s, v = np.empty_like(a), np.empty((5, 4)), np.empty((5, 4, 4))
    res = lk.batched_svd(a, out=(u, s, v))
    assert res[0] is u
    assert res[1] is s
    assert res[2] is v
    _check_svd(a, u, s, v)


# ----------------------------------------------------------------------------- non-finite
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the simulator computes inf - inf
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_matrix_poisons_only_itself(device, bad):
    """A matrix containing NaN/Inf gets NaN in all its outputs; its neighbours are
    exactly what they are without it."""
    shape = (3, 12, 3) if device.name == "cuda" else (5, 30, 6)
    a = _matrices(np.random.default_rng(9), shape, "float64")
    clean_q, clean_r = (device.get(x) for x in lk.batched_qr(device.put(a)))
    a[1, 2, 1] = bad
    q, r = (device.get(x) for x in lk.batched_qr(device.put(a)))
    assert np.all(np.isnan(q[1]))
    assert np.all(np.isnan(r[1]))
    others = [0, 2]
    assert np.array_equal(q[others], clean_q[others])
    assert np.array_equal(r[others], clean_r[others])
    if device.name == "cpu":
        u, s, v = lk.batched_svd(a[:, :6, :])
        assert np.all(np.isnan(s[1]))
        assert np.all(np.isnan(u[1]))
        assert np.all(np.isfinite(s[others]))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tall_svd_through_stacked_qr(monkeypatch, dtype):
    """Tall real stacks big enough for CholeskyQR2 are factored as QR, SVD of R, U = Q U_R.
    The contract holds for a mix of well-conditioned, graded (where CholeskyQR2's guard
    sends the matrix to Householder) and rank-deficient matrices, and a NaN matrix
    poisons only its own outputs."""
    calls = []
    real = lk._api._cholqr2_stack
    monkeypatch.setattr(lk._api, "_cholqr2_stack", lambda *args: calls.append(1) or real(*args))
    rng = np.random.default_rng(12)
    parts = [
        _matrices(rng, (6, 256, 8), dtype, cond=10.0),
        _matrices(rng, (5, 256, 8), dtype, cond=1e12),
        _matrices(rng, (3, 256, 8), dtype, rank=3),
    ]
    a = np.concatenate(parts)
    assert a.shape[0] * 256 * 8**2 >= lk.SVD_TALL_QR_MIN_WORK
    _check_svd(a, *lk.batched_svd(a))
    assert calls, "the tall stack did not go through the stacked QR"
    a[7, 10, 2] = np.nan
    u, s, v = lk.batched_svd(a)
    for out in (u, s, v):
        assert np.isnan(out[7]).all()
    keep = np.arange(len(a)) != 7
    _check_svd(a[keep], u[keep], s[keep], v[keep])


# ----------------------------------------------------------------------------- matmul
def _layouts(x: np.ndarray) -> dict[str, np.ndarray]:
    """``x`` (..., m, n) in the layouts ``batched_matmul`` handles: C-contiguous, the
    transpose of a C-contiguous stack, and a strided column slice (copied)."""
    wide = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype)
    wide[..., ::2] = x
    return {
        "C": x.copy(),
        "T": np.swapaxes(np.swapaxes(x, -1, -2).copy(), -1, -2),
        "slice": wide[..., ::2],
    }


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("batch", "m", "n", "p", "big"), [((600,), 64, 64, 8, True), ((3, 200), 8, 64, 4, True), ((5,), 6, 4, 3, False)]
)
def test_batched_matmul_matches_numpy(dtype, batch, m, n, p, big):
    """Every pair of layouts gives ``a @ b`` to the rounding of one gemm: elementwise
    ``|C - AB| <= 2 n eps (|A| |B|)`` (the standard inner-product error bound, with a
    factor 2 for complex multiply-adds); the inputs are untouched.  The first two shapes
    run the kernel (more than one thread), the last one ``numpy.matmul``."""
    import numba

    rng = np.random.default_rng(n + p)
    a = _matrices(rng, (*batch, m, n), dtype)
    b = _matrices(rng, (*batch, n, p), dtype)
    bound = 2 * n * float(np.finfo(np.dtype(dtype)).eps) * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64))
    ref = a.astype(np.complex128) @ b.astype(np.complex128)
    assert lk.matmul_uses_kernel(a.shape, b.shape) == (big and numba.get_num_threads() > 1)
    for la, xa in _layouts(a).items():
        for lb, xb in _layouts(b).items():
            keep_a, keep_b = xa.copy(), xb.copy()
            c = lk.batched_matmul(xa, xb)
            assert c.dtype == a.dtype, (la, lb)
            assert c.flags.c_contiguous, (la, lb)
            assert np.all(np.abs(c - ref) <= bound), (la, lb)
            assert np.array_equal(xa, keep_a), (la, lb)
            assert np.array_equal(xb, keep_b), (la, lb)


def test_batched_matmul_rule_out_and_errors():
    import numba

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((300, 64, 16)), rng.standard_normal((300, 16, 8))
    assert lk.matmul_uses_kernel(a.shape, b.shape) == (numba.get_num_threads() > 1)
    assert not lk.matmul_uses_kernel((10, 64, 16), (10, 16, 8))  # too little work
    assert not lk.matmul_uses_kernel((10**5, 4, 4), (10**5, 4, 4))  # products too small
    assert not lk.matmul_uses_kernel((100, 128, 128), (100, 128, 32))  # the BLAS threads these
    out = np.empty((300, 64, 8))
    assert lk.batched_matmul(a, b, out=out) is out
    assert np.allclose(out, a @ b)
    # non-native byte order (numpy.matmul) and read-only operands give the same product
    assert np.allclose(lk.batched_matmul(a.astype(">f8"), b.astype(">f8")), a @ b)
    ro = a.copy()
    ro.flags.writeable = False
    assert np.allclose(lk.batched_matmul(ro, b), a @ b)
    with pytest.raises(TypeError, match="'b'.*numpy.ndarray"):
        lk.batched_matmul(a, list(b))
    with pytest.raises(TypeError, match="same dtype"):
        lk.batched_matmul(a, b.astype(np.float32))
    with pytest.raises(TypeError, match="dtype int64"):
        lk.batched_matmul(a.astype(np.int64), b.astype(np.int64))
    with pytest.raises(ValueError, match="same batch shape"):
        lk.batched_matmul(a, b[:10])
    with pytest.raises(ValueError, match="do not match"):
        lk.batched_matmul(a, a)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        lk.batched_matmul(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="overlaps the input 'b'"):
        lk.batched_matmul(a[:, :16, :], b, out=b)
    with pytest.raises(ValueError, match="shape"):
        lk.batched_matmul(a, b, out=np.empty((300, 64, 9)))


# ----------------------------------------------------------------------------- bad input
def test_bad_input_errors():
    a = np.ones((2, 5, 3))
    with pytest.raises(TypeError, match="dtype int64"):
        lk.batched_qr(np.ones((2, 5, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        lk.batched_qr([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        lk.batched_svd(np.ones(4))
    with pytest.raises(ValueError, match="m >= k"):
        lk.batched_qr(np.ones((2, 3, 5)))
    with pytest.raises(ValueError, match="algorithm"):
        lk.batched_qr(a, algorithm="gram-schmidt")
    with pytest.raises(ValueError, match="shape"):
        lk.batched_qr(a, out=(np.empty((2, 5, 3)), np.empty((2, 2, 2))))
    with pytest.raises(TypeError, match="dtype"):
        lk.batched_qr(a, out=(np.empty((2, 5, 3), np.float32), np.empty((2, 3, 3))))
    buf = np.empty((2, 5, 3))
    with pytest.raises(ValueError, match="overlaps"):
        lk.batched_qr(buf, out=(buf, np.empty((2, 3, 3))))


# ----------------------------------------------------------------------------- hypothesis
@st.composite
def _stacks(draw):
    batch = tuple(draw(st.lists(st.integers(0, 3), min_size=0, max_size=2)))
    k = draw(st.integers(1, 8))
    m = draw(st.integers(k, 40))
    dtype = draw(st.sampled_from(DTYPES))
    cond = 10.0 ** draw(st.integers(0, 12))
    rank = draw(st.one_of(st.none(), st.integers(0, k)))
    seed = draw(st.integers(0, 2**16))
    return _matrices(np.random.default_rng(seed), (*batch, m, k), dtype, cond=cond, rank=rank)


@given(a=_stacks(), algorithm=st.sampled_from(["auto", "householder", "cholqr2"]))
def test_qr_property(a, algorithm):
    keep = a.copy()
    _check_qr(a, *lk.batched_qr(a, algorithm=algorithm))
    assert np.array_equal(a, keep)


@given(a=_stacks(), algorithm=st.sampled_from(["auto", "jacobi", "lapack"]))
def test_svd_property(a, algorithm):
    keep = a.copy()
    _check_svd(a, *lk.batched_svd(a, algorithm=algorithm))
    assert np.array_equal(a, keep)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_tall_single_matrix_rows_parallel_cholqr2_and_fallback(dtype):
    """The row-parallel CholeskyQR2 of one real tall matrix (row blocks on our threads,
    here more blocks than threads) meets the contract; ill-conditioned and rank-deficient
    matrices are refused by its guards (it returns ``False``, the caller then runs
    Householder), and ``batched_qr`` still meets the contract on them and propagates a
    NaN to all of Q and R.  Guards against a row-block sum that drops or repeats a block
    and against guards that accept a Gram matrix Cholesky cannot factor accurately."""
    from lowrank_kernels import _api, _cpu

    rng = np.random.default_rng(10)
    k = 8
    m = _api._BLAS_THREADED_GEMM // k**2 + 10
    a = rng.standard_normal((1, m, k)).astype(dtype)
    assert lk.qr_algorithm(a.shape, a.dtype) == "cholqr2"
    q, r = lk.batched_qr(a)
    _check_qr(a, q, r)
    q2, r2 = np.empty_like(a[0]), np.empty((k, k), dtype)
    assert _cpu.qr_rows_parallel(a[0], q2, r2, 3)
    _check_qr(a, q2[None], r2[None])
    deficient = a.copy()
    deficient[0, :, k - 1] = deficient[0, :, k - 2]
    for bad in (deficient, _matrices(rng, (1, m, k), dtype, cond=1e12)):
        assert not _cpu.qr_rows_parallel(bad[0], q2, r2, 3)
        _check_qr(bad, *lk.batched_qr(bad))
    nan = a.copy()
    nan[0, m // 2, 3] = np.nan
    q, r = lk.batched_qr(nan)
    assert np.isnan(q).all()
    assert np.isnan(r).all()


def test_single_matrix_enters_a_parallel_region_only_above_the_size_rule(monkeypatch):
    """Below ``QR_ROWS_PARALLEL_MIN_WORK`` (``m k^2``) a single matrix is factored on the
    calling thread: neither the row-parallel QR nor a parallel batch driver runs, for the
    1000 x 20 augmentation QR of a KSL/BUG step at n = 1000, r = 20, a 100000 x 32 one and
    the 40 x 40 core SVD; from the threshold on, the rows are split across the threads.
    Guards against the latency collapse of issue 14 (a parallel region per 160 KB matrix,
    76-80 ms per QR when its threads wait for a busy core) coming back through a size
    rule that ignores the thread pool's wake-up cost.  Checked by planting each bug: the
    old threshold (the BLAS threading size, ``m k^2 >= 262144``) and a one-chunk
    parallel batch driver both fail the first assertion."""
    import numba

    from lowrank_kernels import _cpu

    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: no parallel region is ever entered")
    calls = []

    def spy(name):
        real = getattr(_cpu, name)

        def wrapped(*args):
            calls.append(name)
            return real(*args)

        return wrapped

    for name in ("qr_rows_parallel", "qr_batch", "svd_batch"):
        monkeypatch.setattr(_cpu, name, spy(name))
    rng = np.random.default_rng(15)
    for m, k in [(1000, 20), (100000, 32)]:
        assert m * k * k < lk.QR_ROWS_PARALLEL_MIN_WORK
        a = rng.standard_normal((m, k))
        _check_qr(a[None], *(x[None] for x in lk.batched_qr(a)))
    core = rng.standard_normal((40, 40))
    _check_svd(core[None], *(x[None] for x in lk.batched_svd(core)))
    assert calls == []
    k = 64
    m = int(lk.QR_ROWS_PARALLEL_MIN_WORK // k**2) + 1
    a = rng.standard_normal((m, k))
    _check_qr(a[None], *(x[None] for x in lk.batched_qr(a)))
    assert calls == ["qr_rows_parallel"]


def test_cholqr2_guards_send_hard_matrices_to_householder(monkeypatch):
    """The guarded fast path falls back per matrix: in a stack of well-conditioned,
    ill-conditioned (cond 1e12) and rank-deficient matrices, exactly the hard ones are
    redone by Householder (counted by the driver), and all meet the contract."""
    from lowrank_kernels import _cpu

    rng = np.random.default_rng(11)
    a = rng.standard_normal((6, 40, 5))
    a[1] = _matrices(rng, (40, 5), "float64", cond=1e12)
    a[4, :, 4] = a[4, :, 0]
    q, r = np.empty_like(a), np.empty((6, 5, 5))
    wp = np.zeros(1)
    assert _cpu.qr_batch_serial(a, q, r, _cpu.QR_CHOLQR2, 1, wp) == 2
    _check_qr(a, q, r)
    assert _cpu.qr_batch_serial(a[[0, 2, 3, 5]], q[:4], r[:4], _cpu.QR_CHOLQR2, 1, wp) == 0


@pytest.mark.parametrize("algorithm", ["householder", "cholqr2"])
def test_qr_is_exactly_equivariant_under_power_of_two_column_scaling(algorithm):
    """Scaling columns by powers of two (here as far apart as 2**-40 and 2**20) leaves Q
    bit for bit unchanged and scales R's columns exactly: every operation commutes with
    such scalings, and CholeskyQR2's guards are column-scaling invariant, so the
    algorithm taken for a matrix does not depend on its column scales either.  Rank
    decisions of the integrators rely on this (theory/test_rank_adaptive.py)."""
    rng = np.random.default_rng(14)
    a = rng.standard_normal((5, 40, 6))
    a[3] = _matrices(rng, (40, 6), "float64", cond=1e5)
    a[4, :, 5] = a[4, :, 1] + 1e-7 * rng.standard_normal(40)  # nearly dependent column
    d = 2.0 ** np.array([0, -40, 3, 20, -7, 1])
    q1, r1 = lk.batched_qr(a, algorithm=algorithm)
    q2, r2 = lk.batched_qr(a * d, algorithm=algorithm)
    assert np.array_equal(q1, q2)
    assert np.array_equal(r1 * d, r2)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cholqr2_second_pass_is_skipped_only_when_it_cannot_help(dtype):
    """After the first CholeskyQR pass the kernel returns Q1 only if ||Q1^T Q1 - I||_max
    <= k eps; otherwise it runs the second pass.  Either way Q is orthonormal to a few
    k eps, much tighter than the general bound: a single pass at cond 3e3 (float32) or
    1e6 (float64) would leave about cond^2 eps, orders of magnitude above this."""
    rng = np.random.default_rng(15)
    eps = float(np.finfo(dtype).eps)
    conds = (1e1, 1e3, 3e3) if dtype == "float32" else (1e1, 1e4, 1e6)
    for k, m in ((8, 64), (16, 256)):
        for cond in conds:
            a = _matrices(rng, (20, m, k), dtype, cond=cond)
            q, r = lk.batched_qr(a, algorithm="cholqr2")
            _check_qr(a, q, r)
            orth = np.abs(np.swapaxes(q, -1, -2) @ q - np.eye(k)).max()
            assert orth <= 4 * k * eps, (k, cond, orth / eps)


def test_qr_rule():
    """Real work of at least QR_HOUSEHOLDER_MAX_WORK goes to CholeskyQR2, tiny real calls
    and every complex call to Householder; batch dimensions count toward the work."""
    limit = lk.QR_HOUSEHOLDER_MAX_WORK
    m = int(np.ceil(limit / 64))  # m * 8**2 >= limit
    assert lk.qr_algorithm((m, 8), np.float64) == "cholqr2"
    assert lk.qr_algorithm((m - 8, 8), np.float32) == "householder"
    assert lk.qr_algorithm((2, 4, m // 4, 8), np.float32) == "cholqr2"
    assert lk.qr_algorithm((1000, 64, 8), np.complex128) == "householder"


def test_svd_rule_and_jacobi_at_its_limits():
    """The rule hands real cores up to SVD_JACOBI_MAX_K and complex ones up to
    SVD_JACOBI_MAX_K_COMPLEX to Jacobi; at those sizes (even and odd, so the round-robin
    schedule's dummy column is exercised) Jacobi meets the contract."""
    kr, kc = lk.SVD_JACOBI_MAX_K, lk.SVD_JACOBI_MAX_K_COMPLEX
    assert lk.svd_algorithm((3, kr, kr), np.float32) == "jacobi"
    assert lk.svd_algorithm((3, 100, kr + 1), np.float64) == "lapack"
    assert lk.svd_algorithm((3, kc, kc), np.complex128) == "jacobi"
    assert lk.svd_algorithm((3, kc + 1, kc + 1), np.complex64) == "lapack"
    rng = np.random.default_rng(12)
    for shape, dtype in [((3, kr, kr), "float64"), ((2, 40, kr - 1), "float32"), ((3, kc + 3, kc), "complex128")]:
        a = _matrices(rng, shape, dtype, cond=1e6)
        _check_svd(a, *lk.batched_svd(a, algorithm="jacobi"))


def test_parallel_and_serial_drivers_have_separate_disk_caches():
    """Numba's disk cache is keyed by qualified name, not by the ``parallel`` flag: the
    parallel and serial copies of a driver must have distinct names, or a process with
    a warm cache loads the serial build for the parallel driver (this happened: 2
    threads ran at 1-thread speed)."""
    from lowrank_kernels import _cpu

    for kind in ("qr", "svd"):
        par = getattr(_cpu, f"{kind}_batch")
        ser = getattr(_cpu, f"{kind}_batch_serial")
        assert par.py_func.__qualname__ != ser.py_func.__qualname__
        assert par.targetoptions.get("parallel") is True
        assert not ser.targetoptions.get("parallel")
