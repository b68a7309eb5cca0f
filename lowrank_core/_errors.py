"""Exceptions raised by lowrank_core."""

from __future__ import annotations

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
    """

    def __init__(self, message: str, *, t: float, step: int) -> None:
        super().__init__(f"{message} (step {step}, t = {t:.6g})")
        self.t = t
        self.step = step
