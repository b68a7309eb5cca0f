"""Non-robust reference methods that the benchmarks and tests contrast the library with.

* :func:`naive_factor_euler` -- explicit Euler on the gauged factor ODEs of the DLRA
  (Koch & Lubich 2007), whose ``S^{-1}`` makes the step size shrink with the smallest
  singular value: the weakness the robust integrators of the library remove
  (methods.md §4.2; ``bench/robustness.py``, ``tests/theory/test_robustness.py``).
* :func:`factor_heavy_ball` -- heavy ball on the raw factors of ``W = A C^T``, the
  baseline of the geometric heavy ball of :mod:`lowrank_core.training` on an
  ill-conditioned target (methods.md §3.3; ``bench/training.py``,
  ``tests/training/test_optimizers.py``).

Both are NumPy-only, unbatched reference implementations: short enough to read against
their equations, and kept in one place so that a published figure and the test that
asserts the same property use the same contrast method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._checks import integer, real_number

__all__ = ["factor_heavy_ball", "naive_factor_euler"]

# A loss above this counts as divergence in factor_heavy_ball.
_DIVERGED_LOSS = 1e12


def _check_matrix(x: Any, name: str, *, real: bool) -> None:
    """``x`` a 2-D NumPy array of a floating (``real``) or inexact dtype, else TypeError/ValueError naming it."""
    if not isinstance(x, np.ndarray):
        msg = f"`{name}` must be a NumPy array (numpy.ndarray); got {type(x).__name__}. Convert it with numpy.asarray."
        raise TypeError(msg)
    kind = np.floating if real else np.inexact
    if not np.issubdtype(x.dtype, kind):
        what = "a real floating" if real else "a real or complex floating"
        msg = f"`{name}` must have {what} dtype; got {x.dtype}. Convert it with `{name}.astype(numpy.float64)`."
        raise TypeError(msg)
    if x.ndim != 2:
        msg = f"`{name}` must be a 2-D array (a matrix); got shape {x.shape}."
        raise ValueError(msg)


def _check_shape(x: np.ndarray, name: str, shape: tuple[int, int], meaning: str) -> None:
    """``x.shape == shape`` else ValueError naming ``x`` and what the shape follows from."""
    if x.shape != shape:
        msg = f"`{name}` must have shape {shape} ({meaning}); got {x.shape}."
        raise ValueError(msg)


def naive_factor_euler(
    dA: Callable[[float], np.ndarray],
    U: np.ndarray,
    S: np.ndarray,
    V: np.ndarray,
    t_span: tuple[float, float],
    h: float,
) -> np.ndarray:
    r"""Explicit Euler on the gauged factor ODEs of the DLRA of ``dY/dt = dA(t)``; the dense ``Y(t1)``.

    With ``Y = U S V^H`` and the gauge ``U^H dU = 0``, ``V^H dV = 0``, the DLRA of
    ``dY/dt = F(t)`` is (Koch & Lubich 2007)

    .. math::

        \dot S = U^H F V, \qquad
        \dot U = (I - U U^H)\, F V\, S^{-1}, \qquad
        \dot V = (I - V V^H)\, F^H U\, S^{-H},

    and one step of explicit Euler moves all three factors from the values at ``t_k``:
    ``U_{k+1} = U_k + h dU_k``, ``S_{k+1} = S_k + h dS_k``, ``V_{k+1} = V_k + h dV_k``
    with ``F = dA(t_k)``, ``t_k = t0 + k h``.  ``S^{-1}`` is the pseudo-inverse
    (``numpy.linalg.pinv``).  Once the step size exceeds the smallest singular value
    of ``S`` the ``S^{-1}`` term blows the factors up: this is the non-robust contrast to
    the integrators of the library (methods.md §4.2).  The bases are not re-orthonormalised.

    NumPy only, unbatched; the inputs are not modified.

    Parameters
    ----------
    dA : callable
        ``dA(t)`` returns ``F(t)``, a NumPy array of shape ``(m, n)``: the right-hand side
        of ``dY/dt = F(t)`` (independent of ``Y``, as for the prescribed paths of
        :mod:`lowrank_core.problems`, whose ``problem.dA`` fits here).
    U : numpy.ndarray, shape (m, r)
        Initial left basis, orthonormal columns.
    S : numpy.ndarray, shape (r, r)
        Initial core.
    V : numpy.ndarray, shape (n, r)
        Initial right basis, orthonormal columns.
    t_span : (float, float)
        ``(t0, t1)`` with ``t0 < t1``.
    h : float
        Step size, positive.  The method takes ``N = round((t1 - t0) / h)`` steps (at
        least one) and returns the state at ``t0 + N h``, which differs from ``t1`` when
        ``h`` does not divide the interval.

    Returns
    -------
    numpy.ndarray, shape (m, n)
        ``U_N S_N V_N^H``; every entry is ``+inf`` once ``S`` stopped being finite (the
        blow-up), instead of the NaN that ``inf - inf`` would give.

    Raises
    ------
    TypeError
        ``U``, ``S``, ``V`` not NumPy arrays of a floating dtype; ``dA`` not callable or
        returning something that is not a NumPy array; ``t_span`` or ``h`` not real numbers.
    ValueError
        Factor shapes that do not fit ``(m, r)``, ``(r, r)``, ``(n, r)``; ``dA(t)`` not of
        shape ``(m, n)``; ``t_span`` not finite with ``t0 < t1``; ``h`` not positive and
        finite, or so large that no step fits in ``t_span``.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank_core.bench import naive_factor_euler
    >>> U, V = np.eye(4, 1), np.eye(3, 1)
    >>> Y = naive_factor_euler(lambda t: np.outer(U[:, 0], V[:, 0]), U, np.eye(1), V, (0.0, 1.0), 0.25)
    >>> float(Y[0, 0])  # S grows from 1 by dS = 1 over unit time, U and V stay put
    2.0
    """
    if not callable(dA):
        msg = f"`dA` must be a callable t -> F(t) (a NumPy array of shape (m, n)); got {type(dA).__name__}."
        raise TypeError(msg)
    for x, name in ((U, "U"), (S, "S"), (V, "V")):
        _check_matrix(x, name, real=False)
    m, r = U.shape
    n = V.shape[0]
    _check_shape(S, "S", (r, r), "r x r with r = U.shape[1]")
    _check_shape(V, "V", (n, r), "n x r with r = U.shape[1]")
    if isinstance(t_span, (str, bytes)) or not hasattr(t_span, "__len__") or len(t_span) != 2:
        msg = f"`t_span` must be a pair of real numbers (t0, t1); got {t_span!r}."
        raise TypeError(msg)
    t0, t1 = (real_number(v, "t_span") for v in t_span)
    if t1 <= t0:
        msg = f"`t_span` must satisfy t0 < t1; got ({t0}, {t1})."
        raise ValueError(msg)
    h = real_number(h, "h", positive=True)
    steps = int(round((t1 - t0) / h))
    if steps < 1:
        msg = f"`h` must be at most about the length of `t_span` ({t1 - t0}) so that one step fits; got {h}."
        raise ValueError(msg)
    with np.errstate(all="ignore"):
        for k in range(steps):
            F = dA(t0 + k * h)
            if not isinstance(F, np.ndarray):
                msg = f"`dA` must return a NumPy array of shape ({m}, {n}); it returned {type(F).__name__}."
                raise TypeError(msg)
            if F.shape != (m, n):
                msg = f"`dA` must return an array of shape ({m}, {n}) (U.shape[0], V.shape[0]); got {F.shape}."
                raise ValueError(msg)
            FV, FhU = F @ V, F.conj().T @ U
            Sinv = np.linalg.pinv(S)
            dS = U.conj().T @ FV
            dU = (FV - U @ (U.conj().T @ FV)) @ Sinv
            dV = (FhU - V @ (V.conj().T @ FhU)) @ Sinv.conj().T
            U, S, V = U + h * dU, S + h * dS, V + h * dV
            if not np.all(np.isfinite(S)):
                return np.full((m, n), np.inf)
    return U @ S @ V.conj().T


def factor_heavy_ball(
    B: np.ndarray,
    A0: np.ndarray,
    C0: np.ndarray,
    *,
    lr: float,
    beta: float,
    steps: int,
    target: float,
) -> tuple[int, list[float]]:
    r"""Heavy ball on the raw factors of ``W = A C^T`` for ``L(W) = ||W - B||_F^2 / 2``.

    The baseline of the geometric heavy ball (:class:`lowrank_core.training.HeavyBall`,
    methods.md §3.3): the same momentum method, but on the factors ``A`` and ``C``
    directly, whose gradients are ``grad_A = G C`` and ``grad_C = G^T A`` with
    ``G = A C^T - B``.  With ``M^A_0 = 0``, ``M^C_0 = 0``, each step is

    .. math::

        G_k = A_k C_k^T - B, \qquad
        M^A_{k+1} = \beta M^A_k + G_k C_k, \qquad
        M^C_{k+1} = \beta M^C_k + G_k^T A_k,

        A_{k+1} = A_k - \mathrm{lr}\, M^A_{k+1}, \qquad
        C_{k+1} = C_k - \mathrm{lr}\, M^C_{k+1}

    (both gradients taken at the old iterate).  On an ill-conditioned target the stable
    step sizes are bounded by the largest singular value while the convergence is set by
    the smallest, which makes it slow.  NumPy only, real; the inputs are not modified.

    Parameters
    ----------
    B : numpy.ndarray, shape (m, n)
        The target, real floating.
    A0 : numpy.ndarray, shape (m, r)
        Initial left factor.
    C0 : numpy.ndarray, shape (n, r)
        Initial right factor (``W_0 = A0 @ C0.T``).
    lr : float
        Step size, positive.
    beta : float
        Momentum factor, ``0 <= beta < 1`` (0: gradient descent).
    steps : int
        Most steps to take, a positive integer.
    target : float
        Stop at the first iterate with ``L < target`` (non-negative; 0 never stops early).

    Returns
    -------
    steps_taken : int
        The first ``k`` with ``L(A_k C_k^T) < target``; ``steps`` when no iterate below
        ``steps`` reached it, or when the loss diverged (not finite or above
        ``1e12``).
    losses : list of float
        ``L(A_k C_k^T)`` for ``k = 0, 1, ...`` up to the iterate that stopped the run:
        ``steps_taken + 1`` values when the target was reached, up to ``steps`` otherwise
        (the last one the diverged loss if the run diverged).

    Raises
    ------
    TypeError
        ``B``, ``A0``, ``C0`` not NumPy arrays of a real floating dtype; ``lr``, ``beta``,
        ``target`` not real numbers; ``steps`` not an integer.
    ValueError
        Shapes that do not fit ``(m, n)``, ``(m, r)``, ``(n, r)``; ``lr`` not positive,
        ``beta`` outside ``[0, 1)``, ``steps`` below 1, ``target`` negative or not finite.

    Examples
    --------
    >>> import numpy as np
    >>> from lowrank_core.bench import factor_heavy_ball
    >>> B = np.diag([2.0, 1.0])
    >>> k, losses = factor_heavy_ball(B, np.eye(2), np.eye(2), lr=0.1, beta=0.5, steps=500, target=1e-10)
    >>> k < 500 and losses[-1] < 1e-10
    True
    """
    for x, name in ((B, "B"), (A0, "A0"), (C0, "C0")):
        _check_matrix(x, name, real=True)
    m, n = B.shape
    r = A0.shape[1]
    _check_shape(A0, "A0", (m, r), "m x r with m = B.shape[0]")
    _check_shape(C0, "C0", (n, r), "n x r with n = B.shape[1], r = A0.shape[1]")
    lr = real_number(lr, "lr", positive=True)
    beta = real_number(beta, "beta", nonnegative=True)
    if beta >= 1:
        msg = f"`beta` must satisfy 0 <= beta < 1 (momentum factor); got {beta}."
        raise ValueError(msg)
    steps = integer(steps, "steps", minimum=1)
    target = real_number(target, "target", nonnegative=True)
    A, C = A0.copy(), C0.copy()
    MA, MC = np.zeros_like(A), np.zeros_like(C)
    losses: list[float] = []
    for k in range(steps):
        G = A @ C.T - B
        loss = 0.5 * float(np.sum(G * G))
        losses.append(loss)
        if loss < target:
            return k, losses
        if not np.isfinite(loss) or loss > _DIVERGED_LOSS:
            return steps, losses
        MA, MC = beta * MA + G @ C, beta * MC + G.T @ A
        A, C = A - lr * MA, C - lr * MC
    return steps, losses
