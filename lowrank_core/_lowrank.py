"""The low-rank state ``Y = U S V^H``."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from . import _linalg
from ._checks import as_index
from ._namespace import (
    conj_transpose,
    device_of,
    eye_like,
    namespace_of_named,
    real_dtype,
)

__all__ = ["LowRank"]


def _orthonormality_defect(q: Any, xp: Any) -> float:
    k = q.shape[-1]
    gram = conj_transpose(q, xp) @ q
    defect = gram - eye_like(k, q, xp)
    if math.prod(defect.shape) == 0:
        return 0.0
    return float(xp.max(xp.abs(defect)))


# ``shape`` and ``batch_shape`` of a matrix held through bases ``U (..., m, p)`` and
# ``V (..., n, q)``: one rule, assigned in :class:`LowRank` and in the training parameter
# ``LowRankParam`` (class attributes, so that each class's API page lists them).
def _shape(self: Any) -> tuple[int, ...]:
    """Shape ``(..., m, n)`` of the represented matrix."""
    return (*self.U.shape[:-1], self.V.shape[-2])


def _batch_shape(self: Any) -> tuple[int, ...]:
    """Leading batch dimensions ``...`` (a stack of independent matrices of equal shape)."""
    return tuple(self.U.shape[:-2])


factored_shape = property(_shape)
factored_batch_shape = property(_batch_shape)


class LowRank:
    r"""A rank-``r`` matrix (or stack of matrices) in factored form ``Y = U S V^H``.

    Parameters
    ----------
    U : array, shape (..., m, r)
        Left basis with orthonormal columns, ``U^H U = I``.
    S : array, shape (..., r, r)
        Core (coefficient) matrix; need not be diagonal.
    V : array, shape (..., n, r)
        Right basis with orthonormal columns, ``V^H V = I``.
    check : bool, default True
        Validate shapes, dtypes and orthonormality of ``U`` and ``V`` (to
        ``sqrt(eps)`` of the dtype).  Orthonormality is what every integrator relies on.

    Notes
    -----
    All three factors must come from the same array library, on the same device,
    with the same floating dtype (``float32``, ``float64``, ``complex64`` or
    ``complex128``).  Leading dimensions ``...`` are a batch of independent matrices
    and must agree between the factors.  The factors are stored as given, never
    copied or modified.

    Examples
    --------
    >>> import numpy as np
    >>> import lowrank_core as lc
    >>> A = np.arange(12.0).reshape(4, 3)
    >>> Y = lc.LowRank.from_dense(A, rank=2)
    >>> Y.shape, Y.rank
    ((4, 3), 2)
    >>> bool(np.allclose(Y.to_dense(), A))
    True
    """

    __slots__ = ("S", "U", "V", "xp")

    def __init__(self, U: Any, S: Any, V: Any, *, check: bool = True) -> None:
        if not isinstance(check, bool):
            msg = f"`check` must be True or False; got {check!r} of type {type(check).__name__}."
            raise TypeError(msg)
        xp = namespace_of_named(U=U, S=S, V=V)
        if array_api_compat.is_dask_namespace(xp):  # chunking rules of Dask factors
            from ._dask import check_factors

            check_factors(U, S, V)
        if check:
            _validate_factors(U, S, V, xp)
        self.U = U
        self.S = S
        self.V = V
        self.xp = xp

    @classmethod
    def _trusted(cls, U: Any, S: Any, V: Any, xp: Any) -> LowRank:
        """Build without validation (internal: factors produced by the library)."""
        obj = cls.__new__(cls)
        obj.U, obj.S, obj.V, obj.xp = U, S, V, xp
        return obj

    # ------------------------------------------------------------------ properties
    shape = factored_shape
    batch_shape = factored_batch_shape

    @property
    def rank(self) -> int:
        """The rank ``r`` (number of columns of ``U``)."""
        return int(self.U.shape[-1])

    @property
    def dtype(self) -> Any:
        """Floating dtype of the factors."""
        return self.U.dtype

    @property
    def device(self) -> Any:
        """Device of the factors."""
        return device_of(self.U)

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_dense(cls, A: Any, rank: int) -> LowRank:
        """Best rank-``rank`` approximation of ``A`` (truncated SVD, Eckart-Young).

        Parameters
        ----------
        A : array, shape (..., m, n)
            Floating-point matrix or stack of matrices; not modified.
        rank : int
            Target rank, ``1 <= rank <= min(m, n)``.

        Returns
        -------
        LowRank
            ``U (..., m, rank)``, diagonal ``S (..., rank, rank)`` with the leading
            singular values in descending order, ``V (..., n, rank)``.
        """
        xp = namespace_of_named(A=A)
        check_dtype(A, "A", xp)
        if A.ndim < 2:
            msg = f"`A` must have at least 2 dimensions (..., m, n); got shape {tuple(A.shape)}."
            raise ValueError(msg)
        check_has_data(A, "A")
        _check_rank(rank, A.shape[-2], A.shape[-1], "rank")
        if math.prod(A.shape) and not bool(xp.all(xp.isfinite(A))):
            msg = "`A` must be finite; got NaN or Inf entries. Replace or remove them before the SVD."
            raise ValueError(msg)
        u, s, v = _linalg.thin_svd(A, xp)
        u, s, v = u[..., :rank], s[..., :rank], v[..., :rank]
        S = diag_embed(xp.astype(s, A.dtype), xp)
        return cls._trusted(u, S, v, xp)

    def to_dense(self) -> Any:
        """Form the full matrix ``U @ S @ V^H`` of shape ``(..., m, n)``."""
        xp = self.xp
        return _linalg.matmul(_linalg.matmul(self.U, self.S, xp), conj_transpose(self.V, xp), xp)

    def norm(self) -> Any:
        """Frobenius norm ``||Y||_F = ||S||_F`` (uses orthonormality of ``U``, ``V``).

        Returns a real array of shape ``batch_shape``.
        """
        xp = self.xp
        return xp.sqrt(xp.sum(xp.abs(self.S) ** 2, axis=(-2, -1)))

    def singular_values(self) -> Any:
        """Singular values of ``Y`` (those of ``S``), shape ``(..., r)``, descending."""
        return self.xp.linalg.svdvals(self.S)

    def __reduce__(self) -> tuple[Any, tuple[Any, Any, Any]]:
        # The namespace is a module, which does not pickle: it is found again from the
        # factors when the state is rebuilt (in another process, or by deepcopy).
        return _rebuild, (self.U, self.S, self.V)

    def __repr__(self) -> str:
        return (
            f"LowRank(shape={self.shape}, rank={self.rank}, dtype={self.dtype}, "
            f"namespace={getattr(self.xp, '__name__', self.xp)})"
        )


def _rebuild(U: Any, S: Any, V: Any) -> LowRank:
    """Unpickle a :class:`LowRank` (factors already validated when it was built)."""
    return LowRank._trusted(U, S, V, namespace_of_named(U=U, S=S, V=V))


def diag_embed(s: Any, xp: Any) -> Any:
    """Diagonal matrices from a stack of vectors ``s (..., k) -> (..., k, k)``."""
    k = s.shape[-1]
    eye = xp.eye(k, dtype=s.dtype, device=device_of(s))
    return s[..., :, None] * eye


#: The dtypes of states and factors (the dtypes the decompositions support everywhere).
SUPPORTED_DTYPES = ("float32", "float64", "complex64", "complex128")


def check_dtype(x: Any, name: str, xp: Any) -> None:
    """Raise ``TypeError`` naming ``name`` unless ``x`` has one of :data:`SUPPORTED_DTYPES`."""
    if not any(x.dtype == getattr(xp, d) for d in SUPPORTED_DTYPES):
        msg = (
            f"`{name}` must have dtype float32, float64, complex64 or complex128; got {x.dtype}. "
            "Cast it with xp.astype(..., xp.float64) (or another of these) first."
        )
        raise TypeError(msg)


def check_has_data(x: Any, name: str) -> None:
    """Refuse arrays without data (PyTorch meta tensors): nothing can be computed on them."""
    if getattr(x, "is_meta", False):
        msg = f"`{name}` is a PyTorch meta tensor (shape {tuple(x.shape)}, no data); move it to a real device first."
        raise TypeError(msg)


def _check_rank(rank: Any, m: int, n: int, name: str) -> None:
    index = as_index(rank)
    if index is None:
        msg = f"`{name}` must be an integer; got {rank!r} of type {type(rank).__name__}."
        raise TypeError(msg)
    rank = index
    if not 1 <= rank <= min(m, n):
        msg = (
            f"`{name}` must satisfy 1 <= {name} <= min(m, n) = {min(m, n)} for an "
            f"{m} x {n} matrix; got {rank}."
        )
        raise ValueError(msg)


def _validate_factors(U: Any, S: Any, V: Any, xp: Any) -> None:
    for name, x in (("U", U), ("S", S), ("V", V)):
        if x.ndim < 2:
            msg = f"`{name}` must have at least 2 dimensions; got shape {tuple(x.shape)}."
            raise ValueError(msg)
        check_dtype(x, name, xp)
        check_has_data(x, name)
    if not (U.dtype == S.dtype == V.dtype):
        msg = (
            f"`U`, `S` and `V` must share one dtype; got {U.dtype}, {S.dtype}, {V.dtype}. "
            "Cast them to a common dtype first."
        )
        raise TypeError(msg)
    m, r = U.shape[-2:]
    n, rv = V.shape[-2:]
    if S.shape[-2:] != (r, rv) or r != rv:
        msg = (
            "factor shapes do not match: `U` is (..., m, r), `S` (..., r, r), `V` "
            f"(..., n, r); got U {tuple(U.shape)}, S {tuple(S.shape)}, V {tuple(V.shape)}."
        )
        raise ValueError(msg)
    if not (U.shape[:-2] == S.shape[:-2] == V.shape[:-2]):
        msg = (
            "the leading (batch) dimensions of `U`, `S` and `V` must agree; got "
            f"{tuple(U.shape[:-2])}, {tuple(S.shape[:-2])}, {tuple(V.shape[:-2])}."
        )
        raise ValueError(msg)
    if r < 1 or r > min(m, n):
        msg = f"the rank r = {r} must satisfy 1 <= r <= min(m, n) = {min(m, n)}."
        raise ValueError(msg)
    if not (bool(xp.all(xp.isfinite(U))) and bool(xp.all(xp.isfinite(S))) and bool(xp.all(xp.isfinite(V)))):
        msg = "`U`, `S` and `V` must be finite; found NaN or Inf."
        raise ValueError(msg)
    eps = xp.finfo(real_dtype(U.dtype, xp)).eps
    tol = max(100.0 * max(m, n) * eps, eps**0.5)
    for name, q in (("U", U), ("V", V)):
        defect = _orthonormality_defect(q, xp)
        if defect > tol:
            msg = (
                f"`{name}` must have orthonormal columns ({name}^H {name} = I); the largest "
                f"deviation is {defect:.3g} > {tol:.3g}. Orthonormalize it (for example with "
                "a QR decomposition) or build the state with LowRank.from_dense."
            )
            raise ValueError(msg)
