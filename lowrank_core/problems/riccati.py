"""The differential Riccati equation (Ostermann, Piazzola & Walach 2019 setup)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse

from .._lowrank import LowRank
from .._namespace import check_array, conj_transpose, namespace_of
from .._problem import AbstractMatrixODE, _check_against_state, _check_operator
from ._base import ReferenceProblem, _recorded, _stiff_symmetric
from ._common import _IVP, _Backend, _int, _rank, _real, _Reference, _rng, _sym

__all__ = ["RiccatiODE", "riccati"]


class RiccatiODE(AbstractMatrixODE):
    r"""Differential Riccati equation ``dX/dt = A^H X + X A + C - X D X`` (structured).

    Parameters
    ----------
    A : array (..., m, m)
        System matrix (``A^H = A^T`` for real ``A``).
    C : array (..., m, m), LowRank or None
        Constant source; a :class:`~lowrank_core.LowRank` keeps its products ``O(m r k)``.
    D : array (..., m, m) or None
        Quadratic weight; ``None`` means the identity.

    Notes
    -----
    For an evaluation point ``X = U S V^H`` (factors not necessarily orthonormal) the
    products never form an ``m x m`` matrix:

    * ``F V' = A^H U S (V^H V') + U S (V^H A V') + C V' - U S (V^H D U) S (V^H V')``,
    * ``F^H U' = V S^H (U^H A U') + A^H V S^H (U^H U') + C^H U'
      - V S^H (U^H D^H V) S^H (U^H U')``,
    * ``U'^H F V' = (A U')^H U S (V^H V') + (U'^H U) S (V^H A V') + U'^H C V'
      - (U'^H U) S (V^H D U) S (V^H V')``.

    Apart from the products with ``A`` (and ``D`` if given), the cost is
    ``O(m r k + r^2 k)``.  If ``C`` and ``D`` are Hermitian, ``F(X^H) = F(X)^H``.
    """

    def __init__(self, A: Any, C: Any = None, D: Any = None) -> None:
        if A is None:
            msg = "`A` must be an array of shape (..., m, m); got None."
            raise TypeError(msg)
        for name, mat in (("A", A), ("D", D)):
            if mat is not None:
                _check_operator(mat, name, square=True)
        if C is not None and not isinstance(C, LowRank):
            try:
                check_array(C, "C")
            except TypeError:
                msg = (
                    f"`C` must be an array of shape (..., m, m), a LowRank or None; got {type(C).__name__}. "
                    "Convert it with your array library first."
                )
                raise TypeError(msg) from None
            _check_operator(C, "C", square=True)
        self.A, self.C, self.D = A, C, D
        xp = namespace_of(A)
        self._AH = conj_transpose(A, xp)
        self._DH = None if D is None else conj_transpose(D, xp)

    def check_state(self, Y0: LowRank) -> None:
        m, n = Y0.shape[-2:]
        if m != n:
            msg = f"a Riccati equation needs a square state; got shape {Y0.shape}."
            raise ValueError(msg)
        for name, mat in (("A", self.A), ("C", self.C), ("D", self.D)):
            if mat is not None:
                _check_against_state(mat, name, (m, m), Y0)

    def _DU(self, U: Any) -> Any:
        return U if self.D is None else self.D @ U

    def _DHV(self, V: Any) -> Any:
        return V if self._DH is None else self._DH @ V

    def F_V(self, t: float, Y: LowRank, W: Any) -> Any:  # noqa: N802
        xp = Y.xp
        U, S, V = Y.U, Y.S, Y.V
        VH = conj_transpose(V, xp)
        VhW = VH @ W
        S_VhW = S @ VhW
        out = self._AH @ (U @ S_VhW) + U @ (S @ (VH @ (self.A @ W)))
        out = out - U @ (S @ ((VH @ self._DU(U)) @ S_VhW))
        C = self.C
        if C is not None:
            out = out + (C.U @ (C.S @ (conj_transpose(C.V, xp) @ W)) if isinstance(C, LowRank) else C @ W)
        return out

    def FH_U(self, t: float, Y: LowRank, W: Any) -> Any:  # noqa: N802
        xp = Y.xp
        U, S, V = Y.U, Y.S, Y.V
        UH, SH = conj_transpose(U, xp), conj_transpose(S, xp)
        SH_UhW = SH @ (UH @ W)
        out = V @ (SH @ (UH @ (self.A @ W))) + self._AH @ (V @ SH_UhW)
        out = out - V @ (SH @ ((UH @ self._DHV(V)) @ SH_UhW))
        C = self.C
        if C is not None:
            if isinstance(C, LowRank):
                out = out + C.V @ (conj_transpose(C.S, xp) @ (conj_transpose(C.U, xp) @ W))
            else:
                out = out + conj_transpose(C, xp) @ W
        return out

    def UH_F_V(self, t: float, Y: LowRank, W: Any, Z: Any) -> Any:  # noqa: N802
        xp = Y.xp
        U, S, V = Y.U, Y.S, Y.V
        WH, VH = conj_transpose(W, xp), conj_transpose(V, xp)
        WhU = WH @ U
        S_VhZ = S @ (VH @ Z)
        out = conj_transpose(self.A @ W, xp) @ (U @ S_VhZ) + WhU @ (S @ (VH @ (self.A @ Z)))
        out = out - WhU @ (S @ ((VH @ self._DU(U)) @ S_VhZ))
        C = self.C
        if C is not None:
            if isinstance(C, LowRank):
                out = out + (WH @ C.U) @ (C.S @ (conj_transpose(C.V, xp) @ Z))
            else:
                out = out + WH @ (C @ Z)
        return out


def _finite_volume_operator(m: int, lam: float) -> np.ndarray:
    """``d/dx(alpha(x) d/dx) - lam I``, ``alpha = 2 + cos(2 pi x)``, finite volumes on ``m`` nodes."""
    x = np.arange(1, m + 1) / (m + 1)
    h2 = 1.0 / (2 * m + 2)
    a_minus = 2.0 + np.cos(2.0 * np.pi * (x - h2))
    a_plus = 2.0 + np.cos(2.0 * np.pi * (x + h2))
    A = np.diag(-(a_minus + a_plus)) + np.diag(a_plus[:-1], 1) + np.diag(a_minus[1:], -1)
    return (m + 1) ** 2 * A - lam * np.eye(m)


@_recorded
def riccati(
    m: int = 100,
    r: int = 20,
    *,
    t_end: float = 0.1,
    q: int = 9,
    lam: float = 1.0,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> ReferenceProblem:
    r"""Differential Riccati equation (Ostermann, Piazzola & Walach 2019; methods.md §6.5).

    ``dX/dt = A^T X + X A + C - X X`` (``D = I``) with the finite-volume discretisation
    ``A`` of ``d/dx(alpha(x) d/dx) - lam I``, ``alpha(x) = 2 + cos(2 pi x)``, on the nodes
    ``x_i = i / (m + 1)``: row ``i`` of ``A + lam I`` is
    ``(m+1)^2 [alpha(x_i^-), -alpha(x_i^-) - alpha(x_i^+), alpha(x_i^+)]``,
    ``x_i^± = x_i ± 1 / (2m + 2)`` (``A`` is symmetric).  ``C = c^T c`` where the rows of
    ``c`` are ``1``, ``sqrt(2) cos(2 pi k x)`` and ``sqrt(2) sin(2 pi k x)`` for
    ``k = 1..(q-1)/2``.  The initial value ``X_init`` is the solution at ``h0 = 0.01``
    from ``X = 0``; time is then reset to 0.

    Parameters
    ----------
    m : int, default 100
        Number of nodes; the state is ``m x m``.
    r : int, default 20
        Rank of ``Y0`` (the rank-``r`` truncation of ``X_init``, with ``U = V``).
    t_end : float, default 0.1
        Final time.
    q : int, default 9
        Number of rows of ``c`` (odd, ``1 <= q <= m``); ``rank C = q``.
    lam : float, default 1.0
        Shift ``lambda`` of the operator.
    xp, dtype, device : optional
        Target array namespace (default NumPy), dtype (default float64) and device.
    seed : int or numpy.random.Generator, default 0
        Unused: the problem is deterministic (accepted for a uniform signature).

    Returns
    -------
    ReferenceProblem
        ``problem = RiccatiODE(A, C)`` with ``C`` a :class:`~lowrank_core.LowRank`;
        ``reference(t)`` is a Radau solution (rtol = atol = 1e-10) of the full system.

    Notes
    -----
    *Rows of c.* methods.md (after Carrel's code) writes ``k = 0..3``; with ``k = 0`` that
    adds a second constant row ``sqrt(2)`` and a zero row ``sin(0) = 0``, so ``C`` would
    have rank 7, not ``q = 9``.  We use ``k = 1..(q-1)/2``: ``q`` linearly independent
    rows, matching the ``q = 9`` of the paper.

    *Reference.* The problem is stiff (``||A||_2 ~ 1.2e5`` for ``m = 100``), so an explicit
    method such as DOP853 needs tens of thousands of steps.  The reference is computed
    in the eigenbasis ``A = Q_A diag(a) Q_A^T``, where ``X~ = Q_A^T X Q_A`` solves
    ``dX~/dt = (a_i + a_j) X~_ij + C~ - X~ X~``, with ``scipy.integrate.solve_ivp``
    (Radau, rtol = atol = 1e-10) and the diagonal linear part as the Newton Jacobian.
    ``X_init`` is computed the same way.  Explicit RK4 substeps need
    ``dt <~ 2.785 / (2 ||A||_2)``, see ``suggested_dt``.
    """
    m = _int(m, "m", 2)
    r = _rank(r, m, m)
    t_end = _real(t_end, "t_end", positive=True)
    q = _int(q, "q", 1)
    if q % 2 == 0 or q > m:
        msg = f"`q` must be odd with 1 <= q <= m = {m}; got {q}."
        raise ValueError(msg)
    lam = _real(lam, "lam")
    to_xp = _Backend(xp, dtype, device, complex_=False, who="riccati")
    if seed is not None:
        _rng(seed)  # validated for a uniform signature; the problem is deterministic
    h0 = 0.01

    A = _finite_volume_operator(m, lam)
    x = np.arange(1, m + 1) / (m + 1)
    rows = [np.ones(m)]
    for k in range(1, (q - 1) // 2 + 1):
        rows += [math.sqrt(2.0) * np.cos(2 * np.pi * k * x), math.sqrt(2.0) * np.sin(2 * np.pi * k * x)]
    c = np.array(rows)  # (q, m)
    # C = c^T c = Qc (R R^T) Qc^T = (Qc P) diag(s) (Qc P)^T: exact symmetric factors.
    Qc, Rc = np.linalg.qr(c.T)
    s_C, P = np.linalg.eigh(_sym(Rc @ Rc.T))
    order = np.argsort(-s_C)
    s_C, UC = s_C[order], Qc @ P[:, order]
    C = c.T @ c

    a, QA = np.linalg.eigh(A)
    L = a[:, None] + a[None, :]
    Ct = _sym(QA.T @ C @ QA)
    jac = scipy.sparse.diags(L.ravel())

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        X = y.reshape(m, m)
        return (L * X + Ct - X @ X).ravel()

    start = _IVP(rhs, 0.0, np.zeros(m * m), h0, method="Radau", jac=jac)
    Xt_init = start(h0)
    ivp = _IVP(rhs, 0.0, Xt_init, t_end, method="Radau", jac=jac)

    def host(t: float) -> np.ndarray:
        return _sym(QA @ ivp(t).reshape(m, m) @ QA.T)

    ref = _Reference(host, to_xp)
    UC_xp = to_xp(UC)
    problem = RiccatiODE(to_xp(A), LowRank(UC_xp, to_xp(np.diag(s_C)), UC_xp))
    description = (
        f"m = {m}, q = {q} (rows 1, sqrt2 cos(2 pi k x), sqrt2 sin(2 pi k x), k = 1..{(q - 1) // 2}), "
        f"lambda = {lam}, D = I; X_init = solution at 0.01 from X = 0. reference(t): Radau in the eigenbasis "
        "of A, rtol = atol = 1e-10, from the full X_init"
    )
    return _stiff_symmetric("riccati", problem, ref, r, to_xp, float(np.max(np.abs(a))), t_end, description)
