"""Bad input to every public entry point: refused up front, by name, with the documented type.

Guards against two kinds of bug a hostile but realistic user finds at once:

* **unclear errors** -- an ``AttributeError: 'list' object has no attribute 'shape'``, a
  gufunc core-dimension error, NumPy's remapped-shapes message, "could not find a common
  array namespace" without saying which argument, or a message about an internal product
  (``MatrixPath.F_V returned ...``) instead of the user's ``A(t)``;
* **silent coercion** -- ``True`` taken as the integer 1, ``"01"`` taken as the span
  (0, 1), ``"no"`` taken as truthy, ``"0.1"`` parsed as a learning rate, float16 or
  integer data promoted, a rank bound that no matrix of the state's shape can meet.

Each row is ``(id, call, exception type, regex)``.  The type must be exactly the
documented one -- ``TypeError`` for the kind or dtype of an argument, ``ValueError`` for
its shape or value -- and the message must name the argument in backticks (`U`, `rank`,
`dt`, `A(t)`, ...) and what was received.  Every call gets fresh data from
:class:`_Data`; :func:`test_failing_calls_leave_caller_arrays_unchanged` checks that no
failing call modified an array the caller passed in.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from typing import Any

import array_api_strict as xps
import numpy as np
import pytest

import lowrank_core as lc
import lowrank_kernels as lk
from lowrank_core import problems as P
from lowrank_core import training as lt

from ._helpers import to_numpy

HAS_TORCH = importlib.util.find_spec("torch") is not None
if HAS_TORCH:
    import torch

    from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer


class _Data:
    """Fresh, tiny arrays for one call: a 6 x 5 rank-2 state ``Y`` (NumPy float64), its
    float32 twin, a stack of two, a 30 x 20 state, operators, a gradient, and the PyTorch
    copies the cross-library rows pass.  Every array here is compared before and after
    the failing call."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.A = rng.standard_normal((6, 5))
        self.Y = lc.LowRank.from_dense(self.A, 2)
        self.U, self.S, self.V = self.Y.U, self.Y.S, self.Y.V
        self.Y32 = lc.LowRank(*(x.astype(np.float32) for x in (self.U, self.S, self.V)))
        self.Yb = lc.LowRank.from_dense(rng.standard_normal((2, 6, 5)), 2)
        self.Y20 = lc.LowRank.from_dense(rng.standard_normal((30, 20)), 2)
        self.L = -2.0 * np.eye(6) + np.eye(6, k=1) + np.eye(6, k=-1)
        self.R = -2.0 * np.eye(5) + np.eye(5, k=1) + np.eye(5, k=-1)
        self.B = rng.standard_normal((6, 5))
        self.G = rng.standard_normal((6, 5))
        self.opt = lt.ABCPSI(0.1)
        self.param = self.opt.init(self.Y)
        if HAS_TORCH:
            self.tU, self.tS, self.tV = (torch.asarray(x.copy()) for x in (self.U, self.S, self.V))
            self.tY = lc.LowRank(self.tU, self.tS, self.tV)
            self.tL = torch.asarray(self.L.copy())
            self.tR32 = torch.asarray(self.R.astype(np.float32))


def _solve(problem: Any, Y: lc.LowRank, **kwargs: Any) -> Any:
    """A two-step solve of the tiniest kind (the failing checks run before or at step 0)."""
    options = {"method": "ksl", "substep": "euler", **kwargs}
    return lc.solve(problem, Y, (0.0, 1.0), 0.5, **options)


def _minus_y(t: float, Y: Any) -> Any:
    return -Y


def _quadratic() -> Any:
    return P.quadratic_flow(m=6, n=5, r=2)


def _model() -> Any:
    return torch.nn.Sequential(LowRankLinear(3, 4, 1))


ROWS: list[Any] = []


def row(
    id_: str, exc: type[Exception], match: str, call: Callable[[_Data], Any], *, torch_: bool = False, xfail: str = ""
) -> None:
    marks = []
    if torch_:
        marks.append(pytest.mark.skipif(not HAS_TORCH, reason="needs torch"))
    if xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=xfail))
    ROWS.append(pytest.param(call, exc, match, id=id_, marks=marks))


# ============================================================================ LowRank(U, S, V)
# A list, a scalar or None as a factor used to fail with "could not find a common array
# namespace ... list" (no argument named); a torch U with NumPy S, V likewise.
row(
    "lowrank-U-list",
    TypeError,
    r"`U` must be an array.*got builtins\.list",
    lambda d: lc.LowRank(d.U.tolist(), d.S, d.V),
)
row(
    "lowrank-S-list",
    TypeError,
    r"`S` must be an array.*got builtins\.list",
    lambda d: lc.LowRank(d.U, d.S.tolist(), d.V),
)
row("lowrank-V-float", TypeError, r"`V` must be an array.*got builtins\.float", lambda d: lc.LowRank(d.U, d.S, 1.0))
row("lowrank-V-None", TypeError, r"`V` must be an array.*NoneType", lambda d: lc.LowRank(d.U, d.S, None))
row(
    "lowrank-torch-U-numpy-SV",
    TypeError,
    r"`U`, `S`, `V` must come from one array library; `U` is torch\.Tensor, `S` is numpy\.ndarray",
    lambda d: lc.LowRank(d.tU, d.S, d.V),
    torch_=True,
)
row(
    "lowrank-strict-S",
    TypeError,
    r"`S` is array_api_strict",
    lambda d: lc.LowRank(d.U, xps.asarray(d.S), d.V),
)
# float16 factors were silently accepted (and failed deep in a QR); integers promoted.
row(
    "lowrank-float16",
    TypeError,
    r"`U` must have dtype float32, float64, complex64 or complex128; got float16",
    lambda d: lc.LowRank(*(x.astype(np.float16) for x in (d.U, d.S, d.V))),
)
row(
    "lowrank-int64",
    TypeError,
    r"`U` must have dtype float32, float64, complex64 or complex128; got int64",
    lambda d: lc.LowRank(*(np.eye(*x.shape, dtype=np.int64) for x in (d.U, d.S, d.V))),
)
# Meta tensors failed inside torch (`Tensor.item()`).
row(
    "lowrank-meta",
    TypeError,
    r"`U` is a PyTorch meta tensor",
    lambda d: lc.LowRank(*(torch.empty(x.shape, dtype=torch.float64, device="meta") for x in (d.U, d.S, d.V))),
    torch_=True,
)
row(
    "lowrank-check-str",
    TypeError,
    r"`check` must be True or False; got 'yes'",
    lambda d: lc.LowRank(d.U, d.S, d.V, check="yes"),
)
row(
    "lowrank-U-1d",
    ValueError,
    r"`U` must have at least 2 dimensions; got shape \(6,\)",
    lambda d: lc.LowRank(d.U[:, 0], d.S, d.V),
)
row(
    "lowrank-mixed-dtypes",
    TypeError,
    r"`U`, `S` and `V` must share one dtype; got float64, float32, float64",
    lambda d: lc.LowRank(d.U, d.S.astype(np.float32), d.V),
)
row(
    "lowrank-not-orthonormal",
    ValueError,
    r"`U` must have orthonormal columns",
    lambda d: lc.LowRank(2.0 * d.U, d.S, d.V),
)
row(
    "lowrank-nan",
    ValueError,
    r"`U`, `S` and `V` must be finite",
    lambda d: lc.LowRank(d.U, np.full_like(d.S, np.nan), d.V),
)
row(
    "lowrank-shapes",
    ValueError,
    r"factor shapes do not match: `U`.*got U \(6, 2\), S \(1, 1\)",
    lambda d: lc.LowRank(d.U, d.S[:1, :1], d.V),
)

# ============================================================================ LowRank.from_dense
# NaN/Inf raised LinAlgBreakdown ("SVD did not converge"); rank=True gave rank 1.
row("from_dense-nan", ValueError, r"`A` must be finite; got NaN", lambda d: lc.LowRank.from_dense(d.A * np.nan, 1))
row(
    "from_dense-inf",
    ValueError,
    r"`A` must be finite; got NaN or Inf",
    lambda d: lc.LowRank.from_dense(np.where(d.A > 0, np.inf, d.A), 1),
)
row(
    "from_dense-rank-True",
    TypeError,
    r"`rank` must be an integer; got True",
    lambda d: lc.LowRank.from_dense(d.A, True),
)
row(
    "from_dense-rank-float",
    TypeError,
    r"`rank` must be an integer; got 1\.5",
    lambda d: lc.LowRank.from_dense(d.A, 1.5),
)
row("from_dense-rank-str", TypeError, r"`rank` must be an integer; got '2'", lambda d: lc.LowRank.from_dense(d.A, "2"))
row("from_dense-rank-0", ValueError, r"`rank` must satisfy 1 <= rank.*got 0", lambda d: lc.LowRank.from_dense(d.A, 0))
row("from_dense-rank-too-big", ValueError, r"`rank` must satisfy.*= 5.*got 6", lambda d: lc.LowRank.from_dense(d.A, 6))
row(
    "from_dense-float16",
    TypeError,
    r"`A` must have dtype float32.*got float16",
    lambda d: lc.LowRank.from_dense(d.A.astype(np.float16), 1),
)
row(
    "from_dense-int",
    TypeError,
    r"`A` must have dtype float32.*got int64",
    lambda d: lc.LowRank.from_dense(np.ones((3, 3), np.int64), 1),
)
row("from_dense-list", TypeError, r"`A` must be an array.*list", lambda d: lc.LowRank.from_dense(d.A.tolist(), 1))
row(
    "from_dense-1d",
    ValueError,
    r"`A` must have at least 2 dimensions.*got shape \(5,\)",
    lambda d: lc.LowRank.from_dense(d.A[0], 1),
)

# ============================================================================ solve
# A string span ran as (0, 1); dt=1e-300 died with a bare MemoryError building the grid;
# check_finite="no" was truthy; min_rank above min(m, n) ran.
_f = lc.MatrixODE(_minus_y)
row(
    "solve-t_span-str",
    TypeError,
    r"`t_span` must be a pair of real numbers.*got '01'",
    lambda d: lc.solve(_f, d.Y, "01", 0.5),
)
row(
    "solve-t_span-bool",
    TypeError,
    r"`t_span` must be a pair of real numbers.*got \(True, 1\.0\)",
    lambda d: lc.solve(_f, d.Y, (True, 1.0), 0.5),
)
row(
    "solve-t_span-reversed",
    ValueError,
    r"`t_span` must satisfy t0 < t1.*got \(1\.0, 0\.0\)",
    lambda d: lc.solve(_f, d.Y, (1.0, 0.0), 0.5),
)
row(
    "solve-t_span-inf",
    ValueError,
    r"`t_span` must satisfy.*finite.*inf",
    lambda d: lc.solve(_f, d.Y, (0.0, math.inf), 0.5),
)
row(
    "solve-dt-tiny",
    ValueError,
    r"`dt` = 1e-300 would take 1e\+300 steps",
    lambda d: lc.solve(_f, d.Y, (0.0, 1.0), 1e-300),
)
row(
    "solve-dt-zero",
    ValueError,
    r"`dt` must be positive and finite; got 0\.0",
    lambda d: lc.solve(_f, d.Y, (0.0, 1.0), 0.0),
)
row(
    "solve-dt-nan",
    ValueError,
    r"`dt` must be positive and finite; got nan",
    lambda d: lc.solve(_f, d.Y, (0.0, 1.0), math.nan),
)
row(
    "solve-dt-str",
    TypeError,
    r"`dt` must be a positive real number; got '0\.1'",
    lambda d: lc.solve(_f, d.Y, (0.0, 1.0), "0.1"),
)
row(
    "solve-dt-bool",
    TypeError,
    r"`dt` must be a positive real number; got True",
    lambda d: lc.solve(_f, d.Y, (0.0, 1.0), True),
)
row(
    "solve-check_finite-str",
    TypeError,
    r"`check_finite` must be True or False; got 'no'",
    lambda d: _solve(_f, d.Y, check_finite="no"),
)
row(
    "solve-check_finite-int",
    TypeError,
    r"`check_finite` must be True or False; got 1",
    lambda d: _solve(_f, d.Y, check_finite=1),
)
row(
    "solve-min_rank-above-shape",
    ValueError,
    r"`min_rank` = 30 exceeds min\(m, n\) = 20",
    lambda d: lc.solve(_f, d.Y20, (0.0, 1.0), 0.5, method="abc-psi", min_rank=30),
)
row("solve-Y0-dense", TypeError, r"`Y0` must be a LowRank; got ndarray", lambda d: lc.solve(_f, d.A, (0.0, 1.0), 0.5))
row(
    "solve-problem-function",
    TypeError,
    r"`problem` must be a MatrixODE.*got function",
    lambda d: lc.solve(_minus_y, d.Y, (0.0, 1.0), 0.5),
)
row(
    "solve-save_every-bool",
    TypeError,
    r"`save_every` must be an integer; got True",
    lambda d: _solve(_f, d.Y, save_every=True),
)
row("solve-save_every-0", ValueError, r"`save_every` must be >= 1; got 0", lambda d: _solve(_f, d.Y, save_every=0))
row("solve-method-int", TypeError, r"`method` must be a name.*got int", lambda d: _solve(_f, d.Y, method=3))
row("solve-method-unknown", ValueError, r"unknown `method` 'rk45'", lambda d: _solve(_f, d.Y, method="rk45"))
row("solve-substep-int", TypeError, r"`substep` must be a name.*got int", lambda d: _solve(_f, d.Y, substep=3))
row(
    "solve-on_member_failure",
    ValueError,
    r"`on_member_failure` must be one of.*got 'skip'",
    lambda d: _solve(_f, d.Y, on_member_failure="skip"),
)
row(
    "solve-min_rank-bool",
    TypeError,
    r"`min_rank` must be an integer; got True",
    lambda d: _solve(_f, d.Y, method="abc-psi", min_rank=True),
)
row(
    "solve-max_rank-float",
    TypeError,
    r"`max_rank` must be an integer; got 2\.5",
    lambda d: _solve(_f, d.Y, method="abc-psi", max_rank=2.5),
)
row(
    "solve-tol-negative",
    ValueError,
    r"`tol` must be a finite non-negative float; got -1\.0",
    lambda d: _solve(_f, d.Y, method="abc-psi", tol=-1.0),
)
row(
    "solve-tol-bool",
    TypeError,
    r"`tol` must be .*; got True",
    lambda d: _solve(_f, d.Y, method="abc-psi", tol=True),
)
row(
    "solve-tol-str",
    TypeError,
    r"`tol` must be .*; got '1e-3'",
    lambda d: _solve(_f, d.Y, method="abc-psi", tol="1e-3"),
)
row(
    "solve-linalg-int",
    TypeError,
    r"`linalg` must be one of .*got 3",
    lambda d: _solve(_f, d.Y, linalg=3),
)
# The integrator classes, configured directly, check the same way.
row(
    "integrator-min_rank-bool",
    TypeError,
    r"`min_rank` must be an integer; got True",
    lambda d: lc.ABCPSI(min_rank=True),
)
row("integrator-substep-int", TypeError, r"`substep` must be a name.*got int", lambda d: lc.KSL(substep=3))
# A user Butcher tableau (tableau=) is checked when it is built: shapes, c = a 1, order conditions.
_RK4 = lc.integrators.TABLEAUX["rk4"]
row(
    "integrator-tableau-int",
    TypeError,
    r"`tableau` of method 'rk-bug' must be a name.*ButcherTableau; got 3",
    lambda d: lc.RKBUG(3),
)
row(
    "tableau-order-conditions",
    ValueError,
    r"invalid `tableau` 'quarter': `b` does not satisfy the order conditions of order 4.*\[\. \.\].*0\.375, not 1/3",
    lambda d: lc.integrators.ButcherTableau("quarter", _RK4.a, (0.25,) * 4, _RK4.c, 4),
)
row(  # consistent (sum b = 1) but only first order: the condition of the declared order itself fails
    "tableau-top-order-condition",
    ValueError,
    r"invalid `tableau` 'x': `b` does not satisfy the order conditions of order 2.*\[\.\] \(2 vertices.*0\.25, not 1/2",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (0.75, 0.25), (0.0, 1.0), 2),
)
row(
    "tableau-c-not-row-sums",
    ValueError,
    r"invalid `tableau` 'x': stage time `c\[3\]` = 0\.9 differs from the row sum of `a\[3\]`",
    lambda d: lc.integrators.ButcherTableau("x", _RK4.a, _RK4.b, (0.0, 0.5, 0.5, 0.9), 4),
)
row(
    "tableau-a-rows",
    ValueError,
    r"invalid `tableau` 'x': row `a\[1\]` has 2 weights",
    lambda d: lc.integrators.ButcherTableau("x", ((), (0.5, 0.5)), (0.5, 0.5), (0.0, 1.0), 2),
)
row(
    "tableau-a-upper",
    ValueError,
    r"invalid `tableau` 'x': `a\[0\]\[1\]` = 1\.0 is on or above the diagonal",
    lambda d: lc.integrators.ButcherTableau("x", ((0.0, 1.0), (1.0, 0.0)), (0.5, 0.5), (0.0, 1.0), 2),
)
row(
    "tableau-b-length",
    ValueError,
    r"invalid `tableau` 'x': `a` has 2 rows for the 3 stages of `b`",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (0.5, 0.5, 0.0), (0.0, 1.0), 2),
)
row(
    "tableau-order-above-stages",
    ValueError,
    r"invalid `tableau` 'x': `order` must be between 1 and the number of stages 2.*got 3",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), 3),
)
row(
    "tableau-weight-complex",
    TypeError,
    r"invalid `tableau` 'x': `b\[0\]` must be a real number; got 1j",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (1j, 0.5), (0.0, 1.0), 2),
)
row(
    "tableau-weight-nan",
    ValueError,
    r"invalid `tableau` 'x': `b\[1\]` is nan",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (0.5, math.nan), (0.0, 1.0), 2),
)
row(
    "tableau-order-float",
    TypeError,
    r"invalid `tableau` 'x': `order` must be an integer; got 2\.0",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), 2.0),
)
row(
    "tableau-b_hat-length",
    ValueError,
    r"invalid `tableau` 'x': `b_hat` has 4 weights; give 2 .* or 3",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), 2, (1.0, 0.0, 0.0, 0.0), 1),
)
row(
    "tableau-b_hat-order",
    ValueError,
    r"invalid `tableau` 'x': `b_hat` does not satisfy the order conditions of order 1.*0\.5, not 1/1",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), 2, (0.5, 0.0), 1),
)
row(
    "tableau-order_hat-without-b_hat",
    ValueError,
    r"invalid `tableau` 'x': `order_hat` is 1 without `b_hat`",
    lambda d: lc.integrators.ButcherTableau("x", ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), 2, (), 1),
)

# ============================================================================ MatrixODE
# f returning a list/None/float gave "AttributeError: 'list' object has no attribute
# 'shape'"; a torch result for a NumPy state was reported as a dtype problem.
row("matrixode-f-not-callable", TypeError, r"`f` must be callable.*got ndarray", lambda d: lc.MatrixODE(d.A))
row(
    "matrixode-f-returns-list",
    TypeError,
    r"`f` must return an array.*got builtins\.list at t = 0",
    lambda d: _solve(lc.MatrixODE(lambda t, Y: Y.tolist()), d.Y),
)
row(
    "matrixode-f-returns-None",
    TypeError,
    r"`f` must return an array.*got builtins\.NoneType",
    lambda d: _solve(lc.MatrixODE(lambda t, Y: None), d.Y),
)
row(
    "matrixode-f-returns-float",
    TypeError,
    r"`f` must return an array.*got builtins\.float",
    lambda d: _solve(lc.MatrixODE(lambda t, Y: 1.0), d.Y),
)
row(
    "matrixode-f-returns-torch",
    TypeError,
    r"`f` must return an array of the state's array library \(array_api_compat\.numpy\).*got torch\.Tensor",
    lambda d: _solve(lc.MatrixODE(lambda t, Y: torch.asarray(Y)), d.Y),
    torch_=True,
)
row(
    "matrixode-f-wrong-shape",
    ValueError,
    r"`f` returned an array of shape \(6, 3\) at t = 0; it must return the state's shape \(6, 5\)",
    lambda d: _solve(lc.MatrixODE(lambda t, Y: Y[:, :3]), d.Y),
)
row(
    "matrixode-f-float32",
    TypeError,
    r"`f` returned dtype float32 for a state of dtype float64",
    lambda d: _solve(lc.MatrixODE(lambda t, Y: Y.astype(np.float32)), d.Y),
)
row(
    "matrixode-f-int",
    TypeError,
    r"`f` returned dtype int64 for a state of dtype float64",
    lambda d: _solve(lc.MatrixODE(lambda t, Y: np.zeros(Y.shape, np.int64)), d.Y),
)

# ============================================================================ MatrixPath
# A wrong-shaped A(t) gave a gufunc core-dimension error or "MatrixPath.F_V returned
# shape ..."; a float64 A(t) for a float32 state was reported against MatrixPath.F_V.
row("path-A-not-callable", TypeError, r"`A` must be callable.*got ndarray", lambda d: lc.MatrixPath(d.A))
row(
    "path-dA-not-callable",
    TypeError,
    r"`dA` must be callable.*got ndarray",
    lambda d: lc.MatrixPath(lambda t: d.A, d.A),
)
row(
    "path-A(t)-wrong-shape",
    ValueError,
    r"`A\(t\)` must return an array of shape \(6, 5\) \(the state's shape\); got shape \(5, 5\) at t = 0",
    lambda d: _solve(lc.MatrixPath(lambda t: np.ones((5, 5))), d.Y, substep="exact"),
)
row(
    "path-A(t)-list",
    TypeError,
    r"`A\(t\)` must return an array.*got builtins\.list",
    lambda d: _solve(lc.MatrixPath(lambda t: [[1.0]]), d.Y, substep="exact"),
)
row(
    "path-A(t)-float64-for-float32-state",
    TypeError,
    r"`A\(t\)` must return arrays whose products with the state keep the state's dtype float32; got dtype float64",
    lambda d: _solve(lc.MatrixPath(lambda t: (1 + t) * d.A), d.Y32, substep="exact"),
)
row(
    "path-A(t)-batch-for-single-state",
    ValueError,
    r"`A\(t\)` must return an array of shape \(6, 5\).*got shape \(3, 6, 5\)",
    lambda d: _solve(lc.MatrixPath(lambda t: np.ones((3, 6, 5))), d.Y, substep="exact"),
)
row(
    "path-A(t)-batch-not-broadcasting",
    ValueError,
    r"`A\(t\)` must return an array of shape \(\.\.\., 6, 5\) with a batch shape that broadcasts to the "
    r"state's \(2,\); got shape \(3, 6, 5\)",
    lambda d: _solve(lc.MatrixPath(lambda t: np.ones((3, 6, 5))), d.Yb, substep="exact"),
)
row(
    "path-A(t)-torch",
    TypeError,
    r"`A\(t\)` must return an array of the state's array library.*got torch\.Tensor",
    lambda d: _solve(lc.MatrixPath(lambda t: torch.ones(6, 5, dtype=torch.float64)), d.Y, substep="exact"),
    torch_=True,
)
row(
    "path-dA(t)-wrong-shape",
    ValueError,
    r"`dA\(t\)` returned an array of shape \(5, 5\) at t = 0",
    lambda d: _solve(lc.MatrixPath(lambda t: d.A, lambda t: np.ones((5, 5))), d.Y),
)
row(
    "path-no-dA-for-euler",
    ValueError,
    r"no derivative `dA`",
    lambda d: _solve(lc.MatrixPath(lambda t: d.A), d.Y),
)

# ============================================================================ LinearMatrixODE
# A list as `A`/`B`/`terms`/`C` gave "could not find a common array namespace ... list";
# `terms=5` gave "'int' object is not iterable"; an integer operator was promoted.
row(
    "linear-A-list",
    TypeError,
    r"`A` must be an array.*got builtins\.list",
    lambda d: lc.LinearMatrixODE(d.L.tolist(), d.R),
)
row(
    "linear-B-list",
    TypeError,
    r"`B` must be an array.*got builtins\.list",
    lambda d: lc.LinearMatrixODE(d.L, d.R.tolist()),
)
row(
    "linear-terms-A-list",
    TypeError,
    r"`terms\[0\]\[0\]` must be an array.*got builtins\.list",
    lambda d: lc.LinearMatrixODE(d.L, d.R, terms=[(d.L.tolist(), d.R)]),
)
row(
    "linear-terms-B-None",
    TypeError,
    r"`terms\[0\]\[1\]` must be an array.*NoneType",
    lambda d: lc.LinearMatrixODE(d.L, d.R, terms=[(d.L, None)]),
)
row(
    "linear-terms-int",
    TypeError,
    r"`terms` must be a sequence of pairs.*got builtins\.int",
    lambda d: lc.LinearMatrixODE(d.L, d.R, terms=5),
)
row(
    "linear-terms-item-int",
    TypeError,
    r"`terms\[0\]` must be a pair \(A_j, B_j\) of arrays; got builtins\.int",
    lambda d: lc.LinearMatrixODE(d.L, d.R, terms=[5]),
)
row(
    "linear-terms-triple",
    ValueError,
    r"`terms\[0\]` must be a pair \(A_j, B_j\); got 3 items",
    lambda d: lc.LinearMatrixODE(d.L, d.R, terms=[(d.L, d.R, d.L)]),
)
row(
    "linear-C-list",
    TypeError,
    r"`C` must be an array.*got builtins\.list",
    lambda d: lc.LinearMatrixODE(d.L, d.R, d.B.tolist()),
)
row(
    "linear-A-int",
    TypeError,
    r"`A` must have dtype float32, float64, complex64 or complex128; got int64",
    lambda d: lc.LinearMatrixODE(np.eye(6, dtype=np.int64), d.R),
)
row(
    "linear-B-float16",
    TypeError,
    r"`B` must have dtype float32.*got float16",
    lambda d: lc.LinearMatrixODE(d.L, d.R.astype(np.float16)),
)
row(
    "linear-A-1d",
    ValueError,
    r"`A` must be a matrix or a stack.*got shape \(6,\)",
    lambda d: lc.LinearMatrixODE(d.L[0], d.R),
)
row(
    "linear-A-not-square", ValueError, r"`A` must be square.*got shape \(6, 5\)", lambda d: lc.LinearMatrixODE(d.B, d.R)
)
row("linear-all-None", ValueError, r"`A`, `B` and `C` are all None", lambda d: lc.LinearMatrixODE(None, None))
row(
    "linear-B-wrong-size",
    ValueError,
    r"`B` must have shape \(\.\.\., 5, 5\) for a state of shape \(6, 5\); got \(6, 6\)",
    lambda d: _solve(lc.LinearMatrixODE(d.L, d.L), d.Y),
)
# Operators from another library than the state: name both.
row(
    "linear-A-torch-for-numpy-state",
    TypeError,
    r"`A`, `Y0` must come from one array library; `A` is torch\.Tensor, `Y0` is numpy\.ndarray",
    lambda d: _solve(lc.LinearMatrixODE(d.tL, d.R), d.Y),
    torch_=True,
)
row(
    "linear-A-strict-for-numpy-state",
    TypeError,
    r"`A`, `Y0` must come from one array library; `A` is array_api_strict",
    lambda d: _solve(lc.LinearMatrixODE(xps.asarray(d.L), d.R), d.Y),
)
# Dtype mismatches used to be reported as "LinearMatrixODE.F_V returned ... dtype".
row(
    "linear-A-float64-for-float32-state",
    TypeError,
    r"`A` must have a dtype whose products with the state keep the state's dtype float32; got float64",
    lambda d: _solve(lc.LinearMatrixODE(d.L, None), d.Y32),
)
row(
    "linear-terms-B-float64-for-float32-state",
    TypeError,
    r"`terms\[0\]\[1\]` must have a dtype whose products.*float32; got float64",
    lambda d: _solve(lc.LinearMatrixODE(None, None, terms=[(d.L.astype(np.float32), d.R)]), d.Y32),
)
row(
    "linear-B-torch-float32-for-float64-state",
    TypeError,
    r"`B` must have a dtype whose products with the state keep the state's dtype torch\.float64; got torch\.float32",
    lambda d: _solve(lc.LinearMatrixODE(d.tL, d.tR32), d.tY),
    torch_=True,
)
row(
    "linear-A-complex-for-real-state",
    TypeError,
    r"`A` must be real for a real state \(float64\); got complex dtype complex128",
    lambda d: _solve(lc.LinearMatrixODE(1j * d.L, None), d.Y),
)
# Batch shapes that do not broadcast gave NumPy's remapped-shapes message.
row(
    "linear-A-batch-for-single-state",
    ValueError,
    r"`A` must have no batch dimensions.*got shape \(3, 6, 6\)",
    lambda d: _solve(lc.LinearMatrixODE(np.stack([d.L] * 3), d.R), d.Y),
)
row(
    "linear-A-batch-not-broadcasting",
    ValueError,
    r"`A` must have a batch shape that broadcasts to the state's batch shape \(2,\); got shape \(3, 6, 6\)",
    lambda d: _solve(lc.LinearMatrixODE(np.stack([d.L] * 3), d.R), d.Yb),
)
row(
    "linear-C-wrong-shape",
    ValueError,
    r"`C` must have shape \(\.\.\., 6, 5\) for a state of shape \(6, 5\); got \(5, 5\)",
    lambda d: _solve(lc.LinearMatrixODE(d.L, d.R, np.ones((5, 5))), d.Y),
)
row(
    "linear-C-lowrank-wrong-shape",
    ValueError,
    r"`C` must have shape \(\.\.\., 6, 5\).*got \(30, 20\)",
    lambda d: _solve(lc.LinearMatrixODE(d.L, d.R, d.Y20), d.Y),
)
row(
    "linear-C-torch-for-numpy-state",
    TypeError,
    r"`C`, `Y0` must come from one array library; `C` is torch\.Tensor",
    lambda d: _solve(lc.LinearMatrixODE(d.L, d.R, torch.ones(6, 5, dtype=torch.float64)), d.Y),
    torch_=True,
)
# A wrong-shaped C(t) gave "operands could not be broadcast"; a list, AttributeError.
row(
    "linear-C(t)-wrong-shape",
    ValueError,
    r"`C\(t\)` must return an array of shape \(6, 5\) \(the state's shape\); got shape \(5, 5\) at t = 0",
    lambda d: _solve(lc.LinearMatrixODE(d.L, d.R, lambda t: np.ones((5, 5))), d.Y),
)
row(
    "linear-C(t)-list",
    TypeError,
    r"`C\(t\)` must return an array or a LowRank.*got builtins\.list",
    lambda d: _solve(lc.LinearMatrixODE(d.L, d.R, lambda t: [[1.0]]), d.Y),
)
row(
    "linear-C(t)-float64-for-float32-state",
    TypeError,
    r"`C\(t\)` must return arrays whose products.*float32; got dtype float64",
    lambda d: _solve(lc.LinearMatrixODE(None, None, lambda t: d.B), d.Y32),
)

# ============================================================================ problems
# Booleans were integers, "1" a time, True a singular value.
row(
    "problems-N-bool",
    TypeError,
    r"`N` must be an integer \(not a bool\); got True",
    lambda d: P.prescribed_path(N=True, r=1),
)
row("problems-N-zero", ValueError, r"`N` must be at least 1; got 0", lambda d: P.prescribed_path(N=0, r=1))
row(
    "problems-r-too-big",
    ValueError,
    r"`r` must satisfy 1 <= r <= min\(m, n\) = 5; got 6",
    lambda d: P.prescribed_path(N=5, r=6),
)
row(
    "problems-size-float",
    TypeError,
    r"`size` must be an integer \(not a bool\); got 2\.5",
    lambda d: P.heat_lyapunov(size=2.5, r=1),
)
row(
    "problems-schrodinger-real-dtype",
    TypeError,
    r"`dtype` must be complex64 or complex128; got <class 'numpy\.float64'>",
    lambda d: P.schrodinger(N=8, r=2, dtype=np.float64),
)
row(
    "problems-dtype-float16",
    TypeError,
    r"`dtype` must be float32, float64, complex64 or complex128; got <class 'numpy\.float16'>",
    lambda d: P.quadratic_flow(m=6, n=5, r=2, dtype=np.float16),
)
row(
    "problems-dtype-int",
    TypeError,
    r"`dtype` must be a floating dtype.*int64",
    lambda d: P.quadratic_flow(m=6, n=5, r=2, dtype=np.int64),
)
row(
    "problems-spectrum-bool",
    TypeError,
    r"`spectrum` must be a sequence of non-negative real numbers; got \[True, 0\.5\]",
    lambda d: P.quadratic_flow(m=6, n=5, r=2, spectrum=[True, 0.5]),
)
row(
    "problems-spectrum-str",
    TypeError,
    r"`spectrum` must be a sequence.*got '1,2'",
    lambda d: P.quadratic_flow(m=6, n=5, r=2, spectrum="1,2"),
)
row(
    "problems-t_end-str",
    TypeError,
    r"`t_end` must be a real number.*got '1'",
    lambda d: P.quadratic_flow(m=6, n=5, r=2, t_end="1"),
)
row(
    "problems-init_scale-zero",
    ValueError,
    r"`init_scale` must be positive; got 0\.0",
    lambda d: P.quadratic_flow(m=6, n=5, r=2, init_scale=0),
)
row(
    "problems-q-bool",
    TypeError,
    r"`q` must be an integer \(not a bool\); got True",
    lambda d: P.riccati(m=10, r=2, q=True),
)
row("problems-lam-bool", TypeError, r"`lam` must be a real number.*got True", lambda d: P.riccati(m=10, r=2, lam=True))
row(
    "problems-seed-bool",
    TypeError,
    r"`seed` must be an integer \(not a bool\); got True",
    lambda d: P.riccati(m=10, r=2, seed=True),
)
row(
    "problems-seed-float",
    TypeError,
    r"`seed` must be an integer \(not a bool\); got 1\.5",
    lambda d: P.quadratic_flow(m=6, n=5, r=2, seed=1.5),
)
row(
    "problems-xp-str",
    TypeError,
    r"`xp` must be an array-API namespace.*got 'numpy'",
    lambda d: P.quadratic_flow(m=6, n=5, r=2, xp="numpy"),
)
row("problems-get-int", TypeError, r"`name` must be a string.*got int", lambda d: P.get(3))
row("problems-get-unknown", ValueError, r"`name` must be one of \[.*'heat'.*\]; got 'nope'", lambda d: P.get("nope"))
row("riccati-A-list", TypeError, r"`A` must be an array.*got builtins\.list", lambda d: P.RiccatiODE(d.L.tolist()))
row(
    "riccati-D-list",
    TypeError,
    r"`D` must be an array.*got builtins\.list",
    lambda d: P.RiccatiODE(d.L, None, d.L.tolist()),
)
row("riccati-A-not-square", ValueError, r"`A` must be square.*got shape \(6, 5\)", lambda d: P.RiccatiODE(d.B))
row(
    "riccati-A-torch-for-numpy-state",
    TypeError,
    r"`A`, `Y0` must come from one array library; `A` is torch\.Tensor",
    lambda d: P.RiccatiODE(d.tL).check_state(lc.LowRank.from_dense(d.L, 2)),
    torch_=True,
)
row(
    "problem-error-Y-list",
    TypeError,
    r"`Y` must be a LowRank or an array.*got builtins\.list",
    lambda d: _quadratic().error([[1.0]], 0.0),
)
row(
    "problem-error-Y-shape",
    ValueError,
    r"`Y` must have shape \(6, 5\).*got \(5, 5\)",
    lambda d: _quadratic().error(np.zeros((5, 5)), 0.0),
)
row(
    "problem-error-t-str", TypeError, r"`t` must be a real number; got '0\.5'", lambda d: _quadratic().error(d.Y, "0.5")
)
row(
    "problem-best_error-r-bool",
    TypeError,
    r"`r` must be an integer \(not a bool\); got True",
    lambda d: _quadratic().best_error(0.0, True),
)
row("problem-reference-t-nan", ValueError, r"`t` must be finite; got nan", lambda d: _quadratic().reference(math.nan))
row(
    "problem-loss-Y-torch",
    TypeError,
    r"`Y`, `the problem's arrays` must come from one array library; `Y` is torch\.Tensor",
    lambda d: _quadratic().loss(torch.zeros(6, 5, dtype=torch.float64)),
    torch_=True,
)

# ============================================================================ training: optimizers
# lr=True and lr="0.1" were taken as 1.0 and 0.1; beta=True failed as a value, not a kind.
row(
    "opt-lr-bool",
    TypeError,
    r"`lr` must be a real number \(not a bool or a string\); got True",
    lambda d: lt.ABCPSI(True),
)
row("opt-lr-str", TypeError, r"`lr` must be a real number.*got '0\.1'", lambda d: lt.PSI("0.1"))
row("opt-lr-zero", ValueError, r"`lr` must be positive; got 0", lambda d: lt.BCPSI(0))
row("opt-lr-nan", ValueError, r"`lr` must be finite; got nan", lambda d: lt.RABUG(math.nan))
row(
    "opt-basis_update_every-bool",
    TypeError,
    r"`basis_update_every` must be an integer \(not a bool\); got True",
    lambda d: lt.ABCPSI(0.1, basis_update_every=True),
)
row(
    "opt-basis_update_every-0",
    ValueError,
    r"`basis_update_every` must be at least 1; got 0",
    lambda d: lt.PSI(0.1, basis_update_every=0),
)
row("opt-tol-bool", TypeError, r"`tol` must be a real number.*got True", lambda d: lt.ABCPSI(0.1, tol=True))
row("opt-rtol-str", TypeError, r"`rtol` must be a real number.*got '0\.1'", lambda d: lt.ParallelBUG(0.1, rtol="0.1"))
row("opt-tol-negative", ValueError, r"`tol` must be non-negative \(or None\); got -1", lambda d: lt.RABUG(0.1, tol=-1))
row("opt-min_rank-bool", TypeError, r"`min_rank` must be an integer.*got True", lambda d: lt.ABCPSI(0.1, min_rank=True))
row("opt-max_rank-zero", ValueError, r"`max_rank` must be at least 1; got 0", lambda d: lt.ABCPSI(0.1, max_rank=0))
row("opt-beta-bool", TypeError, r"`beta` must be a real number.*got True", lambda d: lt.HeavyBall(0.1, beta=True))
row("opt-beta-one", ValueError, r"`beta` must lie in \[0, 1\); got 1\.0", lambda d: lt.HeavyBall(0.1, beta=1.0))
row(
    "opt-momentum_transport-int",
    TypeError,
    r"`momentum_transport` must be one of \('project', 'reset'\) \(a string\); got 3",
    lambda d: lt.HeavyBall(0.1, momentum_transport=3),
)
row(
    "opt-momentum_transport-unknown",
    ValueError,
    r"`momentum_transport` must be one of.*got 'keep'",
    lambda d: lt.HeavyBall(0.1, momentum_transport="keep"),
)
row(
    "opt-betas-float",
    TypeError,
    r"`betas` must be a pair \(beta1, beta2\).*got 0\.9",
    lambda d: lt.Adam(0.1, betas=0.9),
)
row(
    "opt-betas-triple",
    ValueError,
    r"`betas` must be a pair \(beta1, beta2\); got 3 values",
    lambda d: lt.Adam(0.1, betas=(0.9, 0.9, 0.9)),
)
row(
    "opt-betas-bool",
    TypeError,
    r"`betas\[1\]` must be a real number.*got True",
    lambda d: lt.Adam(0.1, betas=(0.9, True)),
)
row("opt-eps-zero", ValueError, r"`eps` must be positive; got 0", lambda d: lt.Adam(0.1, eps=0))
row(
    "opt-second_moment-None",
    TypeError,
    r"`second_moment` must be one of.*got None",
    lambda d: lt.Adam(0.1, second_moment=None),
)
row("opt-init-dense", TypeError, r"`Y` must be a LowRank; got ndarray", lambda d: d.opt.init(d.A))
row("opt-step-LowRank", TypeError, r"`param` must be a LowRankParam.*got LowRank", lambda d: d.opt.step(d.Y, grad=d.G))
row(
    "opt-step-grad-list",
    TypeError,
    r"`grad` must be an array of the parameter's library \(array_api_compat\.numpy\); got builtins\.list",
    lambda d: d.opt.step(d.param, grad=d.G.tolist()),
)
row(
    "opt-step-grad-float32",
    TypeError,
    r"`grad` must have the parameter's dtype float64; got float32",
    lambda d: d.opt.step(d.param, grad=d.G.astype(np.float32)),
)
row(
    "opt-step-grad-torch",
    TypeError,
    r"`grad` must come from the same array library as the parameter.*got torch\.Tensor",
    lambda d: d.opt.step(d.param, grad=torch.asarray(d.G)),
    torch_=True,
)
row(
    "opt-step-grad-shape",
    ValueError,
    r"`grad` must have shape \(6, 5\).*got \(5, 6\)",
    lambda d: d.opt.step(d.param, grad=d.G.T),
)
row(
    "opt-step-counters-int",
    TypeError,
    r"`counters` must be a lowrank_core\.Counters or None; got int",
    lambda d: d.opt.step(d.param, grad=d.G, counters=5),
)
row(
    "opt-step-grad-and-grad_L",
    ValueError,
    r"pass either the full gradient `grad` or the factor gradients",
    lambda d: d.opt.step(d.param, grad=d.G, grad_L=d.G),
)

# ============================================================================ training: fit
# steps=True ran one step; steps=-1 ran none, silently.
_fit_grad = lambda W: W  # noqa: E731
row(
    "fit-steps-bool",
    TypeError,
    r"`steps` must be an integer \(not a bool\); got True",
    lambda d: lt.fit(d.opt, d.Y, _fit_grad, steps=True),
)
row(
    "fit-steps-negative",
    ValueError,
    r"`steps` must be at least 0; got -1",
    lambda d: lt.fit(d.opt, d.Y, _fit_grad, steps=-1),
)
row(
    "fit-optimizer-str",
    TypeError,
    r"`optimizer` must be a low-rank optimizer.*got str",
    lambda d: lt.fit("abc-psi", d.Y, _fit_grad, steps=1),
)
row(
    "fit-start-dense",
    TypeError,
    r"`start` must be a LowRank or a LowRankParam; got ndarray",
    lambda d: lt.fit(d.opt, d.A, _fit_grad, steps=1),
)
row(
    "fit-grad-array",
    TypeError,
    r"`grad` must be callable as grad\(W\); got ndarray",
    lambda d: lt.fit(d.opt, d.Y, d.G, steps=1),
)
row(
    "fit-target-bool",
    TypeError,
    r"`target` must be a real number.*got True",
    lambda d: lt.fit(d.opt, d.Y, _fit_grad, steps=1, target=True),
)
row(
    "fit-target-without-loss",
    ValueError,
    r"`target` needs `loss`",
    lambda d: lt.fit(d.opt, d.Y, _fit_grad, steps=1, target=0.1),
)

# ============================================================================ training: torch layer and optimizer
# in_features=True built a 1-input layer; float16 failed inside torch's SVD.
row(
    "layer-in_features-bool",
    TypeError,
    r"`in_features` must be an integer \(not a bool\); got True",
    lambda d: LowRankLinear(True, 4, 1),
    torch_=True,
)
row(
    "layer-out_features-zero",
    ValueError,
    r"`out_features` must be at least 1; got 0",
    lambda d: LowRankLinear(3, 0, 1),
    torch_=True,
)
row(
    "layer-rank-too-big",
    ValueError,
    r"`rank` must satisfy 1 <= rank <= min\(in_features, out_features\) = 3; got 5",
    lambda d: LowRankLinear(3, 4, 5),
    torch_=True,
)
row(
    "layer-rank-bool",
    TypeError,
    r"`rank` must be an integer \(not a bool\); got True",
    lambda d: LowRankLinear(3, 4, True),
    torch_=True,
)
row(
    "layer-dtype-int64",
    TypeError,
    r"`dtype` must be torch\.float32, float64, bfloat16 or float16; got torch\.int64",
    lambda d: LowRankLinear(3, 4, 1, dtype=torch.int64),
    torch_=True,
)
row(
    "layer-max_rank-below-rank",
    ValueError,
    r"`max_rank` must satisfy rank <= max_rank <= min\(in_features, out_features\), here 2 <= max_rank <= 3; got 1",
    lambda d: LowRankLinear(3, 4, 2, max_rank=1),
    torch_=True,
)
row(
    "layer-capacity-below-max_rank",
    ValueError,
    r"`capacity` must be at least max_rank = 2 \(columns of U and V\); got 1",
    lambda d: LowRankLinear(3, 4, 2, capacity=1),
    torch_=True,
)
row(
    "torchopt-abc-psi-on-small-capacity",
    ValueError,
    r"`params`: abc-psi keeps augmented bases.*capacity \(2, 2\) < \(4, 2\)",
    lambda d: LowRankOptimizer(torch.nn.Sequential(LowRankLinear(5, 4, 2, capacity=2)), "abc-psi", 0.1),
    torch_=True,
)
row(
    "layer-dtype-numpy",
    TypeError,
    r"`dtype` must be a torch\.dtype.*got <class 'numpy\.float32'>",
    lambda d: LowRankLinear(3, 4, 1, dtype=np.float32),
    torch_=True,
)
row(
    "layer-bias-str",
    TypeError,
    r"`bias` must be True or False; got 'yes'",
    lambda d: LowRankLinear(3, 4, 1, bias="yes"),
    torch_=True,
)
row(
    "layer-from_linear-module",
    TypeError,
    r"`linear` must be a torch\.nn\.Linear; got ReLU",
    lambda d: LowRankLinear.from_linear(torch.nn.ReLU(), 1),
    torch_=True,
)
row(
    "torchopt-batch_layers-str",
    TypeError,
    r"`batch_layers` must be True or False; got 'no'",
    lambda d: LowRankOptimizer(_model(), "abc-psi", 0.1, batch_layers="no"),
    torch_=True,
)
row(
    "torchopt-lr-bool",
    TypeError,
    r"`lr` must be a real number.*got True",
    lambda d: LowRankOptimizer(_model(), "abc-psi", True),
    torch_=True,
)
row(
    "torchopt-counters-int",
    TypeError,
    r"`counters` must be a lowrank_core\.Counters or None; got int",
    lambda d: LowRankOptimizer(_model(), "abc-psi", 0.1, counters=5),
    torch_=True,
)
row(
    "torchopt-method-unknown",
    ValueError,
    r"unknown `method` 'sgd'",
    lambda d: LowRankOptimizer(_model(), "sgd", 0.1),
    torch_=True,
)
row(
    "torchopt-params-str",
    TypeError,
    r"`params` must be an iterable of Parameters.*got str",
    lambda d: LowRankOptimizer("model", "abc-psi", 0.1),
    torch_=True,
)
row(
    "torchopt-lr-negative",
    ValueError,
    r"`lr` must be non-negative; got -0\.1",
    lambda d: LowRankOptimizer(_model(), "abc-psi", -0.1),
    torch_=True,
)
row(
    "torchopt-group-lr-negative",
    ValueError,
    r"`lr` must be non-negative; got -1",
    lambda d: LowRankOptimizer([{"params": _model().parameters(), "lr": -1}], "abc-psi", 0.1),
    torch_=True,
)
row(
    "torchopt-weight_decay-negative",
    ValueError,
    r"`weight_decay` must be non-negative.*got -0\.5",
    lambda d: LowRankOptimizer(_model(), "adam", 0.1, weight_decay=-0.5),
    torch_=True,
)
row(
    "torchopt-momentum-without-momentum",
    ValueError,
    r"`momentum` is not an option of 'abc-psi'",
    lambda d: LowRankOptimizer(_model(), "abc-psi", 0.1, momentum=0.9),
    torch_=True,
)
row(
    "torchopt-group-part-of-a-layer",
    ValueError,
    r"`params`: a param group holds some factors of a LowRankLinear but not \['S'\]",
    lambda d: (lambda m: LowRankOptimizer([m[0].dK, m[0].dL], "abc-psi", 0.1))(_model()),
    torch_=True,
)

# ============================================================================ lowrank_kernels
# Messages said "argument 'a'"; qr_algorithm(5) raised "'int' object is not subscriptable",
# qr_algorithm((3,)) an IndexError, svd_algorithm(..., int64) answered silently.
row(
    "kernels-qr-list",
    TypeError,
    r"batched_qr: `a` must be a numpy\.ndarray.*got builtins\.list",
    lambda d: lk.batched_qr(d.A.tolist()),
)
row(
    "kernels-qr-torch",
    TypeError,
    r"batched_qr: `a` must be a numpy\.ndarray.*got torch\.Tensor",
    lambda d: lk.batched_qr(d.tU),
    torch_=True,
)
row(
    "kernels-qr-int",
    TypeError,
    r"batched_qr: `a` must have dtype float32.*got dtype int64",
    lambda d: lk.batched_qr(np.ones((4, 2), np.int64)),
)
row(
    "kernels-qr-float16",
    TypeError,
    r"`a` must have dtype.*got dtype float16",
    lambda d: lk.batched_qr(d.A.astype(np.float16)),
)
row(
    "kernels-qr-1d",
    ValueError,
    r"`a` must have at least 2 dimensions.*got shape \(5,\)",
    lambda d: lk.batched_qr(d.A[0]),
)
row(
    "kernels-qr-wide",
    ValueError,
    r"`a` must have m >= k for the thin QR; got shape \(5, 6\)",
    lambda d: lk.batched_qr(d.A.T.copy()),
)
row(
    "kernels-qr-algorithm-int",
    TypeError,
    r"`algorithm` must be one of.*\(a string\); got 3",
    lambda d: lk.batched_qr(d.A, algorithm=3),
)
row(
    "kernels-qr-algorithm-unknown",
    ValueError,
    r"`algorithm` must be one of.*got 'gram-schmidt'",
    lambda d: lk.batched_qr(d.A, algorithm="gram-schmidt"),
)
row(
    "kernels-svd-list",
    TypeError,
    r"batched_svd: `a` must be a numpy\.ndarray.*list",
    lambda d: lk.batched_svd(d.A.tolist()),
)
row(
    "kernels-svd-bool",
    TypeError,
    r"batched_svd: `a` must have dtype.*got dtype bool",
    lambda d: lk.batched_svd(d.A > 0),
)
row(
    "kernels-svd-algorithm-None",
    TypeError,
    r"`algorithm` must be one of.*got None",
    lambda d: lk.batched_svd(d.A, algorithm=None),
)
row(
    "kernels-svd-out-int",
    TypeError,
    r"`out` must be a tuple \(U, s, V\).*got int",
    lambda d: lk.batched_svd(d.A, out=5),
)
row(
    "kernels-matmul-b-list",
    TypeError,
    r"batched_matmul: `b` must be a numpy\.ndarray; got builtins\.list",
    lambda d: lk.batched_matmul(d.A, d.R.tolist()),
)
row(
    "kernels-matmul-dtypes",
    TypeError,
    r"`a` and `b` must have the same dtype; got float64 and float32",
    lambda d: lk.batched_matmul(d.A, d.R.astype(np.float32)),
)
row(
    "kernels-matmul-shapes",
    ValueError,
    r"`a` and `b` must have shapes \(\.\.\., m, n\) and \(\.\.\., n, p\).*got \(6, 5\) and \(6, 6\)",
    lambda d: lk.batched_matmul(d.A, d.L),
)
row(
    "kernels-matmul-int",
    TypeError,
    r"`a` must have dtype.*got dtype int64",
    lambda d: lk.batched_matmul(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64)),
)
row(
    "kernels-qr_algorithm-int",
    TypeError,
    r"qr_algorithm: `shape` must be a tuple of ints.*got 5",
    lambda d: lk.qr_algorithm(5),
)
row(
    "kernels-qr_algorithm-1d",
    ValueError,
    r"qr_algorithm: `shape` must have at least 2 entries.*got \(3,\)",
    lambda d: lk.qr_algorithm((3,)),
)
row(
    "kernels-qr_algorithm-bool",
    TypeError,
    r"`shape` must be a tuple of ints.*got \(4, True\)",
    lambda d: lk.qr_algorithm((4, True)),
)
row(
    "kernels-qr_algorithm-negative",
    ValueError,
    r"`shape` must not have negative sizes; got \(4, -1\)",
    lambda d: lk.qr_algorithm((4, -1)),
)
row(
    "kernels-qr_algorithm-dtype",
    TypeError,
    r"qr_algorithm: `dtype` must be float32.*got 'foo'",
    lambda d: lk.qr_algorithm((4, 3), "foo"),
)
row(
    "kernels-svd_algorithm-int",
    TypeError,
    r"svd_algorithm: `dtype` must be float32.*int64",
    lambda d: lk.svd_algorithm((4, 3), np.int64),
)
row(
    "kernels-svd_algorithm-None",
    TypeError,
    r"svd_algorithm: `dtype` must be float32.*got None",
    lambda d: lk.svd_algorithm((4, 3), None),
)
row(
    "kernels-matmul_uses_kernel-int",
    TypeError,
    r"`a_shape` must be a tuple of ints.*got 5",
    lambda d: lk.matmul_uses_kernel(5, (3, 3)),
)
row(
    "kernels-matmul_uses_kernel-mismatch",
    ValueError,
    r"`a_shape` and `b_shape` must be \(\.\.\., m, n\) and \(\.\.\., n, p\).*got \(2, 3, 4\) and \(2, 5, 6\)",
    lambda d: lk.matmul_uses_kernel((2, 3, 4), (2, 5, 6)),
)
row(
    "kernels-matmul_uses_kernel-1d",
    ValueError,
    r"`b_shape` must have at least 2 entries.*got \(4,\)",
    lambda d: lk.matmul_uses_kernel((3, 4), (4,)),
)


# ============================================================================ the tests
def test_table_is_large_and_every_row_names_an_argument():
    """At least 90 cases, and every expected message names its argument in backticks."""
    assert len(ROWS) >= 90
    ids = [p.id for p in ROWS]
    assert len(ids) == len(set(ids))
    for p in ROWS:
        assert "`" in p.values[2], p.id


@pytest.mark.parametrize(("call", "exc", "match"), ROWS)
def test_bad_input_is_refused_by_name(call, exc, match):
    """The call raises exactly the documented type, and the message names the argument
    and what was received."""
    d = _Data()
    with pytest.raises(exc, match=match) as info:
        call(d)
    assert type(info.value) is exc, f"{type(info.value).__name__}: {info.value}"


def _arrays(d: _Data) -> dict[str, Any]:
    """Every array the caller holds in ``d`` (LowRank factors and optimizer state included)."""
    out: dict[str, Any] = {}
    for name, value in vars(d).items():
        if isinstance(value, lc.LowRank):
            out.update({f"{name}.{f}": getattr(value, f) for f in ("U", "S", "V")})
        elif isinstance(value, lt.LowRankParam):
            out.update({f"{name}.{f}": getattr(value, f) for f in ("U", "S", "V", "dK", "dL")})
            out.update({f"{name}.state[{k}]": v for k, v in value.state.items() if hasattr(v, "shape")})
        elif hasattr(value, "shape") and hasattr(value, "dtype"):
            out[name] = value
    return out


def test_failing_calls_leave_caller_arrays_unchanged():
    """No failing call modifies an array it was given: each row runs on fresh data whose
    arrays are copied before and compared (values, dtype, shape) after."""
    checked = 0
    for p in ROWS:
        call, exc, _ = p.values
        if any(m.name == "skipif" and m.args and m.args[0] for m in p.marks):
            continue
        d = _Data()
        before = {name: (to_numpy(x).copy(), x.dtype, tuple(x.shape)) for name, x in _arrays(d).items()}
        try:
            call(d)
        except Exception:  # the type is test_bad_input_is_refused_by_name's business
            pass
        after = _arrays(d)
        for name, (values, dtype, shape) in before.items():
            x = after[name]
            assert (x.dtype, tuple(x.shape)) == (dtype, shape), f"{p.id}: {name}"
            np.testing.assert_array_equal(to_numpy(x), values, err_msg=f"{p.id}: {name} was modified")
        checked += 1
    assert checked >= 90
