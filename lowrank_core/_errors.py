"""Exceptions raised by lowrank_core."""

from __future__ import annotations

from typing import Any

__all__ = ["LowRankIntegrationError"]


class LowRankIntegrationError(RuntimeError):
    """A numerical breakdown during integration.

    Raised when the right-hand side produces NaN/Inf, a decomposition fails, or a
    factor becomes non-finite.  The exception carries where it happened.

    Attributes
    ----------
    t : float
        Start time of the failing step.
    step : int
        Index of the failing step (0-based).
    members : tuple
        For a stack of problems, the batch indices of the members at fault (ints for one
        batch dimension, tuples of ints for several); empty for a single problem.
    """

    def __init__(
        self,
        message: str,
        *,
        t: float,
        step: int,
        members: tuple[Any, ...] = (),
        checkpoint: Any = None,
        error_estimate: float | None = None,
    ) -> None:
        where = f", batch members {list(members)}" if members else ""
        super().__init__(f"{message} (step {step}, t = {t:.6g}{where})")
        self.t = t
        self.step = step
        self.members = tuple(members)
        self.checkpoint = checkpoint
        self.error_estimate = error_estimate

    @property
    def last_good(self) -> Any:
        """The last accepted state (:class:`~lowrank_core.LowRank`) of the solve, or ``None``."""
        return None if self.checkpoint is None else self.checkpoint.Y

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through their args; the keyword-only context must travel too.
        return _rebuild, (self.args[0], self.t, self.step, self.members, self.checkpoint, self.error_estimate)


def _rebuild(
    message: str,
    t: float,
    step: int,
    members: tuple[Any, ...],
    checkpoint: Any = None,
    error_estimate: float | None = None,
) -> LowRankIntegrationError:
    exc = LowRankIntegrationError.__new__(LowRankIntegrationError)
    RuntimeError.__init__(exc, message)
    exc.t, exc.step, exc.members = t, step, members
    exc.checkpoint, exc.error_estimate = checkpoint, error_estimate
    return exc
