r"""Reference problems of dynamical low-rank approximation, with their solutions.

Every factory returns a :class:`ReferenceProblem`: the matrix ODE (an
:class:`~lowrank_core.AbstractMatrixODE`), a rank-``r`` initial value ``Y0``, the time
span, and the exact or high-accuracy reference solution ``reference(t)`` of the *full*
(not rank-constrained) problem.  The demo, the benchmarks and the tests share them.

===================  ======================================================  ===========
name                 problem                                                 reference
===================  ======================================================  ===========
``prescribed-path``  ``A(t) = e^{tW1} e^t D e^{tW2}``, ``dY/dt = dA/dt``     closed form
``heat``             ``dX/dt = A X + X A + C`` (2-D heat, Dirichlet)         closed form
``schrodinger``      ``dY/dt = -i (D Y + Y D^T + V Y V^T)``                  DOP853
``riccati``          ``dX/dt = A^T X + X A + C - X X``                       Radau
``quadratic``        ``dW/dt = B - W`` (gradient flow of ``||W - B||^2/2``)  closed form
stochastic-burgers   Burgers ``Y[x, sample]``, random ``u_0``                DOP853
``allen-cahn``       ``dY/dt = eps (L Y + Y L) + Y - Y^3`` (periodic)        DOP853
``landau-damping``   1D1V Vlasov–Poisson ``f_t = -v f_x + E f_v``            lin. rate
``two-stream``       1D1V Vlasov–Poisson, two beams (instability)            lin. rate
``plane-source``     radiative transfer ``P_N``: ``-D_x Y A^T + D_xx Y|A|``  exact/Ganapol
===================  ======================================================  ===========

All data are generated in NumPy/SciPy on the host from a seed, then moved once to the
requested array namespace ``xp``, dtype and device.  Reference solutions are cached
per instance, so repeated calls ``reference(t)`` at the same ``t`` cost nothing.  The
arrays returned by ``reference(t)`` and the problem's callables are shared between
calls: do not modify them in place.

See ``methods.md`` §6 for the sources of the parameters.

Examples
--------
>>> import lowrank_core as lc
>>> from lowrank_core import problems
>>> p = problems.get("quadratic", m=30, n=20, r=3)
>>> sol = lc.solve(p.problem, p.Y0, p.t_span, dt=0.1, method="ksl")
>>> p.error(sol.Y, p.t_span[1]) < 2 * p.best_error(p.t_span[1], 3)
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._base import ReferenceProblem
from ._common import REFERENCE_TOL  # noqa: F401  (public constant)
from .allen_cahn import AllenCahnODE, AllenCahnProblem, allen_cahn
from .burgers import BurgersODE, StochasticBurgersProblem, stochastic_burgers
from .heat import heat_lyapunov
from .path import prescribed_path
from .quadratic import QuadraticProblem, quadratic_flow
from .radiative import PlaneSourceProblem, plane_source, plane_source_scalar_flux
from .riccati import RiccatiODE, riccati
from .schrodinger import SchrodingerProblem, schrodinger
from .vlasov import VlasovPoissonProblem, landau_damping, two_stream

__all__ = [
    "PROBLEMS",
    "AllenCahnODE",
    "AllenCahnProblem",
    "BurgersODE",
    "StochasticBurgersProblem",
    "allen_cahn",
    "stochastic_burgers",
    "QuadraticProblem",
    "ReferenceProblem",
    "RiccatiODE",
    "SchrodingerProblem",
    "VlasovPoissonProblem",
    "PlaneSourceProblem",
    "get",
    "heat_lyapunov",
    "landau_damping",
    "plane_source",
    "plane_source_scalar_flux",
    "prescribed_path",
    "quadratic_flow",
    "riccati",
    "schrodinger",
    "two_stream",
]


#: Registry of the reference problems: name -> factory.
PROBLEMS: dict[str, Callable[..., ReferenceProblem]] = {
    "prescribed-path": prescribed_path,
    "heat": heat_lyapunov,
    "schrodinger": schrodinger,
    "riccati": riccati,
    "quadratic": quadratic_flow,
    "stochastic-burgers": stochastic_burgers,
    "allen-cahn": allen_cahn,
    "landau-damping": landau_damping,
    "two-stream": two_stream,
    "plane-source": plane_source,
}


def get(name: str, **kwargs: Any) -> ReferenceProblem:
    """Build the reference problem registered as ``name``.

    Parameters
    ----------
    name : str
        One of ``"prescribed-path"``, ``"heat"``, ``"schrodinger"``, ``"riccati"``,
        ``"quadratic"``, ``"stochastic-burgers"``, ``"allen-cahn"``,
        ``"landau-damping"``, ``"two-stream"``, ``"plane-source"`` (see :data:`PROBLEMS`).
    **kwargs
        Passed to the factory (``xp``, ``dtype``, ``device``, ``seed``, sizes, ...).

    Returns
    -------
    ReferenceProblem

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is not registered.
    """
    if not isinstance(name, str):
        msg = f"`name` must be a string naming a problem ({sorted(PROBLEMS)}); got {type(name).__name__}."
        raise TypeError(msg)
    try:
        factory = PROBLEMS[name]
    except KeyError:
        msg = f"unknown problem name {name!r}: `name` must be one of {sorted(PROBLEMS)}; got {name!r}."
        raise ValueError(msg) from None
    return factory(**kwargs)
