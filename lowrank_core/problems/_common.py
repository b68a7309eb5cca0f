"""Shared machinery of the reference problems: the target backend, argument checks,
small host-side linear algebra, and lazily computed, cached reference solutions."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np
from scipy.integrate import solve_ivp

from .._checks import integer, real_number
from .._lowrank import LowRank
from .._namespace import check_array, namespace_of_named

#: Tolerances of the numerical reference solutions (rtol = atol).
REFERENCE_TOL = 1e-10

# RK4 is stable on the negative real axis for h |lambda| <= 2.785.
_RK4_REAL_STABILITY = 2.785


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

    def __init__(self, xp: Any, dtype: Any, device: Any, *, complex_: bool, who: str, real_only: bool = False) -> None:
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
        if real_only and is_cplx:
            msg = f"{who} is a real problem: `dtype` must be float32 or float64; got {dtype!r}."
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


def _state_namespace(Y: Any, like: Any, shape: tuple[int, ...]) -> Any:
    """The namespace of a state ``Y`` (a LowRank, from its factor ``U``, or a dense array)
    shared with the problem's array ``like``; refuses, naming `Y`, anything else and a
    shape other than ``shape``."""
    if isinstance(Y, LowRank):
        xp = namespace_of_named(Y=Y.U, **{"the problem's arrays": like})
    else:
        try:
            check_array(Y, "Y")
        except TypeError:
            msg = f"`Y` must be a LowRank or an array of shape {shape}; got {type(Y).__module__}.{type(Y).__name__}."
            raise TypeError(msg) from None
        xp = namespace_of_named(Y=Y, **{"the problem's arrays": like})
    if tuple(Y.shape) != tuple(shape):
        msg = f"`Y` must have shape {tuple(shape)}; got {tuple(Y.shape)}."
        raise ValueError(msg)
    return xp


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


def _stable_dt(rho: float, t_span: float) -> float:
    """Largest ``t_span / k`` (integer ``k``) at 80% of the RK4 bound for spectral radius ``rho``."""
    dt_max = 0.8 * _RK4_REAL_STABILITY / rho
    return t_span / math.ceil(t_span / dt_max)
