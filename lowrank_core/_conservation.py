r"""Conservative truncation: basis functions that every step keeps exactly.

Kinetic equations conserve mass, momentum and energy, which are linear functionals
of the distribution ``f[x, v]`` (sums of ``f`` against ``1, v, v^2`` in velocity, and
against the constant in space).  A rank truncation of an augmented factorization
changes those functionals by up to the truncation tolerance, step after step.  The
conservative dynamical low-rank schemes of Einkemmer & Joseph (J. Comput. Phys. 443,
110495, 2021) and of Einkemmer, Ostermann & Scalone (J. Comput. Phys. 484, 112060,
2023; the robust, BUG-based version) fix the basis functions that carry the
conserved quantities, keep the part of the solution seen by them exactly, and
truncate only the remainder, which is orthogonal to them.

:class:`Conservation` holds the fixed columns: ``left`` (``m x d``, e.g. the constant
in ``x``) and ``right`` (``n x c``, e.g. ``1, v, v^2`` on the velocity grid, times the
quadrature weights).  An integrator configured with it

1. always includes them in its augmented bases (``Û ⊇ range(left)``,
   ``V̂ ⊇ range(right)``), so that the Galerkin step sees them; and
2. truncates ``Y½ = Û Ŝ V̂^H`` as ``Y1 = Y_keep + T(Y_rem)`` with
   ``Y_keep = P_l Y½ + (I - P_l) Y½ P_r`` (``P_l``, ``P_r`` the orthogonal projectors
   onto the fixed columns) kept exactly and ``Y_rem = (I - P_l) Y½ (I - P_r)``
   truncated by the integrator's :class:`~lowrank_core.Truncation`; so
   ``P_l Y1 = P_l Y½`` and ``Y1 P_r = Y½ P_r``: every functional ``a^H Y b`` with
   ``a`` in ``range(left)`` or ``b`` in ``range(right)`` is unchanged by the
   truncation.

If the right-hand side conserves ``a^H Y b`` (``a^H F(t, Y) b = 0`` for all ``Y``)
with ``a`` in ``range(left)`` and ``b`` in ``range(right)``, the Galerkin step
conserves it as well (``a^H P_Û F P_V̂ b = a^H F b``; Runge-Kutta substeps keep linear
invariants), and so does the whole step, to round-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat

from ._linalg import matmul
from ._lowrank import LowRank, diag_embed
from ._namespace import check_array, device_of, namespace_of_named

__all__ = ["Conservation"]


def _columns(x: Any, name: str) -> tuple[Any, Any]:
    """Validated ``(k, c)`` view of a 1-D or 2-D floating array, its orthonormal basis."""
    check_array(x, name)
    xp = array_api_compat.array_namespace(x)
    if not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "complex floating")):
        msg = f"`{name}` must be a floating (real or complex) array; got dtype {x.dtype}."
        raise TypeError(msg)
    if x.ndim == 1:
        x = xp.reshape(x, (x.shape[0], 1))
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        msg = (
            f"`{name}` must have shape (k,) or (k, c) with k, c >= 1 (one column per kept basis "
            f"function); got {tuple(x.shape)}."
        )
        raise ValueError(msg)
    if x.shape[1] > x.shape[0]:
        msg = (
            f"`{name}` has {x.shape[1]} columns but only {x.shape[0]} rows; at most {x.shape[0]} "
            "independent columns exist."
        )
        raise ValueError(msg)
    if not bool(xp.all(xp.isfinite(x))):
        msg = f"`{name}` contains NaN or Inf."
        raise ValueError(msg)
    Q, R = xp.linalg.qr(x)
    d = xp.abs(xp.linalg.diagonal(R)) if hasattr(xp.linalg, "diagonal") else xp.abs(xp.diagonal(R))
    scale = float(xp.max(xp.sqrt(xp.sum(xp.abs(x) ** 2, axis=0))))
    tol = 1e3 * float(xp.finfo(x.dtype).eps) * x.shape[0] * scale
    if scale == 0.0 or float(xp.min(d)) <= tol:
        msg = (
            f"the columns of `{name}` are linearly dependent (or zero); pass independent "
            "columns (each kept basis function once)."
        )
        raise ValueError(msg)
    return x, Q


@dataclass(frozen=True, eq=False)
class Conservation:
    r"""Basis columns kept exactly by the truncation of a rank-adaptive integrator.

    Parameters
    ----------
    left : array of shape (m,) or (m, d), optional
        Columns in the row space of ``Y`` (the first index, e.g. ``x``) to keep: for a
        kinetic ``Y[x, v]`` the constant ``ones(m)`` (times the quadrature weights in
        ``x`` for a non-uniform grid).
    right : array of shape (n,) or (n, c), optional
        Columns in the second index (e.g. ``v``) to keep: ``[w, w v, w v^2]`` with the
        velocity quadrature weights ``w`` for mass, momentum and kinetic energy.

    Notes
    -----
    The columns need not be orthonormal (an orthonormal basis is computed once) but
    must be independent, finite and from the array library, device and dtype kind of
    the state.  The integrator then keeps ``P_l Y`` and ``Y P_r`` exactly and truncates
    only ``(I - P_l) Y (I - P_r)``, after a Galerkin step in bases that contain the
    columns (Einkemmer & Joseph 2021; Einkemmer, Ostermann & Scalone 2023); see the
    module docstring for the guarantee.  The kept part has rank at most
    ``d + c`` = :attr:`n_kept`, so the rank of every step is at least ``n_kept``; a
    fixed-rank run needs ``Y0.rank >= n_kept``, and ``max_rank`` must be ``>= n_kept``.

    Supported by :class:`~lowrank_core.RABUG` (``"ra-bug"``) and
    :class:`~lowrank_core.ABCPSI` (``"abc-psi"``): ``lc.solve(..., method="ra-bug",
    conserve=Conservation(left=..., right=...))``.

    Examples
    --------
    >>> import numpy as np
    >>> import lowrank_core as lc
    >>> v = np.linspace(-6, 6, 32)
    >>> keep = lc.Conservation(left=np.ones(16), right=np.stack([np.ones(32), v, v**2], axis=1))
    >>> keep.n_kept
    4
    """

    left: Any = None
    right: Any = None

    def __post_init__(self) -> None:
        if self.left is None and self.right is None:
            msg = "`Conservation` needs `left` or `right` (or both): the columns to keep; got neither."
            raise ValueError(msg)
        if self.left is not None and self.right is not None:
            namespace_of_named(left=self.left, right=self.right)
        left_q = right_q = None
        if self.left is not None:
            _, left_q = _columns(self.left, "left")
        if self.right is not None:
            _, right_q = _columns(self.right, "right")
        object.__setattr__(self, "_left_q", left_q)
        object.__setattr__(self, "_right_q", right_q)

    @property
    def n_kept(self) -> int:
        """Number of kept columns ``d + c``: the largest rank of the kept part."""
        return sum(int(q.shape[-1]) for q in (self._left_q, self._right_q) if q is not None)

    def prepare(self, Y0: LowRank) -> _Kept:
        """The orthonormal kept columns in ``Y0``'s namespace, dtype and device.

        Raises ``TypeError`` if the columns come from another array library than ``Y0``
        or are complex for a real ``Y0``, ``ValueError`` if their lengths do not match
        ``Y0.shape``.
        """
        xp = Y0.xp
        m, n = (int(s) for s in Y0.shape[-2:])
        out = []
        for name, q, size in (("left", self._left_q, m), ("right", self._right_q, n)):
            if q is None:
                out.append(None)
                continue
            namespace_of_named(**{f"conserve.{name}": q, "Y0": Y0.U})
            if int(q.shape[0]) != size:
                side = "rows m" if name == "left" else "columns n"
                msg = (
                    f"`conserve.{name}` has {int(q.shape[0])} rows but the state has {size} {side} "
                    f"(shape {tuple(Y0.shape)}); pass one entry per {'row' if name == 'left' else 'column'} of Y."
                )
                raise ValueError(msg)
            if xp.isdtype(q.dtype, "complex floating") and not xp.isdtype(Y0.dtype, "complex floating"):
                msg = f"`conserve.{name}` is complex but the state is real ({Y0.dtype}); pass real columns."
                raise TypeError(msg)
            q = xp.astype(q, Y0.dtype)
            if device_of(q) != Y0.device:
                q = xp.asarray(q, device=Y0.device)
            out.append(q)
        return _Kept(out[0], out[1], self.n_kept)

    def check_rank(self, rank: int, max_rank: int | None, adaptive: bool) -> None:
        """Refuse rank bounds that cannot hold the kept columns (``ValueError``)."""
        k = self.n_kept
        if max_rank is not None and max_rank < k:
            msg = (
                f"`max_rank` = {max_rank} is smaller than the {k} columns kept by `conserve`; "
                f"the kept part alone may need rank {k}. Use max_rank >= {k}."
            )
            raise ValueError(msg)
        if not adaptive and rank < k:
            msg = (
                f"`Y0` has rank {rank}, smaller than the {k} columns kept by `conserve`, and the rank is "
                f"fixed (no `tol`/`rtol`); start from rank >= {k} (pad the factors with orthonormal "
                "columns and zero singular values) or pass `tol`/`rtol`."
            )
            raise ValueError(msg)

    def __repr__(self) -> str:
        parts = []
        for name, q in (("left", self._left_q), ("right", self._right_q)):
            if q is not None:
                parts.append(f"{name}=<{int(q.shape[0])} x {int(q.shape[1])}>")
        return f"Conservation({', '.join(parts)})"


class _Kept:
    """Prepared kept columns of one solve (orthonormal, in the state's namespace)."""

    __slots__ = ("left", "n_kept", "right")

    def __init__(self, left: Any, right: Any, n_kept: int) -> None:
        self.left, self.right, self.n_kept = left, right, n_kept

    @staticmethod
    def _batched(q: Any, like: Any, xp: Any) -> Any:
        return xp.broadcast_to(q, (*like.shape[:-2], *q.shape)) if like.ndim > 2 else q

    def with_left(self, basis: Any, xp: Any) -> Any:
        """``[basis, left]`` (to be orthonormalized with the new columns)."""
        if self.left is None:
            return basis
        return xp.concat([basis, self._batched(self.left, basis, xp)], axis=-1)

    def with_right(self, basis: Any, xp: Any) -> Any:
        """``[basis, right]``."""
        if self.right is None:
            return basis
        return xp.concat([basis, self._batched(self.right, basis, xp)], axis=-1)

    def truncate(self, kit: Any, truncation: Any, U: Any, S: Any, V: Any, rank_in: int) -> LowRank:
        """Conservative truncation of ``Y½ = U S V^H`` (``U (..., m, p)``, ``V (..., n, q)``
        orthonormal, their ranges containing the kept columns).

        The core splits into ``S_keep = a a^H S + (I - a a^H) S b b^H`` and
        ``S_rem = (I - a a^H) S (I - b b^H)`` with ``a = U^H left``, ``b = V^H right``
        (orthonormal coordinates of the kept columns).  ``S_rem`` is truncated to
        ``k`` singular triplets (``k`` from ``truncation`` with its tolerance measured
        against the whole core, or ``rank_in - n_kept`` at fixed rank), and the sum,
        of rank ``<= n_kept + k``, is diagonalised by one more small SVD.
        """
        xp, mm, ch = kit.xp, kit.mm, kit.ch
        keep = None
        rem = S
        if self.left is not None:
            a = mm(ch(U), self._batched(self.left, U, xp))  # (..., p, d)
            keep = mm(a, mm(ch(a), S))
            rem = S - keep
        if self.right is not None:
            b = mm(ch(V), self._batched(self.right, V, xp))  # (..., q, c)
            part = mm(mm(rem, b), ch(b))
            keep = part if keep is None else keep + part
            rem = rem - part
        P, s, Q = kit.svd(rem)
        p = min(int(S.shape[-2]), int(S.shape[-1]))
        upper = p if truncation.max_rank is None else min(truncation.max_rank, p)
        capped = False
        if truncation.adaptive:
            s_all = xp.linalg.svdvals(S)
            wanted = self.n_kept + truncation.wanted_rank(s, xp, theta=truncation.theta(s_all, xp))
            capped = truncation.max_rank is not None and wanted > truncation.max_rank
        else:
            wanted = rank_in
        r1 = max(min(wanted, upper), min(truncation.min_rank, p), min(self.n_kept, p))
        k = max(r1 - self.n_kept, 0)
        M = keep + mm(P[..., :k] * xp.astype(s[..., None, :k], P.dtype), ch(Q[..., :k]))
        P2, s2, Q2 = kit.svd(M)
        if capped:
            kit.counters.max_rank_hits += 1
        U1 = matmul(U, P2[..., :r1], xp)
        V1 = matmul(V, Q2[..., :r1], xp)
        S1 = diag_embed(xp.astype(s2[..., :r1], U1.dtype), xp)
        return LowRank._trusted(U1, S1, V1, xp)
