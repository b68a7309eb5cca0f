"""Second- and higher-order integrators: orders, robustness, exactness (docs/methods.md).

Methods: ``midpoint-bug`` (Ceruti, Einkemmer, Kusch & Lubich 2024), ``parallel-bug-2``
(after Kusch 2024), ``rk-bug`` (Riffaud & Nobile 2025) and ``projected-rk`` (Kieri &
Vandereycken 2019) with the tableaux ``heun`` (2), ``ssprk3`` (3) and ``rk4`` (4).

Order.  Hypotheses: ``F(t, Y) = W1 Y - Y W2 + cos(t) Y`` with skew(-Hermitian) ``W1``,
``W2`` of norm <= 3 (time and state dependent, Lipschitz), ``A0`` of full rank with a
fast-decaying spectrum: a head of ``r = 4`` values in ``[0.1, 1]`` and a tail below
``1e-11`` (so the rank is large enough that the truncation plateau is below ``1e-9``);
``Y0`` is the rank-``r`` truncation of ``A0``, the reference the exact solution
``A(t) = e^{sin t} e^{t W1} A0 e^{-t W2}`` (a Koch-Lubich type path; ``F`` is tangent
along the rank-``r`` solution from ``Y0``, which differs from ``A(t)`` by the tail only).
Conclusion: ``||Y_n - A(1)|| <= C h^p + plateau``; a slope fitted over ``h = 0.2, 0.1,
0.05`` deviates from ``p`` by the relative size of the next term, ``O(h L)`` with
``L <= 7``; the thresholds ``p - 0.2`` (order 2), ``2.7`` and ``3.6`` of the issue leave
that margin (measured slopes 1.93-2.01, 2.9, 3.9).  ``sigma_r`` is not small here on
purpose: with a Y-dependent ``F`` the stage values of rk-bug and projected-rk are
truncated to rank ``r``, and once ``h^2 ||W||^2 > sigma_r`` that truncation error (part
of the plateau of Riffaud & Nobile's bound) exceeds ``h^p`` (docs/methods.md).

Robustness.  Hypotheses: the full-rank Ceruti-Lubich path ``A(t) = e^{t W1} e^t A0
e^{-t W2}`` with ``sigma_j(A0) = q^{-j}``, ``F = dA/dt`` evaluated at points, rank
``r = 6`` so ``sigma_r`` goes down to ``1e-10`` (``q = 100``) while ``h = 0.05``.
Conclusion for the robust methods: ``||Y_n - A(1)|| <= C (e_p(h) + eps_r)`` with ``C``
independent of ``sigma_r``, ``e_p(h)`` the error of the same Runge-Kutta rule on the full
matrix (here a quadrature of ``dA/dt``) and ``eps_r`` the relative best-approximation
error; ``C = 3`` (measured ratios <= 1.0; the proofs' Gronwall constants are
pessimistic).  Projected RK has no such bound: its retraction has curvature
``1 / sigma_r`` and its error is 9-45x this bound on the same paths (the contrast).

Exactness.  Rank-``r`` paths affine in ``t`` with both column and row space moving,
exact increments (``substep="exact"``): ``midpoint-bug``, ``parallel-bug-2`` and
``rk-bug`` are exact (their bases contain ``A(t1) V0`` and ``A(t1)^H U0``; projected RK
is exact there too: the derivative of a rank-``r`` path is tangent); at full rank
(``r = n``) ``rk-bug`` and ``projected-rk`` are the classical Runge-Kutta method on the
full matrix and ``midpoint-bug``/``parallel-bug-2`` with Euler substeps the explicit
midpoint rule (the plateau vanishes, Riffaud & Nobile 2025).

Dtypes: float64 and complex128; float32 is not drawn (the order-4 errors at ``h = 0.05``,
~1e-8, are below float32 resolution).  Batches: order examples stack independent
members (own bases and spectrum, shared generators); the rank is fixed, so members do not
interact and slopes are per member.

Planted bugs (each planted once in the source, seen to fail here, reverted): midpoint
Galerkin update with ``F`` evaluated at ``t0`` instead of ``t_{1/2}`` (order tests of
midpoint-bug and parallel-bug-2); parallel-bug-2 half step run over the whole step (order
test); the midpoint update started from ``Y_{1/2}`` instead of ``Y0`` (exactness test);
RK-BUG stages evaluated at ``t0`` instead of ``t0 + c_i h`` (robustness test); projected
RK with the ``-U_j (U_j^H F V_j)`` term of ``X_j`` left out, which counts ``U^H F V``
twice (order, robustness and full-rank tests); and the automated one below (rk4 weights
``b`` replaced by ``1/4``).  Not caught by these tests (checked): an RK-BUG stage basis
built from the stages used only (``C_i = J_i``, rk4's third stage then misses part of
``range(U_2)``) and a midpoint basis without the ``F_{1/2} V_{1/2}`` block; both lose
accuracy at an order these problems do not resolve.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from hypothesis import example, given
from hypothesis import strategies as st

import lowrank_core as lc

from .._helpers import dense, loglog_slope, random_orthonormal, random_skew
from ._problems import full_rank_path
from .strategies import BATCHES, scaled

ORDERS = [
    ("midpoint-bug", None, 1.8),
    ("parallel-bug-2", None, 1.8),
    ("rk-bug", "heun", 1.8),
    ("rk-bug", "ssprk3", 2.7),
    ("rk-bug", "rk4", 3.6),
    ("projected-rk", "rk4", 3.6),
]
HS = [0.2, 0.1, 0.05]
M, N, R = 40, 36, 4


def _kw(tableau):
    return {} if tableau is None else {"tableau": tableau}


@st.composite
def tangent_paths(draw, batches=BATCHES):
    """``(dtype, batch, head spectra per member, W norm, seed)`` of the order problem."""
    dtype = draw(st.sampled_from(["float64", "complex128"]))
    batch = draw(st.sampled_from(batches))
    heads = tuple(
        tuple(sorted([1.0, *(draw(st.floats(0.1, 1.0)) for _ in range(R - 1))], reverse=True))
        for _ in range(int(np.prod(batch, dtype=int)))
    )
    norm = draw(st.floats(0.5, 3.0))
    seed = draw(st.integers(0, 2**16))
    return dtype, batch, heads, norm, seed


def tangent_problem(xp, drawn):
    """``(problem, Y0, exact)``: ``F(t, Y) = W1 Y - Y W2 + cos(t) Y`` from the rank-R truncation
    of a full-rank ``A0`` (head spectrum drawn in ``[0.1, 1]``, tail ``1e-10 sigma_R q^{-j}``);
    ``exact(t)`` is the exact solution from ``A0``, which the DLRA solution (from ``Y0``,
    rank ``R``, ``F`` tangent along it) matches up to the tail, ``< 1e-10``."""
    dtype, batch, heads, norm, seed = drawn
    rng = np.random.default_rng(seed)
    cplx = dtype.startswith("complex")
    W1, W2 = random_skew(rng, M, norm, cplx), random_skew(rng, N, norm, cplx)
    tail = 1e-10 * 0.1 * 10.0 ** -np.arange(N - R, dtype=float)
    members = [
        (
            random_orthonormal(rng, M, N, cplx),
            np.diag(np.concatenate([head, tail])),
            random_orthonormal(rng, N, N, cplx),
        )
        for head in heads
    ]
    P, S, Q = (np.stack(f).reshape(*batch, *f[0].shape) for f in zip(*members, strict=True))
    S = S.astype(P.dtype)
    A0 = P @ S @ np.swapaxes(Q, -1, -2).conj()
    dt = getattr(xp, dtype)
    W1x, W2x = xp.asarray(W1, dtype=dt), xp.asarray(W2, dtype=dt)

    def f(t, Y):
        return W1x @ Y - Y @ W2x + math.cos(t) * Y

    def exact(t):
        return math.exp(math.sin(t)) * (scipy.linalg.expm(t * W1) @ A0 @ scipy.linalg.expm(-t * W2))

    factors = (P[..., :R], S[..., :R, :R], Q[..., :R])
    Y0 = lc.LowRank(*(xp.asarray(np.ascontiguousarray(x), dtype=dt) for x in factors))
    return lc.MatrixODE(f), Y0, exact


def slopes_of(xp, drawn, method, tableau):
    problem, Y0, exact = tangent_problem(xp, drawn)
    ref = exact(1.0)
    errs = np.stack(
        [
            np.linalg.norm(
                dense(lc.solve(problem, Y0, (0.0, 1.0), h, method=method, **_kw(tableau)).Y) - ref, axis=(-2, -1)
            )
            / np.linalg.norm(ref, axis=(-2, -1))
            for h in HS
        ],
        axis=-1,
    )
    slopes = np.reshape([loglog_slope(HS, e) for e in errs.reshape(-1, len(HS))], errs.shape[:-1])
    return slopes, errs


@pytest.mark.parametrize(("method", "tableau", "least"), ORDERS)
@scaled(0.05, minimum=1)
@given(drawn=tangent_paths())
@example(drawn=("complex128", (1, 2), ((1.0, 0.6, 0.3, 0.1), (1.0, 0.9, 0.5, 0.2)), 2.0, 7))
def test_fitted_order_reaches_the_order_of_the_method(np_xp, method, tableau, least, drawn):
    """Guards against a lost stage or stage time (midpoint Galerkin update at ``t0``, a
    tableau row with the wrong weights): the slope falls to about 1.  NumPy only (the
    other backends are checked step for step against NumPy below)."""
    slopes, errs = slopes_of(np_xp, drawn, method, tableau)
    assert np.all(slopes >= least), (slopes, errs)


def test_order_test_catches_wrong_rk4_weights(np_xp):
    """Planted bug: the rk4 tableau with its update weights ``b`` replaced by ``(1/4,) * 4``
    (a consistent rule of order 2: ``sum b = 1``, ``b.c = 1/2``, ``b.c^2 = 3/8``), passed
    as a user :class:`~lowrank_core.integrators.ButcherTableau`; the fitted order falls
    below 3.6."""
    drawn = ("float64", (), ((1.0, 0.5, 0.3, 0.1),), 2.0, 3)
    slopes, _ = slopes_of(np_xp, drawn, "rk-bug", "rk4")
    assert slopes >= 3.6
    rk4 = lc.integrators.TABLEAUX["rk4"]
    bad = lc.integrators.ButcherTableau("rk4-equal-weights", rk4.a, (0.25,) * 4, rk4.c, 2)
    slopes, _ = slopes_of(np_xp, drawn, "rk-bug", bad)
    assert slopes < 3.6


@pytest.mark.parametrize("method", ["rk-bug", "projected-rk"])
def test_user_tableau_is_the_named_method(np_xp, method):
    """A user :class:`~lowrank_core.integrators.ButcherTableau` with ssprk3's weights (as
    an ``s x s`` matrix, without the embedded pair) gives the same steps as
    ``tableau="ssprk3"`` to round-off (the same operations: ``1e2 eps``), and has no
    ``embedded_order`` (step doubling).  Guards against a user tableau whose rows, stage
    times or weights are read differently from the named ones."""
    tab = lc.integrators.TABLEAUX["ssprk3"]
    square = [[0.0] * 3, [1.0, 0.0, 0.0], [0.25, 0.25, 0.0]]
    mine = lc.integrators.ButcherTableau("my-ssprk3", square, list(tab.b), list(tab.c), 3)
    assert mine.a == tab.a
    assert lc.METHODS[method](mine).embedded_order is None
    drawn = ("float64", (), ((1.0, 0.5, 0.3, 0.1),), 2.0, 3)
    problem, Y0, _ = tangent_problem(np_xp, drawn)
    named = dense(lc.solve(problem, Y0, (0.0, 0.5), 0.1, method=method, tableau="ssprk3").Y)
    user = dense(lc.solve(problem, Y0, (0.0, 0.5), 0.1, method=method, tableau=mine).Y)
    assert np.linalg.norm(user - named) <= 1e2 * np.finfo(float).eps * np.linalg.norm(named)


# -- robustness ------------------------------------------------------------------------------

ROBUST = [("midpoint-bug", None), ("rk-bug", "heun"), ("rk-bug", "rk4")]
C_ROBUST = 3.0
H_ROBUST = 0.05
RULES = {"heun": lc.integrators.TABLEAUX["heun"], "rk4": lc.integrators.TABLEAUX["rk4"], None: None}


def rule_error(problem, A, tableau, h):
    """Relative error at ``t = 1`` of the method's Runge-Kutta rule on the full matrix: for
    ``F = dA/dt`` a quadrature (the explicit midpoint rule for ``midpoint-bug``)."""
    tab = RULES[tableau]
    b, c = ((1.0,), (0.5,)) if tab is None else (tab.b, tab.c)
    Y, steps = A(0.0), round(1.0 / h)
    for k in range(steps):
        Y = Y + h * sum(w * np.asarray(problem.dA(k * h + ci * h)) for w, ci in zip(b, c, strict=True))
    ref = A(1.0)
    return np.linalg.norm(Y - ref) / np.linalg.norm(ref)


@st.composite
def graded_full_paths(draw):
    """``(q, W norm, seed)`` of a full-rank path with ``sigma_j = q^{-j}``, ``n = 40``."""
    return draw(st.floats(10.0, 100.0)), draw(st.floats(1.0, 5.0)), draw(st.integers(0, 2**16))


def graded_path(drawn, n=40, r=6):
    q, norm, seed = drawn
    rng = np.random.default_rng(seed)
    sigma = q ** -np.arange(n, dtype=float)
    problem, A = full_rank_path(np, "float64", sigma, n, n, random_skew(rng, n, norm), random_skew(rng, n, norm), seed)
    Y0 = lc.LowRank.from_dense(A(0.0), rank=r)
    eps_r = float(np.sqrt(np.sum(sigma[r:] ** 2) / np.sum(sigma**2)))
    return problem, A, Y0, eps_r, sigma[r - 1]


def method_error(problem, A, Y0, method, tableau):
    sol = lc.solve(problem, Y0, (0.0, 1.0), H_ROBUST, method=method, **_kw(tableau))
    ref = A(1.0)
    return np.linalg.norm(dense(sol.Y) - ref) / np.linalg.norm(ref)


@pytest.mark.parametrize(("method", "tableau"), ROBUST)
@scaled(0.1, minimum=1)
@given(drawn=graded_full_paths())
@example(drawn=(100.0, 5.0, 1))  # sigma_r = 1e-10
def test_robust_methods_keep_their_error_as_sigma_r_vanishes(np_xp, method, tableau, drawn):
    """Guards against stage times lost in the stages (RK-BUG stages all evaluated at
    ``t0``): the error then exceeds the rule's bound by far."""
    problem, A, Y0, eps_r, _ = graded_path(drawn)
    bound = C_ROBUST * (rule_error(problem, A, tableau, H_ROBUST) + eps_r)
    assert method_error(problem, A, Y0, method, tableau) <= bound


@example(drawn=(100.0, 1.0, 0))
@scaled(0.1, minimum=1)
@given(drawn=graded_full_paths())
def test_projected_rk_is_not_robust(np_xp, drawn):
    """The contrast: on the same paths (``sigma_r`` from 1e-5 down to 1e-10, ``h = 0.05``)
    projected RK with the rk4 tableau misses the bound the robust methods keep, while
    RK-BUG with the same tableau keeps it."""
    problem, A, Y0, eps_r, _ = graded_path(drawn)
    bound = C_ROBUST * (rule_error(problem, A, "rk4", H_ROBUST) + eps_r)
    assert method_error(problem, A, Y0, "rk-bug", "rk4") <= bound
    assert method_error(problem, A, Y0, "projected-rk", "rk4") > bound


# -- exactness -------------------------------------------------------------------------------

EXACT = [("midpoint-bug", None), ("parallel-bug-2", None), ("rk-bug", "heun"), ("rk-bug", "rk4")]


def affine_path(xp, dtype, seed, m=30, n=24, r1=2, r2=2):
    """``A(t) = X1 (Y1 + t Z1)^H + (X2 + t W2) Y2^H``: rank ``r1 + r2`` for all ``t`` (generic),
    affine in ``t``, with moving column *and* row spaces."""
    rng = np.random.default_rng(seed)
    cplx = dtype.startswith("complex")

    def g(*shape):
        x = rng.standard_normal(shape)
        return x + 1j * rng.standard_normal(shape) if cplx else x

    X1, Y1, Z1, X2, W2, Y2 = g(m, r1), g(n, r1), g(n, r1), g(m, r2), g(m, r2), g(n, r2)
    dt = getattr(xp, dtype)

    def exact(t):
        return X1 @ (Y1 + t * Z1).conj().T + (X2 + t * W2) @ Y2.conj().T

    B = X1 @ Z1.conj().T + W2 @ Y2.conj().T
    problem = lc.MatrixPath(lambda t: xp.asarray(exact(t), dtype=dt), lambda t: xp.asarray(B, dtype=dt))
    return problem, lc.LowRank.from_dense(xp.asarray(exact(0.0), dtype=dt), rank=r1 + r2), exact


@pytest.mark.parametrize(("method", "tableau"), EXACT)
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_exact_on_affine_rank_r_paths(xp, method, tableau, dtype):
    """Exactness: the bases of one step contain ``A(t1) V0`` and ``A(t1)^H U0`` (``B V0`` is
    in ``F V``), so ``Y1 = A(t1)`` up to round-off: ``10 steps * 100 eps`` relative (each step
    a few backward-stable QR/SVD/products of condition ~ ``||A|| / sigma_r`` <= 10 here).
    Guards against a midpoint update started from ``Y_{1/2}`` instead of ``Y0``.  (The
    column space of these paths over all ``t`` has dimension ``r1 + 2 r2 <= 2r``, so the
    half-step bases already contain it: the test checks the update and the increments,
    not the augmentation by ``F_{1/2} V_{1/2}``.)"""
    kw = {"substep": "exact"} if tableau is None else {"tableau": tableau}
    problem, Y0, exact = affine_path(xp, dtype, seed=4)
    sol = lc.solve(problem, Y0, (0.0, 1.0), 0.1, method=method, **kw)
    ref = exact(1.0)
    err = np.linalg.norm(dense(sol.Y) - ref) / np.linalg.norm(ref)
    assert err <= 10 * 100 * 10 * np.finfo(float).eps


def dense_rk(f, Y, h, steps, b, a, c):
    for k in range(steps):
        t = k * h
        ks = []
        for i in range(len(b)):
            Z = Y + h * sum((a[i][j] * ks[j] for j in range(i)), np.zeros_like(Y))
            ks.append(f(t + c[i] * h, Z))
        Y = Y + h * sum(w * kk for w, kk in zip(b, ks, strict=True))
    return Y


FULL = [
    ("rk-bug", {"tableau": "heun"}, "heun"),
    ("rk-bug", {"tableau": "ssprk3"}, "ssprk3"),
    ("rk-bug", {"tableau": "rk4"}, "rk4"),
    ("projected-rk", {"tableau": "rk4"}, "rk4"),
    ("projected-rk", {"tableau": "ssprk3"}, "ssprk3"),
    ("midpoint-bug", {"substep": "euler"}, "midpoint"),
    ("parallel-bug-2", {"substep": "euler"}, "midpoint"),
]


@pytest.mark.parametrize(("method", "kw", "rule"), FULL)
def test_full_rank_is_the_classical_runge_kutta_method(np_xp, method, kw, rule):
    """At full rank (``r = n``) the tangent space is everything and the augmented bases
    contain every stage, so each method is its Runge-Kutta rule on the full matrix (the
    plateau of Riffaud & Nobile vanishes), to ``1e3 eps`` relative (5 steps of a few
    backward-stable factorisations).  Guards against a wrong stage weight or stage time
    that the low-rank error would hide."""
    rng = np.random.default_rng(2)
    m, n = 9, 6
    B = rng.standard_normal((m, n))

    def f(t, Y):
        return math.cos(t) * B - 0.5 * Y @ Y.T @ Y

    Y0 = lc.LowRank.from_dense(rng.standard_normal((m, n)) / 3, rank=n)
    if rule == "midpoint":
        b, a, c = (0.0, 1.0), ((), (0.5,)), (0.0, 0.5)
    else:
        tab = lc.integrators.TABLEAUX[rule]
        b, a, c = tab.b, tab.a, tab.c
    ref = dense_rk(f, Y0.to_dense(), 0.1, 5, b, a, c)
    sol = lc.solve(lc.MatrixODE(f), Y0, (0.0, 0.5), 0.1, method=method, **kw)
    assert np.linalg.norm(dense(sol.Y) - ref) / np.linalg.norm(ref) <= 1e3 * np.finfo(float).eps
