"""The discrete Schrödinger equation (Ceruti, Kusch & Lubich 2022), norm and energy conserving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._lowrank import LowRank
from .._namespace import conj_transpose, namespace_of_named
from .._problem import LinearMatrixODE
from ._base import ReferenceProblem, _assemble, _recorded
from ._common import _IVP, _Backend, _dense_like, _fro, _haar, _int, _rank, _real, _Reference, _rng

__all__ = ["SchrodingerProblem", "schrodinger"]


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

    def norm(self, Y: Any) -> float:
        """Frobenius norm ``||Y||_F`` of a :class:`~lowrank_core.LowRank` (from its factors)
        or a dense ``(N, N)`` array."""
        if isinstance(Y, LowRank):
            namespace_of_named(Y=Y.U, **{"the problem's arrays": self.D})
            return float(Y.norm())
        dense, xp = _dense_like(Y, self.D, lowrank=False)
        return _fro(dense, xp)

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
    dt, ops = min(0.01, t_end), {"D": D_xp, "Vc": Vc_xp}
    kept = ("norm", "energy")
    return _assemble(
        SchrodingerProblem,
        "schrodinger",
        problem,
        Y0,
        t_end,
        ref,
        notes,
        dt,
        norm_preserving=True,
        conserved=kept,
        **ops,
    )
