r"""Rank truncation ``T_theta`` of an augmented factorization.

Given singular values ``s_1 >= ... >= s_p`` of the augmented core, the new rank is the
smallest ``k`` whose Frobenius tail satisfies ``(sum_{j>k} s_j^2)^{1/2} <= theta`` with
``theta = tol + rtol * ||s||_2`` (Ceruti, Kusch & Lubich 2022), clamped to
``[min_rank, max_rank]``.  Without ``tol`` and ``rtol`` the rank is fixed: the step's
input rank is kept (clamped to ``[min_rank, max_rank]`` when those are given).

For a stack of independent problems (leading batch dimensions) all members share one
rank, the largest any member needs, so every member meets its tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from ._checks import as_index, choice
from ._linalg import matmul
from ._lowrank import LowRank, diag_embed
from ._namespace import device_of

__all__ = ["RULES", "Truncation"]

#: The rank-selection rules of :class:`Truncation`.
RULES = ("tail", "threshold")


def _check_nonneg_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float)):
        try:
            if isinstance(value, (bool, str, bytes)) or getattr(value, "dtype", np.float64).kind == "b":
                raise TypeError
            value = float(value)  # NumPy / 0-d array scalars
        except (TypeError, ValueError):
            msg = f"`{name}` must be a non-negative float or None; got {value!r} of type {type(value).__name__}."
            raise TypeError(msg) from None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        msg = f"`{name}` must be a finite non-negative float; got {value}."
        raise ValueError(msg)
    return value


def _check_int(value: Any, name: str, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    index = as_index(value)
    if index is None:
        msg = f"`{name}` must be an integer; got {value!r}."
        raise TypeError(msg)
    if index < 1:
        msg = f"`{name}` must be >= 1; got {index}."
        raise ValueError(msg)
    return index


@dataclass(frozen=True)
class Truncation:
    """Rank selection rule.

    Parameters
    ----------
    tol : float, optional
        Absolute tolerance ``theta``.
    rtol : float, optional
        Relative tolerance: ``theta = tol + rtol * ||Y||_F`` (rule ``"tail"``) or
        ``theta = tol + rtol * sigma_1`` (rule ``"threshold"``).
    min_rank, max_rank : int, optional
        Bounds of the adaptive rank; ``max_rank`` defaults to the largest possible.
    rule : {"tail", "threshold"}, default "tail"
        ``"tail"``: the smallest rank whose discarded singular values have Frobenius
        norm ``<= theta`` (Ceruti, Kusch & Lubich 2022).  ``"threshold"``: keep the
        singular values ``sigma_i > theta`` (the hard threshold of many DLRA and DLRT
        codes, e.g. ``sigma_i > rtol sigma_1``).
    """

    tol: float | None = None
    rtol: float | None = None
    min_rank: int = 1
    max_rank: int | None = None
    rule: str = "tail"

    def __post_init__(self) -> None:
        choice(self.rule, "truncation_rule", RULES)
        object.__setattr__(self, "tol", _check_nonneg_float(self.tol, "tol"))
        object.__setattr__(self, "rtol", _check_nonneg_float(self.rtol, "rtol"))
        object.__setattr__(self, "min_rank", _check_int(self.min_rank, "min_rank", allow_none=False))
        object.__setattr__(self, "max_rank", _check_int(self.max_rank, "max_rank", allow_none=True))
        if self.max_rank is not None and self.max_rank < self.min_rank:
            msg = f"`max_rank` ({self.max_rank}) must be >= `min_rank` ({self.min_rank})."
            raise ValueError(msg)

    @property
    def adaptive(self) -> bool:
        """True when a tolerance is set (the rank may change)."""
        return self.tol is not None or self.rtol is not None

    def theta(self, s: Any, xp: Any) -> Any:
        """Tolerance ``theta = tol + rtol ||s||_2`` (rule ``"tail"``) or ``tol + rtol s_1``
        (rule ``"threshold"``) for singular values ``s (..., p)``, descending; shape ``(...)``."""
        scale = s[..., 0] if self.rule == "threshold" else xp.sqrt(xp.sum(s * s, axis=-1))
        return (self.tol or 0.0) + (self.rtol or 0.0) * scale

    def choose_rank(self, s: Any, rank_in: int, xp: Any) -> tuple[int, bool]:
        """New rank from singular values ``s (..., p)``.

        Returns
        -------
        rank : int
        capped : bool
            True when the tolerance asked for more than ``max_rank``.
        """
        p = int(s.shape[-1])
        if not self.adaptive:
            upper = p if self.max_rank is None else min(self.max_rank, p)
            return max(min(rank_in, upper), min(self.min_rank, p)), False
        wanted = self.wanted_rank(s, xp)
        upper = p if self.max_rank is None else min(self.max_rank, p)
        rank = max(min(wanted, upper), min(self.min_rank, p))
        return rank, self.max_rank is not None and wanted > self.max_rank

    def wanted_rank(self, s: Any, xp: Any, *, theta: Any = None) -> int:
        """Rank the rule asks for, before the ``[min_rank, max_rank]`` clamp.

        ``s (..., p)`` are descending singular values; ``theta`` (shape ``(...)``)
        defaults to :meth:`theta` of ``s`` (the conservative truncation passes the
        tolerance of the whole core while ranking only its remainder).  For a stack,
        the largest rank any member needs; ``min_rank`` for an empty stack.
        """
        p = int(s.shape[-1])
        if theta is None:
            theta = self.theta(s, xp)
        if self.rule == "threshold":
            need = xp.sum(xp.astype(s > theta[..., None], xp.int64), axis=-1)
        else:
            s2 = s * s
            idx = xp.arange(p, device=device_of(s))
            # tails[..., k] = sum_{j >= k} s_j^2  (mask[j, k] = j >= k)
            mask = xp.astype(idx[:, None] >= idx[None, :], s2.dtype)
            tails = s2 @ mask
            need = xp.sum(xp.astype(tails > (theta * theta)[..., None], xp.int64), axis=-1)
        return int(xp.max(need)) if math.prod(need.shape) > 0 else self.min_rank

    def truncate(self, left: Any, u: Any, s: Any, v: Any, right: Any, rank_in: int, xp: Any) -> tuple[LowRank, bool]:
        """Assemble ``U1 = left @ u[:, :r1]``, ``S1 = diag(s[:r1])``, ``V1 = right @ v[:, :r1]``.

        ``left`` / ``right`` may be ``None`` (then ``u`` / ``v`` are the bases).
        """
        r1, capped = self.choose_rank(s, rank_in, xp)
        u1, v1 = u[..., :r1], v[..., :r1]
        if array_api_compat.is_numpy_namespace(xp):
            # A NumPy factor that is a column slice is copied once, so that the products
            # of the next step can go to the batched-product kernel without copies.
            u1 = u1 if r1 == u.shape[-1] or left is not None else xp.asarray(u1, copy=True)
            v1 = v1 if r1 == v.shape[-1] or right is not None else xp.asarray(v1, copy=True)
        U1 = u1 if left is None else matmul(left, u1, xp)
        V1 = v1 if right is None else matmul(right, v1, xp)
        S1 = diag_embed(xp.astype(s[..., :r1], U1.dtype), xp)
        return LowRank._trusted(U1, S1, V1, xp), capped
