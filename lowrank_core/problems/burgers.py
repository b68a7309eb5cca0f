r"""The viscous Burgers equation with a random initial condition, sample by sample
(uncertainty quantification: state ``Y[x, sample]``), and the Khatri-Rao products that
evaluate Hadamard powers ``Y^{⊙p}`` of a low-rank ``Y`` from its factors.

For ``Y = A B^T`` with ``A = U S`` of shape ``(m, r)`` and ``B = V`` of shape ``(n, r)``,

.. math:: Y^{\odot p} = (A \bullet \cdots \bullet A)(B \bullet \cdots \bullet B)^T,

where ``A • A`` is the row-wise Kronecker (face-splitting) product, of shape
``(m, r^p)``.  A product ``Y^{⊙p} W`` with ``W (n, k)`` is then
``(A^{•p}) ((B^{•p})^T W)``: ``O((m + n) r^p k)`` flops, done in row blocks of at most
``_CHUNK`` entries so that neither ``m x n`` nor ``m x r^p`` is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._lowrank import LowRank
from .._namespace import check_array, namespace_of_named
from .._problem import AbstractMatrixODE, DenseValue, RHSValue
from ._base import ReferenceProblem, _recorded
from ._common import _IVP, _Backend, _int, _rank, _real, _Reference, _rng, _stable_dt

__all__ = ["BurgersODE", "StochasticBurgersProblem", "stochastic_burgers"]

#: Entries of one row block of a Khatri-Rao power (2**18 float64 = 2 MiB).
_CHUNK = 2**18
#: Largest ``m * n`` for which the automatic choice may form the dense ``F`` (32 MiB in float64).
_DENSE_MAX = 2**22
#: Largest ``m * n`` of the full-rank reference solve.
_REFERENCE_MAX = 2**16

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


def _dense_state(Y: Any, like: Any, shape: tuple[int, int]) -> tuple[Any, None, Any]:
    """``(Y, None, xp)`` for a dense ``Y`` of the problem's namespace and ``shape``."""
    try:
        check_array(Y, "Y")
    except TypeError:
        msg = f"`Y` must be a LowRank or an array of shape {shape}; got {type(Y).__module__}.{type(Y).__name__}."
        raise TypeError(msg) from None
    xp = namespace_of_named(Y=Y, **{"the problem's arrays": like})
    if tuple(Y.shape) != tuple(shape):
        msg = f"`Y` must have shape {tuple(shape)}; got {tuple(Y.shape)}."
        raise ValueError(msg)
    return Y, None, xp


# ====================================================================== periodic stencils
def _ddx(W: Any, h: float, xp: Any) -> Any:
    """Centred first difference ``(w_{i+1} - w_{i-1}) / (2h)`` along axis 0, periodic."""
    return (xp.roll(W, -1, axis=0) - xp.roll(W, 1, axis=0)) * (0.5 / h)


def _d2dx2(W: Any, h: float, xp: Any) -> Any:
    """Second difference ``(w_{i+1} - 2 w_i + w_{i-1}) / h^2`` along axis 0, periodic."""
    return (xp.roll(W, -1, axis=0) + xp.roll(W, 1, axis=0) - 2.0 * W) * (1.0 / h**2)


def _choose(products: Any) -> str:
    if not isinstance(products, str) or products not in _PRODUCTS:
        msg = f"`products` must be one of {_PRODUCTS}; got {products!r}."
        raise (TypeError if not isinstance(products, str) else ValueError)(msg)
    return products


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


# ====================================================================== the matrix ODE
class _BurgersProducts(RHSValue):
    """``F = -(1/2) D (Y ⊙ Y) + nu L Y`` at one point, from the factors ``Y = A B^T``."""

    def __init__(self, ode: BurgersODE, Y: LowRank) -> None:
        self.ode, self.xp = ode, Y.xp
        self.A, self.B = Y.U @ Y.S, Y.V

    def F_V(self, W: Any) -> Any:  # noqa: N802
        xp, h, A, B = self.xp, self.ode.h, self.A, self.B
        quad = _kr_apply(A, _kr_gram(B, W, 2, xp), 2, xp)
        return -0.5 * _ddx(quad, h, xp) + self.ode.nu * _d2dx2(A @ (xp.matrix_transpose(B) @ W), h, xp)

    def FH_U(self, Z: Any) -> Any:  # noqa: N802
        # D^T = -D and L^T = L for the periodic centred stencils.
        xp, h, A, B = self.xp, self.ode.h, self.A, self.B
        quad = _kr_apply(B, _kr_gram(A, _ddx(Z, h, xp), 2, xp), 2, xp)
        return 0.5 * quad + self.ode.nu * (B @ (xp.matrix_transpose(A) @ _d2dx2(Z, h, xp)))


class BurgersODE(AbstractMatrixODE):
    r"""Viscous Burgers ``u_t + (u^2/2)_x = nu u_xx``, periodic in ``x``, one column per sample.

    ``dY/dt = F(Y) = -(1/2) D (Y ⊙ Y) + nu L Y`` for ``Y (m, n)``: row ``i`` is the
    grid point ``x_i = i h``, column ``j`` the sample ``j``; ``D`` is the centred
    difference ``(w_{i+1} - w_{i-1}) / (2h)`` and ``L`` the second difference
    ``(w_{i+1} - 2 w_i + w_{i-1}) / h^2``, both periodic.  The columns are independent
    Burgers solves; every column of ``F`` sums to zero (``1^T D = 1^T L = 0``), so
    the mass ``h sum_i Y_ij`` of each sample is conserved by the exact flow.

    Parameters
    ----------
    m : int
        Grid points, ``m >= 3``.
    nu : float
        Viscosity, ``nu > 0``.
    length : float, default 1.0
        Period of the domain (``h = length / m``).
    products : {"auto", "factored", "dense"}, default "auto"
        ``"factored"``: ``Y ⊙ Y = (A • A)(B • B)^T`` with ``Y = A B^T``, ``A = U S``,
        ``B = V``, products in ``O((m + n) r^2 k)`` flops without any ``m x n`` array;
        ``"dense"``: form ``F`` once per evaluation point (``O(m n)`` memory);
        ``"auto"``: dense when ``m n <= min((m + n) r^2, 2^22)``, else factored.

    Notes
    -----
    Works in any array-API namespace (the stencils are ``xp.roll``); real states only.
    """

    def __init__(self, m: int, nu: float, *, length: float = 1.0, products: str = "auto") -> None:
        self.m = _int(m, "m", 3)
        self.nu = _real(nu, "nu", positive=True)
        self.length = _real(length, "length", positive=True)
        self.h = self.length / self.m
        self.products = _choose(products)

    def check_state(self, Y0: LowRank) -> None:
        _check_real_state(Y0, self.m, None, "BurgersODE")

    def dense(self, Y: Any) -> Any:
        """The dense right-hand side ``F(Y)`` of a dense ``Y (m, n)`` (any namespace)."""
        xp = namespace_of_named(Y=Y)
        return -0.5 * _ddx(Y * Y, self.h, xp) + self.nu * _d2dx2(Y, self.h, xp)

    def _use_dense(self, Y: LowRank) -> bool:
        if self.products != "auto":
            return self.products == "dense"
        m, n = Y.shape[-2:]
        return m * n <= min((m + n) * Y.rank**2, _DENSE_MAX)

    def evaluate(self, t: float, Y: LowRank) -> RHSValue:
        if self._use_dense(Y):
            return DenseValue(self.dense(Y.to_dense()), Y.xp)
        return _BurgersProducts(self, Y)

    def F_V(self, t: float, Y: LowRank, V: Any) -> Any:  # noqa: N802
        return self.evaluate(t, Y).F_V(V)

    def FH_U(self, t: float, Y: LowRank, U: Any) -> Any:  # noqa: N802
        return self.evaluate(t, Y).FH_U(U)

    def __repr__(self) -> str:
        return f"BurgersODE(m={self.m}, nu={self.nu:g}, length={self.length:g}, products={self.products!r})"


# ====================================================================== the reference problem
def _mean_profile(x: np.ndarray) -> np.ndarray:
    """Hou, Luo, Rozovskii & Zhou (2006) initial profile ``0.5 (e^{cos 2 pi x} - 1.5) sin(2 pi (x + 0.37))``."""
    return 0.5 * (np.exp(np.cos(2 * np.pi * x)) - 1.5) * np.sin(2 * np.pi * (x + 0.37))


@dataclass(frozen=True, eq=False, kw_only=True)
class StochasticBurgersProblem(ReferenceProblem):
    r"""Burgers' equation with a random initial condition, with its sample statistics.

    Attributes
    ----------
    x : numpy.ndarray (m,)
        Grid points ``x_i = i / m`` of the periodic domain ``[0, 1)`` (host).
    xi : numpy.ndarray (n, d)
        The random parameters of the samples, uniform on ``[-1, 1]`` (host).
    nu : float
        Viscosity.
    h : float
        Grid spacing ``1 / m``.
    """

    x: Any
    xi: Any
    nu: float
    h: float

    def _factors(self, Y: Any) -> tuple[Any, Any, Any]:
        """``(A, B, xp)`` with ``Y = A B^T`` (a dense ``Y`` is ``Y I^T``)."""
        if isinstance(Y, LowRank):
            xp = namespace_of_named(Y=Y.U, **{"the problem's arrays": self.Y0.U})
            if tuple(Y.shape) != self.shape:
                msg = f"`Y` must have shape {self.shape}; got {tuple(Y.shape)}."
                raise ValueError(msg)
            return Y.U @ Y.S, Y.V, xp
        return _dense_state(Y, self.Y0.U, self.shape)

    def masses(self, Y: Any) -> Any:
        r"""Mass ``h sum_i Y_ij`` of each sample ``j``: array ``(n,)``, from the factors
        (``h (1^T U S) V^T``) for a :class:`~lowrank_core.LowRank`."""
        A, B, xp = self._factors(Y)
        colsum = xp.sum(A, axis=0) * self.h
        return colsum if B is None else B @ colsum

    def mass(self, Y: Any) -> float:
        r"""Sample mean of the masses, ``(h / n) sum_ij Y_ij`` (conserved by the exact flow)."""
        A, B, xp = self._factors(Y)
        total = xp.sum(A, axis=0) if B is None else xp.sum(A, axis=0) * xp.sum(B, axis=0)
        return float(xp.sum(total)) * self.h / self.shape[1]

    def mean(self, Y: Any) -> Any:
        r"""Sample mean ``E[u](x_i) = (1/n) sum_j Y_ij``: array ``(m,)``, ``O((m + n) r)``."""
        A, B, xp = self._factors(Y)
        n = self.shape[1]
        return xp.sum(A, axis=1) / n if B is None else A @ xp.sum(B, axis=0) / n

    def variance(self, Y: Any) -> Any:
        r"""Unbiased sample variance ``Var[u](x_i) = sum_j (Y_ij - E[u](x_i))^2 / (n - 1)``:
        array ``(m,)``.  For ``Y = A B^T``: with ``B_c = B - 1 (1^T B) / n`` and
        ``G = B_c^T B_c`` it is ``rowsum((A G) ⊙ A) / (n - 1)``, ``O((m + n) r^2)``."""
        A, B, xp = self._factors(Y)
        n = self.shape[1]
        if n < 2:
            msg = "the sample variance needs at least two samples (n >= 2)."
            raise ValueError(msg)
        if B is None:
            c = A - xp.mean(A, axis=1)[:, None]
            return xp.sum(c * c, axis=1) / (n - 1)
        Bc = B - xp.mean(B, axis=0)[None, :]
        G = xp.matrix_transpose(Bc) @ Bc
        return xp.sum((A @ G) * A, axis=1) / (n - 1)


@_recorded
def stochastic_burgers(
    m: int = 128,
    n: int = 64,
    r: int = 8,
    *,
    nu: float = 0.005,
    sigma: float = 0.1,
    d: int = 4,
    t_end: float = 0.3,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> StochasticBurgersProblem:
    r"""Viscous Burgers' equation with a random initial condition, ``Y[x, sample]``.

    ``u_t + (u^2 / 2)_x = nu u_xx`` on the periodic domain ``[0, 1)``, for ``n``
    Monte-Carlo samples of the random initial condition

    .. math:: u_0(x, \xi) = \bar u(x) + \sigma \sum_{k=1}^{d} \xi_k \frac{\sin(2\pi k x)}{k},
              \qquad \bar u(x) = \tfrac12 \big(e^{\cos 2\pi x} - 1.5\big) \sin(2\pi (x + 0.37)),

    ``xi_k`` independent uniform on ``[-1, 1]``.  The mean profile ``ū`` and the
    viscosity ``nu = 0.005`` are those of the stochastic Burgers benchmark of Hou, Luo,
    Rozovskii & Zhou (J. Comput. Phys. 216, 2006), used for dynamically orthogonal /
    bi-orthogonal methods by Cheng, Hou & Zhang (J. Comput. Phys. 242, 2013); there the
    randomness enters as a forcing, here (as in the DLRA setting of Kusch, Ceruti,
    Einkemmer & Frank, Int. J. Uncertain. Quantif. 12, 2022, and the DO analysis of
    Musharbash, Nobile & Zhou, SISC 37, 2015) through the initial condition: the
    Karhunen-Loève-type perturbation with ``d`` modes and amplitude ``sigma`` is this
    library's choice.  Space: ``m`` points, centred differences (:class:`BurgersODE`).

    ``u_0`` has rank ``d + 1`` exactly (``[ū, sin(2 pi k x)/k] [1, sigma xi_k]^T``), so
    ``Y0`` is built from thin factors at any size; the nonlinearity raises the rank
    as fronts form at sample-dependent places (``t >~ 0.2``).

    Parameters
    ----------
    m : int, default 128
        Grid points in ``x`` (up to ``10^6`` and more: the products are factored).
    n : int, default 64
        Samples.
    r : int, default 8
        Rank of ``Y0``: the truncated SVD of ``u_0`` when ``r < d + 1``; when
        ``r > d + 1`` the extra singular values are zero (seeded orthonormal padding).
    nu : float, default 0.005
        Viscosity.  The centred scheme needs the cell Péclet number
        ``max|u| h / nu < 2`` to stay free of grid oscillations (``max|u_0| ~ 0.7 + sigma
        H_d``, ``H_d`` the harmonic number): ``m >= 128`` at the default.
    sigma : float, default 0.1
        Amplitude of the random perturbation (``>= 0``).
    d : int, default 4
        Random dimensions (KL modes), ``1 <= d``.
    t_end : float, default 0.3
        Final time (fronts have formed; ``t_end`` may be larger).
    xp, dtype, device : optional
        Target array namespace (default NumPy), real dtype (default float64; complex
        dtypes raise ``TypeError``) and device.
    seed : int or numpy.random.Generator, default 0
        Seed of the samples ``xi`` (and of the padding of ``Y0``).

    Returns
    -------
    StochasticBurgersProblem
        ``problem = BurgersODE(m, nu)``; ``conserved = {"mass": mass}`` (the sample
        mean of ``∫ u dx``; :meth:`~StochasticBurgersProblem.masses` gives each
        sample's), ``mean(Y)`` and ``variance(Y)`` the sample statistics from the
        factors.  ``reference(t)`` is the DOP853 solution (rtol = atol =
        ``REFERENCE_TOL``) of the full ``m x n`` system (the ``n`` independent 1-D
        solves) from ``u_0``; it is available for ``m n <= 2^16`` only and raises
        ``ValueError`` above.  ``suggested_dt`` is 80 % of the RK4 bound for the
        spectral radius ``4 nu / h^2 + 2 max|u_0| / h``.
    """
    m = _int(m, "m", 3)
    n = _int(n, "n", 1)
    d = _int(d, "d", 1)
    r = _rank(r, m, n)
    nu = _real(nu, "nu", positive=True)
    sigma = _real(sigma, "sigma", nonnegative=True)
    t_end = _real(t_end, "t_end", positive=True)
    to_xp = _Backend(xp, dtype, device, complex_=False, who="stochastic_burgers")
    if to_xp.complex:
        msg = f"stochastic_burgers is a real problem: `dtype` must be float32 or float64; got {dtype!r}."
        raise TypeError(msg)
    rng = _rng(seed)
    h = 1.0 / m
    x = np.arange(m) * h
    xi = rng.uniform(-1.0, 1.0, size=(n, d))
    k = np.arange(1, d + 1)
    # u_0 = P Q^T with P = [u_bar, sin(2 pi k x) / k] (m, d + 1), Q = [1, sigma xi] (n, d + 1)
    P = np.concatenate([_mean_profile(x)[:, None], np.sin(2 * np.pi * np.outer(x, k)) / k], axis=1)
    Q = np.concatenate([np.ones((n, 1)), sigma * xi], axis=1)
    Qp, Rp = np.linalg.qr(P)
    Qq, Rq = np.linalg.qr(Q)
    W, s, Zt = np.linalg.svd(Rp @ Rq.T)
    Ul, Vl = Qp @ W, Qq @ Zt.T
    q = Ul.shape[1]
    if r <= q:
        U0, s0, V0 = Ul[:, :r], s[:r], Vl[:, :r]
    else:  # zero singular values on a seeded orthonormal complement
        pad_u = rng.standard_normal((m, r - q))
        pad_v = rng.standard_normal((n, r - q))
        U0 = np.linalg.qr(np.concatenate([Ul, pad_u - Ul @ (Ul.T @ pad_u)], axis=1))[0]
        V0 = np.linalg.qr(np.concatenate([Vl, pad_v - Vl @ (Vl.T @ pad_v)], axis=1))[0]
        U0[:, :q], V0[:, :q] = Ul, Vl
        s0 = np.concatenate([s, np.zeros(r - q)])
    Y0 = LowRank(to_xp(U0), to_xp(np.diag(s0)), to_xp(V0))
    umax = float(np.max(np.abs(_mean_profile(x)))) + sigma * float(np.sum(1.0 / k))
    ode = BurgersODE(m, nu)

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        Y = y.reshape(m, n)
        Y2 = Y * Y
        return (
            -0.25 / h * (np.roll(Y2, -1, axis=0) - np.roll(Y2, 1, axis=0))
            + nu / h**2 * (np.roll(Y, -1, axis=0) + np.roll(Y, 1, axis=0) - 2.0 * Y)
        ).ravel()

    Y_init = P @ Q.T if m * n <= _REFERENCE_MAX else None

    def host(t: float) -> np.ndarray:
        if Y_init is None:
            msg = (
                f"the full-rank reference of stochastic_burgers is computed for m n <= {_REFERENCE_MAX} only; "
                f"this problem has m n = {m * n}. Use a smaller `m` or `n` for comparisons with the reference."
            )
            raise ValueError(msg)
        return ivp(t).reshape(m, n)

    ivp = _IVP(rhs, 0.0, None if Y_init is None else Y_init.ravel(), t_end, method="DOP853")
    ref = _Reference(host, to_xp)
    rho = 4 * nu / h**2 + 2 * umax / h
    notes = (
        f"Burgers u_t + (u^2/2)_x = nu u_xx on [0, 1) periodic, m = {m} points (centred differences), n = {n} "
        f"samples, nu = {nu:g}; u_0 = u_bar + sigma sum_k xi_k sin(2 pi k x)/k, sigma = {sigma:g}, d = {d}, xi_k "
        f"~ U(-1, 1) (seed {seed!r}); u_bar and nu = 0.005 from Hou, Luo, Rozovskii & Zhou 2006 (DyBO benchmark "
        "of Cheng, Hou & Zhang 2013); uncertain initial data as in Kusch, Ceruti, Einkemmer & Frank 2022. "
        f"Y0: rank-{r} truncation of u_0 (rank {q}). reference(t): DOP853, rtol = atol = 1e-10, on the full "
        f"m x n system (m n <= {_REFERENCE_MAX}). Each sample's mass h sum_i u_i is conserved by the exact flow "
        "(DLRA keeps it up to the projection error). suggested_dt: 80% of the RK4 bound for "
        f"rho = 4 nu / h^2 + 2 max|u_0| / h = {rho:.4g}. Cell Peclet number max|u_0| h / nu = {umax * h / nu:.2g}"
        " (centred differences want < 2)."
    )
    out = StochasticBurgersProblem(
        name="stochastic-burgers",
        problem=ode,
        Y0=Y0,
        t_span=(0.0, t_end),
        reference=ref,
        symmetric=False,
        norm_preserving=False,
        notes=notes,
        suggested_dt=_stable_dt(rho, t_end),
        x=x,
        xi=xi,
        nu=nu,
        h=h,
    )
    object.__setattr__(out, "conserved", {"mass": out.mass})
    return out
