"""Assembly of the 1D1V Vlasov-Poisson problems from their parameters (operators, ``Y0``,
reference, linear rate, step size): shared by ``landau_damping`` and ``two_stream``."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp

from .._conservation import Conservation
from .._lowrank import LowRank
from .._problem import LinearMatrixODE
from ._base import _assemble
from ._common import REFERENCE_TOL, _Backend, _int, _orth, _rank, _real, _Reference, _rng, _time
from ._dispersion import linear_dispersion
from ._vlasov_model import VlasovPoissonProblem, _field_host, _spectral_derivative, _wavenumbers

#: RK4 is stable on the imaginary axis for h |lambda| <= 2 sqrt(2) ~ 2.83.
_RK4_IMAG_STABILITY = 2.0 * math.sqrt(2.0)
#: Largest grid (nx * nv) for which ``reference(t)`` runs the full-rank solve.
FULL_REFERENCE_MAX = 128 * 128
#: Largest ``max(nx, nv)`` for namespaces other than NumPy (dense operators there).
DENSE_MAX = 2048


def _build(
    name: str,
    grid: tuple[int, int, int, float, float, float],
    k: float,
    beams: tuple[tuple[float, float], ...],
    guess: complex,
    e_bound: float,
    target: tuple[Any, Any, Any, Any],
    source: str,
) -> VlasovPoissonProblem:
    """The problem ``name`` on ``grid = (nx, nv, r, t_end, alpha, v_max)`` (see
    :func:`_grid_args`) for ``f0 = (1 + alpha cos(k x)) sum_b n_b M(v - u_b)`` with
    ``beams = ((n_b, u_b), ...)``; ``guess`` selects the dispersion root, ``e_bound``
    bounds ``|E|`` in ``suggested_dt``; ``target = (xp, dtype, device, seed)``; ``source``
    opens the notes."""
    nx, nv, r, t_end, alpha, v_max = grid
    xp, dtype, device, seed = target
    to_xp = _Backend(xp, dtype, device, complex_=False, who=name, real_only=True)
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
    ref = _Reference(lambda t: reference_host(_time(t)), to_xp)
    fields = {"x": x_xp, "v": v_xp, "hx": hx, "hv": hv, "k": k, "alpha": alpha, "conservation": keep}
    fields["linear_rate"], fields["linear_frequency"] = omega.imag, omega.real
    kept = ("mass", "momentum", "energy")
    out = _assemble(VlasovPoissonProblem, name, problem, Y0, t_end, ref, notes, suggested_dt, conserved=kept, **fields)
    if field_matrix is not None:
        object.__setattr__(out, "_field_matrix", field_matrix)
    return out


def _grid_args(
    nx: Any, nv: Any, r: Any, t_end: Any, alpha: Any, v_max: Any
) -> tuple[int, int, int, float, float, float]:
    """The checked ``(nx, nv, r, t_end, alpha, v_max)`` of a Vlasov-Poisson factory."""
    nx = _int(nx, "nx", 4)
    nv = _int(nv, "nv", 4)
    r = _rank(r, nx, nv)
    t_end = _real(t_end, "t_end", positive=True)
    alpha = _real(alpha, "alpha", nonnegative=True)
    v_max = _real(v_max, "v_max", positive=True)
    return nx, nv, r, t_end, alpha, v_max
