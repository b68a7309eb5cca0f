"""The non-robust reference methods of `lowrank_core.bench`: `naive_factor_euler` (explicit
Euler on the gauged factor ODEs) and `factor_heavy_ball` (heavy ball on ``W = A C^T``).

They are the contrast of ``bench/robustness.py``, ``bench/training.py``,
``tests/theory/test_robustness.py`` and ``tests/training/test_optimizers.py``; these tests
check them against their equations, independently of those users.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from lowrank_core.bench import factor_heavy_ball, naive_factor_euler

EPS = np.finfo(np.float64).eps


def _orthonormal(rng, n, r, dtype):
    """``n x r`` with orthonormal columns, real or complex."""
    X = rng.standard_normal((n, r))
    if np.dtype(dtype).kind == "c":
        X = X + 1j * rng.standard_normal((n, r))
    return np.linalg.qr(X)[0].astype(dtype)


def _unitary(rng, n, dtype):
    return _orthonormal(rng, n, n, dtype)


def _matrix(rng, shape, dtype):
    X = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        X = X + 1j * rng.standard_normal(shape)
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_naive_factor_euler_first_step_equals_the_block_formula(dtype):
    """One Euler step from ``U = Qm[:, :r]``, ``V = Qn[:, :r]`` (unitary ``Qm``, ``Qn``) with a
    general constant ``F`` and a general invertible, non-Hermitian ``S``.  In the rotated
    frame ``Ft = Qm^H F Qn = [[F11, F12], [F21, F22]]`` the factor ODEs give
    ``U1 = Qm [I; h F21 S^{-1}]``, ``S1 = S + h F11``, ``V1^H = [I, h S^{-1} F12] Qn^H``, so

    ``Y1 = Qm [[S1, h S1 S^{-1} F12], [h F21 S^{-1} S1, h^2 F21 S^{-1} S1 S^{-1} F12]] Qn^H``,

    computed here from blocks, not from the projectors of the implementation.  Guards
    against a transpose where a conjugate transpose belongs (``F^T U``, ``S^{-T}``:
    caught by the complex case), a missing projector ``(I - U U^H)``, ``S`` where
    ``S^{-1}`` belongs, and the core step taken from the updated bases.

    Tolerance: a handful of products of O(1) matrices with ``cond(S) < 10``; the rounding
    is a small multiple of ``eps * cond(S)``, far below ``1e-12``, while each of the bugs
    above changes ``Y1`` by O(h) = O(0.3)."""
    rng = np.random.default_rng(3)
    m, n, r, h = 7, 6, 2, 0.3
    Qm, Qn = _unitary(rng, m, dtype), _unitary(rng, n, dtype)
    S = np.array([[1.0, 0.4], [-0.2, 0.6]], dtype=dtype)
    if np.dtype(dtype).kind == "c":
        S = S + 0.3j * np.array([[0.5, -1.0], [0.8, 0.2]])
    F = _matrix(rng, (m, n), dtype)
    U, V = Qm[:, :r].copy(), Qn[:, :r].copy()

    Y1 = naive_factor_euler(lambda t: F, U, S, V, (0.0, h), h)

    Ft = Qm.conj().T @ F @ Qn
    F11, F12, F21 = Ft[:r, :r], Ft[:r, r:], Ft[r:, :r]
    Si = np.linalg.inv(S)
    S1 = S + h * F11
    block = np.block([[S1, h * S1 @ Si @ F12], [h * F21 @ Si @ S1, h * h * F21 @ Si @ S1 @ Si @ F12]])
    expected = Qm @ block @ Qn.conj().T
    assert Y1.shape == (m, n)
    np.testing.assert_allclose(Y1, expected, rtol=0, atol=1e-12 * np.linalg.norm(expected))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_naive_factor_euler_integrates_a_tangent_core_path_as_a_riemann_sum(dtype):
    """``F(t) = U0 (t M) V0^H`` lies in the span of the bases, so ``dU = dV = 0`` and Euler
    on ``dS = U^H F V = t M`` is the left Riemann sum: after ``N`` steps from ``t0``,
    ``Y = U0 (S0 + h M sum_k (t0 + k h)) V0^H = U0 (S0 + h M (N t0 + h N (N - 1) / 2)) V0^H``.
    With ``t0 = 0.5``, ``h = 0.125``, ``N = 8``.  Guards against evaluating ``F`` at the end
    of the step (right sum, off by ``h^2 N |M| = 0.125 |M|``), ignoring ``t0`` (off by
    ``0.5 |M|``), a wrong number of steps, and bases that drift although ``F`` is tangent.

    Tolerance: ``dU`` and ``dV`` are rounding (``~eps``) each step and ``S`` stays well
    conditioned, so the result is exact up to a small multiple of ``N eps``; ``1e-12``
    relative is far below every bug's O(0.1)."""
    rng = np.random.default_rng(5)
    m, n, r = 9, 8, 3
    t0, t1, h = 0.5, 1.5, 0.125
    steps = 8
    U0, V0 = _orthonormal(rng, m, r, dtype), _orthonormal(rng, n, r, dtype)
    S0 = np.diag([2.0, 1.0, 0.5]).astype(dtype) + 0.1 * _matrix(rng, (r, r), dtype)
    M = _matrix(rng, (r, r), dtype)
    F0 = U0 @ M @ V0.conj().T

    Y = naive_factor_euler(lambda t: t * F0, U0, S0, V0, (t0, t1), h)

    S_end = S0 + h * M * (steps * t0 + h * steps * (steps - 1) / 2)
    expected = U0 @ S_end @ V0.conj().T
    np.testing.assert_allclose(Y, expected, rtol=0, atol=1e-12 * np.linalg.norm(expected))


@pytest.mark.parametrize("sigma_r", [1e-3, 1e-8])
def test_naive_factor_euler_blows_up_to_inf_at_small_singular_values(sigma_r):
    """The property the robustness test and benchmark rely on: with ``S = diag(1, sigma_r)``,
    ``sigma_r < h / 10`` and an ``F`` with normal components, the ``S^{-1}`` of the factor
    ODEs blows the factors up and the result is ``+inf`` everywhere, while the same run with
    ``sigma_r = 0.5`` (above ``h``) stays finite and close to ``Y0 + F`` (F is constant: the
    exact solution of ``dY/dt = F``, which the rank-2 DLRA approximates to O(|F|) here).

    Guards against a regularised or dropped ``S^{-1}`` (no blow-up: the contrast method
    would look robust), and against losing the early ``inf`` return (the run then goes on
    to ``inf - inf`` and returns NaN)."""
    rng = np.random.default_rng(0)
    m, n, r, h = 8, 7, 2, 0.1
    U, V = _orthonormal(rng, m, r, np.float64), _orthonormal(rng, n, r, np.float64)
    F = rng.standard_normal((m, n)) / 4
    Y = naive_factor_euler(lambda t: F, U, np.diag([1.0, sigma_r]), V, (0.0, 1.0), h)
    assert Y.shape == (m, n)
    assert np.all(np.isposinf(Y))
    S = np.diag([1.0, 0.5])
    Y_ok = naive_factor_euler(lambda t: F, U, S, V, (0.0, 1.0), h)
    assert np.all(np.isfinite(Y_ok))
    Y_exact = U @ S @ V.T + F
    assert np.linalg.norm(Y_ok - Y_exact) <= np.linalg.norm(F)


def test_naive_factor_euler_leaves_the_inputs_alone():
    """Guards against an in-place update of the caller's factors (``U += h * dU``)."""
    rng = np.random.default_rng(1)
    U, V = _orthonormal(rng, 6, 2, np.float64), _orthonormal(rng, 5, 2, np.float64)
    S = np.diag([1.0, 0.5])
    F = rng.standard_normal((6, 5))
    saved = [x.copy() for x in (U, S, V)]
    naive_factor_euler(lambda t: F, U, S, V, (0.0, 1.0), 0.25)
    for x, x0 in zip((U, S, V), saved, strict=True):
        np.testing.assert_array_equal(x, x0)


def _loss(A, C, B):
    G = A @ C.T - B
    return 0.5 * float(np.sum(G * G))


def test_factor_heavy_ball_first_two_steps_follow_the_recursion():
    """With ``M_0 = 0``: ``A1 = A0 - lr G0 C0``, ``C1 = C0 - lr G0^T A0`` and
    ``A2 = A1 - lr (beta G0 C0 + G1 C1)``, ``C2 = C1 - lr (beta G0^T A0 + G1^T A1)``, with
    ``Gk = Ak Ck^T - B``; the returned losses are ``L(A0, C0), L(A1, C1), L(A2, C2)`` and the
    step count is the first ``k`` with ``L < target``.  Guards against a missing or wrong
    momentum factor (``L2`` differs), the gradients taken after the other factor's update
    (``L1`` differs), and an off-by-one step count.

    Tolerance: the same few O(1) products in another order; rounding is a small multiple
    of ``eps``, ``1e-12`` relative is far below what each bug changes (O(lr beta))."""
    rng = np.random.default_rng(7)
    m, n, r, lr, beta = 6, 5, 2, 0.05, 0.7
    B = rng.standard_normal((m, n))
    A0, C0 = rng.standard_normal((m, r)), rng.standard_normal((n, r))

    G0 = A0 @ C0.T - B
    A1, C1 = A0 - lr * G0 @ C0, C0 - lr * G0.T @ A0
    G1 = A1 @ C1.T - B
    A2, C2 = A1 - lr * (beta * G0 @ C0 + G1 @ C1), C1 - lr * (beta * G0.T @ A0 + G1.T @ A1)
    expected = [_loss(A0, C0, B), _loss(A1, C1, B), _loss(A2, C2, B)]
    assert expected[2] < expected[1] < expected[0]

    k, losses = factor_heavy_ball(B, A0, C0, lr=lr, beta=beta, steps=3, target=0.0)
    assert k == 3
    np.testing.assert_allclose(losses, expected, rtol=1e-12)

    k, losses = factor_heavy_ball(B, A0, C0, lr=lr, beta=beta, steps=50, target=(expected[1] + expected[2]) / 2)
    assert k == 2
    np.testing.assert_allclose(losses, expected, rtol=1e-12)


def test_factor_heavy_ball_reports_divergence_as_not_converged_and_leaves_the_inputs_alone():
    """A step size far above ``2 / sigma_max`` diverges: the run must stop early with the
    step count ``steps`` (not converged) and a last loss that is not finite or above 1e12.
    Guards against a diverged run reported as converged (a small ``k``), a run that
    continues on inf/NaN losses, and an in-place update of the caller's factors."""
    rng = np.random.default_rng(2)
    B = rng.standard_normal((6, 5))
    A0, C0 = rng.standard_normal((6, 2)), rng.standard_normal((5, 2))
    saved = (A0.copy(), C0.copy())
    k, losses = factor_heavy_ball(B, A0, C0, lr=5.0, beta=0.9, steps=1000, target=1e-6)
    assert k == 1000
    assert len(losses) < 1000
    assert not np.isfinite(losses[-1]) or losses[-1] > 1e12
    np.testing.assert_array_equal(A0, saved[0])
    np.testing.assert_array_equal(C0, saved[1])


def test_baselines_pickle():
    """Public objects pickle (here: by reference, as module-level functions)."""
    for f in (naive_factor_euler, factor_heavy_ball):
        assert pickle.loads(pickle.dumps(f)) is f


_U, _S, _V = np.eye(5, 2), np.eye(2), np.eye(4, 2)
_F = np.zeros((5, 4))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dA": _F}, TypeError, "`dA`"),
        ({"U": _U.tolist()}, TypeError, "`U`"),
        ({"S": np.eye(2, dtype=int)}, TypeError, "`S`"),
        ({"V": np.zeros((4, 3))}, ValueError, "`V`"),
        ({"S": np.eye(3)}, ValueError, "`S`"),
        ({"U": np.zeros(5)}, ValueError, "`U`"),
        ({"t_span": 1.0}, TypeError, "`t_span`"),
        ({"t_span": (1.0, 0.0)}, ValueError, "`t_span`"),
        ({"t_span": (0.0, np.inf)}, ValueError, "`t_span`"),
        ({"h": 0.0}, ValueError, "`h`"),
        ({"h": -0.1}, ValueError, "`h`"),
        ({"h": np.nan}, ValueError, "`h`"),
        ({"h": "0.1"}, TypeError, "`h`"),
        ({"h": True}, TypeError, "`h`"),
        ({"h": 5.0}, ValueError, "`h`"),
        ({"dA": lambda t: _F.tolist()}, TypeError, "`dA`"),
        ({"dA": lambda t: np.zeros((4, 5))}, ValueError, "`dA`"),
    ],
)
def test_naive_factor_euler_bad_input(kwargs, error, match):
    """Guards against bad input that is accepted and fails later with an unrelated error
    (a matmul shape error, a ``range`` of a float) or silently takes no step."""
    args = {"dA": lambda t: _F, "U": _U, "S": _S, "V": _V, "t_span": (0.0, 1.0), "h": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        naive_factor_euler(**args)


_B, _A0, _C0 = np.ones((5, 4)), np.ones((5, 2)), np.ones((4, 2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"B": _B.tolist()}, TypeError, "`B`"),
        ({"A0": _A0.astype(np.complex128)}, TypeError, "`A0`"),
        ({"C0": np.ones((5, 2))}, ValueError, "`C0`"),
        ({"A0": np.ones((4, 2))}, ValueError, "`A0`"),
        ({"lr": 0.0}, ValueError, "`lr`"),
        ({"lr": -1.0}, ValueError, "`lr`"),
        ({"lr": None}, TypeError, "`lr`"),
        ({"beta": 1.0}, ValueError, "`beta`"),
        ({"beta": -0.1}, ValueError, "`beta`"),
        ({"steps": 0}, ValueError, "`steps`"),
        ({"steps": 10.0}, TypeError, "`steps`"),
        ({"steps": True}, TypeError, "`steps`"),
        ({"target": -1.0}, ValueError, "`target`"),
        ({"target": np.nan}, ValueError, "`target`"),
    ],
)
def test_factor_heavy_ball_bad_input(kwargs, error, match):
    """Guards against a bad step size, momentum or step count that is accepted and gives a
    run that never moves (``lr = 0``), never settles (``beta >= 1``) or fails later in
    ``range`` with an unrelated message."""
    args = {"B": _B, "A0": _A0, "C0": _C0, "lr": 0.1, "beta": 0.9, "steps": 10, "target": 1e-6, **kwargs}
    with pytest.raises(error, match=match):
        factor_heavy_ball(**args)
