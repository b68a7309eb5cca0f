"""Sparse, matrix-free and time-dependent operators in ``LinearMatrixODE``.

Guards against operator kinds that compute a different right-hand side than the dense
operator they represent (a transpose where the conjugate belongs, ``A`` where ``A^H``
belongs: only non-symmetric and complex operators tell these apart, so both are used),
against a time-dependent ``A(t)`` evaluated at the wrong time, against dense ``m x m``
or ``m x n`` temporaries (``tracemalloc`` at m = n = 2e5), and against unclear errors.

Tolerances: the three kinds apply the same operator to the same blocks; they differ
only in the summation order of each product (sparse rows against BLAS), a few ulps per
product, carried through a contractive problem over a few steps: ``1e3 eps`` relative
leaves a wide margin above that and far below any wrong term (which changes the
solution at order one).
"""

from __future__ import annotations

import pickle
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lowrank_core as lc

from ._helpers import random_lowrank_np

EPS = np.finfo(np.float64).eps


def _laplacian(n, h=1.0):
    return sp.diags([np.ones(n - 1), -2 * np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csr") / h**2


def _upwind(n, h=1.0):
    return sp.diags([np.ones(n - 1), -np.ones(n)], [-1, 0], format="csr") / h


def _as(kind, a):
    if kind == "dense":
        return a.toarray()
    if kind == "sparse":
        return a
    if kind == "sparse-coo":
        return sp.coo_array(a)
    return spla.aslinearoperator(a)  # matvec and rmatvec from the sparse matrix


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("method", ["ksl", "bug", "abc-psi"])
@pytest.mark.parametrize("kind", ["sparse", "sparse-coo", "linear-operator"])
def test_operator_kinds_agree_with_dense(kind, method):
    """Heat (symmetric) plus advection (non-symmetric, in a second term) plus a right
    operator: dY/dt = L Y + Y L^T + D Y D2^T, and the same with complex operators on
    both sides (-i L, (1 - i/2) L, complex non-symmetric D, D2) on a complex state;
    every kind of operator gives the dense solution to round-off, for a stack of three
    members.  Checked by planting A^H for A^T in the sparse right-operator product and
    conj(A) for A in the LinearOperator's: both fail."""
    rng = np.random.default_rng(0)
    m, n = 40, 30
    L, Ln, D, D2 = _laplacian(m, 0.5), _laplacian(n, 0.5), _upwind(m), _upwind(n).T.tocsr()
    kw = {"rtol": 1e-8} if method == "abc-psi" else {}
    for complex_ in (False, True):
        A = L * (-1j) if complex_ else L
        Dt = D * (1 + 0.5j) if complex_ else D
        R = Ln * (1 - 0.5j) if complex_ else Ln
        D2t = D2 * (1 - 0.25j) if complex_ else D2
        U, S, V = random_lowrank_np(rng, m, n, [1.0, 0.3, 0.1, 0.01], complex_=complex_)
        Y0 = lc.LowRank(np.stack([U] * 3), np.stack([S, 2 * S, 3 * S]), np.stack([V] * 3))
        dense = lc.LinearMatrixODE(_as("dense", A), _as("dense", R), terms=[(_as("dense", Dt), _as("dense", D2t))])
        other = lc.LinearMatrixODE(_as(kind, A), _as(kind, R), terms=[(_as(kind, Dt), _as(kind, D2t))])
        ref = lc.solve(dense, Y0, (0.0, 0.05), 0.01, method=method, **kw)
        sol = lc.solve(other, Y0, (0.0, 0.05), 0.01, method=method, **kw)
        assert sol.step_ranks == ref.step_ranks
        assert _rel(sol.Y.to_dense(), ref.Y.to_dense()) <= 1e3 * EPS, (kind, complex_)


class _Scaled:
    """``A(t) = (1 + t) A0`` as a sparse matrix (module level: picklable)."""

    def __init__(self, A0, fmt=None):
        self.A0, self.fmt, self.times = A0, fmt, []

    def __call__(self, t):
        self.times.append(t)
        a = self.A0 * (1.0 + t)
        return a.toarray() if self.fmt == "dense" else a


@pytest.mark.parametrize("fmt", ["sparse", "dense"])
def test_time_dependent_operator_matches_the_dense_right_hand_side(fmt):
    """A callable ``A(t) = (1 + t) L`` gives the same solution as the dense generic
    problem ``f(t, Y) = A(t) Y + Y L^T`` (same integrator, same substeps, so the same
    evaluation times: any evaluation at a wrong time changes the result at order dt),
    is evaluated once per distinct time, and pickles."""
    rng = np.random.default_rng(1)
    m = n = 30
    L = _laplacian(m, 0.5)
    Y0 = lc.LowRank(*random_lowrank_np(rng, m, n, [1.0, 0.5, 0.2]))
    A = _Scaled(L, fmt)
    problem = lc.LinearMatrixODE(A, L)
    Ld = L.toarray()
    generic = lc.MatrixODE(lambda t, Y: (1.0 + t) * Ld @ Y + Y @ Ld.T)
    for method in ("ksl", "bug"):
        A.times.clear()
        sol = lc.solve(problem, Y0, (0.0, 0.1), 0.02, method=method)
        ref = lc.solve(generic, Y0, (0.0, 0.1), 0.02, method=method)
        assert _rel(sol.Y.to_dense(), ref.Y.to_dense()) <= 1e3 * EPS
        assert len(A.times) == len(set(A.times))  # one evaluation per distinct time
    copied = pickle.loads(pickle.dumps(problem))
    again = lc.solve(copied, Y0, (0.0, 0.1), 0.02, method="bug")
    np.testing.assert_array_equal(again.Y.to_dense(), sol.Y.to_dense())


def test_a_million_unknowns_per_side_never_densify():
    """m = n = 2e5 with sparse 1D Laplacians on both sides, rank 8, two KSL steps: the
    peak of Python-tracked allocations stays within 40 factors' worth (measured 11.5; each factor is
    2e5 x 8 float64 = 12.8 MB; the augmentation and substep temporaries are a few tens
    of such blocks), far below one dense row block of the m x n matrix (an m x 1000
    block alone is 1.6 GB)."""
    rng = np.random.default_rng(2)
    m = n = 200_000
    r = 8
    L = _laplacian(m)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    Y0 = lc.LowRank(U, np.diag(np.logspace(0, -3, r)), V)
    problem = lc.LinearMatrixODE(L, L)
    factor = U.nbytes
    tracemalloc.start()
    try:
        sol = lc.solve(problem, Y0, (0.0, 2e-3), 1e-3, method="ksl", substep="euler")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sol.Y.shape == (m, n)
    assert np.isfinite(sol.Y.S).all()
    assert peak <= 40 * factor, f"peak {peak / 1e6:.0f} MB against factors of {factor / 1e6:.1f} MB"


def _no_adjoint(n):
    return spla.LinearOperator((n, n), matvec=lambda x: x, dtype=np.float64)


def test_bad_operators_are_named():
    """Wrong kinds, shapes, dtypes and missing adjoints are refused with the argument
    named, before the first step where the operator is given, at its evaluation (with
    the time, and the step added by solve) where it is a callable."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    Y0 = lc.LowRank(*random_lowrank_np(rng, 10, 8, [1.0, 0.5]))
    L10, L8 = _laplacian(10), _laplacian(8)

    def solve(problem, Y=Y0):
        return lc.solve(problem, Y, (0.0, 0.1), 0.05, method="ksl")

    with pytest.raises(ValueError, match=r"`B` must have shape \(8, 8\).*got \(10, 10\)"):
        solve(lc.LinearMatrixODE(L10, L10))
    with pytest.raises(ValueError, match="`A` must be square.*sparse matrix of shape"):
        lc.LinearMatrixODE(sp.random(10, 8, format="csr"), None)
    with pytest.raises(TypeError, match="`A` must have dtype float32.*sparse matrix of dtype int64"):
        lc.LinearMatrixODE(sp.eye(10, dtype=np.int64, format="csr"), None)
    with pytest.raises(TypeError, match="`A` must be real for a real state"):
        solve(lc.LinearMatrixODE(L10 * 1j, None))
    with pytest.raises(ValueError, match="`B` is a LinearOperator without an adjoint"):
        solve(lc.LinearMatrixODE(None, _no_adjoint(8)))
    Yt = lc.LowRank(*(torch.asarray(f) for f in (Y0.U, Y0.S, Y0.V)))
    with pytest.raises(TypeError, match="`A` is a SciPy sparse matrix, which applies to NumPy states only"):
        solve(lc.LinearMatrixODE(L10, None), Yt)
    with pytest.raises(ValueError, match=r"`A\(t\)` must have shape \(10, 10\).*\(returned at t = 0\)") as info:
        solve(lc.LinearMatrixODE(_Scaled(L8), None))
    assert any("step 0" in note for note in info.value.__notes__)


class _VlasovPoisson:
    """1D1V Vlasov-Poisson, ``f_t = -v f_x + E(f) f_v`` on ``Y[x, v]``: ``-D_x Y diag(v)``
    and ``diag(E) Y D_v^T`` with the field from ``E_x = 1 - int f dv`` (FFT, periodic),
    a state-dependent operator ``diag(E(Y))``.  Counts its field evaluations."""

    def __init__(self, nx=32, nv=32, L=4 * np.pi, vmax=6.0):
        self.x = np.arange(nx) * L / nx
        self.v = np.linspace(-vmax, vmax, nv)
        hx, self.hv = L / nx, self.v[1] - self.v[0]
        self.Dx = sp.diags([np.ones(nx - 1), -np.ones(nx - 1)], [1, -1]) + sp.diags([[1.0], [-1.0]], [1 - nx, nx - 1])
        self.Dx = (self.Dx / (2 * hx)).tocsr()
        self.Dv = (sp.diags([np.ones(nv - 1), -np.ones(nv - 1)], [1, -1]) / (2 * self.hv)).tocsr()
        self.k = 2 * np.pi * np.fft.rfftfreq(nx, hx)
        self.calls = 0

    def field(self, Y):
        rho = 1.0 - Y.U @ (Y.S @ (Y.V.T @ np.full(len(self.v), self.hv)))
        rk = np.fft.rfft(rho)
        Ek = np.zeros_like(rk)
        Ek[1:] = rk[1:] / (1j * self.k[1:])
        return np.fft.irfft(Ek, len(self.x))

    def E_operator(self, t, Y):
        self.calls += 1
        return sp.diags(self.field(Y), format="csr")

    def problem(self):
        return lc.LinearMatrixODE(-self.Dx, None, terms=[(self.E_operator, self.Dv)])

    def dense(self):
        Dx, Dv, v = self.Dx.toarray(), self.Dv.toarray(), self.v

        def f(t, Y):
            E = self.field(lc.LowRank.from_dense(Y, rank=min(Y.shape)))
            return -(Dx @ Y) * v[None, :] + E[:, None] * (Y @ Dv.T)

        return lc.MatrixODE(f)

    def initial(self, rank=6, alpha=0.01, kx=0.5):
        f0 = np.outer(1 + alpha * np.cos(kx * self.x), np.exp(-(self.v**2) / 2) / np.sqrt(2 * np.pi))
        return lc.LowRank.from_dense(f0, rank=rank)


def test_state_dependent_operator_vlasov_poisson():
    """A state-dependent term ``A(t, Y) Y B^T`` (the Vlasov-Poisson field ``diag(E(Y))``)
    gives the solution of the same right-hand side written densely (same integrator:
    round-off apart, the field is computed from the same density), is evaluated once
    per evaluation point (calls == rhs_evals), and the drift term ``-D_x Y diag(v)`` as
    a left operator plus a state-dependent pair exercises both call forms.  Guards
    against a field cached by time only (stale at the K and L substeps' different points
    of equal time: fewer calls than evaluation points, and a different solution) and
    against a field computed from the wrong point."""
    vp = _VlasovPoisson()
    vp_dense = _VlasovPoisson()
    # Landau's initial value is rank 1: a rank-6 start would carry five singular values at
    # round-off level, whose basis directions are arbitrary and make BUG's result depend
    # on rounding at O(dt^4).  A rank-6 perturbation keeps the spectrum well separated.
    rng = np.random.default_rng(4)
    bump = np.exp(-(vp.v**2) / 2)
    pert = sum(np.outer(np.cos((j + 1) * 0.5 * vp.x + j), bump * vp.v**j) for j in range(6)) * rng.uniform(0.5, 1, 1)
    Y0 = lc.LowRank.from_dense(vp.initial(rank=1).to_dense() + 1e-2 * pert, rank=6)
    v = vp.v

    class _Diag:
        def __call__(self, t):
            return sp.diags(v, format="csr")

    problem = lc.LinearMatrixODE(None, None, terms=[(-vp.Dx, _Diag()), (vp.E_operator, vp.Dv)])
    for method in ("ksl", "bug"):
        vp.calls = 0
        sol = lc.solve(problem, Y0, (0.0, 0.2), 0.05, method=method)
        ref = lc.solve(vp_dense.dense(), Y0, (0.0, 0.2), 0.05, method=method)
        assert vp.calls == sol.stats["rhs_evals"]
        assert _rel(sol.Y.to_dense(), ref.Y.to_dense()) <= 1e3 * EPS  # measured 2e-16 (KSL), 1e-15 (BUG)
