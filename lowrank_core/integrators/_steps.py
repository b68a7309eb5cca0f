r"""The step pieces shared by the integrators and the training optimizers.

A BUG-type or backward-corrected step is a few substep solves (K, L, S) followed by a
*basis change*: orthonormalise, project the old point into the new bases, assemble a
small core, truncate.  The substeps differ between an ODE integrator (a substep solver
on ``F``) and a training optimizer (``k`` optimizer steps on the factor gradients), the
basis changes do not.  They are written once, here, on the linear-algebra seam of a
:class:`~lowrank_core.integrators.StepKit` (``kit.qr``, ``kit.svd``, ``kit.mm``,
``kit.truncate``: counted decompositions, the batched kernels where the size rule sends
a stack), and called by

* the integrators :class:`~lowrank_core.BCPSI`, :class:`~lowrank_core.ABCPSI`,
  :class:`~lowrank_core.RABUG` and :class:`~lowrank_core.ParallelBUG` (one call per step);
* the training optimizers of :mod:`lowrank_core.training` of the same names (one call
  at the end of each phase) and the tangent family built on parallel BUG (heavy ball,
  Adam).

So a ``basis_update_every = 1`` cycle of a training optimizer on the full gradient is
the integrator's step with explicit Euler substeps up to round-off
(``tests/training/test_step_core.py``).

Every function takes arrays of shape ``(..., m, r)``: a leading batch dimension is a
stack of equally shaped matrices handled in one decomposition call.
"""

from __future__ import annotations

from typing import Any

from .._lowrank import LowRank
from .._namespace import device_of
from .._truncation import Truncation

__all__ = [
    "augmented_basis",
    "augmented_bases",
    "corrected_basis",
    "l_close",
    "parallel_core",
    "svd_truncate",
    "truncate_l",
]


def corrected_basis(kit: Any, K1: Any, Y0: LowRank) -> tuple[Any, Any]:
    r"""Backward correction of BC-PSI: ``U1 = orth(K1)``, ``S̃ = (U1^H U0) S0``.

    Parameters
    ----------
    kit : StepKit
    K1 : array, shape (..., m, r)
        Result of the K-step (integrator) or K-phase (optimizer).
    Y0 : LowRank
        Point at the start of the step, ``U0 (..., m, r)``, ``S0 (..., r, r)``.

    Returns
    -------
    U1 : array, shape (..., m, r)
        Orthonormal (one thin QR of ``m x r``).
    S_tilde : array, shape (..., r, r)
        ``U1 S̃ V0^H = P_{U1} Y0``: the start of the L-step, no ``F`` evaluation.
    """
    U1, _ = kit.qr(K1)
    return U1, kit.project(Y0, U1)


def augmented_basis(kit: Any, K1: Any, Y0: LowRank, old: Any = None) -> tuple[Any, Any]:
    r"""Augmentation and backward correction of abc-PSI: ``Û = orth([K1, U0])``, ``Ŝ = (Û^H U0) S0``.

    Parameters
    ----------
    kit : StepKit
    K1 : array, shape (..., m, r)
    Y0 : LowRank
    old : array, shape (..., m, c), optional
        The columns that join ``K1`` (default ``U0``; a conservative truncation adds its
        kept columns to ``U0``).

    Returns
    -------
    U_hat : array, shape (..., m, r + c)
        One thin QR of ``[K1, old]``.
    S_hat : array, shape (..., r + c, r)
        ``Û Ŝ V0^H = Y0`` exactly when ``range(old) ⊇ range(U0)``.
    """
    U_hat = kit.augment(K1, Y0.U if old is None else old)
    return U_hat, kit.project(Y0, U_hat)


def augmented_bases(
    kit: Any, K1: Any, L1: Any, Y0: LowRank, left: Any = None, right: Any = None
) -> tuple[Any, Any, Any]:
    r"""Both augmentations of RA-BUG: ``Û = orth([K1, U0])``, ``V̂ = orth([L1, V0])``, ``Ŝ0 = (Û^H U0) S0 (V0^H V̂)``.

    Parameters
    ----------
    kit : StepKit
    K1 : array, shape (..., m, r)
    L1 : array, shape (..., n, r)
        Results of the K- and L-steps, both started at ``Y0``.
    Y0 : LowRank
    left, right : array, optional
        Columns joining ``K1`` and ``L1`` (default ``U0`` and ``V0``).

    Returns
    -------
    U_hat : array, shape (..., m, 2r)
    S_hat : array, shape (..., 2r, 2r)
        Represents ``Y0`` exactly in the augmented bases.
    V_hat : array, shape (..., n, 2r)
    """
    U_hat = kit.augment(K1, Y0.U if left is None else left)
    V_hat = kit.augment(L1, Y0.V if right is None else right)
    return U_hat, kit.project(Y0, U_hat, V_hat), V_hat


def parallel_core(kit: Any, S_bar: Any, U0: Any, V0: Any, K1: Any, L1: Any) -> tuple[Any, Any, Any]:
    r"""Augmented bases and core of parallel BUG.

    ``[U0, Ũ1] = orth([U0, K1])``, ``[V0, Ṽ1] = orth([V0, L1])`` (thin QR ``m x 2r`` and
    ``n x 2r``; the first ``r`` columns span ``U0``, ``V0``) and

    .. math::

        \hat S = \begin{pmatrix} \bar S_1 & L_1^H \tilde V_1 \\ \tilde U_1^H K_1 & 0 \end{pmatrix} .

    ``K1`` and ``L1`` enter only through their parts orthogonal to ``U0`` and ``V0``, so
    the K- and L-step results (integrator) and the tangent increments ``dK``, ``dL``
    (optimizers, ``K = U0 S + dK``) give the same bases and core.

    Parameters
    ----------
    kit : StepKit
    S_bar : array, shape (..., r, r)
        S-step result in the old bases.
    U0 : array, shape (..., m, r)
    V0 : array, shape (..., n, r)
    K1 : array, shape (..., m, r)
    L1 : array, shape (..., n, r)

    Returns
    -------
    U_hat : array, shape (..., m, r + k_u)
        ``[U0, Ũ1]``, ``k_u = min(r, m - r)``; likewise ``V_hat (..., n, r + k_v)``.
    S_hat : array, shape (..., r + k_u, r + k_v)
    V_hat : array, shape (..., n, r + k_v)
    """
    xp = kit.xp
    r = U0.shape[-1]
    U_new = kit.augment(U0, K1)[..., r:]
    V_new = kit.augment(V0, L1)[..., r:]
    zero = xp.zeros((*S_bar.shape[:-2], U_new.shape[-1], V_new.shape[-1]), dtype=S_bar.dtype, device=device_of(S_bar))
    top = xp.concat([S_bar, kit.mm(kit.ch(L1), V_new)], axis=-1)
    bottom = xp.concat([kit.mm(kit.ch(U_new), K1), zero], axis=-1)
    S_hat = xp.concat([top, bottom], axis=-2)
    return xp.concat([U0, U_new], axis=-1), S_hat, xp.concat([V0, V_new], axis=-1)


def svd_truncate(
    kit: Any, truncation: Truncation, U_hat: Any, S_hat: Any, V_hat: Any, rank_in: int
) -> tuple[LowRank, Any]:
    r"""Truncate ``Û Ŝ V̂^H``: SVD of the small core ``Ŝ = P diag(s) Q^H`` and ``truncation``.

    The close of RA-BUG and parallel BUG (``2r x 2r`` core) and of an optimizer's early
    :meth:`~lowrank_core.training.AbstractLowRankOptimizer.finish`.

    Returns
    -------
    Y1 : LowRank
        ``U1 = Û P[:, :r1]``, ``S1 = diag(s[:r1])``, ``V1 = V̂ Q[:, :r1]``.
    s : array, shape (..., p)
        All singular values of the core (for a rejection test).
    """
    P, s, Q = kit.svd(S_hat)
    return kit.truncate(truncation, U_hat, P, s, Q, V_hat, rank_in), s


def truncate_l(kit: Any, truncation: Truncation, U_hat: Any, L1: Any, rank_in: int, variant: str = "min-qr") -> LowRank:
    r"""abc-PSI's close: truncate ``Y½ = Û L1^H`` (``Û (..., m, p)`` orthonormal, ``L1 (..., n, p)``).

    * ``"min-qr"``: one thin SVD of the tall ``L1 = Q Σ P^H`` (``n x p``), ``Y½ = (Û P) Σ
      Q^H``.  Counted as one SVD; on the CPU the seam's kernels take it as a QR followed
      by the small SVD (``KERNEL_SVD_TALL_RATIO``), so no tall LAPACK SVD runs.
    * ``"two-qr"``: ``L1 = V̂ R`` (QR ``n x p``), SVD of ``R^H`` (``p x p``): one more
      counted QR, the same ``Y1`` up to round-off.
    """
    if variant == "min-qr":
        Q, s, P = kit.svd(L1)
        return kit.truncate(truncation, U_hat, P, s, Q, None, rank_in)
    V_hat, R = kit.qr(L1)
    return svd_truncate(kit, truncation, U_hat, kit.ch(R), V_hat, rank_in)[0]


def l_close(kit: Any, U1: Any, L1: Any) -> LowRank:
    r"""Fixed-rank close of an L-step: ``L1 = V1 R`` (QR ``n x r``), ``Y1 = U1 R^H V1^H``.

    The last substep of KSL and BC-PSI (and of the projector-splitting optimizer's L-phase).
    """
    V1, R = kit.qr(L1)
    return LowRank._trusted(U1, kit.ch(R), V1, kit.xp)
