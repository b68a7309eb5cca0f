r"""1D1V Vlasov–Poisson: linear Landau damping and the two-stream instability.

``f_t + v f_x - E f_v = 0``, ``E_x = 1 - \int f dv`` (electrons on a neutralising ion
background, periodic in ``x``), as in Einkemmer & Lubich, *A low-rank
projector-splitting integrator for the Vlasov–Poisson equation*, SIAM J. Sci. Comput.
40 (2018) B1330–B1360.  The state is ``Y[i, j] = f(x_i, v_j)``; the right-hand side

    F(Y) = -D_x Y diag(v) + diag(E(Y)) Y D_v^T

is a :class:`~lowrank_core.LinearMatrixODE` with a state-dependent operator
``diag(E(Y))`` (the field from the density ``rho = hv Y 1``, computed from the
factors).  ``D_x`` and ``D_v`` are Fourier spectral derivatives (periodic ``x`` and,
on a box ``[-v_max, v_max)`` wide enough that ``f`` vanishes at its edge, periodic
``v``): they annihilate constants exactly, so the discrete mass ``hx hv sum(Y)`` is an
invariant of the semi-discrete system, and the conservative truncation
(:class:`~lowrank_core.Conservation`) keeps it to round-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.integrate import solve_ivp
from scipy.optimize import newton
from scipy.special import wofz

from .._conservation import Conservation
from .._lowrank import LowRank
from .._namespace import conj_transpose, namespace_of_named
from .._problem import LinearMatrixODE
from ._base import ReferenceProblem, _recorded
from ._common import REFERENCE_TOL, _Backend, _dense_like, _int, _orth, _rank, _real, _Reference, _rng, _time

__all__ = ["VlasovPoissonProblem", "landau_damping", "linear_dispersion", "two_stream"]

#: RK4 is stable on the imaginary axis for h |lambda| <= 2 sqrt(2) ~ 2.83.
_RK4_IMAG_STABILITY = 2.0 * math.sqrt(2.0)
#: Largest grid (nx * nv) for which ``reference(t)`` runs the full-rank solve.
FULL_REFERENCE_MAX = 128 * 128
#: Largest ``max(nx, nv)`` for namespaces other than NumPy (dense operators there).
DENSE_MAX = 2048


# ====================================================================== linear theory
def _Z(z: complex) -> complex:
    """Plasma dispersion function ``Z(z) = i sqrt(pi) w(z)`` (Faddeeva ``w``)."""
    return 1j * math.sqrt(math.pi) * complex(wofz(z))


def linear_dispersion(k: float, beams: tuple[tuple[float, float], ...], guess: complex) -> complex:
    r"""Root ``omega`` of the linear dispersion relation of a sum of unit-temperature Maxwellians.

    For ``f0(v) = sum_b n_b exp(-(v - u_b)^2 / 2) / sqrt(2 pi)`` (``sum n_b = 1``) the
    electrostatic dielectric function is

    ``eps(omega, k) = 1 + k^{-2} sum_b n_b [1 + z_b Z(z_b)]``,
    ``z_b = (omega - k u_b) / (sqrt(2) k)``,

    with ``Z`` the plasma dispersion function (Fried & Conte), ``Z(z) = i sqrt(pi) w(z)``
    (:func:`scipy.special.wofz`).  A mode ``e^{i(kx - omega t)}`` has amplitude rate
    ``Im omega`` (negative: Landau damping; positive: instability); the electric
    energy changes at ``2 Im omega``.

    Parameters
    ----------
    k : float
        Wave number.
    beams : tuple of (n_b, u_b)
        Weights and drift velocities.
    guess : complex
        Starting point of the Newton iteration (selects the root).

    Returns
    -------
    complex
        ``omega`` with ``|eps(omega, k)| < 1e-12``.
    """

    def eps(w: complex) -> complex:
        total = 1.0 + 0j
        for n_b, u_b in beams:
            z = (w - k * u_b) / (math.sqrt(2.0) * k)
            total += n_b * (1.0 + z * _Z(z)) / k**2
        return total

    omega = complex(newton(eps, guess, tol=1e-14, maxiter=200))
    if not abs(eps(omega)) < 1e-12:  # pragma: no cover - the guesses below converge
        msg = f"the dispersion relation did not converge for k = {k} (|eps| = {abs(eps(omega)):.2e})."
        raise RuntimeError(msg)
    return omega


# ====================================================================== discretisation
def _wavenumbers(n: int, length: float) -> np.ndarray:
    """Angular wave numbers of the FFT of ``n`` points on a period ``length``; the
    Nyquist mode of an even ``n`` is set to 0, so the derivative is real and
    antisymmetric."""
    k = 2.0 * np.pi * np.fft.fftfreq(n, length / n)
    if n % 2 == 0:
        k[n // 2] = 0.0
    return k


def _spectral_derivative(n: int, length: float, dtype: Any) -> spla.LinearOperator:
    """The periodic Fourier derivative as a matrix-free LinearOperator (two FFTs per
    block of columns; real and antisymmetric, so its adjoint is its negative)."""
    k = _wavenumbers(n, length)

    def apply(X: np.ndarray) -> np.ndarray:
        if np.iscomplexobj(X):
            return apply(X.real) + 1j * apply(X.imag)
        out = np.fft.ifft(1j * k[:, None] * np.fft.fft(X, axis=0), axis=0).real
        return out.astype(X.dtype, copy=False)

    return spla.LinearOperator(
        (n, n),
        matvec=lambda u: apply(np.reshape(u, (n, 1)))[:, 0],
        matmat=apply,
        rmatvec=lambda u: -apply(np.reshape(u, (n, 1)))[:, 0],
        rmatmat=lambda X: -apply(X),
        dtype=dtype,
    )


def _field_host(rho: np.ndarray, length: float) -> np.ndarray:
    """``E`` with ``E_x = 1 - rho``, zero mean, by FFT (host NumPy, any leading axes last)."""
    k = _wavenumbers(rho.shape[-1], length)
    rk = np.fft.fft(-rho, axis=-1)
    Ek = np.zeros_like(rk)
    nz = k != 0
    Ek[..., nz] = rk[..., nz] / (1j * k[nz])
    return np.fft.ifft(Ek, axis=-1).real


# ====================================================================== the problem
@dataclass(frozen=True, eq=False, kw_only=True)
class VlasovPoissonProblem(ReferenceProblem):
    r"""A 1D1V Vlasov–Poisson problem with its grids, field and invariants.

    Attributes
    ----------
    x : array (nx,)
        Periodic grid ``x_i = i L / nx`` on ``[0, L)``, ``L = 2 pi / k``.
    v : array (nv,)
        Velocity grid ``v_j = -v_max + j hv`` on ``[-v_max, v_max)``, ``hv = 2 v_max / nv``.
    hx, hv : float
        Grid spacings (the quadrature weights of the rectangle rule, exact for
        periodic trigonometric polynomials).
    k, alpha : float
        Wave number and amplitude of the initial perturbation ``1 + alpha cos(k x)``.
    linear_rate : float
        ``Im omega`` of the linear-theory mode (``vlasov.linear_dispersion``, computed for
        the problem's parameters): the exponential rate of the electric-field amplitude
        ``||E||``; the electric energy changes at ``2 linear_rate``.
    linear_frequency : float
        ``Re omega`` (the amplitude of a damped mode oscillates at ``|Re omega|``, its
        energy at ``2 |Re omega|``).
    conservation : Conservation
        The kept basis of the conservative truncation: ``left`` the constant in ``x``,
        ``right`` the columns ``1, v, v^2``.  ``lc.solve(p.problem, p.Y0, p.t_span, dt,
        method="ra-bug", conserve=p.conservation)`` conserves the discrete mass to
        round-off.

    Notes
    -----
    ``conserved`` holds ``"mass"`` (``hx hv sum_ij Y_ij``), ``"momentum"``
    (``hx hv sum_ij Y_ij v_j``) and ``"energy"`` (kinetic ``hx hv sum_ij Y_ij v_j^2 / 2``
    plus electric ``hx sum_i E_i^2 / 2``), each computed from the factors of a
    :class:`~lowrank_core.LowRank` in ``O((nx + nv) r)`` operations.  The semi-discrete
    system conserves the mass exactly; momentum and energy up to the truncation of
    ``f`` at the velocity box edge and the spectral-collocation (aliasing) error.
    """

    x: Any
    v: Any
    hx: float
    hv: float
    k: float
    alpha: float
    linear_rate: float
    linear_frequency: float
    conservation: Conservation

    # -- field --------------------------------------------------------------------
    def density(self, Y: Any) -> Any:
        r"""``rho_i = hv sum_j Y_ij`` (array ``(nx,)``), from the factors for a LowRank."""
        xp, is_lowrank = self._check(Y)
        if is_lowrank:
            w = xp.full((Y.shape[-1],), self.hv, dtype=Y.dtype, device=Y.device)
            return Y.U @ (Y.S @ (conj_transpose(Y.V, xp) @ w))
        return self.hv * xp.sum(Y, axis=-1)

    def electric_field(self, Y: Any) -> Any:
        r"""``E(x_i)`` (array ``(nx,)``) with ``E_x = 1 - rho``, zero mean (FFT for NumPy,
        the same linear map as a dense ``nx x nx`` matrix for other namespaces)."""
        rho = self.density(Y)
        if array_api_compat.is_numpy_array(rho):
            return _field_host(rho, self.hx * int(self.x.shape[0])).astype(rho.dtype, copy=False)
        return self.__dict__["_field_matrix"] @ rho

    def electric_energy(self, Y: Any) -> float:
        r"""``hx sum_i E_i^2 / 2``."""
        E = self.electric_field(Y)
        xp = array_api_compat.array_namespace(E)
        return float(0.5 * self.hx * xp.sum(E * E))

    def field_amplitude(self, Y: Any) -> float:
        r"""``||E||_{L^2} = (hx sum_i E_i^2)^{1/2}``: decays (Landau) or grows (two-stream)
        at ``linear_rate`` in the linear regime."""
        return math.sqrt(2.0 * self.electric_energy(Y))

    # -- invariants ---------------------------------------------------------------
    def _moments(self, Y: Any) -> tuple[float, float, float]:
        """``hx hv sum_ij Y_ij v_j^p`` for ``p = 0, 1, 2``."""
        xp, is_lowrank = self._check(Y)
        v = self.v
        vv = xp.stack([xp.ones_like(v), v, v * v], axis=1)  # (nv, 3)
        if is_lowrank:
            ones = xp.ones((Y.shape[-2],), dtype=Y.dtype, device=Y.device)
            m = (ones @ Y.U) @ (Y.S @ (conj_transpose(Y.V, xp) @ vv))
        else:
            m = xp.sum(Y @ vv, axis=0)
        m = self.hx * self.hv * m
        return float(m[0]), float(m[1]), float(m[2])

    def mass(self, Y: Any) -> float:
        """Discrete mass ``hx hv sum_ij Y_ij``."""
        return self._moments(Y)[0]

    def momentum(self, Y: Any) -> float:
        """Discrete momentum ``hx hv sum_ij Y_ij v_j``."""
        return self._moments(Y)[1]

    def energy(self, Y: Any) -> float:
        """Total energy: kinetic ``hx hv sum_ij Y_ij v_j^2 / 2`` plus electric ``hx sum_i E_i^2 / 2``."""
        return 0.5 * self._moments(Y)[2] + self.electric_energy(Y)

    def _check(self, Y: Any) -> tuple[Any, bool]:
        if isinstance(Y, LowRank):
            xp = namespace_of_named(Y=Y.U, **{"the problem's arrays": self.v})
            if tuple(Y.shape) != self.shape:
                msg = f"`Y` must have shape {self.shape}; got {tuple(Y.shape)}."
                raise ValueError(msg)
            return xp, True
        _, xp = _dense_like(Y, self.Y0.U[:, :1] @ self.Y0.V[:, :1].T, lowrank=False)
        return xp, False


# ====================================================================== factories
def _build(
    *,
    name: str,
    nx: int,
    nv: int,
    r: int,
    t_end: float,
    k: float,
    alpha: float,
    v_max: float,
    beams: tuple[tuple[float, float], ...],
    guess: complex,
    e_bound: float,
    xp: Any,
    dtype: Any,
    device: Any,
    seed: Any,
    source: str,
) -> VlasovPoissonProblem:
    to_xp = _Backend(xp, dtype, device, complex_=False, who=name)
    if to_xp.complex:
        msg = f"{name} is a real problem: `dtype` must be float32 or float64; got {to_xp.dtype!r}."
        raise TypeError(msg)
    numpy_backend = array_api_compat.is_numpy_namespace(to_xp.xp)
    if not numpy_backend and max(nx, nv) > DENSE_MAX:
        msg = (
            f"{name} with xp={getattr(to_xp.xp, '__name__', to_xp.xp)} uses dense {max(nx, nv)} x {max(nx, nv)} "
            f"operators (SciPy sparse and LinearOperators apply to NumPy states only); `nx` and `nv` must be "
            f"<= {DENSE_MAX} there; got nx = {nx}, nv = {nv}. Use NumPy for larger grids."
        )
        raise ValueError(msg)
    rng = _rng(seed)
    length = 2.0 * math.pi / k
    hx, hv = length / nx, 2.0 * v_max / nv
    x = np.arange(nx) * hx
    v = -v_max + np.arange(nv) * hv
    fv = sum(n_b * np.exp(-((v - u_b) ** 2) / 2.0) for n_b, u_b in beams) / math.sqrt(2.0 * math.pi)
    fx = 1.0 + alpha * np.cos(k * x)
    f0 = np.outer(fx, fv)

    # Y0: f0 (rank 1) in a rank-r basis padded with random orthonormal columns.
    U = _orth(np.column_stack([fx, rng.standard_normal((nx, r - 1))]))
    V = _orth(np.column_stack([fv, rng.standard_normal((nv, r - 1))]))
    S = np.zeros((r, r))
    S[0, 0] = float(U[:, 0] @ f0 @ V[:, 0])
    Y0 = LowRank(to_xp(U), to_xp(S), to_xp(V))

    # Operators: matrix-free FFT derivatives and sparse diagonals for NumPy, dense
    # matrices (built on the host from the same maps) for other namespaces.
    host_dtype = to_xp.host_dtype
    Dx_op = _spectral_derivative(nx, length, host_dtype)
    Dv_op = _spectral_derivative(nv, 2.0 * v_max, host_dtype)
    x_xp, v_xp = to_xp(x), to_xp(v)
    if numpy_backend:
        Dx, Dv = Dx_op, Dv_op
        minus_v = sp.diags(-v.astype(host_dtype), format="csr")
        w = np.full(nv, hv, dtype=host_dtype)

        def E_operator(t: float, Y: LowRank) -> Any:
            rho = Y.U @ (Y.S @ (Y.V.T @ w))
            return sp.diags(_field_host(rho, length).astype(host_dtype, copy=False), format="csr")

        field_matrix = None
    else:
        Dx = to_xp(Dx_op.matmat(np.eye(nx)))
        Dv = to_xp(Dv_op.matmat(np.eye(nv)))
        minus_v = to_xp(np.diag(-v))
        field_matrix = to_xp(_field_host(np.eye(nx), length).T)  # E = G rho: column i is E(e_i)
        w_xp = to_xp(np.full(nv, hv))
        txp = to_xp.xp

        def E_operator(t: float, Y: LowRank) -> Any:
            rho = Y.U @ (Y.S @ (txp.matrix_transpose(Y.V) @ w_xp))
            E = field_matrix @ rho
            return E[:, None] * txp.eye(nx, dtype=E.dtype, device=to_xp.device)

    problem = LinearMatrixODE(None, None, terms=[(Dx, minus_v), (E_operator, Dv)])

    # Full-rank reference (host, float64) for small grids.
    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        Yd = y.reshape(nx, nv)
        E = _field_host(hv * Yd.sum(axis=1), length)
        return (-Dx_op.matmat(Yd) * v[None, :] + E[:, None] * Dv_op.matmat(Yd.T).T).ravel()

    def reference_host(t: float) -> np.ndarray:
        if nx * nv > FULL_REFERENCE_MAX:
            msg = (
                f"the full-rank reference of {name} is computed only for nx * nv <= {FULL_REFERENCE_MAX} "
                f"(here {nx} x {nv}); compare against `linear_rate` instead."
            )
            raise ValueError(msg)
        if t < 0:
            msg = f"the reference solution is computed forward from t0 = 0 only; got t = {t}."
            raise ValueError(msg)
        if t == 0:
            return f0.copy()
        sol = solve_ivp(rhs, (0.0, t), f0.ravel(), method="DOP853", rtol=REFERENCE_TOL, atol=REFERENCE_TOL, t_eval=[t])
        if sol.status != 0:  # pragma: no cover - a non-stiff problem at these sizes
            msg = f"the reference solve (DOP853) to t = {t} failed: {sol.message}"
            raise RuntimeError(msg)
        return sol.y[:, -1].reshape(nx, nv)

    omega = linear_dispersion(k, beams, guess)
    kx_max = float(np.max(np.abs(_wavenumbers(nx, length))))
    kv_max = float(np.max(np.abs(_wavenumbers(nv, 2.0 * v_max))))
    rho_max = v_max * kx_max + e_bound * kv_max
    dt_max = 0.8 * _RK4_IMAG_STABILITY / rho_max
    suggested_dt = t_end / math.ceil(t_end / dt_max)

    keep = Conservation(left=to_xp(np.ones(nx)), right=to_xp(np.stack([np.ones(nv), v, v * v], axis=1)))
    notes = (
        f"{source} Grid {nx} x {nv} on [0, {length:.6g}) x [-{v_max:g}, {v_max:g}) (periodic; Fourier spectral "
        f"derivatives in x and v; field E_x = 1 - rho by FFT). Y0 = f0 (rank 1) in a rank-{r} basis padded with "
        f"random orthonormal columns (seed {seed!r}). Linear theory (Z-function dispersion relation): omega = "
        f"{omega.real:.6f} {'+' if omega.imag >= 0 else '-'} {abs(omega.imag):.6f}i, "
        f"so ||E|| ~ exp({omega.imag:.4f} t) "
        f"(electric energy at {2 * omega.imag:.4f}). reference(t): DOP853, rtol = atol = {REFERENCE_TOL:g}, on the "
        f"full {nx} x {nv} system (only for nx * nv <= {FULL_REFERENCE_MAX}). suggested_dt: 80 % of the RK4 "
        f"imaginary-axis bound 2.83 / (v_max k_x,max + {e_bound:g} k_v,max) = {_RK4_IMAG_STABILITY / rho_max:.3g} "
        f"(|E| <= {e_bound:g} assumed). Mass is conserved by the semi-discrete system; use "
        "conserve=problem.conservation with 'ra-bug' or 'abc-psi' to keep it to round-off."
    )
    out = VlasovPoissonProblem(
        name=name,
        problem=problem,
        Y0=Y0,
        t_span=(0.0, t_end),
        reference=_Reference(lambda t: reference_host(_time(t)), to_xp),
        symmetric=False,
        norm_preserving=False,
        notes=notes,
        suggested_dt=suggested_dt,
        x=x_xp,
        v=v_xp,
        hx=hx,
        hv=hv,
        k=k,
        alpha=alpha,
        linear_rate=omega.imag,
        linear_frequency=omega.real,
        conservation=keep,
    )
    if field_matrix is not None:
        object.__setattr__(out, "_field_matrix", field_matrix)
    object.__setattr__(out, "conserved", {"mass": out.mass, "momentum": out.momentum, "energy": out.energy})
    return out


def _grid_args(
    nx: Any, nv: Any, r: Any, t_end: Any, alpha: Any, v_max: Any
) -> tuple[int, int, int, float, float, float]:
    nx = _int(nx, "nx", 4)
    nv = _int(nv, "nv", 4)
    r = _rank(r, nx, nv)
    t_end = _real(t_end, "t_end", positive=True)
    alpha = _real(alpha, "alpha", nonnegative=True)
    v_max = _real(v_max, "v_max", positive=True)
    return nx, nv, r, t_end, alpha, v_max


@_recorded
def landau_damping(
    nx: int = 32,
    nv: int = 32,
    r: int = 10,
    *,
    t_end: float = 15.0,
    k: float = 0.5,
    alpha: float = 0.01,
    v_max: float = 6.0,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> VlasovPoissonProblem:
    r"""Linear Landau damping (Einkemmer & Lubich 2018, SISC, §5; the standard test).

    ``f0(x, v) = (1 + alpha cos(k x)) exp(-v^2 / 2) / sqrt(2 pi)`` on
    ``[0, 2 pi / k) x [-v_max, v_max)``, ``alpha = 0.01``, ``k = 0.5``, ``v_max = 6``.
    The field amplitude decays at the Landau rate ``linear_rate = Im omega = -0.1533``
    (``omega = 1.4157 - 0.1534 i`` for ``k = 0.5``, from the dispersion relation
    ``1 + (1 + z Z(z)) / k^2 = 0``, ``z = omega / (sqrt 2 k)``, solved for the chosen
    ``k``), until the recurrence time ``2 pi / (k hv)``.

    Parameters
    ----------
    nx, nv : int, default 32
        Grid points in ``x`` and ``v`` (state ``nx x nv``; 32 x 32 is the smallest
        grid on which KSL or RA-BUG at rank 10 fits the rate within 2 %, measured
        -0.1545 over ``2 < t < 15``; NumPy operators are
        matrix-free FFTs and sparse diagonals, so sizes up to ``1e6`` per dimension
        are fine; other namespaces use dense operators, ``max(nx, nv) <= 2048``).
    r : int, default 10
        Rank of ``Y0`` (``f0`` is rank 1; padded with random orthonormal columns).
    t_end : float, default 15.0
        Final time.
    k, alpha : float
        Wave number and amplitude of the perturbation.
    v_max : float, default 6.0
        Half-width of the (periodic) velocity box.
    xp, dtype, device : optional
        Target namespace (default NumPy), real dtype (default float64), device.
    seed : int or numpy.random.Generator, default 0
        Seed of the padding columns of ``Y0``.

    Returns
    -------
    VlasovPoissonProblem
        With ``linear_rate``, ``electric_field(Y)``, ``electric_energy(Y)``,
        ``conserved`` (mass, momentum, energy) and ``conservation`` (the kept basis
        ``1`` in ``x``, ``1, v, v^2`` in ``v``).  ``reference(t)``: a full-rank DOP853
        solve for ``nx * nv <= 16384``.

    Examples
    --------
    >>> from lowrank_core import problems
    >>> round(problems.landau_damping(nx=16, nv=16).linear_rate, 4)
    -0.1534
    """
    nx, nv, r, t_end, alpha, v_max = _grid_args(nx, nv, r, t_end, alpha, v_max)
    k = _real(k, "k", positive=True)
    return _build(
        name="landau-damping",
        nx=nx,
        nv=nv,
        r=r,
        t_end=t_end,
        k=k,
        alpha=alpha,
        v_max=v_max,
        beams=((1.0, 0.0),),
        guess=complex(math.sqrt(1.0 + 3.0 * k * k), -0.1),
        e_bound=max(2.0 * alpha / k, 1e-3),
        xp=xp,
        dtype=dtype,
        device=device,
        seed=seed,
        source=(
            f"Linear Landau damping, f0 = (1 + {alpha:g} cos({k:g} x)) exp(-v^2/2)/sqrt(2 pi) "
            "(Einkemmer & Lubich, SIAM J. Sci. Comput. 40 (2018) B1330, Landau damping test)."
        ),
    )


@_recorded
def two_stream(
    nx: int = 32,
    nv: int = 64,
    r: int = 10,
    *,
    t_end: float = 26.0,
    k: float = 0.2,
    alpha: float = 1e-3,
    v0: float = 2.4,
    v_max: float = 9.0,
    xp: Any = None,
    dtype: Any = None,
    device: Any = None,
    seed: Any = 0,
) -> VlasovPoissonProblem:
    r"""Two-stream instability (Einkemmer & Lubich 2018, SISC, two-stream test).

    ``f0(x, v) = (1 + alpha cos(k x)) (e^{-(v - v0)^2/2} + e^{-(v + v0)^2/2}) / (2 sqrt(2 pi))``
    on ``[0, 2 pi / k) x [-v_max, v_max)`` with Einkemmer & Lubich's ``alpha = 1e-3``,
    ``k = 1/5`` (``x`` in ``[0, 10 pi)``), ``v0 = 2.4``.  The velocity box ``v_max = 9``
    is our choice: ``f0 < 1e-9`` at its (periodic) edge.  The field grows at the
    linear-theory rate ``linear_rate = Im omega = 0.2258`` (a purely growing mode of
    ``1 + sum_± (1 + z_± Z(z_±)) / (2 k^2) = 0``, ``z_± = (omega ∓ k v0) / (sqrt 2 k)``)
    (electric energy at ``2 linear_rate``) once the damped modes excited with it have
    died out (``t > 12``), until it saturates after ``t ~ 30``.

    Parameters
    ----------
    nx, nv : int, default 32, 64
        Grid points in ``x`` and ``v``.
    r : int, default 10
        Rank of ``Y0`` (``f0`` is rank 1, padded).
    t_end : float, default 26.0
        Final time (inside the linear phase).
    k, alpha, v0 : float
        Wave number, perturbation amplitude and beam velocity.
    v_max : float, default 9.0
        Half-width of the (periodic) velocity box.
    xp, dtype, device, seed
        As for :func:`landau_damping`.

    Returns
    -------
    VlasovPoissonProblem
    """
    nx, nv, r, t_end, alpha, v_max = _grid_args(nx, nv, r, t_end, alpha, v_max)
    k = _real(k, "k", positive=True)
    v0 = _real(v0, "v0", nonnegative=True)
    return _build(
        name="two-stream",
        nx=nx,
        nv=nv,
        r=r,
        t_end=t_end,
        k=k,
        alpha=alpha,
        v_max=v_max,
        beams=((0.5, v0), (0.5, -v0)),
        guess=complex(0.0, 0.3),
        e_bound=1.0,
        xp=xp,
        dtype=dtype,
        device=device,
        seed=seed,
        source=(
            f"Two-stream instability, f0 = (1 + {alpha:g} cos({k:g} x)) (e^-(v-{v0:g})^2/2 + e^-(v+{v0:g})^2/2)"
            "/(2 sqrt(2 pi)) (Einkemmer & Lubich, SIAM J. Sci. Comput. 40 (2018) B1330, two-stream test; "
            "velocity box our choice)."
        ),
    )
