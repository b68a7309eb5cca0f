"""PyTorch sparse and CuPy sparse operators in ``LinearMatrixODE``.

Guards against sparse operators of other libraries computing a different right-hand
side than the dense operator they represent (``A^H`` where ``A^T`` belongs, ``A`` where
``conj(A)`` belongs: only non-symmetric and complex operators tell these apart, so both
are used, on both sides), against a product that densifies or loops over the members of
a stack, and against unclear errors for operators of the wrong shape, dtype, library,
device or with NaN values.

CuPy is not installed here (nor a GPU): the CuPy route is tested through a seam only.
A pretend ``cupyx.scipy.sparse`` module in ``sys.modules`` recognises SciPy matrices
wrapped in :class:`_PretendCupySparse` (which has only the attributes a ``cupyx``
matrix shares with SciPy's and the library uses: ``format``, ``dtype``, ``shape``,
``data``, ``T``, ``conj()``, ``tocsr()``, ``@``; no ``toarray``), and NumPy states
stand in for CuPy states (the one entry of ``_operators.STATE_LIBRARY`` that is
patched).  This checks detection, routing, the products and the checks, not CuPy
itself.

Tolerances: a sparse operator and the dense one apply the same operator to the same
blocks; they differ only in the summation order of each product (sparse rows against
BLAS), a few ulps per product, carried through a contractive problem over five steps:
``1e3 eps`` of the state's dtype, relative, leaves a wide margin above that and is far
below any wrong term (which changes the solution at order one).
"""

from __future__ import annotations

import pickle
import sys
import types

import array_api_compat
import numpy as np
import pytest
import scipy.sparse as sp

import lowrank_core as lc
from lowrank_core import _operators

from ._helpers import random_lowrank_np

torch = pytest.importorskip("torch")

# PyTorch's own notes on its sparse layouts (once per process, from the tensors built here).
pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta state:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled:UserWarning"),
]


def _laplacian(n, h=0.5):
    return sp.diags([np.ones(n - 1), -2 * np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csr") / h**2


def _upwind(n):
    return sp.diags([np.ones(n - 1), -np.ones(n)], [-1, 0], format="csr")


def _operators_np(m, n, complex_):
    """Left and right operators of ``dY/dt = A Y + Y R^T + D Y D2^T``: a Laplacian
    (symmetric) and upwind differences (non-symmetric), scaled by complex factors for a
    complex state (``A`` then is neither symmetric nor Hermitian)."""
    A, R, D, D2 = _laplacian(m), _laplacian(n), _upwind(m), _upwind(n).T.tocsr()
    if complex_:
        A, R, D, D2 = A * (1 - 1j), R * (1 - 0.5j), D * (1 + 0.5j), D2 * (1 - 0.25j)
    return A, R, D, D2


def _torch(a, layout, dtype):
    """SciPy matrix ``a`` as a PyTorch tensor of ``layout`` (dense, coo or csr)."""
    d = torch.asarray(a.toarray(), dtype=dtype)
    return {"dense": d, "coo": d.to_sparse(), "csr": d.to_sparse_csr()}[layout]


def _state_torch(rng, m, n, complex_, dtype):
    """A stack of three members sharing ``U`` and ``V`` with different ``S``."""
    U, S, V = random_lowrank_np(rng, m, n, [1.0, 0.3, 0.1, 0.01], complex_=complex_)
    factors = (np.stack([U] * 3), np.stack([S, 2 * S, 3 * S]), np.stack([V] * 3))
    return lc.LowRank(*(torch.asarray(f, dtype=dtype) for f in factors))


def _rel(a, b):
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("method", ["ksl", "bug", "abc-psi"])
def test_torch_sparse_agrees_with_dense(method, layout, precision):
    """Heat (symmetric) plus advection (non-symmetric, in a second term) plus a right
    operator, ``dY/dt = L Y + Y L^T + D Y D2^T``, and the same with complex operators on
    both sides on a complex state, for a stack of three members: PyTorch COO and CSR
    operators give the solution of the dense PyTorch operators to ``1e3 eps`` of the
    dtype (float32 as well as float64; abc-psi with a tolerance ``1e3 eps`` so that its
    rank decisions are far from round-off).  Checked by planting ``A^H`` for ``A^T`` in
    the PyTorch sparse right-operator product (fails for the complex operators)."""
    rng = np.random.default_rng(0)
    m, n = 40, 30
    eps = float(torch.finfo(getattr(torch, precision)).eps)
    for complex_ in (False, True):
        dtype = getattr(torch, {"float64": "complex128", "float32": "complex64"}[precision] if complex_ else precision)
        ops = _operators_np(m, n, complex_)
        A, R, D, D2 = (_torch(a, "dense", dtype) for a in ops)
        As, Rs, Ds, D2s = (_torch(a, layout, dtype) for a in ops)
        Y0 = _state_torch(rng, m, n, complex_, dtype)
        kw = {"rtol": 1e3 * eps} if method == "abc-psi" else {}
        ref = lc.solve(lc.LinearMatrixODE(A, R, terms=[(D, D2)]), Y0, (0.0, 0.05), 0.01, method=method, **kw)
        sol = lc.solve(lc.LinearMatrixODE(As, Rs, terms=[(Ds, D2s)]), Y0, (0.0, 0.05), 0.01, method=method, **kw)
        assert sol.step_ranks == ref.step_ranks
        assert sol.Y.dtype == dtype
        assert _rel(sol.Y.to_dense(), ref.Y.to_dense()) <= 1e3 * eps, (complex_, layout)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_torch_sparse_products_are_one_call_per_stack(layout):
    """The four products of a 2-D PyTorch sparse operator with a stack ``X (3, k, c)``
    equal the dense ``A X``, ``A^H X``, ``A^T X``, ``conj(A) X`` per member, for a complex
    non-symmetric ``A``, and leave ``X`` unchanged.  Guards against a wrong conjugation in
    one of the four forms and against the stack flattened in the wrong order (members'
    columns interleaved).  Tolerance ``8 k eps``: one product, k terms per entry."""
    rng = np.random.default_rng(1)
    k, c = 25, 4
    a = sp.random(k, k, density=0.3, random_state=2, format="csr") * (1 + 2j) + _upwind(k)
    A = torch.asarray(a.toarray())
    op = _operators.as_operator(_torch(a, layout, torch.complex128), "A", None)
    X = torch.asarray(rng.standard_normal((3, k, c)) + 1j * rng.standard_normal((3, k, c)))
    before = X.clone()
    xp = array_api_compat.array_namespace(X)
    expected = {"apply": A, "apply_h": A.conj().T, "apply_t": A.T, "apply_conj": A.conj()}
    for name, M in expected.items():
        got = getattr(op, name)(X, xp)
        assert got.shape == X.shape
        assert _rel(got, M @ X) <= 8 * k * float(torch.finfo(torch.float64).eps), name
    assert torch.equal(X, before)


class _ScaledTorch:
    """``A(t) = (1 + t) A0`` as a PyTorch sparse tensor (module level: picklable);
    records its evaluation times, and returns NaN values from ``nan_after`` on."""

    def __init__(self, A0, nan_after=None):
        self.A0, self.nan_after, self.times = A0, nan_after, []

    def __call__(self, t):
        self.times.append(t)
        a = (self.A0 * (1.0 + t)).to_sparse_csr()
        if self.nan_after is not None and t > self.nan_after:
            a.values()[0] = float("nan")
        return a


def test_time_dependent_torch_sparse_matches_the_dense_generic_problem():
    """A callable ``A(t) = (1 + t) L`` returning a PyTorch CSR tensor gives the solution
    of the dense generic problem ``f(t, Y) = A(t) Y + Y L^T`` (same integrator and
    substeps, so the same evaluation times: an evaluation at a wrong time changes the
    result at order dt), is evaluated once per distinct time, and pickles (a solve of
    the copy equals the original's bit for bit).  Checked by planting a cache keyed by
    nothing (the first value reused at every time): the solutions differ at order dt."""
    rng = np.random.default_rng(3)
    m = n = 30
    L = torch.asarray(_laplacian(m).toarray())
    Y0 = lc.LowRank(*(torch.asarray(f) for f in random_lowrank_np(rng, m, n, [1.0, 0.5, 0.2])))
    A = _ScaledTorch(L)
    problem = lc.LinearMatrixODE(A, L.to_sparse())
    generic = lc.MatrixODE(lambda t, Y: (1.0 + t) * (L @ Y) + Y @ L.T)
    for method in ("ksl", "bug"):
        A.times.clear()
        sol = lc.solve(problem, Y0, (0.0, 0.1), 0.02, method=method)
        ref = lc.solve(generic, Y0, (0.0, 0.1), 0.02, method=method)
        assert _rel(sol.Y.to_dense(), ref.Y.to_dense()) <= 1e3 * float(torch.finfo(torch.float64).eps), method
        assert len(A.times) == len(set(A.times))
    copied = pickle.loads(pickle.dumps(problem))
    again = lc.solve(copied, Y0, (0.0, 0.1), 0.02, method="bug")
    assert torch.equal(again.Y.to_dense(), sol.Y.to_dense())


def test_problem_with_torch_sparse_operators_pickles():
    """A ``LinearMatrixODE`` holding PyTorch COO and CSR operators (complex, so that the
    conjugates formed at construction are part of it) pickles, before and after a solve,
    and the copy solves to the same bits.  Guards against a wrapper holding something
    that does not pickle (a module, a lambda)."""
    rng = np.random.default_rng(4)
    m, n = 20, 16
    A, R, D, D2 = _operators_np(m, n, True)
    problem = lc.LinearMatrixODE(
        _torch(A, "coo", torch.complex128),
        _torch(R, "csr", torch.complex128),
        terms=[(_torch(D, "csr", torch.complex128), _torch(D2, "coo", torch.complex128))],
    )
    Y0 = _state_torch(rng, m, n, True, torch.complex128)
    fresh = pickle.loads(pickle.dumps(problem))
    sol = lc.solve(problem, Y0, (0.0, 0.03), 0.01, method="ksl")
    for copy in (fresh, pickle.loads(pickle.dumps(problem))):
        again = lc.solve(copy, Y0, (0.0, 0.03), 0.01, method="ksl")
        assert torch.equal(again.Y.to_dense(), sol.Y.to_dense())


# ------------------------------------------------------------------ the CuPy sparse seam


class _PretendCupySparse:
    """A SciPy sparse matrix dressed as a ``cupyx.scipy.sparse`` matrix: only the
    attributes the library uses that a ``cupyx`` matrix shares with SciPy's (no
    ``toarray``, so a densifying path raises AttributeError); every product with a
    dense block is logged with the block's shape."""

    def __init__(self, a, log):
        self._a, self._log = a, log

    format = property(lambda self: self._a.format)
    dtype = property(lambda self: self._a.dtype)
    shape = property(lambda self: self._a.shape)
    data = property(lambda self: self._a.data)
    T = property(lambda self: _PretendCupySparse(self._a.T, self._log))

    def conj(self):
        return _PretendCupySparse(self._a.conj(), self._log)

    def tocsr(self):
        return _PretendCupySparse(self._a.tocsr(), self._log)

    def __matmul__(self, x):
        assert isinstance(x, np.ndarray), type(x)
        assert x.ndim == 2, x.shape
        self._log.append(x.shape)
        return self._a @ x


@pytest.fixture
def pretend_cupyx(monkeypatch):
    """A ``cupyx.scipy.sparse`` module whose ``issparse`` recognises :class:`_PretendCupySparse`."""
    module = types.ModuleType("cupyx.scipy.sparse")
    module.issparse = lambda x: isinstance(x, _PretendCupySparse)
    monkeypatch.setitem(sys.modules, "cupyx.scipy.sparse", module)
    return monkeypatch


def test_cupy_sparse_seam(pretend_cupyx):
    """Through the seam (module docstring): a ``cupyx.scipy.sparse`` matrix is
    recognised as one (not as SciPy's, not as a callable), refused with a NumPy state
    while NumPy states are not CuPy's, and once they stand in for CuPy states it gives
    the SciPy-sparse solution bit for bit (the same product code on the same matrices:
    complex non-symmetric operators on both sides, a COO one converted to CSR once, a
    stack of three members), one product call per stacked block of ``3 c`` columns and
    never a dense operator.  Its shape, dtype and NaN values are refused naming the
    operator.  Checked by planting ``_wrap`` without the CuPy branch (the operator then
    goes to the dense path and its product fails)."""
    rng = np.random.default_rng(5)
    m, n = 30, 24
    log = []
    ops = _operators_np(m, n, True)
    A, R, D, D2 = (_PretendCupySparse(a, log) for a in ops)
    D2 = _PretendCupySparse(sp.coo_matrix(ops[3]), log)
    assert _operators.operator_kind(A) == "CuPy sparse matrix"
    assert not _operators.is_scipy_sparse(A)
    assert not _operators.is_operator_callable(A)
    U, S, V = random_lowrank_np(rng, m, n, [1.0, 0.3, 0.1], complex_=True)
    Y0 = lc.LowRank(np.stack([U] * 3), np.stack([S, 2 * S, 3 * S]), np.stack([V] * 3))
    problem = lc.LinearMatrixODE(A, R, terms=[(D, D2)])
    with pytest.raises(TypeError, match=r"`A` is a CuPy sparse matrix, which applies to CuPy states only"):
        lc.solve(problem, Y0, (0.0, 0.03), 0.01, method="ksl")
    pretend_cupyx.setitem(_operators.STATE_LIBRARY, "CuPy sparse matrix", ("CuPy", array_api_compat.is_numpy_array))
    ref = lc.solve(lc.LinearMatrixODE(*ops[:2], terms=[ops[2:]]), Y0, (0.0, 0.03), 0.01, method="ksl")
    sol = lc.solve(problem, Y0, (0.0, 0.03), 0.01, method="ksl")
    np.testing.assert_array_equal(sol.Y.to_dense(), ref.Y.to_dense())
    assert log
    assert all(cols % 3 == 0 for _, cols in log)
    Yr = lc.LowRank(*random_lowrank_np(rng, m, n, [1.0, 0.3, 0.1]))
    with pytest.raises(TypeError, match="`A` must be real for a real state.*complex CuPy sparse matrix"):
        lc.solve(lc.LinearMatrixODE(A, None), Yr, (0.0, 0.03), 0.01)
    with pytest.raises(ValueError, match=r"`B` must have shape \(24, 24\).*got \(30, 30\)"):
        lc.solve(lc.LinearMatrixODE(None, A), Y0, (0.0, 0.03), 0.01)
    with pytest.raises(TypeError, match=r"`A` must have dtype float32.*int64.*\.astype\(cupy\.float64\)"):
        lc.LinearMatrixODE(_PretendCupySparse(sp.eye(m, dtype=np.int64, format="csr"), log), None)
    bad = ops[0].copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="`A` has NaN or Inf among its stored values"):
        lc.solve(lc.LinearMatrixODE(_PretendCupySparse(bad, log), None), Y0, (0.0, 0.03), 0.01)


# --------------------------------------------------------------------------- bad input


def test_bad_torch_sparse_operators_are_named():
    """PyTorch sparse operators of the wrong shape, dtype, library, device, layout
    dimension or with NaN values, SciPy operators with PyTorch states, and a sparse
    ``C`` are refused naming the argument and what to pass: at construction where the
    operator alone shows it, before the first step (no step note) where the state is
    needed, and at the evaluation of a callable with the time and the step.  Checked by
    planting the NaN check away (the NaN operator then gives a non-finite state and an
    integration error instead)."""
    rng = np.random.default_rng(6)
    U, S, V = random_lowrank_np(rng, 10, 8, [1.0, 0.5])
    Yn = lc.LowRank(U, S, V)
    Yt = lc.LowRank(*(torch.asarray(f) for f in (U, S, V)))
    L10 = torch.asarray(_laplacian(10).toarray())
    L8 = torch.asarray(_laplacian(8).toarray())

    def solve(problem, Y=Yt):
        return lc.solve(problem, Y, (0.0, 0.1), 0.05, method="ksl")

    def no_step(info):
        return not any("step" in note for note in getattr(info.value, "__notes__", []))

    # construction: the operator alone
    with pytest.raises(ValueError, match="`A` must be square.*PyTorch sparse tensor of shape"):
        lc.LinearMatrixODE(torch.ones(10, 8, dtype=torch.float64).to_sparse(), None)
    with pytest.raises(ValueError, match=r"`terms\[0\]\[1\]` must be a 2-D sparse tensor"):
        lc.LinearMatrixODE(None, None, terms=[(L10, torch.stack([L8, L8]).to_sparse())])
    with pytest.raises(TypeError, match=r"`A` must have dtype float32.*torch\.int64.*\.to\(torch\.float64\)"):
        lc.LinearMatrixODE(torch.eye(10, dtype=torch.int64).to_sparse(), None)
    with pytest.raises(TypeError, match="`C` must be a dense array or a LowRank; got a PyTorch sparse tensor"):
        lc.LinearMatrixODE(L10, None, C=torch.ones(10, 8, dtype=torch.float64).to_sparse())
    # before the first step: operator against state
    with pytest.raises(ValueError, match=r"`B` must have shape \(8, 8\).*got \(10, 10\)") as info:
        solve(lc.LinearMatrixODE(None, L10.to_sparse_csr()))
    assert no_step(info)
    with pytest.raises(TypeError, match=r"`A` must have the state's dtype torch\.float64.*\.to\(torch\.float64\)"):
        solve(lc.LinearMatrixODE(L10.to(torch.float32).to_sparse(), None))
    with pytest.raises(TypeError, match="`A` must be real for a real state.*complex PyTorch sparse tensor"):
        solve(lc.LinearMatrixODE((L10 * 1j).to_sparse(), None))
    with pytest.raises(TypeError, match="`A` is a PyTorch sparse tensor, which applies to PyTorch states only.*"
                       "scipy.sparse matrix"):  # fmt: skip
        solve(lc.LinearMatrixODE(L10.to_sparse(), None), Yn)
    with pytest.raises(TypeError, match="`A` is a SciPy sparse matrix, which applies to NumPy states only.*"
                       "torch sparse tensor"):  # fmt: skip
        solve(lc.LinearMatrixODE(_laplacian(10), None))
    nan = L10.clone()
    nan[3, 3] = float("nan")
    with pytest.raises(ValueError, match="`A` has NaN or Inf among its stored values") as info:
        solve(lc.LinearMatrixODE(nan.to_sparse_csr(), None))
    assert no_step(info)
    # a callable: checked at its evaluation, with the time and the step
    with pytest.raises(ValueError, match=r"`A\(t\)` must have shape \(10, 10\).*\(returned at t = 0\)") as info:
        solve(lc.LinearMatrixODE(_ScaledTorch(L8), None))
    assert any("step 0" in note for note in info.value.__notes__)
    with pytest.raises(ValueError, match=r"`A\(t\)` has NaN or Inf.*\(returned at t = 0\.075\)") as info:
        solve(lc.LinearMatrixODE(_ScaledTorch(L10, nan_after=0.06), None))
    assert any("step 1" in note for note in info.value.__notes__)
    meta = torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), (10, 10), device="meta")
    with pytest.raises(ValueError, match=r"`A\(t\)` must be on the state's device cpu; got a PyTorch sparse "
                       r"tensor on device meta.*\(returned at t = 0\)"):  # fmt: skip
        solve(lc.LinearMatrixODE(lambda t: meta, None))
