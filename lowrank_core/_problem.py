r"""Matrix ODEs ``dY/dt = F(t, Y)`` as seen by the low-rank integrators.

An integrator never needs the ``m x n`` matrix ``F(t, Y)`` itself, only its products
with thin matrices.  A problem therefore answers product queries at an *evaluation
point* ``(t, Y)``:

* ``F V``  of shape ``(..., m, k)`` for ``V (..., n, k)``,
* ``F^H U`` of shape ``(..., n, k)`` for ``U (..., m, k)``,
* ``U^H F V`` of shape ``(..., k, l)``.

:meth:`AbstractMatrixODE.evaluate` returns an :class:`RHSValue` bound to one point;
the integrators count one right-hand-side evaluation per bound point.  Generic
problems (:class:`MatrixODE`) form the dense ``F`` once per point and reuse it for
every product; structured problems (:class:`LinearMatrixODE`, or a user subclass of
:class:`AbstractMatrixODE`) compute the products directly in ``O((m + n) r^2)``-type
cost without forming any ``m x n`` matrix.

The factors of an evaluation point ``Y = U S V^H`` handed to a problem are *not*
necessarily orthonormal (a K-substep evaluates ``F`` at ``K V^H``, represented as
``U = K``, ``S = I``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import array_api_compat

from . import _operators
from ._linalg import matmul as mm
from ._linalg import matmul_h as mm_h
from ._lowrank import SUPPORTED_DTYPES, LowRank, check_dtype, check_has_data
from ._namespace import (
    check_array,
    conj_transpose,
    device_of,
    is_complex_dtype,
    namespace_of,
    namespace_of_named,
)

__all__ = [
    "AbstractMatrixODE",
    "LinearMatrixODE",
    "MatrixODE",
    "MatrixPath",
    "RHSValue",
]


class RHSValue:
    """The right-hand side ``F`` at one point, accessed through products.

    Subclasses implement :meth:`F_V` and :meth:`FH_U`; :meth:`UH_F_V` defaults to
    ``U^H (F V)``.
    """

    def F_V(self, V: Any) -> Any:  # noqa: N802 (mathematical name)
        """``F @ V`` for ``V (..., n, k)``; returns ``(..., m, k)``."""
        raise NotImplementedError

    def FH_U(self, U: Any) -> Any:  # noqa: N802
        """``F^H @ U`` for ``U (..., m, k)``; returns ``(..., n, k)``."""
        raise NotImplementedError

    def UH_F_V(self, U: Any, V: Any) -> Any:  # noqa: N802
        """``U^H @ F @ V``; returns ``(..., k, l)``."""
        xp = namespace_of(U, V)
        return mm(conj_transpose(U, xp), self.F_V(V), xp)


class DenseValue(RHSValue):
    """``F`` held as a dense array (formed once, reused for every product)."""

    def __init__(self, F: Any, xp: Any) -> None:
        self.F = F
        self.xp = xp

    def F_V(self, V: Any) -> Any:  # noqa: N802
        return mm(self.F, V, self.xp)

    def FH_U(self, U: Any) -> Any:  # noqa: N802
        return mm_h(self.F, U, self.xp)

    def UH_F_V(self, U: Any, V: Any) -> Any:  # noqa: N802
        return mm(conj_transpose(U, self.xp), self.F_V(V), self.xp)


class _LowRankValue(RHSValue):
    """``F`` held as a :class:`LowRank` ``C = U_C S_C V_C^H``; the products never form it."""

    def __init__(self, C: LowRank, xp: Any) -> None:
        self.C = C
        self.xp = xp

    def F_V(self, V: Any) -> Any:  # noqa: N802
        C, xp = self.C, self.xp
        return mm(C.U, mm(C.S, mm(conj_transpose(C.V, xp), V, xp), xp), xp)

    def FH_U(self, U: Any) -> Any:  # noqa: N802
        C, xp = self.C, self.xp
        return mm(C.V, mm(conj_transpose(C.S, xp), mm(conj_transpose(C.U, xp), U, xp), xp), xp)

    def UH_F_V(self, U: Any, V: Any) -> Any:  # noqa: N802
        C, xp = self.C, self.xp
        return mm(mm(conj_transpose(U, xp), C.U, xp), mm(C.S, mm(conj_transpose(C.V, xp), V, xp), xp), xp)


class _BoundProducts(RHSValue):
    """Products of a structured problem bound to one point ``(t, Y)``."""

    def __init__(self, problem: AbstractMatrixODE, t: float, Y: LowRank) -> None:
        self.problem, self.t, self.Y = problem, t, Y

    def F_V(self, V: Any) -> Any:  # noqa: N802
        return self.problem.F_V(self.t, self.Y, V)

    def FH_U(self, U: Any) -> Any:  # noqa: N802
        return self.problem.FH_U(self.t, self.Y, U)

    def UH_F_V(self, U: Any, V: Any) -> Any:  # noqa: N802
        return self.problem.UH_F_V(self.t, self.Y, U, V)


def _plus(total: Any, term: Any) -> Any:
    """``total + term``, where ``total`` is ``None`` before the first term of a sum."""
    return term if total is None else total + term


class AbstractMatrixODE:
    r"""Base class of matrix ODEs ``dY/dt = F(t, Y)``, ``Y (..., m, n)``.

    To write a structured problem, subclass and implement :meth:`F_V` and
    :meth:`FH_U` (and optionally :meth:`UH_F_V`, which defaults to ``U^H (F V)``).
    Each receives the evaluation point ``Y`` as a :class:`LowRank` whose factors need
    not be orthonormal.

    Attributes
    ----------
    has_increments : bool
        True when ``F`` does not depend on ``Y`` and :meth:`increment` gives the exact
        integral of ``F`` over a time interval (required by ``substep="exact"``).
    """

    has_increments: bool = False

    def evaluate(self, t: float, Y: LowRank) -> RHSValue:
        """Bind the right-hand side to the point ``(t, Y)`` (one ``F`` evaluation)."""
        return _BoundProducts(self, t, Y)

    def increment(self, t0: float, t1: float, xp: Any) -> RHSValue:
        r"""Exact integral ``\int_{t0}^{t1} F dt`` for ``Y``-independent ``F``."""
        msg = (
            f"{type(self).__name__} has no exact increments; substep='exact' needs a problem "
            "whose F does not depend on Y, such as MatrixPath. Use substep='rk4' or 'euler'."
        )
        raise ValueError(msg)

    def check_state(self, Y0: LowRank) -> None:
        """Raise if ``Y0`` cannot be a state of this problem (shape, dtype, namespace)."""

    def F_V(self, t: float, Y: LowRank, V: Any) -> Any:  # noqa: N802
        """``F(t, Y) @ V``; ``V (..., n, k)`` -> ``(..., m, k)``."""
        msg = f"{type(self).__name__} must implement F_V(t, Y, V)."
        raise NotImplementedError(msg)

    def FH_U(self, t: float, Y: LowRank, U: Any) -> Any:  # noqa: N802
        """``F(t, Y)^H @ U``; ``U (..., m, k)`` -> ``(..., n, k)``."""
        msg = f"{type(self).__name__} must implement FH_U(t, Y, U)."
        raise NotImplementedError(msg)

    def UH_F_V(self, t: float, Y: LowRank, U: Any, V: Any) -> Any:  # noqa: N802
        """``U^H @ F(t, Y) @ V``; returns ``(..., k, l)``."""
        return mm(conj_transpose(U, Y.xp), self.F_V(t, Y, V), Y.xp)


# ---------------------------------------------------------------------- argument checks
# The operators and the arrays user callables return are checked against the state by
# the user's names (`A`, `terms[0][1]`, `A(t)`, `f`), before any product is formed: the
# products themselves would fail with messages about internal names or gufunc core
# dimensions, or silently promote to another dtype.


def _kind(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__qualname__}"


def _library(xp: Any) -> str:
    return getattr(xp, "__name__", repr(xp))


def _at(t: Any) -> str:
    return "" if t is None else f" at t = {t:g}"


def _broadcasts_to(batch: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether a batch shape ``batch`` broadcasts to ``target`` (and not beyond it)."""
    if len(batch) > len(target):
        return False
    return all(b in (1, t) for b, t in zip(reversed(batch), reversed(target), strict=False))


#: (library, operator dtype, state dtype) -> whether ``operator @ state`` has the state's dtype.
_PRODUCT_KEEPS_DTYPE: dict[tuple[str, str, str], bool] = {}


def _product_keeps_dtype(op_dtype: Any, state_dtype: Any, xp: Any, device: Any) -> bool:
    """Whether the product of an ``op_dtype`` operator with a ``state_dtype`` matrix has the
    state's dtype in this library (NumPy promotes float32 @ float64 to float64; PyTorch
    refuses mixed dtypes).  Tried once per library and pair of dtypes on 1 x 1 arrays."""
    if op_dtype == state_dtype:
        return True
    key = (_library(xp), str(op_dtype), str(state_dtype))
    ok = _PRODUCT_KEEPS_DTYPE.get(key)
    if ok is None:
        try:
            a = xp.zeros((1, 1), dtype=op_dtype, device=device)
            b = xp.zeros((1, 1), dtype=state_dtype, device=device)
            ok = bool((a @ b).dtype == state_dtype)
        except Exception:  # any refusal by the library means "no"
            ok = False
        _PRODUCT_KEEPS_DTYPE[key] = ok
    return ok


def _dtype_name(dtype: Any) -> str:
    """``float64`` for NumPy's, CuPy's and PyTorch's (``torch.float64``) dtypes alike."""
    return str(dtype).removeprefix("torch.")


def _conversion(kind: str, dtype: str) -> str:
    """The call that converts an operator of ``kind`` to ``dtype``."""
    if kind == "PyTorch sparse tensor":
        return f".to(torch.{dtype})"
    if kind == "CuPy sparse matrix":
        return f".astype(cupy.{dtype})"
    return f".astype(numpy.{dtype})"


def _operators_for(U: Any) -> str:
    """The operator kinds that apply to a state whose factor is ``U``."""
    if array_api_compat.is_numpy_array(U):
        return "a scipy.sparse matrix, a scipy.sparse.linalg.LinearOperator or a NumPy array"
    if array_api_compat.is_torch_array(U):
        return "a torch sparse tensor (torch.sparse_coo_tensor(...), or .to_sparse_csr()) or a torch tensor"
    if array_api_compat.is_cupy_array(U):
        return "a cupyx.scipy.sparse matrix or a CuPy array"
    return "an array of the state's library"


def _check_operator(x: Any, name: str, *, square: bool) -> None:
    """At construction: ``x`` is an array (not a list), a matrix or stack, of a supported
    dtype; or, for operators (``square``), a sparse matrix (SciPy, CuPy), a 2-D PyTorch
    sparse tensor or a LinearOperator."""
    kind = _operators.operator_kind(x)
    if not square and kind is not None:
        msg = (
            f"`{name}` must be a dense array or a LowRank; got a {kind}. Pass it as a LowRank "
            "(U, S, V) or as a dense array of the state's library."
        )
        raise TypeError(msg)
    if square and kind is not None:
        if _dtype_name(x.dtype) not in SUPPORTED_DTYPES:
            msg = (
                f"`{name}` must have dtype float32, float64, complex64 or complex128; got a {kind} of dtype "
                f"{x.dtype}. Convert it with {_conversion(kind, 'float64')} (or another of these) first."
            )
            raise TypeError(msg)
        if kind == "PyTorch sparse tensor":
            check_has_data(x, name)
            if x.ndim != 2:
                msg = (
                    f"`{name}` must be a 2-D sparse tensor (k, k); got a {kind} of shape {tuple(x.shape)} "
                    "(batched or hybrid sparse tensors are not supported). Pass one 2-D sparse tensor "
                    "shared by all members, or a dense stack (..., k, k)."
                )
                raise ValueError(msg)
        if x.shape[0] != x.shape[1]:
            msg = f"`{name}` must be square, of shape (k, k); got a {kind} of shape {tuple(x.shape)}."
            raise ValueError(msg)
        return
    check_array(x, name)
    xp = namespace_of(x)
    if x.ndim < 2:
        msg = f"`{name}` must be a matrix or a stack of matrices (..., rows, cols); got shape {tuple(x.shape)}."
        raise ValueError(msg)
    check_dtype(x, name, xp)
    check_has_data(x, name)
    if square and x.shape[-1] != x.shape[-2]:
        msg = f"`{name}` must be square, of shape (..., k, k); got shape {tuple(x.shape)}."
        raise ValueError(msg)


def _check_against_state(x: Any, name: str, core: tuple[int, int], Y0: LowRank) -> None:
    """``x`` (an operator or a dense/LowRank inhomogeneity) fits the state ``Y0``: same
    library and device, core shape ``core``, a batch shape that broadcasts to the
    state's, and products that stay in the state's dtype."""
    arr = x.U if isinstance(x, LowRank) else x
    namespace_of_named(**{name: arr, "Y0": Y0.U})
    xp = Y0.xp
    if device_of(arr) != Y0.device:
        msg = (
            f"`{name}` must be on the state's device {Y0.device}; got device {device_of(arr)}. "
            "Move it to the state's device first."
        )
        raise ValueError(msg)
    shape = tuple(x.shape)
    if shape[-2:] != tuple(core):
        msg = f"`{name}` must have shape (..., {core[0]}, {core[1]}) for a state of shape {Y0.shape}; got {shape}."
        raise ValueError(msg)
    if not _broadcasts_to(shape[:-2], Y0.batch_shape):
        if Y0.batch_shape:
            want = f"a batch shape that broadcasts to the state's batch shape {Y0.batch_shape}"
        else:
            want = f"no batch dimensions (the state is one matrix of shape {Y0.shape})"
        msg = (
            f"`{name}` must have {want}; got shape {shape} (batch shape {shape[:-2]}). "
            "Give it the state's batch shape, or none."
        )
        raise ValueError(msg)
    if is_complex_dtype(x.dtype, xp) and not is_complex_dtype(Y0.dtype, xp):
        msg = (
            f"`{name}` must be real for a real state ({Y0.dtype}); got complex dtype {x.dtype}. "
            "Start from a complex state."
        )
        raise TypeError(msg)
    if not _product_keeps_dtype(x.dtype, Y0.dtype, xp, Y0.device):
        msg = (
            f"`{name}` must have a dtype whose products with the state keep the state's dtype {Y0.dtype}; "
            f"got {x.dtype}. Cast it with xp.astype({name}, {Y0.dtype}) (or start from a state "
            f"of dtype {x.dtype})."
        )
        raise TypeError(msg)


def _check_operator_against_state(x: Any, name: str, size: int, Y0: LowRank) -> None:
    """An operator of any supported kind fits the state (a dense one as
    :func:`_check_against_state`; sparse and matrix-free ones need a state of their
    library (:data:`_operators.STATE_LIBRARY`) and device, the size, a dtype that keeps
    the state's, finite stored values (a 2-D sparse operator is shared by every member,
    so a NaN in it fails them all) and, for a LinearOperator, an adjoint)."""
    kind = _operators.operator_kind(x)
    if kind is None:
        check_array(x, name)
        _check_operator(x, name, square=True)
        _check_against_state(x, name, (size, size), Y0)
        return
    import numpy as np

    library, fits = _operators.STATE_LIBRARY[kind]
    if not fits(Y0.U):
        msg = (
            f"`{name}` is a {kind}, which applies to {library} states only; the state is {_kind(Y0.U)}. "
            f"For this state pass {_operators_for(Y0.U)}."
        )
        raise TypeError(msg)
    torch_ = kind == "PyTorch sparse tensor"
    if torch_ or kind == "CuPy sparse matrix":
        device = x.device if torch_ else device_of(x.data)
        if device != Y0.device:
            msg = (
                f"`{name}` must be on the state's device {Y0.device}; got a {kind} on device {device}. "
                "Move it to the state's device first."
            )
            raise ValueError(msg)
    if tuple(x.shape) != (size, size):
        msg = f"`{name}` must have shape ({size}, {size}) for a state of shape {Y0.shape}; got {tuple(x.shape)}."
        raise ValueError(msg)
    state_dtype = _dtype_name(Y0.dtype)
    if (x.is_complex() if torch_ else x.dtype.kind == "c") and not is_complex_dtype(Y0.dtype, Y0.xp):
        msg = (
            f"`{name}` must be real for a real state ({Y0.dtype}); got a complex {kind} ({x.dtype}). "
            "Start from a complex state."
        )
        raise TypeError(msg)
    if torch_ and x.dtype != Y0.dtype:
        msg = (
            f"`{name}` must have the state's dtype {Y0.dtype} (PyTorch's sparse products do not mix dtypes); "
            f"got a {kind} of dtype {x.dtype}. Convert it with {_conversion(kind, state_dtype)} first."
        )
        raise TypeError(msg)
    if not torch_ and np.result_type(x.dtype, Y0.U.dtype) != Y0.U.dtype:
        msg = (
            f"`{name}` must have a dtype whose products with the state keep the state's dtype {Y0.dtype}; "
            f"got a {kind} of dtype {x.dtype}. Convert it with {_conversion(kind, state_dtype)} first."
        )
        raise TypeError(msg)
    values = _operators.stored_values(x)
    if values is not None:
        vxp = array_api_compat.array_namespace(values)
        if not bool(vxp.all(vxp.isfinite(values))):
            msg = (
                f"`{name}` has NaN or Inf among its stored values (a {kind}, shared by every member of the "
                "state, would make them all non-finite). Give an operator with finite values."
            )
            raise ValueError(msg)
    if kind == "SciPy LinearOperator":
        try:
            x.rmatvec(np.zeros(size, dtype=Y0.U.dtype))
        except NotImplementedError:
            msg = (
                f"`{name}` is a LinearOperator without an adjoint; F^H U needs {name}^H. "
                "Build it with rmatvec= (or rmatmat=), or subclass LinearOperator with _adjoint."
            )
            raise ValueError(msg) from None


def _check_returned(
    F: Any, name: str, shape: tuple, dtype: Any, xp: Any, *, t: Any = None, exact: bool = True, lowrank: bool = False
) -> None:
    """Validate what a user callable returned for a state of ``shape`` and ``dtype``.

    ``exact``: the array must have the state's shape and dtype (``f``, ``dA(t)``);
    otherwise its core shape must be the state's, its batch shape must broadcast to the
    state's, and its products with the state must keep the state's dtype (``A(t)``,
    ``C(t)``, which enter the right-hand side only through products).  ``lowrank``: a
    :class:`LowRank` is accepted as well.
    """
    shape = tuple(shape)
    arr = F.U if lowrank and isinstance(F, LowRank) else F
    try:
        ok = array_api_compat.is_array_api_obj(arr) and not isinstance(arr, (bool, int, float, complex))
        same = ok and array_api_compat.array_namespace(arr) is xp
    except TypeError:
        ok = same = False
    if not same:
        what = "an array or a LowRank" if lowrank else "an array"
        msg = (
            f"`{name}` must return {what} of the state's array library ({_library(xp)}) of shape {shape}; "
            f"got {_kind(arr)}{_at(t)}. Build the result with that library, e.g. xp.asarray(...)."
        )
        raise TypeError(msg)
    got = tuple(F.shape)
    if exact:
        if got != shape:
            msg = f"`{name}` returned an array of shape {got}{_at(t)}; it must return the state's shape {shape}."
            raise ValueError(msg)
        if F.dtype != dtype:
            msg = (
                f"`{name}` returned dtype {F.dtype} for a state of dtype {dtype}{_at(t)}; it must return the "
                "state's dtype (cast constants with xp.astype, or start from a complex state for a complex "
                "right-hand side)."
            )
            raise TypeError(msg)
        return
    if got[-2:] != shape[-2:] or not _broadcasts_to(got[:-2], shape[:-2]):
        if shape[:-2]:
            want = f"(..., {shape[-2]}, {shape[-1]}) with a batch shape that broadcasts to the state's {shape[:-2]}"
        else:
            want = f"{shape} (the state's shape)"
        msg = f"`{name}` must return an array of shape {want}; got shape {got}{_at(t)}."
        raise ValueError(msg)
    device = device_of(arr)
    if is_complex_dtype(F.dtype, xp) and not is_complex_dtype(dtype, xp):
        msg = (
            f"`{name}` must return real arrays for a real state ({dtype}); got complex dtype {F.dtype}{_at(t)}. "
            "Start from a complex state."
        )
        raise TypeError(msg)
    if not _product_keeps_dtype(F.dtype, dtype, xp, device):
        msg = (
            f"`{name}` must return arrays whose products with the state keep the state's dtype {dtype}; "
            f"got dtype {F.dtype}{_at(t)}. Return {dtype} arrays (xp.astype)."
        )
        raise TypeError(msg)


class _DenseRHS(AbstractMatrixODE):
    """A problem whose :meth:`evaluate` forms ``F(t, Y)`` densely: every product at a
    point comes from that one value (one ``F`` evaluation per product call)."""

    def F_V(self, t: float, Y: LowRank, V: Any) -> Any:  # noqa: N802
        return self.evaluate(t, Y).F_V(V)

    def FH_U(self, t: float, Y: LowRank, U: Any) -> Any:  # noqa: N802
        return self.evaluate(t, Y).FH_U(U)


class MatrixODE(_DenseRHS):
    r"""Generic matrix ODE given by a dense right-hand side.

    Parameters
    ----------
    f : callable ``f(t, Y) -> dY/dt``
        ``t`` is a Python float, ``Y`` a dense array of shape ``(..., m, n)`` of the
        state's library, device and dtype; ``f`` returns an array of the same shape
        and dtype.  ``f`` must not modify ``Y``.

    Notes
    -----
    Each evaluation point forms ``Y`` and ``F(t, Y)`` densely once (``O(mn)`` memory)
    and reuses ``F`` for all products at that point.  For large problems with
    structure, implement :class:`AbstractMatrixODE` products instead.
    """

    def __init__(self, f: Callable[[float, Any], Any]) -> None:
        if not callable(f):
            msg = f"`f` must be callable as f(t, Y) -> dY/dt; got {type(f).__name__}."
            raise TypeError(msg)
        self.f = f

    def evaluate(self, t: float, Y: LowRank) -> RHSValue:
        dense = Y.to_dense()
        F = self.f(t, dense)
        _check_returned(F, "f", dense.shape, dense.dtype, Y.xp, t=t)
        return DenseValue(F, Y.xp)


class MatrixPath(_DenseRHS):
    r"""Low-rank approximation of a given matrix path ``A(t)``: ``dY/dt = dA/dt``.

    Parameters
    ----------
    A : callable ``A(t) -> (..., m, n) array``
        The path.  With ``substep="exact"`` the substeps use the exact increments
        ``A(t1) - A(t0)``, which makes the projector-splitting integrators exact for
        paths of rank ``r`` (Lubich & Oseledets 2014).
    dA : callable ``dA(t) -> (..., m, n) array``, optional
        The derivative, needed only for ``substep="euler"`` or ``"rk4"``.

    Notes
    -----
    The last three values ``A(t)`` are cached, so consecutive steps (and the half-step
    of the Strang method) evaluate the path once per time.
    """

    has_increments = True

    def __init__(self, A: Callable[[float], Any], dA: Callable[[float], Any] | None = None) -> None:
        if not callable(A):
            msg = f"`A` must be callable as A(t) -> matrix; got {type(A).__name__}."
            raise TypeError(msg)
        if dA is not None and not callable(dA):
            msg = f"`dA` must be callable as dA(t) -> matrix or None; got {type(dA).__name__}."
            raise TypeError(msg)
        self.A = A
        self.dA = dA
        self._cache: dict[float, Any] = {}
        # (shape, a 0-d array of the state's library, dtype and device) of the state last
        # passed to check_state: what every A(t) is checked against.
        self._state: tuple[tuple[int, ...], Any] | None = None

    def _value(self, t: float) -> Any:
        if t not in self._cache:
            value = self.A(t)
            if self._state is not None:
                shape, like = self._state
                _check_returned(value, "A(t)", shape, like.dtype, namespace_of(like), t=t, exact=False)
            else:
                check_array(value, "A(t)")
            if len(self._cache) >= 3:
                self._cache.pop(next(iter(self._cache)))
            self._cache[t] = value
        return self._cache[t]

    def check_state(self, Y0: LowRank) -> None:
        self._cache.clear()
        self._state = (tuple(Y0.shape), Y0.xp.zeros((), dtype=Y0.dtype, device=Y0.device))

    def increment(self, t0: float, t1: float, xp: Any) -> RHSValue:
        a0, a1 = self._value(t0), self._value(t1)
        return DenseValue(a1 - a0, xp)

    def evaluate(self, t: float, Y: LowRank) -> RHSValue:
        if self.dA is None:
            msg = (
                "this MatrixPath has no derivative `dA`; use substep='exact' (exact "
                "increments A(t1) - A(t0)) or pass dA=... to use 'euler' or 'rk4'."
            )
            raise ValueError(msg)
        F = self.dA(t)
        _check_returned(F, "dA(t)", Y.shape, Y.dtype, Y.xp, t=t)
        return DenseValue(F, Y.xp)


class LinearMatrixODE(AbstractMatrixODE):
    r"""Linear matrix ODE ``dY/dt = A Y + Y B^T + sum_j A_j Y B_j^T + C(t)``.

    Products are evaluated factor-wise, so no ``m x n`` matrix is ever formed (unless
    ``C`` is given dense by the user): for ``Y = U S V^H``,
    ``F V' = A U S (V^H V') + U S (V^H (B^T V')) + C V'`` and similarly for
    ``F^H U'`` and ``U'^H F V'``.

    Parameters
    ----------
    A : operator (m, m), or None
        Left operator (``None`` means zero).  An operator is a dense array
        ``(..., m, m)`` of the state's library; for NumPy states also a ``scipy.sparse``
        array or matrix or a ``scipy.sparse.linalg.LinearOperator`` with an adjoint
        (``rmatvec``/``rmatmat``: ``F^H U`` needs ``A^H``); for PyTorch states a 2-D
        torch sparse tensor (COO, CSR, CSC, BSR, BSC) of the state's dtype and device;
        for CuPy states a ``cupyx.scipy.sparse`` matrix; or a callable ``A(t)``
        returning any of these, evaluated once per distinct time and checked at every
        evaluation.  Sparse and matrix-free operators are applied to thin blocks only
        (``A (U S)``, ``A^H W``), a stack of blocks as one ``m x (B k)`` block: no
        ``m x m`` or ``m x n`` dense matrix is formed.
    B : operator (n, n), or None
        Right operator, applied as ``Y B^T`` (plain transpose, also for complex ``B``);
        the same kinds as ``A``.
    C : array (..., m, n), LowRank, callable ``C(t)`` or ``C(t, Y)`` returning either, or None
        Inhomogeneity.  A :class:`LowRank` ``C`` keeps every product ``O((m+n) r k)``.
    terms : sequence of (A_j, B_j), optional
        Additional terms ``A_j Y B_j^T`` (e.g. a potential ``V Y V^T``), operators of the
        same kinds.

    Notes
    -----
    A callable operator or ``C`` that takes two arguments is called as ``A(t, Y)`` with
    the evaluation point ``Y`` (a :class:`LowRank` whose factors need not be
    orthonormal): the right-hand side ``F(t, Y) = sum_j A_j(t, Y) Y B_j(t, Y)^T +
    C(t, Y)`` is then nonlinear in ``Y`` through low-dimensional functionals of it
    (moments, a field), as in Vlasov-Poisson, while every product stays factor-wise.
    Such a value is computed once per evaluation point.

    Examples
    --------
    The heat equation ``dX/dt = L X + X L`` with a symmetric Laplacian ``L``:

    >>> import numpy as np
    >>> import lowrank_core as lc
    >>> L = -2 * np.eye(5) + np.eye(5, k=1) + np.eye(5, k=-1)
    >>> problem = lc.LinearMatrixODE(L, L)
    """

    def __init__(self, A: Any, B: Any, C: Any = None, *, terms: Any = ()) -> None:
        for mat, name in ((A, "A"), (B, "B")):
            if mat is not None and not _operators.is_operator_callable(mat):
                _check_operator(mat, name, square=True)
        if isinstance(terms, (str, bytes)) or not hasattr(terms, "__iter__"):
            msg = (
                f"`terms` must be a sequence of pairs (A_j, B_j) of arrays; got {_kind(terms)}. "
                "Pass e.g. terms=[(A1, B1)]."
            )
            raise TypeError(msg)
        pairs = [(A, B, "A", "B")]
        for j, term in enumerate(terms):
            if (
                isinstance(term, (str, bytes))
                or not hasattr(term, "__iter__")
                or array_api_compat.is_array_api_obj(term)
            ):
                msg = f"`terms[{j}]` must be a pair (A_j, B_j) of arrays; got {_kind(term)}."
                raise TypeError(msg)
            term = tuple(term)
            if len(term) != 2:
                msg = f"`terms[{j}]` must be a pair (A_j, B_j); got {len(term)} items."
                raise ValueError(msg)
            Aj, Bj = term
            for k, mat in enumerate(term):
                if not _operators.is_operator_callable(mat):
                    _check_operator(mat, f"terms[{j}][{k}]", square=True)
            pairs.append((Aj, Bj, f"terms[{j}][0]", f"terms[{j}][1]"))
        if C is not None and not (callable(C) or isinstance(C, LowRank)):
            try:
                check_array(C, "C")
            except TypeError:
                msg = (
                    "`C` must be an array (..., m, n), a LowRank, a callable C(t) returning either, or None; "
                    f"got {_kind(C)}. Convert it with your array library first, e.g. numpy.asarray(...)."
                )
                raise TypeError(msg) from None
            _check_operator(C, "C", square=False)
        if all(a is None and b is None for a, b, _, _ in pairs) and C is None:
            msg = "`A`, `B` and `C` are all None; the right-hand side would be zero."
            raise ValueError(msg)
        self.A, self.B, self.C = A, B, C
        # A Y + Y B^T is the Kronecker sum (A Y I + I Y B^T): store left/right factors.
        # Each entry: (left operator or None, right operator or None), wrapped by
        # lowrank_core._operators (dense, sparse, matrix-free or time-dependent).
        self._kron: list[tuple[Any, Any, str, str]] = []

        def wrap(mat: Any, name: str, left: bool) -> Any:
            return _operators.as_operator(mat, name, functools.partial(self._check_value, left=left))

        if A is not None:
            self._kron.append((wrap(A, "A", True), None, "A", ""))
        if B is not None:
            self._kron.append((None, wrap(B, "B", False), "", "B"))
        for Aj, Bj, na, nb in pairs[1:]:
            self._kron.append((wrap(Aj, na, True), wrap(Bj, nb, False), na, nb))

    @staticmethod
    def _check_value(value: Any, name: str, t: float, Y: LowRank, *, left: bool) -> None:
        """Check a value ``A(t)`` of a time-dependent operator against the state: a left
        operator acts on ``m``, a right one on ``n``."""
        size = Y.shape[-2] if left else Y.shape[-1]
        try:
            _check_operator_against_state(value, name, size, Y)
        except (TypeError, ValueError) as exc:
            msg = f"{exc} (returned at t = {t:g})"
            raise type(exc)(msg) from None

    def check_state(self, Y0: LowRank) -> None:
        m, n = Y0.shape[-2:]
        for left, right, na, nb in self._kron:
            for op, name, size in ((left, na, m), (right, nb, n)):
                if isinstance(op, _operators._TimeDependent):
                    op.clear()
                elif op is not None:
                    _check_operator_against_state(op.a, name, size, Y0)
        C = self.C
        if C is not None and not callable(C):
            _check_against_state(C, "C", (m, n), Y0)

    def _C(self, t: float, Y: LowRank) -> Any:
        C = self.C
        if not callable(C):
            return C
        if _operators.takes_state(C):
            value = C(t, Y)
            _check_returned(value, "C(t, Y)", Y.shape, Y.dtype, Y.xp, t=t, exact=False, lowrank=True)
        else:
            value = C(t)
            _check_returned(value, "C(t)", Y.shape, Y.dtype, Y.xp, t=t, exact=False, lowrank=True)
        return value

    def _source(self, t: float, Y: LowRank) -> RHSValue | None:
        """The source term ``C`` at ``(t, Y)`` as products (``None`` without one)."""
        C = self._C(t, Y)
        if C is None:
            return None
        return _LowRankValue(C, Y.xp) if isinstance(C, LowRank) else DenseValue(C, Y.xp)

    # Products go through ``_linalg.matmul`` (``mm``): large NumPy stacks are split
    # across threads there.  ``mm_h`` / ``mm_conj`` apply the conjugate transpose /
    # conjugate of an operator without copying it.
    def F_V(self, t: float, Y: LowRank, W: Any) -> Any:  # noqa: N802
        xp = Y.xp
        Vh = conj_transpose(Y.V, xp)
        VhW = mm(Vh, W, xp)  # (r, k)
        out = None
        for left, right, _, _ in self._kron:
            # (Y B^T) W = U S V^H (B^T W)
            coeff = VhW if right is None else mm(Vh, _operators.at(right, t, Y).apply_t(W, xp), xp)
            term = mm(Y.U, mm(Y.S, coeff, xp), xp)
            if left is not None:
                term = _operators.at(left, t, Y).apply(term, xp)
            out = _plus(out, term)
        source = self._source(t, Y)
        return out if source is None else _plus(out, source.F_V(W))

    def FH_U(self, t: float, Y: LowRank, W: Any) -> Any:  # noqa: N802
        xp = Y.xp
        out = None
        SH = conj_transpose(Y.S, xp)
        Uh = conj_transpose(Y.U, xp)
        for left, right, _, _ in self._kron:
            lw = W if left is None else _operators.at(left, t, Y).apply_h(W, xp)
            term = mm(Y.V, mm(SH, mm(Uh, lw, xp), xp), xp)
            if right is not None:
                # (Y B^T)^H = conj(B) Y^H.
                term = _operators.at(right, t, Y).apply_conj(term, xp)
            out = _plus(out, term)
        source = self._source(t, Y)
        return out if source is None else _plus(out, source.FH_U(W))

    def UH_F_V(self, t: float, Y: LowRank, W: Any, Z: Any) -> Any:  # noqa: N802
        xp = Y.xp
        Vh = conj_transpose(Y.V, xp)
        VhZ = mm(Vh, Z, xp)
        out = None
        for left, right, _, _ in self._kron:
            # W^H A U = (A^H W)^H U
            lw = W if left is None else _operators.at(left, t, Y).apply_h(W, xp)
            lhs = mm(conj_transpose(lw, xp), Y.U, xp)
            rhs = VhZ if right is None else mm(Vh, _operators.at(right, t, Y).apply_t(Z, xp), xp)
            term = mm(lhs, mm(Y.S, rhs, xp), xp)
            out = _plus(out, term)
        source = self._source(t, Y)
        return out if source is None else _plus(out, source.UH_F_V(W, Z))
