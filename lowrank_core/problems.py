r"""Reference problems of dynamical low-rank approximation, with their solutions.

Every factory returns a :class:`ReferenceProblem`: the matrix ODE (an
:class:`~lowrank_core.AbstractMatrixODE`), a rank-``r`` initial value ``Y0``, the time
span, and the exact or high-accuracy reference solution ``reference(t)`` of the *full*
(not rank-constrained) problem.  The demo, the benchmarks and the tests share them.

===================  ======================================================  ===========
name                 problem                                                 reference
===================  ======================================================  ===========
``prescribed-path``  ``A(t) = e^{tW1} e^t D e^{tW2}``, ``dY/dt = dA/dt``     closed form
``heat``             ``dX/dt = A X + X A + C`` (2-D heat, Dirichlet)         closed form
``schrodinger``      ``dY/dt = -i (D Y + Y D^T + V Y V^T)``                  DOP853
``riccati``          ``dX/dt = A^T X + X A + C - X X``                       Radau
``quadratic``        ``dW/dt = B - W`` (gradient flow of ``||W - B||^2/2``)  closed form
===================  ======================================================  ===========

All data are generated in NumPy/SciPy on the host from a seed, then moved once to the
requested array namespace ``xp``, dtype and device.  Reference solutions are cached
per instance, so repeated calls ``reference(t)`` at the same ``t`` cost nothing.  The
arrays returned by ``reference(t)`` and the problem's callables are shared between
calls: do not modify them in place.

See ``methods.md`` §6 for the sources of the parameters.

Examples
--------
>>> import lowrank_core as lc
>>> from lowrank_core import problems
>>> p = problems.get("quadratic", m=30, n=20, r=3)
>>> sol = lc.solve(p.problem, p.Y0, p.t_span, dt=0.1, method="ksl")
>>> p.error(sol.Y, p.t_span[1]) < 2 * p.best_error(p.t_span[1], 3)
True
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
import scipy.sparse
from scipy.integrate import solve_ivp

from ._checks import integer, real_number
from ._lowrank import LowRank
from ._namespace import check_array, conj_transpose, namespace_of, namespace_of_named
from ._problem import (
    AbstractMatrixODE,
    LinearMatrixODE,
    MatrixODE,
    MatrixPath,
    _check_against_state,
    _check_operator,
)

__all__ = [
    "PROBLEMS",
    "QuadraticProblem",
    "ReferenceProblem",
    "RiccatiODE",
    "SchrodingerProblem",
    "get",
    "heat_lyapunov",
    "prescribed_path",
    "quadratic_flow",
    "riccati",
    "schrodinger",
]

#: Tolerances of the numerical reference solutions (rtol = atol).
REFERENCE_TOL = 1e-10

# RK4 is stable on the negative real axis for h |lambda| <= 2.785.
_RK4_REAL_STABILITY = 2.785


# ====================================================================== helpers
class _LRU:
    """A small least-recently-used cache keyed on hashable values."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        try:
            value = self._data[key]
        except KeyError:
            value = compute()
            self._data[key] = value
            if len(self._data) > self.maxsize:
                self._data.popitem(last=False)
            return value
        self._data.move_to_end(key)
        return value


class _Backend:
    """Target namespace, dtype and device; moves host (NumPy) data there."""

    _HOST = {(False, 32): np.float32, (False, 64): np.float64, (True, 32): np.complex64, (True, 64): np.complex128}

    def __init__(self, xp: Any, dtype: Any, device: Any, *, complex_: bool, who: str) -> None:
        if xp is None:
            import array_api_compat.numpy as xp_numpy

            xp = xp_numpy
        bad = (
            f"`xp` must be an array-API namespace (such as array_api_compat.numpy, "
            f"array_api_strict or array_api_compat.torch) or None; got {xp!r}."
        )
        if not callable(getattr(xp, "asarray", None)):
            raise TypeError(bad)
        try:
            # Normalise a raw library (numpy, torch, cupy) to its array-API namespace.
            xp = array_api_compat.array_namespace(xp.asarray(0.0))
        except TypeError:
            pass
        if not callable(getattr(xp, "isdtype", None)):
            raise TypeError(bad)
        if dtype is None:
            dtype = xp.complex128 if complex_ else xp.float64
        try:
            is_real = bool(xp.isdtype(dtype, "real floating"))
            is_cplx = bool(xp.isdtype(dtype, "complex floating"))
        except (TypeError, ValueError, AttributeError):
            is_real = is_cplx = False
        if not (is_real or is_cplx):
            msg = (
                f"`dtype` must be a floating dtype of the namespace `xp` (float32, float64, "
                f"complex64 or complex128); got {dtype!r}."
            )
            raise TypeError(msg)
        if complex_ and not is_cplx:
            msg = f"{who} is a complex problem: `dtype` must be complex64 or complex128; got {dtype!r}."
            raise TypeError(msg)
        bits = int(xp.finfo(dtype).bits)
        if (is_cplx, bits) not in self._HOST:
            msg = f"`dtype` must be float32, float64, complex64 or complex128; got {dtype!r}."
            raise TypeError(msg)
        self.xp, self.dtype, self.device = xp, dtype, device
        self.complex = is_cplx
        self.host_dtype = self._HOST[(is_cplx, bits)]

    def __call__(self, a: np.ndarray) -> Any:
        """Copy a host NumPy array (our own data) to the target namespace and dtype."""
        host = np.ascontiguousarray(a, dtype=self.host_dtype)
        kwargs = {} if self.device is None else {"device": self.device}
        out = self.xp.asarray(host, copy=True, **kwargs)
        if out.dtype != self.dtype:
            out = self.xp.astype(out, self.dtype)
        return out


def _time(t: Any, name: str = "t") -> float:
    if isinstance(t, (bool, np.bool_)):
        msg = f"`{name}` must be a real number, not a bool; got {t!r}."
        raise TypeError(msg)
    try:
        if isinstance(t, (str, bytes)):  # float("0.5") would parse it
            raise TypeError
        value = float(t)
    except (TypeError, ValueError):
        msg = f"`{name}` must be a real number; got {t!r} of type {type(t).__name__}."
        raise TypeError(msg) from None
    if not math.isfinite(value):
        msg = f"`{name}` must be finite; got {value}."
        raise ValueError(msg)
    return value


def _int(value: Any, name: str, minimum: int) -> int:
    return integer(value, name, minimum=minimum)

def _real(value: Any, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    return real_number(value, name, positive=positive, nonnegative=nonnegative)

def _rank(r: Any, m: int, n: int, name: str = "r") -> int:
    r = _int(r, name, 1)
    if r > min(m, n):
        msg = f"`{name}` must satisfy 1 <= {name} <= min(m, n) = {min(m, n)}; got {r}."
        raise ValueError(msg)
    return r


def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    seed = _int(seed, "seed", 0)
    return np.random.default_rng(seed)


def _orth(X: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns (thin QR), signs fixed so diag(R) >= 0."""
    Q, R = np.linalg.qr(X)
    signs = np.sign(np.diag(R))
    signs[signs == 0] = 1.0
    return Q * signs


def _haar(rng: np.random.Generator, n: int) -> np.ndarray:
    """Haar-distributed random orthogonal ``n x n`` matrix."""
    return _orth(rng.standard_normal((n, n)))


def _sym(X: np.ndarray) -> np.ndarray:
    return 0.5 * (X + X.T)


def _fro(x: Any, xp: Any) -> float:
    return float(xp.sqrt(xp.sum(xp.abs(x) ** 2)))


def _dense_like(Y: Any, like: Any, *, lowrank: bool = True) -> tuple[Any, Any]:
    """``Y`` as a dense array (``Y.to_dense()`` for a LowRank) and the namespace it shares
    with the problem's array ``like``; refuses, naming `Y`, a non-array, an array of
    another library or of another shape than ``like``."""
    if lowrank and isinstance(Y, LowRank):
        dense = Y.to_dense()
    else:
        try:
            check_array(Y, "Y")
        except TypeError:
            what = "a LowRank or an array" if lowrank else "an array"
            msg = f"`Y` must be {what} of shape {tuple(like.shape)}; got {type(Y).__module__}.{type(Y).__name__}."
            raise TypeError(msg) from None
        dense = Y
    xp = namespace_of_named(Y=dense, **{"the problem's arrays": like})
    if tuple(dense.shape) != tuple(like.shape):
        msg = f"`Y` must have shape {tuple(like.shape)} (that of the reference); got {tuple(dense.shape)}."
        raise ValueError(msg)
    return dense, xp


def _symmetric_lowrank(X: np.ndarray, r: int, to_xp: _Backend) -> LowRank:
    """Rank-``r`` truncation ``P diag(lam) P^T`` of a symmetric ``X`` with ``U = V`` exactly."""
    lam, P = np.linalg.eigh(_sym(X))
    idx = np.argsort(-np.abs(lam), kind="stable")[:r]
    U = to_xp(P[:, idx])
    return LowRank(U, to_xp(np.diag(lam[idx])), U)


class _Reference:
    """``t -> X(t)`` in the target namespace, cached, with host-side singular values.

    ``host(t)`` returns the NumPy (float64/complex128) solution; ``__call__`` the
    converted array; ``singular_values(t)`` its singular values (NumPy).
    """

    def __init__(self, host_fn: Callable[[float], np.ndarray], to_xp: _Backend, *, maxsize: int = 64) -> None:
        self._host_fn = host_fn
        self._to_xp = to_xp
        self._host = _LRU(maxsize)
        self._xp = _LRU(maxsize)
        self._sv = _LRU(maxsize)

    def host(self, t: Any) -> np.ndarray:
        t = _time(t)
        return self._host.get(t, lambda: self._host_fn(t))

    def __call__(self, t: Any) -> Any:
        t = _time(t)
        return self._xp.get(t, lambda: self._to_xp(self.host(t)))

    def singular_values(self, t: Any) -> np.ndarray:
        t = _time(t)
        return self._sv.get(t, lambda: np.linalg.svd(self.host(t), compute_uv=False))

    def __repr__(self) -> str:
        return f"<reference solution in {getattr(self._to_xp.xp, '__name__', self._to_xp.xp)}>"


class _IVP:
    """Lazily computed high-accuracy solution of ``y' = f(t, y)``, ``y(t0) = y0`` (flat NumPy).

    One dense solve over ``[t0, t_end]`` is done at the first query inside that interval
    (dense output of the method, accurate to about the tolerance); a query beyond
    ``t_end`` runs its own solve from ``t0``.
    """

    def __init__(self, fun: Callable, t0: float, y0: np.ndarray, t_end: float, *, method: str, jac: Any = None) -> None:
        self.fun, self.t0, self.y0, self.t_end = fun, t0, y0, t_end
        self.method, self.jac = method, jac
        self._dense: Any = None

    def _solve(self, t1: float, dense: bool) -> Any:
        kwargs = {} if self.jac is None else {"jac": self.jac}
        sol = solve_ivp(
            self.fun,
            (self.t0, t1),
            self.y0,
            method=self.method,
            rtol=REFERENCE_TOL,
            atol=REFERENCE_TOL,
            dense_output=dense,
            **kwargs,
        )
        if sol.status != 0:
            msg = f"the reference solve ({self.method}) from t = {self.t0} to {t1} failed: {sol.message}"
            raise RuntimeError(msg)
        return sol

    def __call__(self, t: float) -> np.ndarray:
        if t < self.t0:
            msg = f"the reference solution is computed forward from t0 = {self.t0} only; got t = {t}."
            raise ValueError(msg)
        if t == self.t0:
            return self.y0.copy()
        if t <= self.t_end:
            if self._dense is None:
                self._dense = self._solve(self.t_end, dense=True).sol
            return self._dense(t)
        return self._solve(t, dense=False).y[:, -1]


# ====================================================================== pickling
def _xp_by_name(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with a namespace module ``xp`` replaced by its import name."""
    xp = kwargs.get("xp")
    if xp is not None and not isinstance(xp, str):
        kwargs = {**kwargs, "xp": ("module", xp.__name__)}
    return kwargs


def _rebuild_problem(constructor: str, kwargs: dict[str, Any]) -> ReferenceProblem:
    """Unpickle a problem of this module: call its constructor again (seeded, so the
    operators, initial value and reference come out the same; caches start empty)."""
    xp = kwargs.get("xp")
    if isinstance(xp, tuple) and xp[:1] == ("module",):
        kwargs = {**kwargs, "xp": importlib.import_module(xp[1])}
    return globals()[constructor](**kwargs)


def _recorded(constructor: Callable[..., Any]) -> Callable[..., Any]:
    """Record how a problem was built on the result, so that it pickles by rebuilding:
    its reference solutions and right-hand sides are closures, which do not pickle."""

    @functools.wraps(constructor)
    def build(*args: Any, **kwargs: Any) -> Any:
        arguments = dict(inspect.signature(constructor).bind(*args, **kwargs).arguments)
        if isinstance(arguments.get("seed"), np.random.Generator):
            # the constructor advances the generator: rebuild from its state before
            arguments["seed"] = copy.deepcopy(arguments["seed"])
        problem = constructor(*args, **kwargs)
        object.__setattr__(problem, "_recipe", (constructor.__name__, _xp_by_name(arguments)))
        return problem

    return build


# ====================================================================== container
@dataclass(frozen=True, eq=False)
class ReferenceProblem:
    r"""A matrix ODE with a rank-``r`` initial value and a reference solution.

    Attributes
    ----------
    name : str
        Registry name (see :data:`PROBLEMS`).
    problem : AbstractMatrixODE
        The right-hand side ``F(t, Y)`` of ``dY/dt = F(t, Y)``, ``Y`` of shape ``(m, n)``.
    Y0 : LowRank
        Rank-``r`` initial value at ``t_span[0]`` (``U (m, r)``, ``S (r, r)``,
        ``V (n, r)``) in the requested namespace, dtype and device.
    t_span : tuple of float
        ``(t0, t_end)``.
    reference : callable ``reference(t) -> array (m, n)``
        Exact or high-accuracy solution of the *full* problem at time ``t`` (in the
        namespace, device and dtype of ``Y0``'s factors).  Its initial value may have
        higher rank than ``Y0`` (then ``||Y0 - reference(t0)||`` is the initial
        truncation error); see ``notes``.
    symmetric : bool
        ``F(t, Y^T) = F(t, Y)^T`` and ``Y0`` is symmetric, so the exact solution is
        symmetric and symmetric-preserving integrators (BUG family) keep ``Y = Y^T``.
    norm_preserving : bool
        ``Re <Y, F(t, Y)> = 0`` for all ``Y``, so ``||Y(t)||_F`` is constant.
    notes : str
        Modelling choices and the provenance of the data.
    suggested_dt : float or None
        A step size at which explicit RK4 substeps are stable and a KSL solve over
        ``t_span`` is cheap (``None`` when there is no particular suggestion).
    """

    name: str
    problem: AbstractMatrixODE
    Y0: LowRank
    t_span: tuple[float, float]
    reference: Callable[[float], Any]
    symmetric: bool
    norm_preserving: bool
    notes: str = ""
    suggested_dt: float | None = None

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A problem of this module pickles as the call that built it (its callables are
        # closures); one assembled by hand pickles field by field.
        recipe = self.__dict__.get("_recipe")
        if recipe is None:
            return object.__reduce_ex__(self, protocol)
        return _rebuild_problem, recipe

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(m, n)`` of the state."""
        return (int(self.Y0.shape[-2]), int(self.Y0.shape[-1]))

    def error(self, Y: Any, t: Any) -> float:
        r"""Relative Frobenius error ``||Y - X(t)||_F / ||X(t)||_F`` against the reference.

        Parameters
        ----------
        Y : LowRank or array of shape (m, n)
            Approximation at time ``t``, in the namespace of the reference.
        t : float
            Time.

        Returns
        -------
        float
            The relative error (the absolute error if ``X(t) = 0``), computed in the
            namespace of ``Y``.
        """
        ref = self.reference(t)
        dense, xp = _dense_like(Y, ref)
        num = _fro(dense - ref, xp)
        den = _fro(ref, xp)
        return num / den if den > 0 else num

    def best_error(self, t: Any, r: Any) -> float:
        r"""Relative error of the best rank-``r`` approximation of the reference at ``t``.

        By Eckart-Young, ``(sum_{j > r} sigma_j^2)^{1/2} / (sum_j sigma_j^2)^{1/2}`` with
        ``sigma_j`` the singular values of ``X(t)``: no rank-``r`` method can do better.

        Parameters
        ----------
        t : float
            Time.
        r : int
            Rank, ``r >= 0``.

        Returns
        -------
        float
        """
        r = _int(r, "r", 0)
        sv = getattr(self.reference, "singular_values", None)
        if sv is not None:
            s = np.asarray(sv(t), dtype=np.float64)
            total = float(np.sum(s**2))
            tail = float(np.sum(s[r:] ** 2))
        else:
            ref = self.reference(t)
            xp = namespace_of(ref)
            s = xp.linalg.svdvals(ref)
            total = float(xp.sum(s**2))
            tail = float(xp.sum(s[r:] ** 2))
        return math.sqrt(tail / total) if total > 0 else 0.0


@dataclass(frozen=True, eq=False, kw_only=True)
class SchrodingerProblem(ReferenceProblem):
    r"""The discrete Schrödinger problem, with its Hamiltonian and energy.

    Attributes
    ----------
    D : array (N, N)
        Kinetic part ``D = tridiag(-1, 2, -1) / 2`` (real symmetric, stored in ``Y0``'s
        dtype).
    Vc : array (N, N)
        Potential ``diag(1 - cos(2 pi j / N))``, ``j = -N/2, ..., N/2 - 1``.

    Notes
    -----
    ``F(Y) = -i H[Y]`` with the self-adjoint ``H[Y] = D Y + Y D^T + Vc Y Vc^T``, so the
    norm and the energy ``E(Y) = <Y, H[Y]>`` are conserved by the exact flow.
    """

    D: Any
    Vc: Any

    def hamiltonian(self, Y: Any) -> Any:
        """Dense ``H[Y] = D Y + Y D^T + Vc Y Vc^T`` for a dense ``Y`` of shape ``(N, N)``."""
        _, xp = _dense_like(Y, self.D, lowrank=False)
        DT = xp.matrix_transpose(self.D)
        VcT = xp.matrix_transpose(self.Vc)
        return self.D @ Y + Y @ DT + self.Vc @ (Y @ VcT)

    def energy(self, Y: Any) -> float:
        r"""Energy ``E(Y) = Re <Y, H[Y]> = Re tr(Y^H H[Y])``.

        Parameters
        ----------
        Y : LowRank or array of shape (N, N)
            For a :class:`~lowrank_core.LowRank` ``Y = U S V^H`` (factors need not be orthonormal) the
            energy is computed from the factors without forming ``Y``:
            ``<Y, A Y B^T> = tr(S^H (U^H A U) S (V^H B^T V))`` for each term of ``H``.

        Returns
        -------
        float
        """
        if not isinstance(Y, LowRank):
            _, xp = _dense_like(Y, self.D, lowrank=False)
            return float(xp.sum(xp.real(xp.conj(Y) * self.hamiltonian(Y))))
        xp = namespace_of_named(Y=Y.U, **{"the problem's arrays": self.D})
        if tuple(Y.shape) != tuple(self.D.shape):
            msg = f"`Y` must have shape {tuple(self.D.shape)}; got {tuple(Y.shape)}."
            raise ValueError(msg)
        U, S, V = Y.U, Y.S, Y.V
        UH, VH = conj_transpose(U, xp), conj_transpose(V, xp)
        DT, VcT = xp.matrix_transpose(self.D), xp.matrix_transpose(self.Vc)
        uu, vv = UH @ U, VH @ V
        total = (UH @ (self.D @ U)) @ S @ vv + uu @ S @ (VH @ (DT @ V)) + (UH @ (self.Vc @ U)) @ S @ (VH @ (VcT @ V))
        return float(xp.sum(xp.real(xp.conj(S) * total)))


@dataclass(frozen=True, eq=False, kw_only=True)
class QuadraticProblem(ReferenceProblem):
    r"""Gradient flow of ``L(W) = ||W - B||_F^2 / 2`` with its known optimum on rank ``r``.

    Attributes
    ----------
    B : array (m, n)
        Target matrix with prescribed singular values.
    optimal_loss : float
        ``min_{rank W <= r} L(W) = (1/2) sum_{j > r} sigma_j(B)^2`` (Eckart-Young).
    optimum : LowRank
        The rank-``r`` minimiser (truncated SVD of ``B``; unique when
        ``sigma_r(B) > sigma_{r+1}(B)``).
    """

    B: Any
    optimal_loss: float
    optimum: LowRank

    def loss(self, Y: Any) -> float:
        """``L(Y) = ||Y - B||_F^2 / 2`` for a :class:`~lowrank_core.LowRank` or a dense ``(m, n)`` array."""
        dense, xp = _dense_like(Y, self.B)
        return 0.5 * _fro(dense - self.B, xp) ** 2


# ====================================================================== Riccati
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


# ====================================================================== factories
@_recorded
def prescribed_path(
    N: int = 100,
    r: int = 8,
    *,
    w_norm: float | None = 1.0,
    exact_rank: int | None = None,
    t_end: float = 1.0,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> ReferenceProblem:
    r"""Matrix path with prescribed singular values (Ceruti & Lubich 2022; methods.md §6.1).

    ``A(t) = e^{t W1} e^t D e^{t W2}`` on ``[0, t_end]`` with ``D = diag(2^{-j})``,
    ``j = 1..N``, and random skew-symmetric ``W1``, ``W2``; hence
    ``sigma_j(A(t)) = e^t 2^{-j}`` exactly.  The problem is the
    :class:`~lowrank_core.MatrixPath` with ``dA/dt = W1 A + A + A W2``, usable with every
    substep solver (``"exact"`` uses the increments ``A(t1) - A(t0)``).

    Parameters
    ----------
    N : int, default 100
        Size of the square matrix ``A(t)``.
    r : int, default 8
        Rank of ``Y0``, the truncated SVD of ``A(0) = D``.
    w_norm : float or None, default 1.0
        Spectral norm of ``W1`` and ``W2`` (random standard normal ``G - G^T``
        rescaled); ``None`` keeps the unscaled ``G - G^T`` (``||W||_2 ~ 2 sqrt(2N)``).
    exact_rank : int, optional
        Keep only the first ``exact_rank`` entries of ``D`` non-zero: a path of rank
        exactly ``exact_rank`` (for the exactness theorems of methods.md §4.1).
    t_end : float, default 1.0
        Final time.
    xp, dtype, device : optional
        Target array namespace (default NumPy), dtype (default float64) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of ``W1`` and ``W2``.

    Returns
    -------
    ReferenceProblem
        ``reference(t) = A(t)``.

    Notes
    -----
    ``e^{tW}`` is evaluated from one Hermitian eigendecomposition ``i W = P diag(mu) P^H``
    as ``Re(P diag(e^{-i mu t}) P^H)`` (exact for the normal matrix ``W``; agrees with
    ``scipy.linalg.expm`` to round-off and costs two matrix products per time).
    """
    N = _int(N, "N", 1)
    r = _rank(r, N, N)
    t_end = _real(t_end, "t_end", positive=True)
    if w_norm is not None:
        w_norm = _real(w_norm, "w_norm", nonnegative=True)
    if exact_rank is not None:
        exact_rank = _int(exact_rank, "exact_rank", 1)
        if exact_rank > N:
            msg = f"`exact_rank` must satisfy 1 <= exact_rank <= N = {N}; got {exact_rank}."
            raise ValueError(msg)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="prescribed_path")
    rng = _rng(seed)

    def skew() -> np.ndarray:
        G = rng.standard_normal((N, N))
        W = G - G.T
        if w_norm is not None:
            nrm = np.linalg.norm(W, 2)
            W = W * (w_norm / nrm) if nrm > 0 else W
        return W

    W1, W2 = skew(), skew()
    d = 2.0 ** -np.arange(1, N + 1, dtype=np.float64)
    if exact_rank is not None:
        d[exact_rank:] = 0.0

    def skew_exp(W: np.ndarray) -> Callable[[float], np.ndarray]:
        mu, P = np.linalg.eigh(1j * W)
        PH = P.conj().T
        return lambda t: ((P * np.exp(-1j * mu * t)) @ PH).real

    E1, E2 = skew_exp(W1), skew_exp(W2)

    def A_host(t: float) -> np.ndarray:
        if t == 0.0:
            return np.diag(d)
        return (E1(t) * (math.exp(t) * d)) @ E2(t)

    ref = _Reference(A_host, to_xp)
    dA_cache = _LRU(16)

    def dA(t: float) -> Any:
        def compute() -> Any:
            a = ref.host(t)
            return to_xp(W1 @ a + a + a @ W2)

        return dA_cache.get(_time(t), compute)

    Y0 = LowRank.from_dense(ref(0.0), r)
    label = f"rank-{exact_rank}" if exact_rank is not None else "full-rank"
    notes = (
        f"A(t) = expm(t W1) e^t D expm(t W2), N = {N}, D = diag(2^-j) ({label}), "
        f"||W_i||_2 = {w_norm if w_norm is not None else 'unscaled'}, seed {seed!r}. "
        "sigma_j(A(t)) = e^t 2^-j; Y0 is the rank-r truncated SVD of A(0). "
        "F does not depend on Y, so substep='exact' is available."
    )
    return ReferenceProblem(
        name="prescribed-path",
        problem=MatrixPath(ref, dA),
        Y0=Y0,
        t_span=(0.0, t_end),
        reference=ref,
        symmetric=False,
        norm_preserving=False,
        notes=notes,
        suggested_dt=min(0.01, t_end),
    )


def _stable_dt(rho: float, t_span: float) -> float:
    """Largest ``t_span / k`` (integer ``k``) at 80% of the RK4 bound for spectral radius ``rho``."""
    dt_max = 0.8 * _RK4_REAL_STABILITY / rho
    return t_span / math.ceil(t_span / dt_max)


def _stiff_symmetric(
    name: str, problem: Any, ref: _Reference, r: int, to_xp: _Backend, rho: float, t_end: float, description: str
) -> ReferenceProblem:
    """A symmetric problem ``dX/dt = A^T X + X A + ...`` with ``||A||_2 = rho`` (heat, Riccati).

    ``Y0`` is the rank-``r`` eigen-truncation of ``reference(0)`` (``U = V``); the notes
    state the RK4 stability bound ``dt <~ 2.785 / (2 rho)``, and ``suggested_dt`` is 80 %
    of it.
    """
    notes = (
        f"{description}; Y0 is its rank-r eigen-truncation (U = V). "
        f"Stiff: ||A||_2 = {rho:.4g}; KSL with RK4 substeps needs dt <~ 2.785 / (2 ||A||_2) = "
        f"{_RK4_REAL_STABILITY / (2 * rho):.2g} (suggested_dt: 80% of that)."
    )
    return ReferenceProblem(
        name=name,
        problem=problem,
        Y0=_symmetric_lowrank(ref.host(0.0), r, to_xp),
        t_span=(0.0, t_end),
        reference=ref,
        symmetric=True,
        norm_preserving=False,
        notes=notes,
        suggested_dt=_stable_dt(2 * rho, t_end),
    )


def _dirichlet_laplacian(size: int) -> np.ndarray:
    dx = 1.0 / (size + 1)
    return (np.diag(-2.0 * np.ones(size)) + np.diag(np.ones(size - 1), 1) + np.diag(np.ones(size - 1), -1)) / dx**2


@_recorded
def heat_lyapunov(
    size: int = 64,
    r: int = 8,
    *,
    t_end: float = 0.1,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> ReferenceProblem:
    r"""2-D heat equation with a constant low-rank source (Lyapunov form; methods.md §6.4(a)).

    ``dX/dt = A X + X A + C`` with ``A = tridiag(1, -2, 1) / dx^2`` (homogeneous
    Dirichlet, ``size`` interior points of ``[0, 1]``, ``dx = 1 / (size + 1)``) and
    ``C = Q diag(logspace(0, -16, 5)) Q^T``, ``Q = orth(rand(size, 5))``.  The initial
    value is ``X_init = X(0.01)``, the closed-form solution at ``t = 0.01`` from the
    symmetric rank-21 matrix ``X_0 = P diag(logspace(0, -20, 21)) P^T``,
    ``P = orth(rand(size, 21))`` (smoothing away the random initial data), and the time
    is then reset to 0.

    Parameters
    ----------
    size : int, default 64
        Number of interior grid points per direction; the state is ``size x size``.
    r : int, default 8
        Rank of ``Y0`` (the rank-``r`` truncation of ``X_init``, with ``U = V``).
    t_end : float, default 0.1
        Final time.
    xp, dtype, device : optional
        Target array namespace (default NumPy), dtype (default float64) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of ``Q`` and ``P``.

    Returns
    -------
    ReferenceProblem
        ``problem = LinearMatrixODE(A, A, C)`` with ``C`` a :class:`~lowrank_core.LowRank`;
        ``reference(t) = e^{tA} X_init e^{tA} + Z(t)``, ``A Z + Z A = e^{tA} C e^{tA} - C``.

    Notes
    -----
    The closed form is evaluated in the eigenbasis ``A = Q_A diag(lam) Q_A^T``, where
    the Sylvester solve is elementwise:
    ``Z~_ij = C~_ij (e^{t(lam_i + lam_j)} - 1) / (lam_i + lam_j)`` (``expm1``, accurate
    for all ``t``).  The problem is stiff (``||A||_2 ~ 4 / dx^2``): explicit RK4 substeps
    need ``dt`` below ``2.785 / (2 ||A||_2)``, see ``suggested_dt``.  For ``size < 21``
    (or ``< 5``) the ranks of ``X_0`` (and ``C``) are reduced to ``size``.
    """
    size = _int(size, "size", 2)
    r = _rank(r, size, size)
    t_end = _real(t_end, "t_end", positive=True)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="heat_lyapunov")
    rng = _rng(seed)
    t_smooth = 0.01

    A = _dirichlet_laplacian(size)
    q = min(5, size)
    s_C = np.logspace(0, -16, 5)[:q]
    Q_C = _orth(rng.random((size, q)))
    k0 = min(21, size)
    s_0 = np.logspace(0, -20, 21)[:k0]
    P_0 = _orth(rng.random((size, k0)))
    X_0 = (P_0 * s_0) @ P_0.T

    lam, QA = np.linalg.eigh(A)
    L = lam[:, None] + lam[None, :]  # < 0 for the Dirichlet Laplacian
    Ct = _sym(QA.T @ ((Q_C * s_C) @ Q_C.T) @ QA)

    def propagate(Xt: np.ndarray, t: float) -> np.ndarray:
        return np.exp(t * L) * Xt + Ct * (np.expm1(t * L) / L)

    Xt_init = propagate(_sym(QA.T @ X_0 @ QA), t_smooth)

    def host(t: float) -> np.ndarray:
        return _sym(QA @ propagate(Xt_init, t) @ QA.T)

    ref = _Reference(host, to_xp)
    A_xp = to_xp(A)
    Q_C_xp = to_xp(Q_C)
    C = LowRank(Q_C_xp, to_xp(np.diag(s_C)), Q_C_xp)
    description = (
        f"2-D heat, Dirichlet, size = {size}, dx = 1/(size+1); C = Q diag(logspace(0,-16,5)) Q^T, "
        f"X_init = closed-form X(0.01) from P diag(logspace(0,-20,21)) P^T (Q, P = orth(rand), seed {seed!r}). "
        "reference(t) is the closed form from the full X_init"
    )
    return _stiff_symmetric(
        "heat", LinearMatrixODE(A_xp, A_xp, C), ref, r, to_xp, float(np.max(np.abs(lam))), t_end, description
    )


@_recorded
def schrodinger(
    N: int = 100,
    r: int = 8,
    *,
    t_end: float = 1.0,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> SchrodingerProblem:
    r"""Discrete Schrödinger equation (Ceruti, Kusch & Lubich 2022, eq. (23); methods.md §6.3).

    ``dY/dt = -i (D Y + Y D^T + Vc Y Vc^T)`` with ``D = tridiag(-1, 2, -1) / 2`` and
    ``Vc = diag(1 - cos(2 pi j / N))``, ``j = -N/2, ..., N/2 - 1``.  The full initial
    value is ``Y_init = U0 S0 V0^T`` with Haar-random orthogonal ``U0``, ``V0`` and
    ``S0 = diag(10^{-i})``, ``i = 1..N``, normalised to ``||S0||_F = 1``.

    Parameters
    ----------
    N : int, default 100
        Size of the square state.
    r : int, default 8
        Rank of ``Y0 = U0[:, :r] S0[:r, :r] V0[:, :r]^T`` (leading columns).
    t_end : float, default 1.0
        Final time.
    xp, dtype, device : optional
        Target array namespace (default NumPy), complex dtype (default complex128;
        a real dtype raises ``TypeError``) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of ``U0`` and ``V0``.

    Returns
    -------
    SchrodingerProblem
        ``problem = LinearMatrixODE(-iD, -iD, terms=[(-iVc, Vc)])``; ``energy(Y)``
        gives ``Re <Y, H[Y]>``.  ``reference(t)`` is the DOP853 solution
        (rtol = atol = 1e-10) of the full ``N x N`` system from the *full-rank*
        ``Y_init``, as in the reference computations of CKL 2022, so
        ``||Y0 - reference(0)||_F = ||S0[r:, r:]||_F ~ 10^{-(r+1)}``.
    """
    N = _int(N, "N", 2)
    r = _rank(r, N, N)
    t_end = _real(t_end, "t_end", positive=True)
    to_xp = _Backend(xp, dtype, device, complex_=True, who="schrodinger")
    rng = _rng(seed)

    D = 0.5 * (np.diag(2.0 * np.ones(N)) - np.diag(np.ones(N - 1), 1) - np.diag(np.ones(N - 1), -1))
    j = np.arange(N) - N // 2
    vc = 1.0 - np.cos(2.0 * np.pi * j / N)
    U0, V0 = _haar(rng, N), _haar(rng, N)
    s0 = 10.0 ** -np.arange(1, N + 1, dtype=np.float64)
    s0 = s0 / np.linalg.norm(s0)
    Y_init = ((U0 * s0) @ V0.T).astype(np.complex128)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        Y = y.reshape(N, N)
        return (-1j * (D @ Y + Y @ D.T + vc[:, None] * Y * vc[None, :])).ravel()

    ivp = _IVP(rhs, 0.0, Y_init.ravel(), t_end, method="DOP853")
    ref = _Reference(lambda t: ivp(t).reshape(N, N), to_xp)

    D_xp, Vc_xp = to_xp(D), to_xp(np.diag(vc))
    problem = LinearMatrixODE(to_xp(-1j * D), to_xp(-1j * D), terms=[(to_xp(-1j * np.diag(vc)), Vc_xp)])
    Y0 = LowRank(to_xp(U0[:, :r]), to_xp(np.diag(s0[:r])), to_xp(V0[:, :r]))
    notes = (
        f"N = {N}; Y_init = U0 diag(10^-i / norm) V0^T with Haar U0, V0 (seed {seed!r}); Y0 = leading r columns. "
        "reference(t): DOP853, rtol = atol = 1e-10, on the full N x N system from the full-rank Y_init "
        "(CKL 2022 convention). Norm and energy Re<Y, H[Y]> are conserved."
    )
    return SchrodingerProblem(
        name="schrodinger",
        problem=problem,
        Y0=Y0,
        t_span=(0.0, t_end),
        reference=ref,
        symmetric=False,
        norm_preserving=True,
        notes=notes,
        suggested_dt=min(0.01, t_end),
        D=D_xp,
        Vc=Vc_xp,
    )


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


@_recorded
def quadratic_flow(
    m: int = 60,
    n: int = 40,
    r: int = 5,
    *,
    spectrum: Any = None,
    t_end: float = 10.0,
    init_scale: float = 1e-2,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> QuadraticProblem:
    r"""Gradient flow of ``L(W) = ||W - B||_F^2 / 2`` (methods.md §6.6).

    ``dW/dt = -grad L(W) = B - W``, so ``W(t) = B + e^{-t} (W0 - B)``.  On the rank-``r``
    manifold the minimiser is the truncated SVD ``B_r`` of ``B`` (Eckart-Young), with
    ``L(B_r) = (1/2) sum_{j > r} sigma_j(B)^2``; the other critical points are saddles.

    Parameters
    ----------
    m, n : int, default 60, 40
        Shape of ``W``.
    r : int, default 5
        Rank of ``Y0``.
    spectrum : sequence of float, optional
        Singular values of ``B`` (non-negative; sorted descending; at most
        ``min(m, n)`` values, the rest are zero).  Default
        ``sigma_j = 2^{-(j-1)/2}``, ``j = 1..min(m, n)``: a strictly decreasing spectrum,
        so ``sigma_r / sigma_{r+1} = sqrt(2)`` and the minimiser is unique.
    t_end : float, default 10.0
        Final time (``e^{-10} ~ 4.5e-5``: the flow has essentially converged).
    init_scale : float, default 1e-2
        ``||W0||_F = init_scale ||B||_F``: ``W0 = Y0`` is a small random rank-``r``
        matrix (product of Gaussian factors).
    xp, dtype, device : optional
        Target array namespace (default NumPy), dtype (default float64) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of the singular vectors of ``B`` and of ``W0``.

    Returns
    -------
    QuadraticProblem
        ``problem = MatrixODE(lambda t, Y: B - Y)`` (dense, generic); ``loss(Y)``,
        ``optimal_loss`` and ``optimum`` describe the optimisation problem.
    """
    m = _int(m, "m", 1)
    n = _int(n, "n", 1)
    r = _rank(r, m, n)
    t_end = _real(t_end, "t_end", positive=True)
    init_scale = _real(init_scale, "init_scale", positive=True)
    k = min(m, n)
    if spectrum is None:
        sigma = 2.0 ** (-np.arange(k, dtype=np.float64) / 2.0)
    else:
        if isinstance(spectrum, (str, bytes)):
            msg = f"`spectrum` must be a sequence of non-negative real numbers; got {spectrum!r}."
            raise TypeError(msg)
        try:
            items = list(spectrum)
            if any(isinstance(s, (bool, np.bool_, str, bytes)) for s in items):
                raise TypeError
            values = [float(s) for s in items]
        except (TypeError, ValueError):
            msg = f"`spectrum` must be a sequence of non-negative real numbers; got {spectrum!r}."
            raise TypeError(msg) from None
        if not 1 <= len(values) <= k:
            msg = f"`spectrum` must have between 1 and min(m, n) = {k} values; got {len(values)}."
            raise ValueError(msg)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            msg = f"`spectrum` must contain finite, non-negative values; got {values}."
            raise ValueError(msg)
        sigma = np.zeros(k)
        sigma[: len(values)] = sorted(values, reverse=True)
        if sigma[0] == 0:
            msg = "`spectrum` must contain at least one positive value (B = 0 is not a useful target)."
            raise ValueError(msg)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="quadratic_flow")
    rng = _rng(seed)
    P = _haar(rng, m)[:, :k]
    Q = _haar(rng, n)[:, :k]
    B = (P * sigma) @ Q.T
    W0 = rng.standard_normal((m, r)) @ rng.standard_normal((r, n))
    W0 = W0 * (init_scale * np.linalg.norm(B) / np.linalg.norm(W0))

    def host(t: float) -> np.ndarray:
        return B + math.exp(-t) * (W0 - B)

    ref = _Reference(host, to_xp)
    B_xp = to_xp(B)

    def f(t: float, Y: Any) -> Any:
        return B_xp - Y

    Y0 = LowRank.from_dense(ref(0.0), r)
    optimum = LowRank(to_xp(P[:, :r]), to_xp(np.diag(sigma[:r])), to_xp(Q[:, :r]))
    optimal_loss = 0.5 * float(np.sum(sigma[r:] ** 2))
    gap = sigma[r - 1] / sigma[r] if r < k and sigma[r] > 0 else math.inf
    notes = (
        f"B = P diag(sigma) Q^T ({m} x {n}, Haar P, Q, seed {seed!r}), sigma_r / sigma_(r+1) = {gap:.3g}; "
        f"W0 = Y0 random rank-{r} with ||W0|| = {init_scale:g} ||B||. reference(t) = B + e^-t (W0 - B) (the full "
        "flow); the rank-r flow converges to the Eckart-Young truncation `optimum`."
    )
    return QuadraticProblem(
        name="quadratic",
        problem=MatrixODE(f),
        Y0=Y0,
        t_span=(0.0, t_end),
        reference=ref,
        symmetric=False,
        norm_preserving=False,
        notes=notes,
        suggested_dt=min(0.01, t_end),
        B=B_xp,
        optimal_loss=optimal_loss,
        optimum=optimum,
    )


#: Registry of the reference problems: name -> factory.
PROBLEMS: dict[str, Callable[..., ReferenceProblem]] = {
    "prescribed-path": prescribed_path,
    "heat": heat_lyapunov,
    "schrodinger": schrodinger,
    "riccati": riccati,
    "quadratic": quadratic_flow,
}


def get(name: str, **kwargs: Any) -> ReferenceProblem:
    """Build the reference problem registered as ``name``.

    Parameters
    ----------
    name : str
        One of ``"prescribed-path"``, ``"heat"``, ``"schrodinger"``, ``"riccati"``,
        ``"quadratic"`` (see :data:`PROBLEMS`).
    **kwargs
        Passed to the factory (``xp``, ``dtype``, ``device``, ``seed``, sizes, ...).

    Returns
    -------
    ReferenceProblem

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is not registered.
    """
    if not isinstance(name, str):
        msg = f"`name` must be a string naming a problem ({sorted(PROBLEMS)}); got {type(name).__name__}."
        raise TypeError(msg)
    try:
        factory = PROBLEMS[name]
    except KeyError:
        msg = f"unknown problem name {name!r}: `name` must be one of {sorted(PROBLEMS)}; got {name!r}."
        raise ValueError(msg) from None
    return factory(**kwargs)
