"""The low-rank integrators (one class per method) and their registry.

The step contract (details in :class:`AbstractIntegrator` and :class:`StepKit`):

* an integrator is a frozen dataclass; its fields are its options (``substep``,
  ``tol``, ..., and ``kit``), validated on construction; change one with
  ``dataclasses.replace``;
* ``init(problem, t0, Y0) -> state`` checks that they fit and returns the initial state;
* ``step(problem, t0, t1, Y0, state) -> (Y1, state, info)`` advances one step without
  modifying its inputs; ``info`` is a :class:`~lowrank_core.StepInfo` (decompositions,
  right-hand-side points, rejections, ``max_rank`` hits of the step, optional error
  estimate) that :func:`lowrank_core.solve` adds to ``sol.stats``;
* capabilities are class attributes: ``name``, ``order``, ``rank_adaptive``,
  ``conservative``;
* a step is composed from the methods of the kit class named by the ``kit`` field (a
  :class:`StepKit` subclass): ``dataclasses.replace(method, kit=MyKit)`` changes one
  building block (a counted QR, the augmentation, the truncation) in every step.

Writing a new integrator::

    @dataclass(frozen=True, eq=False, repr=False, kw_only=True)
    class MyBUG(AbstractIntegrator):
        name: ClassVar[str] = "my-bug"
        order: ClassVar[int] = 1

        def step(self, problem, t0, t1, Y0, state):
            kit = self.make_kit(problem, Y0)
            K1, L1, _ = kit.kl_steps(t0, t1, Y0)
            U1, _ = kit.qr(K1)
            V1, _ = kit.qr(L1)
            S1 = kit.s_step(t0, t1, kit.project(Y0, U1, V1), U1, V1)
            return LowRank(U1, S1, V1), state, kit.info()

``lowrank_core.solve(problem, Y0, t_span, dt, method=MyBUG)`` then runs it.
"""

from ._base import AbstractIntegrator as AbstractIntegrator
from ._base import AbstractRankAdaptive as AbstractRankAdaptive
from ._base import StepKit as StepKit
from .backward_correction import ABCPSI as ABCPSI
from .backward_correction import BCPSI as BCPSI
from .bug import BUG as BUG
from .bug import RABUG as RABUG
from .bug import ParallelBUG as ParallelBUG
from .midpoint import MidpointBUG as MidpointBUG
from .midpoint import ParallelBUG2 as ParallelBUG2
from .projector_splitting import KSL as KSL
from .projector_splitting import KSLStrang as KSLStrang
from .runge_kutta import RKBUG as RKBUG
from .runge_kutta import TABLEAUX as TABLEAUX
from .runge_kutta import ButcherTableau as ButcherTableau
from .runge_kutta import ProjectedRK as ProjectedRK

#: name -> integrator class, used by :func:`lowrank_core.solve`
METHODS: dict[str, type[AbstractIntegrator]] = {
    cls.name: cls
    for cls in (KSL, KSLStrang, BCPSI, ABCPSI, BUG, RABUG, ParallelBUG, MidpointBUG, ParallelBUG2, RKBUG, ProjectedRK)
}

__all__ = [
    "ABCPSI", "BCPSI", "BUG", "KSL", "RABUG", "ParallelBUG", "METHODS",
    "AbstractIntegrator", "AbstractRankAdaptive", "KSLStrang", "StepKit",
    "MidpointBUG", "ParallelBUG2", "RKBUG", "ProjectedRK", "TABLEAUX", "ButcherTableau",
]
