r"""Low-rank training: the integrators of :mod:`lowrank_core` as optimizers.

Framework-agnostic (any array-API library): a :class:`LowRankParam` holds the factors
of a weight matrix and its optimizer state; an optimizer's ``step`` takes the gradients
with respect to the factors (or the full-matrix gradient) and returns the updated
parameter.  The PyTorch adapter lives in :mod:`lowrank_core.training.torch` (imported
on demand; importing :mod:`lowrank_core` never imports torch).
"""

from ._fit import fit as fit
from ._optimizers import ABCPSI as ABCPSI
from ._optimizers import BCPSI as BCPSI
from ._optimizers import PSI as PSI
from ._optimizers import RABUG as RABUG
from ._optimizers import AbstractLowRankOptimizer as AbstractLowRankOptimizer
from ._optimizers import Adam as Adam
from ._optimizers import HeavyBall as HeavyBall
from ._optimizers import ParallelBUG as ParallelBUG
from ._optimizers import transport_tangent as transport_tangent
from ._param import LowRankParam as LowRankParam
from ._param import NonFiniteGradientError as NonFiniteGradientError

#: name -> optimizer class
OPTIMIZERS: dict[str, type[AbstractLowRankOptimizer]] = {
    cls.name: cls for cls in (PSI, BCPSI, ABCPSI, RABUG, ParallelBUG, HeavyBall, Adam)
}

__all__ = [
    "ABCPSI",
    "BCPSI",
    "OPTIMIZERS",
    "PSI",
    "RABUG",
    "AbstractLowRankOptimizer",
    "Adam",
    "HeavyBall",
    "LowRankParam",
    "NonFiniteGradientError",
    "ParallelBUG",
    "fit",
    "transport_tangent",
]
