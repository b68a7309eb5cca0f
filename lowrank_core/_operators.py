r"""Operators of :class:`~lowrank_core.LinearMatrixODE`: dense, sparse, matrix-free, time-dependent.

Every operator ``A (k, k)`` of a linear right-hand side is only ever applied to thin
blocks ``X (..., k, c)`` with ``c`` of the order of the rank, in four forms:

* ``A X``, ``A^H X`` (left operators: ``F V`` and ``F^H U``),
* ``A^T X``, ``conj(A) X`` (right operators, applied as ``Y B^T``).

:func:`as_operator` wraps what the user passed into an object with these four products:

* a dense array of the state's library (a matrix or a stack of matrices), applied with
  the library's products (``_linalg.matmul``, no copies of the operator);
* a SciPy sparse array or matrix (``scipy.sparse``, any format), applied to NumPy
  states; its transpose and conjugate transpose are formed once (same storage cost);
* a PyTorch sparse tensor (COO, CSR, CSC, BSR or BSC; 2-D), applied to PyTorch states
  of its device and dtype: held in CSR, with ``A^T`` (and, when complex, ``conj(A)``
  and ``A^H``) formed once as CSR too (PyTorch 2.13's CPU product with a dense block is
  several times faster for CSR than for COO or CSC, the transposed view of CSR);
* a CuPy sparse matrix (``cupyx.scipy.sparse``, recognised only when that module is
  already imported), applied to CuPy states with the SciPy code (same API);
* a ``scipy.sparse.linalg.LinearOperator`` with ``matvec``/``matmat`` and
  ``rmatvec``/``rmatmat`` (the adjoint is needed for ``F^H U``), applied to NumPy
  states;
* a callable ``A(t)`` returning any of these: evaluated once per distinct time (the
  values of the last few times are kept) and checked against the state at every
  evaluation;
* a callable ``A(t, Y)`` of the evaluation point (a state-dependent linear operator,
  e.g. the field of a Vlasov-Poisson problem from the density of ``Y``): evaluated once
  per evaluation point.

A stacked state ``X (B, k, c)`` meets a 2-D sparse or matrix-free operator as one
``k x (B c)`` block, so each product is one sparse/operator call.  No ``m x m`` or
``m x n`` dense matrix is ever formed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_compat

from ._linalg import matmul as mm
from ._linalg import matmul_conj as mm_conj
from ._linalg import matmul_h as mm_h

__all__ = [
    "STATE_LIBRARY",
    "as_operator",
    "at",
    "is_cupy_sparse",
    "is_matrix_free",
    "is_operator_callable",
    "is_scipy_sparse",
    "is_torch_sparse",
    "operator_kind",
    "stored_values",
]


def is_scipy_sparse(x: Any) -> bool:
    """A ``scipy.sparse`` array or matrix (SciPy is imported only if already loaded)."""
    import sys

    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and bool(sparse.issparse(x))


def is_matrix_free(x: Any) -> bool:
    """A ``scipy.sparse.linalg.LinearOperator``."""
    import sys

    spla = sys.modules.get("scipy.sparse.linalg")
    return spla is not None and isinstance(x, spla.LinearOperator)


def is_cupy_sparse(x: Any) -> bool:
    """A ``cupyx.scipy.sparse`` matrix (recognised only if that module is already loaded)."""
    import sys

    sparse = sys.modules.get("cupyx.scipy.sparse")
    return sparse is not None and bool(sparse.issparse(x))


def is_torch_sparse(x: Any) -> bool:
    """A PyTorch tensor of a sparse layout (COO, CSR, CSC, BSR, BSC)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor) and x.layout != torch.strided


def is_block_operator(x: Any) -> bool:
    """A row-block operator applied by halo exchange (:class:`lowrank_core.dask.StencilOperator`)."""
    return bool(getattr(type(x), "_lowrank_row_block", False))


def _dask_or_numpy(x: Any) -> bool:
    return bool(array_api_compat.is_dask_array(x) or array_api_compat.is_numpy_array(x))


def operator_kind(x: Any) -> str | None:
    """The kind of a non-dense operator (a key of :data:`STATE_LIBRARY`), else ``None``."""
    if is_block_operator(x):
        return "row-block stencil operator"
    if is_torch_sparse(x):
        return "PyTorch sparse tensor"
    if is_cupy_sparse(x):
        return "CuPy sparse matrix"
    if is_scipy_sparse(x):
        return "SciPy sparse matrix"
    if is_matrix_free(x):
        return "SciPy LinearOperator"
    return None


#: Non-dense operator kind -> (the library of the states it applies to, the test of a
#: state factor for that library).
STATE_LIBRARY: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "PyTorch sparse tensor": ("PyTorch", array_api_compat.is_torch_array),
    "CuPy sparse matrix": ("CuPy", array_api_compat.is_cupy_array),
    "SciPy sparse matrix": ("NumPy", array_api_compat.is_numpy_array),
    "SciPy LinearOperator": ("NumPy", array_api_compat.is_numpy_array),
    "row-block stencil operator": ("Dask or NumPy", _dask_or_numpy),
}


def stored_values(x: Any) -> Any:
    """The stored values of a sparse operator (an array of its library), or ``None`` for
    a ``LinearOperator``.  Duplicates of an uncoalesced PyTorch COO tensor are listed
    separately; formats without one values array (SciPy LIL, DOK) are converted to CSR.
    The complex values of PyTorch's compressed layouts are copied: PyTorch 2.13 refuses
    elementwise functions such as ``isfinite`` on their views ("Sparse CSR tensors do
    not have strides")."""
    if is_torch_sparse(x):
        import sys

        if x.layout == sys.modules["torch"].sparse_coo:
            return x._values()
        return x.values().clone() if x.is_complex() else x.values()
    if is_scipy_sparse(x) or is_cupy_sparse(x):
        return x.data if x.format in ("csr", "csc", "bsr", "coo", "dia") else x.tocsr().data
    return None


def is_operator_callable(x: Any) -> bool:
    """A callable ``A(t)`` / ``A(t, Y)``, not an array, sparse matrix or LinearOperator
    (which may be callable themselves)."""
    return callable(x) and not array_api_compat.is_array_api_obj(x) and operator_kind(x) is None


class _Dense:
    """A dense array operator of the state's library."""

    def __init__(self, a: Any) -> None:
        self.a = a

    def apply(self, x: Any, xp: Any) -> Any:
        return mm(self.a, x, xp)

    def apply_h(self, x: Any, xp: Any) -> Any:
        return mm_h(self.a, x, xp)

    def apply_t(self, x: Any, xp: Any) -> Any:
        return mm(xp.matrix_transpose(self.a), x, xp)

    def apply_conj(self, x: Any, xp: Any) -> Any:
        return mm_conj(self.a, x, xp)


def _as_columns(x: Any, xp: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``x (..., k, c)`` as one ``(k, B c)`` block, and the map back to ``(..., rows, c)``."""
    if x.ndim == 2:
        return x, lambda y: y
    batch, (k, c) = tuple(x.shape[:-2]), tuple(x.shape[-2:])
    nb = math.prod(batch)
    cols = xp.reshape(xp.permute_dims(xp.reshape(x, (nb, k, c)), (1, 0, 2)), (k, nb * c))

    def back(y: Any) -> Any:
        rows = y.shape[0]
        return xp.reshape(xp.permute_dims(xp.reshape(y, (rows, nb, c)), (1, 0, 2)), (*batch, rows, c))

    return cols, back


class _Sparse:
    """A SciPy sparse operator (NumPy states), or a CuPy one (CuPy states): the same API."""

    def __init__(self, a: Any) -> None:
        self.a = a.tocsr() if a.format not in ("csr", "csc", "bsr") else a
        complex_ = a.dtype.kind == "c"
        self._t = self.a.T
        self._h = self.a.conj().T if complex_ else self._t
        self._c = self.a.conj() if complex_ else self.a

    def _apply(self, op: Any, x: Any, xp: Any) -> Any:
        cols, back = _as_columns(x, xp)
        return back(xp.asarray(op @ cols))

    def apply(self, x: Any, xp: Any) -> Any:
        return self._apply(self.a, x, xp)

    def apply_h(self, x: Any, xp: Any) -> Any:
        return self._apply(self._h, x, xp)

    def apply_t(self, x: Any, xp: Any) -> Any:
        return self._apply(self._t, x, xp)

    def apply_conj(self, x: Any, xp: Any) -> Any:
        return self._apply(self._c, x, xp)


def _torch_csr(a: Any) -> Any:
    """``a`` (a 2-D PyTorch sparse tensor) in CSR; COO is coalesced by the conversion."""
    import sys

    torch = sys.modules["torch"]
    if a.layout == torch.sparse_csr:
        return a
    if a.layout in (torch.sparse_bsr, torch.sparse_bsc):
        a = a.to_sparse_coo()  # PyTorch converts blocked layouts to CSR only through COO
    return a.to_sparse_csr()


class _TorchSparse(_Sparse):
    """A PyTorch sparse tensor (PyTorch states): ``A``, ``A^T``, ``conj(A)`` and ``A^H``
    held in CSR, each formed once (the conjugates only for complex ``A``)."""

    def __init__(self, a: Any) -> None:
        self.a = _torch_csr(a)
        self._t = _torch_csr(self.a.t())  # CSR -> CSC view -> CSR copy
        if self.a.is_complex():
            self._c = self.a.conj().resolve_conj()
            self._h = _torch_csr(self._c.t())
        else:
            self._c, self._h = self.a, self._t


class _MatrixFree:
    """A ``scipy.sparse.linalg.LinearOperator`` (NumPy states)."""

    def __init__(self, a: Any) -> None:
        self.a = a
        self.complex = a.dtype.kind == "c"

    def apply(self, x: Any, xp: Any) -> Any:
        cols, back = _as_columns(x, xp)
        return back(xp.asarray(self.a.matmat(cols)))

    def apply_h(self, x: Any, xp: Any) -> Any:
        cols, back = _as_columns(x, xp)
        return back(xp.asarray(self.a.rmatmat(cols)))

    def apply_t(self, x: Any, xp: Any) -> Any:
        # A^T X = conj(A^H conj(X))
        if not self.complex:
            return self.apply_h(x, xp)
        return xp.conj(self.apply_h(xp.conj(x), xp))

    def apply_conj(self, x: Any, xp: Any) -> Any:
        if not self.complex:
            return self.apply(x, xp)
        return xp.conj(self.apply(xp.conj(x), xp))


def _wrap(a: Any) -> Any:
    if is_block_operator(a):  # applies itself (halo exchange on Dask row chunks)
        return a
    if is_torch_sparse(a):
        return _TorchSparse(a)
    if is_scipy_sparse(a) or is_cupy_sparse(a):
        return _Sparse(a)
    if is_matrix_free(a):
        return _MatrixFree(a)
    return _Dense(a)


#: Values ``A(t)`` kept per time-dependent operator: a step's substeps evaluate at most
#: three times (start, midpoint, end), and the next step starts at the last.
_CACHED_TIMES = 4


class _TimeDependent:
    """``A(t)``: evaluated, checked and wrapped once per distinct time (the values of the
    last ``_CACHED_TIMES`` times are kept)."""

    def __init__(self, fn: Callable[[float], Any], name: str, check: Callable[[Any, str, Any, Any], None]) -> None:
        self.fn = fn
        self.name = name
        self.check = check
        self._cache: dict[float, Any] = {}

    def at(self, t: float, Y: Any) -> Any:
        op = self._cache.get(t)
        if op is None:
            value = self.fn(t)
            self.check(value, f"{self.name}(t)", t, Y)
            if len(self._cache) >= _CACHED_TIMES:
                self._cache.pop(next(iter(self._cache)))
            op = self._cache[t] = _wrap(value)
        return op

    def clear(self) -> None:
        """Forget the cached values (a new solve may bring a state of another shape)."""
        self._cache.clear()

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": self.fn, "name": self.name, "check": self.check, "_cache": {}}


class _StateDependent(_TimeDependent):
    """``A(t, Y)``: a linear operator whose coefficients depend on the evaluation point
    (moments of ``Y``, a field from a Poisson solve): evaluated, checked and wrapped
    once per evaluation point ``(t, Y)`` (the last ``_CACHED_TIMES`` points are kept,
    each with its ``Y``, so that identities stay unique)."""

    def at(self, t: float, Y: Any) -> Any:
        key = (t, id(Y))
        hit = self._cache.get(key)
        if hit is None:
            value = self.fn(t, Y)
            self.check(value, f"{self.name}(t, Y)", t, Y)
            if len(self._cache) >= _CACHED_TIMES:
                self._cache.pop(next(iter(self._cache)))
            hit = self._cache[key] = (_wrap(value), Y)
        return hit[0]


def takes_state(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is called as ``fn(t, Y)`` (it accepts two positional arguments)
    rather than ``fn(t)``."""
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    try:
        sig.bind(0.0, None)
    except TypeError:
        return False
    try:
        sig.bind(0.0)
    except TypeError:
        return True
    return False  # both work (a default for Y): the time-only form


def as_operator(a: Any, name: str, check: Callable[[Any, str, Any, Any], None]) -> Any:
    """The operator object for ``a`` (see the module docstring); ``check(value, name, t, Y)``
    validates a value ``A(t)`` of a callable against the current state ``Y``."""
    if is_operator_callable(a):
        return (_StateDependent if takes_state(a) else _TimeDependent)(a, name, check)
    return _wrap(a)


def at(op: Any, t: float, Y: Any) -> Any:
    """The operator at time ``t`` (itself unless it is time-dependent)."""
    return op.at(t, Y) if isinstance(op, _TimeDependent) else op
