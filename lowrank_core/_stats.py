r"""Work statistics: the tally of one step (:class:`StepInfo`) and of a solve (:class:`Counters`).

An integrator's :meth:`~lowrank_core.integrators.AbstractIntegrator.step` counts its own
work (decompositions through the linear-algebra seam, right-hand-side points, rejected
attempts, steps whose truncation hit ``max_rank``) in a fresh :class:`Counters` and
returns the totals as an immutable :class:`StepInfo`; the driver
(:func:`lowrank_core.solve`) adds every step's :class:`StepInfo` to the solve's
:class:`Counters` (:meth:`Counters.add`), whose :meth:`Counters.as_dict` becomes
``Solution.stats``.  Nothing is global: two solves running at the same time count apart.

This module imports nothing from the rest of the library, so the linear-algebra seam
(``_linalg``), the substep solvers and the integrators can all record into it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counters", "StepInfo"]

#: The integer and float tallies shared by :class:`StepInfo` and :class:`Counters`.
_SCALARS = ("rhs_evals", "qr", "svd", "qr_flops", "svd_flops", "max_rank_hits", "rejections", "kernel_calls")
_SHAPES = ("qr_shapes", "svd_shapes")


@dataclass(frozen=True)
class StepInfo:
    """What one step of an integrator did: returned by ``step`` beside the new state.

    The counts are per matrix, as in :class:`Counters` (a batched call on a stack of
    ``B`` matrices counts ``B``); ``max_rank_hits`` and ``rejections`` count steps or
    attempts (a stack shares one rank).

    Attributes
    ----------
    rhs_evals : int
        Distinct points ``(t, Y)`` at which ``F`` was evaluated (exact increments count
        one each).
    qr, svd : int
        Thin QR / SVD decompositions.
    qr_shapes, svd_shapes : Mapping[tuple[int, int], int]
        Decompositions per matrix shape ``(rows, cols)`` (a read-only snapshot).
    qr_flops, svd_flops : float
        Operation counts of those decompositions (see ``lowrank_core._linalg``).
    max_rank_hits : int
        ``1`` when the step's truncation wanted more than ``max_rank`` (else ``0``).
    rejections : int
        Attempts of the step that the method rejected and repeated (step rejection of
        :class:`~lowrank_core.ParallelBUG`).
    kernel_calls : int
        Decomposition calls served by ``lowrank_kernels``.
    error_estimate : array or float, optional
        A local error estimate of the step (``||Y1 - Ŷ1||_F`` of an embedded method,
        per member of a stack; the methods with an ``embedded_order`` give it when
        stepped with ``step(..., estimate=True)``), or ``None``.  Not a count:
        :meth:`Counters.add` ignores it.
    """

    rhs_evals: int = 0
    qr: int = 0
    svd: int = 0
    qr_shapes: Mapping[tuple[int, int], int] = field(default_factory=dict)
    svd_shapes: Mapping[tuple[int, int], int] = field(default_factory=dict)
    qr_flops: float = 0.0
    svd_flops: float = 0.0
    max_rank_hits: int = 0
    rejections: int = 0
    kernel_calls: int = 0
    error_estimate: Any = None


@dataclass
class Counters:
    """Tallies of the work done by an integrator (of one step, or added up over a solve).

    Decompositions and right-hand-side evaluations are counted per matrix: a batched
    call on a stack of ``B`` matrices counts ``B``.  ``max_rank_hits`` and
    ``rejections`` count steps (a batch shares one rank).

    Attributes
    ----------
    rhs_evals : int
        Number of distinct points ``(t, Y)`` at which ``F`` was evaluated (exact
        increments ``A(t1) - A(t0)`` count one each).
    qr, svd : int
        Number of thin QR / SVD decompositions.
    qr_shapes, svd_shapes : collections.Counter
        Decompositions per matrix shape ``(rows, cols)``.
    qr_flops, svd_flops : float
        Operation counts of those decompositions (see ``lowrank_core._linalg``).
    max_rank_hits : int
        Steps in which the truncation tolerance asked for more than ``max_rank``.
    rejections : int
        Rejected (and repeated) steps of integrators with step rejection.
    kernel_calls : int
        Decomposition calls (of any batch size) served by ``lowrank_kernels``.

    Examples
    --------
    Driving an integrator by hand and adding up what its steps did:

    >>> import numpy as np
    >>> import lowrank_core as lc
    >>> Y = lc.LowRank.from_dense(np.random.default_rng(0).standard_normal((20, 15)), rank=3)
    >>> problem, method = lc.MatrixODE(lambda t, Y: -Y), lc.BUG(substep="euler")
    >>> state, total = method.init(problem, 0.0, Y), lc.Counters()
    >>> for k in range(4):
    ...     Y, state, info = method.step(problem, 0.1 * k, 0.1 * (k + 1), Y, state)
    ...     total.add(info)
    >>> info.qr, total.qr, total.rhs_evals
    (2, 8, 8)
    """

    rhs_evals: int = 0
    qr: int = 0
    svd: int = 0
    qr_shapes: Counter = field(default_factory=Counter)
    svd_shapes: Counter = field(default_factory=Counter)
    qr_flops: float = 0.0
    svd_flops: float = 0.0
    max_rank_hits: int = 0
    rejections: int = 0
    kernel_calls: int = 0

    def add(self, info: StepInfo | Counters) -> None:
        """Add the counts of ``info`` (a :class:`StepInfo`, or another :class:`Counters`).

        Raises
        ------
        TypeError
            ``info`` is neither.
        """
        if not isinstance(info, (StepInfo, Counters)):
            msg = (
                f"`info` must be a lowrank_core.StepInfo (the third value a step returns) or a Counters; "
                f"got {type(info).__name__}."
            )
            raise TypeError(msg)
        for name in _SCALARS:
            setattr(self, name, getattr(self, name) + getattr(info, name))
        for name in _SHAPES:
            getattr(self, name).update(getattr(info, name))

    def info(self, error_estimate: Any = None) -> StepInfo:
        """The current counts as an immutable :class:`StepInfo` (with ``error_estimate``)."""
        counts = {name: getattr(self, name) for name in _SCALARS}
        shapes = {name: dict(getattr(self, name)) for name in _SHAPES}
        return StepInfo(**counts, **shapes, error_estimate=error_estimate)

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict view used for ``Solution.stats``."""
        return {
            "rhs_evals": self.rhs_evals,
            "qr": self.qr,
            "svd": self.svd,
            "qr_shapes": dict(self.qr_shapes),
            "svd_shapes": dict(self.svd_shapes),
            "qr_flops": self.qr_flops,
            "svd_flops": self.svd_flops,
            "flops": self.qr_flops + self.svd_flops,
            "max_rank_hits": self.max_rank_hits,
            "rejections": self.rejections,
            "kernel_calls": self.kernel_calls,
        }
