"""Right-hand-side objects: product identities and validation of user callables."""

from __future__ import annotations

import numpy as np
import pytest

import lowrank_core as lc

from ._helpers import eps_of, to_numpy


def _factors(rng, m, n, r, complex_):
    """Non-orthonormal factors (evaluation points need not be orthonormal)."""
    def g(*shape):
        x = rng.standard_normal(shape)
        return x + 1j * rng.standard_normal(shape) if complex_ else x
    return g(m, r), g(r, r), g(n, r), g


@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
@pytest.mark.parametrize("c_kind", ["none", "dense", "lowrank", "callable"])
def test_linear_products_match_dense_formula(xp, dtype, c_kind):
    """F V, F^H U, U^H F V of LinearMatrixODE equal the dense A Y + Y B^T + A1 Y B1^T + C."""
    rng = np.random.default_rng(0)
    m, n, r, k = 7, 5, 3, 2
    cplx = dtype.startswith("complex")
    U, S, V, g = _factors(rng, m, n, r, cplx)
    A, B, A1, B1 = g(m, m), g(n, n), g(m, m), g(n, n)
    Cd = g(m, n)
    Uc, Sc, Vc = np.linalg.qr(g(m, 2))[0], np.diag([2.0, 1.0]).astype(Cd.dtype), np.linalg.qr(g(n, 2))[0]
    Clr = Uc @ Sc @ Vc.conj().T
    dt = getattr(xp, dtype)
    X = lambda a: xp.asarray(a, dtype=dt)  # noqa: E731
    C, Cref = {
        "none": (None, 0),
        "dense": (X(Cd), Cd),
        "lowrank": (lc.LowRank(X(Uc), X(Sc), X(Vc)), Clr),
        "callable": (lambda t: X(Cd) * t, Cd * 0.7),
    }[c_kind]
    problem = lc.LinearMatrixODE(X(A), X(B), C, terms=[(X(A1), X(B1))])
    Y = lc.LowRank(X(U), X(S), X(V), check=False)  # non-orthonormal on purpose (see _factors)
    Yd = U @ S @ V.conj().T
    Fd = A @ Yd + Yd @ B.T + A1 @ Yd @ B1.T + Cref
    W, Z = g(n, k), g(m, k)
    val = problem.evaluate(0.7, Y)
    tol = 1e3 * eps_of(dtype) * np.linalg.norm(Fd)
    assert np.linalg.norm(to_numpy(val.F_V(X(W))) - Fd @ W) <= tol * np.linalg.norm(W)
    assert np.linalg.norm(to_numpy(val.FH_U(X(Z))) - Fd.conj().T @ Z) <= tol * np.linalg.norm(Z)
    uhfv = to_numpy(val.UH_F_V(X(Z), X(W)))
    assert np.linalg.norm(uhfv - Z.conj().T @ Fd @ W) <= tol * np.linalg.norm(Z) * np.linalg.norm(W)


def test_linear_validation():
    rng = np.random.default_rng(1)
    Y0 = lc.LowRank.from_dense(rng.standard_normal((6, 5)), rank=2)
    with pytest.raises(ValueError, match="`B` must have shape"):
        lc.LinearMatrixODE(np.eye(6), np.eye(6)).check_state(Y0)
    with pytest.raises(TypeError, match="complex"):
        lc.LinearMatrixODE(1j * np.eye(6), None).check_state(Y0)
    with pytest.raises(ValueError, match="zero"):
        lc.LinearMatrixODE(None, None)
    with pytest.raises(ValueError, match="`C` must have shape"):
        lc.LinearMatrixODE(np.eye(6), None, np.ones((5, 5))).check_state(Y0)


def test_matrix_ode_checks_what_f_returns():
    rng = np.random.default_rng(2)
    Y0 = lc.LowRank.from_dense(rng.standard_normal((6, 5)), rank=2)
    with pytest.raises(ValueError, match="`f` returned an array of shape"):
        lc.solve(lc.MatrixODE(lambda t, Y: Y[:, :3]), Y0, (0, 1), 0.5, method="ksl")
    with pytest.raises(TypeError, match="`f` returned dtype"):
        lc.solve(lc.MatrixODE(lambda t, Y: Y.astype(np.float32)), Y0, (0, 1), 0.5, method="ksl")
    with pytest.raises(TypeError, match="`f` must be callable"):
        lc.MatrixODE(np.eye(3))


def test_dense_rhs_is_formed_once_per_point():
    """The dense default evaluates f once per point even when several products are taken."""
    rng = np.random.default_rng(3)
    B = rng.standard_normal((8, 6))
    calls = []

    def f(t, Y):
        calls.append(t)
        return B - Y

    Y0 = lc.LowRank.from_dense(rng.standard_normal((8, 6)), rank=2)
    sol = lc.solve(lc.MatrixODE(f), Y0, (0.0, 1.0), 0.25, method="abc-psi", substep="euler")
    assert len(calls) == sol.stats["rhs_evals"] == 4  # one shared point per step
    assert calls == [0.0, 0.25, 0.5, 0.75]


def test_matrix_path_requires_derivative_for_rk4():
    A = lambda t: np.eye(4) * (1 + t)  # noqa: E731
    Y0 = lc.LowRank.from_dense(A(0.0), rank=2)
    with pytest.raises(ValueError, match="dA"):
        lc.solve(lc.MatrixPath(A), Y0, (0, 1), 0.5, method="ksl", substep="rk4")
    with pytest.raises(TypeError, match="`A` must be callable"):
        lc.MatrixPath(np.eye(3))
