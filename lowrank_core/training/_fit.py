"""``fit``: the optimisation loop for problems with a full-matrix gradient (toy problems, tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._lowrank import LowRank
from .._stats import Counters
from ._optimizers import AbstractLowRankOptimizer, _check_counters, _count, _real_number
from ._param import LowRankParam

__all__ = ["fit"]


def fit(
    optimizer: AbstractLowRankOptimizer,
    start: LowRank | LowRankParam,
    grad: Callable[[Any], Any],
    *,
    steps: int,
    loss: Callable[[Any], float] | None = None,
    target: float | None = None,
    counters: Counters | None = None,
) -> tuple[LowRankParam, dict[str, list]]:
    r"""Minimise a loss ``L(W)`` whose full gradient ``G = grad(W)`` is available.

    Forms the dense weight ``W`` (``(..., m, n)``) once per step, so it is meant for
    small problems (the toy problems of methods.md §3.3 and §6.6); networks pass factor
    gradients to ``optimizer.step`` directly.

    Parameters
    ----------
    optimizer : AbstractLowRankOptimizer
    start : LowRank or LowRankParam
        Starting point (a LowRank is passed through ``optimizer.init``).
    grad : callable
        ``grad(W) -> G``, the gradient at the dense weight ``W``.
    steps : int
        Maximal number of optimizer steps (``>= 0``; an integer, not a bool).
    loss : callable, optional
        ``loss(W) -> float``, recorded before every step and at the end.
    target : float, optional
        Stop as soon as ``loss(W) < target`` (needs ``loss``).
    counters : Counters, optional

    Returns
    -------
    param : LowRankParam
    history : dict
        ``"loss"`` (one value per step taken plus the final one, if ``loss`` is given)
        and ``"rank"`` (the rank after every step).
    """
    if not isinstance(optimizer, AbstractLowRankOptimizer):
        msg = (
            "`optimizer` must be a low-rank optimizer of lowrank_core.training (such as ABCPSI(lr)); "
            f"got {type(optimizer).__name__}."
        )
        raise TypeError(msg)
    if not isinstance(start, (LowRank, LowRankParam)):
        msg = (
            f"`start` must be a LowRank or a LowRankParam; got {type(start).__name__}. "
            "Build one with LowRank.from_dense(W, rank)."
        )
        raise TypeError(msg)
    for name, fn in (("grad", grad), ("loss", loss)):
        if not callable(fn) and not (name == "loss" and fn is None):
            msg = f"`{name}` must be callable as {name}(W); got {type(fn).__name__}."
            raise TypeError(msg)
    steps = _count(steps, "steps", minimum=0)
    if target is not None:
        target = _real_number(target, "target")
    if target is not None and loss is None:
        msg = "`target` needs `loss` as well: pass loss=callable(W) -> float."
        raise ValueError(msg)
    counters = _check_counters(counters)
    param = optimizer.init(start) if isinstance(start, LowRank) else start
    history: dict[str, list] = {"loss": [], "rank": [param.rank]}
    for _ in range(steps):
        W = param.to_dense()
        if loss is not None:
            value = float(loss(W))
            history["loss"].append(value)
            if target is not None and value < target:
                return param, history
        param = optimizer.step(param, grad=grad(W), counters=counters)
        history["rank"].append(param.rank)
    if loss is not None:
        history["loss"].append(float(loss(param.to_dense())))
    return param, history
