r"""Shared pieces of the PDE problems on periodic grids (Burgers, Allen-Cahn): Khatri-Rao
powers, the periodic stencils, the state checks, and the dense-or-factored evaluation.

For ``Y = A B^T`` with ``A = U S`` of shape ``(m, r)`` and ``B = V`` of shape ``(n, r)``,

.. math:: Y^{\odot p} = (A \bullet \cdots \bullet A)(B \bullet \cdots \bullet B)^T,

where ``A • A`` is the row-wise Kronecker (face-splitting) product, of shape
``(m, r^p)``.  A product ``Y^{⊙p} W`` with ``W (n, k)`` is then
``(A^{•p}) ((B^{•p})^T W)``: ``O((m + n) r^p k)`` flops, done in row blocks of at most
``_CHUNK`` entries so that neither ``m x n`` nor ``m x r^p`` is ever held.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from .._checks import choice, real_number
from .._lowrank import LowRank
from .._namespace import namespace_of_named
from .._problem import AbstractMatrixODE, DenseValue, RHSValue

#: Entries of one row block of a Khatri-Rao power (2**18 float64 = 2 MiB).
_CHUNK = 2**18
#: Largest ``m * n`` for which the automatic choice may form the dense ``F`` (32 MiB in float64).
_DENSE_MAX = 2**22

_PRODUCTS = ("auto", "factored", "dense")


# ====================================================================== Khatri-Rao powers
def _row_kron_power(A: Any, p: int, xp: Any) -> Any:
    """Rows ``a_i ⊗ ... ⊗ a_i`` (``p`` factors) of ``A (c, r)``: shape ``(c, r^p)``."""
    c = A.shape[0]
    K = A
    for _ in range(p - 1):
        K = xp.reshape(K[:, :, None] * A[:, None, :], (c, -1))
    return K


def _rows_per_block(r: int, p: int) -> int:
    return max(1, _CHUNK // r**p)


def _kr_gram(B: Any, W: Any, p: int, xp: Any) -> Any:
    r"""``(B^{•p})^T W`` of shape ``(r^p, k)`` for ``B (n, r)``, ``W (n, k)``, in row blocks."""
    n, r = B.shape
    step = _rows_per_block(r, p)
    out = None
    for i in range(0, n, step):
        term = xp.matrix_transpose(_row_kron_power(B[i : i + step, :], p, xp)) @ W[i : i + step, :]
        out = term if out is None else out + term
    return out


def _kr_apply(A: Any, G: Any, p: int, xp: Any) -> Any:
    r"""``A^{•p} G`` of shape ``(m, k)`` for ``A (m, r)``, ``G (r^p, k)``, in row blocks."""
    m, r = A.shape
    step = _rows_per_block(r, p)
    parts = [_row_kron_power(A[i : i + step, :], p, xp) @ G for i in range(0, m, step)]
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


def hadamard_power_product(A: Any, B: Any, W: Any, p: int) -> Any:
    r"""``(A B^T)^{⊙p} W`` from the factors, without forming ``A B^T``.

    Parameters
    ----------
    A : array (m, r)
    B : array (n, r)
    W : array (n, k)
    p : int
        Power, ``p >= 1``.

    Returns
    -------
    array (m, k)
        ``A^{•p} ((B^{•p})^T W)``, ``O((m + n) r^p k)`` flops and ``O(m k + _CHUNK)``
        memory.
    """
    xp = namespace_of_named(A=A, B=B, W=W)
    return _kr_apply(A, _kr_gram(B, W, p, xp), p, xp)


# ====================================================================== periodic stencils, checks
def _ddx(W: Any, h: float, xp: Any) -> Any:
    """Centred first difference ``(w_{i+1} - w_{i-1}) / (2h)`` along axis 0, periodic."""
    return (xp.roll(W, -1, axis=0) - xp.roll(W, 1, axis=0)) * (0.5 / h)


def _d2dx2(W: Any, h: float, xp: Any) -> Any:
    """Second difference ``(w_{i+1} - 2 w_i + w_{i-1}) / h^2`` along axis 0, periodic."""
    return (xp.roll(W, -1, axis=0) + xp.roll(W, 1, axis=0) - 2.0 * W) * (1.0 / h**2)


def _choose(products: Any) -> str:
    return choice(products, "products", _PRODUCTS)


def _check_real_state(Y0: LowRank, rows: int, cols: int | None, who: str) -> None:
    if len(Y0.shape) != 2:
        msg = f"{who} integrates one matrix: `Y0` must have shape (m, n) without batch dimensions; got {Y0.shape}."
        raise ValueError(msg)
    if Y0.shape[0] != rows or (cols is not None and Y0.shape[1] != cols):
        want = f"({rows}, n)" if cols is None else f"({rows}, {cols})"
        msg = f"`Y0` must have shape {want} for this {who}; got {tuple(Y0.shape)}."
        raise ValueError(msg)
    if Y0.xp.isdtype(Y0.dtype, "complex floating"):
        msg = f"{who} is a real problem: `Y0` must be float32 or float64; got {Y0.dtype}."
        raise TypeError(msg)


def _kr_self_gram(A: Any, xp: Any) -> Any:
    """``(A • A)^T (A • A)`` of shape ``(r^2, r^2)`` in row blocks (``A • A`` is never held whole)."""
    n, r = A.shape
    step = _rows_per_block(r, 2)
    out = None
    for i in range(0, n, step):
        K = _row_kron_power(A[i : i + step, :], 2, xp)
        term = xp.matrix_transpose(K) @ K
        out = term if out is None else out + term
    return out


class _GridODE(AbstractMatrixODE, ABC):
    """A right-hand side ``F(Y)`` with a Hadamard power ``Y^{⊙p}`` (``p = _POWER``): formed
    densely (``dense(Y)``) for small states, applied from the factors (``_FACTORED``) for
    large ones, as ``products`` says (see :class:`BurgersODE`)."""

    _POWER: ClassVar[int]
    _FACTORED: ClassVar[type[RHSValue]]
    length: float
    h: float
    products: str

    def _set_grid(self, points: int, length: Any, products: Any) -> None:
        """Check and set the period ``length``, the spacing ``h = length / points`` and ``products``."""
        self.length = real_number(length, "length", positive=True)
        self.h = self.length / points
        self.products = _choose(products)

    @abstractmethod
    def dense(self, Y: Any) -> Any:
        """The dense right-hand side ``F(Y)`` of a dense ``Y (m, n)`` (any namespace)."""

    def _use_dense(self, Y: LowRank) -> bool:
        if self.products != "auto":
            return self.products == "dense"
        m, n = Y.shape[-2:]
        return m * n <= min((m + n) * Y.rank**self._POWER, _DENSE_MAX)

    def evaluate(self, t: float, Y: LowRank) -> RHSValue:
        if self._use_dense(Y):
            return DenseValue(self.dense(Y.to_dense()), Y.xp)
        return self._FACTORED(self, Y)

    def F_V(self, t: float, Y: LowRank, V: Any) -> Any:  # noqa: N802
        return self.evaluate(t, Y).F_V(V)

    def FH_U(self, t: float, Y: LowRank, U: Any) -> Any:  # noqa: N802
        return self.evaluate(t, Y).FH_U(U)
