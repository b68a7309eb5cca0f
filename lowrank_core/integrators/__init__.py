"""The low-rank integrators (one class per method) and their registry."""

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
from .runge_kutta import ProjectedRK as ProjectedRK

#: name -> integrator class, used by :func:`lowrank_core.solve`
METHODS: dict[str, type[AbstractIntegrator]] = {
    cls.name: cls
    for cls in (KSL, KSLStrang, BCPSI, ABCPSI, BUG, RABUG, ParallelBUG, MidpointBUG, ParallelBUG2, RKBUG, ProjectedRK)
}

__all__ = [
    "ABCPSI", "BCPSI", "BUG", "KSL", "RABUG", "ParallelBUG", "METHODS",
    "AbstractIntegrator", "AbstractRankAdaptive", "KSLStrang", "StepKit",
    "MidpointBUG", "ParallelBUG2", "RKBUG", "ProjectedRK", "TABLEAUX",
]
