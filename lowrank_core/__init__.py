"""lowrank_core: dynamical low-rank approximation and training.

Integrate matrix ODEs ``dY/dt = F(t, Y)`` on the manifold of rank-``r`` matrices,
``Y = U S V^H``, with robust integrators (projector splitting, backward-corrected and
augmented backward-corrected PSI), on any array-API backend.
"""

from ._conservation import Conservation as Conservation
from ._control import Checkpoint as Checkpoint
from ._control import StepToleranceWarning as StepToleranceWarning
from ._errors import LowRankIntegrationError as LowRankIntegrationError
from ._integrate import Solution as Solution
from ._integrate import solve as solve
from ._linalg import use_linalg as use_linalg
from ._lowrank import LowRank as LowRank
from ._problem import AbstractMatrixODE as AbstractMatrixODE
from ._problem import LinearMatrixODE as LinearMatrixODE
from ._problem import MatrixODE as MatrixODE
from ._problem import MatrixPath as MatrixPath
from ._problem import RHSValue as RHSValue
from ._stats import Counters as Counters
from ._stats import StepInfo as StepInfo
from ._substep import RK4 as RK4
from ._substep import RK45 as RK45
from ._substep import Euler as Euler
from ._substep import Exact as Exact
from ._substep import SubstepSolver as SubstepSolver
from ._truncation import Truncation as Truncation
from .integrators import ABCPSI as ABCPSI
from .integrators import BCPSI as BCPSI
from .integrators import BUG as BUG
from .integrators import KSL as KSL
from .integrators import METHODS as METHODS
from .integrators import RABUG as RABUG
from .integrators import RKBUG as RKBUG
from .integrators import KSLStrang as KSLStrang
from .integrators import MidpointBUG as MidpointBUG
from .integrators import ParallelBUG as ParallelBUG
from .integrators import ParallelBUG2 as ParallelBUG2
from .integrators import ProjectedRK as ProjectedRK

__version__ = "0.1.0"

__all__ = [
    "ABCPSI",
    "BCPSI",
    "BUG",
    "RABUG",
    "ParallelBUG",
    "MidpointBUG",
    "ParallelBUG2",
    "ProjectedRK",
    "RKBUG",
    "KSL",
    "METHODS",
    "RK4",
    "RK45",
    "AbstractMatrixODE",
    "Conservation",
    "Counters",
    "Euler",
    "Exact",
    "KSLStrang",
    "LinearMatrixODE",
    "LowRank",
    "LowRankIntegrationError",
    "Checkpoint",
    "StepInfo",
    "StepToleranceWarning",
    "MatrixODE",
    "MatrixPath",
    "RHSValue",
    "Solution",
    "SubstepSolver",
    "Truncation",
    "__version__",
    "solve",
    "use_linalg",
]
