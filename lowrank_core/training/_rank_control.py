r"""Rank control for :class:`~lowrank_core.training.torch.LowRankOptimizer`: a parameter
budget shared by the low-rank layers of a param group, rank schedules in the style of
``torch.optim.lr_scheduler``, and a log of the ranks per layer.

**Budget.**  A group option ``param_budget`` (an ``int``: weight entries; a ``float``
in ``(0, 1]``: a fraction of the dense entries ``sum m n`` of the group's low-rank
layers) replaces the per-layer truncation tolerance by one global choice.  A layer
``W = U diag(s) V^T`` of shape ``m x n`` at rank ``r`` stores ``(m + n) r + r^2`` entries
(:attr:`LowRankLinear.num_parameters`), so its ``j``-th singular value (``j = 1, 2, ...``)
costs ``m + n + 2 j - 1`` entries.  After every basis update the singular values of all
the group's layers that have just been truncated are ranked together (by
``s_j / ||s||_2``, the layer's relative singular value, with ``budget_ranking="relative"``;
by ``s_j`` with ``"absolute"``), and they are kept in that order, each layer's values in
its own order, until the next one does not fit (:func:`allocate_ranks`).  Each layer
keeps at least ``min_rank`` values and at most what its method's truncation kept
(``max_rank``, the layer's capacity, and ``tol``/``rtol`` if set: without them the
group's truncation keeps every non-zero singular value up to ``max_rank``, so the
budget alone decides).  The kept values are therefore the globally largest ones
(beyond the ``min_rank`` floors) and the total ``sum (m + n) r + r^2`` is at most the
budget.

The cut from the method's rank ``r1`` to the budget's ``k`` keeps the leading ``k``
columns of ``U`` and ``V`` (``S`` is ``diag(s)`` after every truncating basis update of
the rank-adaptive methods) and transports the optimizer state by the method's own rule
(momentum: ``M <- P(Y_k) M``; the tangent space at ``Y_k`` lies inside the one at
``Y_{r1}``, so this equals transporting once to ``Y_k``).  It costs no decomposition;
it reads the singular values back to the host once per basis update.  A layer that has
never been stepped (or was loaded) is first brought to ``U diag(s) V^T`` by an SVD of its
``r x r`` core (counted in ``optimizer.counters``).

**Schedules.**  :class:`RankScheduler` (any function of the epoch),
:class:`LinearRankSchedule` and :class:`StepRankSchedule` set a group option
(``"param_budget"`` or ``"max_rank"``) at every ``step()``, as the learning-rate
schedulers set ``lr``; the value takes effect at each layer's next basis update.

**Log.**  :class:`RankLogger` records ``(epoch, step, layer, rank, parameters)`` rows
from :meth:`LowRankOptimizer.ranks` and turns them into columns or a plot.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .._checks import choice, integer
from .._lowrank import LowRank
from ._optimizers import _Kit, _with_increments

__all__ = [
    "BUDGET_RANKINGS",
    "LinearRankSchedule",
    "RankLogger",
    "RankScheduler",
    "StepRankSchedule",
    "allocate_ranks",
]

#: orders in which the singular values of the layers of a group compete for the budget
BUDGET_RANKINGS = ("relative", "absolute")
#: group options a :class:`RankScheduler` may set
_SCHEDULABLE = ("param_budget", "max_rank")


# ====================================================================== checks
def check_budget(value: Any, name: str = "param_budget") -> int | float | None:
    """``None``, an int ``>= 1`` (entries) or a float fraction in ``(0, 1]``."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        msg = (
            f"`{name}` must be None, an int (weight entries) or a float in (0, 1] (a fraction of the dense "
            f"entries); got {value!r} of type {type(value).__name__}."
        )
        raise TypeError(msg)
    if isinstance(value, numbers.Integral):
        return integer(value, name, minimum=1)
    v = float(value)
    if not (math.isfinite(v) and 0.0 < v <= 1.0):
        msg = (
            f"`{name}` as a float is a fraction of the dense weight entries and must lie in (0, 1]; got {value!r}. "
            "Pass an int for a number of entries."
        )
        raise ValueError(msg)
    return v


def _shape(layer: Any) -> tuple[int, int]:
    """``(m, n)`` of the layer's weight matrix (rows of ``U``, rows of ``V``)."""
    return int(layer.U.shape[-2]), int(layer.V.shape[-2])


def _cost(m: int, n: int, r: int) -> int:
    """Entries of a rank-``r`` factorisation ``U S V^T`` of an ``m x n`` matrix."""
    return (m + n) * r + r * r


def budget_entries(budget: int | float, layers: Sequence[Any]) -> int:
    """The budget in weight entries: an int as it is, a fraction of ``sum m n`` rounded down."""
    if isinstance(budget, float):
        return int(math.floor(budget * sum(m * n for m, n in map(_shape, layers))))
    return int(budget)


def _floor(layer: Any, min_rank: int) -> int:
    m, n = _shape(layer)
    return min(min_rank, m, n, max(layer.rank, 1))


def check_group(optimizer: Any, group: dict[str, Any], layers: Sequence[Any]) -> None:
    """Validate a group's budget options against its method and layers (at construction and when changed)."""
    budget = check_budget(group.get("param_budget"))
    choice(group.get("budget_ranking", "relative"), "budget_ranking", BUDGET_RANKINGS)
    if budget is None:
        return
    if not optimizer.core.rank_adaptive:
        msg = (
            f"`param_budget` needs a rank-adaptive method (abc-psi, ra-bug, parallel-bug, heavy-ball, adam); "
            f"{optimizer.core.name!r} keeps a fixed rank."
        )
        raise ValueError(msg)
    if not layers:
        return
    need = sum(_cost(*_shape(m), _floor(m, group["min_rank"])) for m in layers)
    have = budget_entries(budget, layers)
    if have < need:
        msg = (
            f"`param_budget` = {budget!r} ({have} weight entries) is below the {need} entries the group's "
            f"{len(layers)} low-rank layers need at min_rank = {group['min_rank']}; raise it or lower `min_rank`."
        )
        raise ValueError(msg)


# ====================================================================== allocation
def allocate_ranks(
    singular_values: Sequence[Sequence[float]],
    shapes: Sequence[tuple[int, int]],
    min_ranks: Sequence[int],
    budget: int,
    *,
    ranking: str = "relative",
) -> list[int]:
    r"""Ranks of several layers under one parameter budget, by the global singular-value ranking.

    Parameters
    ----------
    singular_values : sequence of sequences of float
        Per layer, its singular values ``s_1 >= s_2 >= ... >= 0`` (those its method's
        truncation kept: the largest rank the layer may get is their number).
    shapes : sequence of (int, int)
        ``(m, n)`` of each layer's weight.
    min_ranks : sequence of int
        Per layer, the rank it keeps whatever the budget (clamped to its number of values).
    budget : int
        Weight entries for these layers: ``sum_i (m_i + n_i) r_i + r_i^2 <= budget`` unless
        the floors alone exceed it.
    ranking : {"relative", "absolute"}
        Key of the ranking: ``s_j / ||s||_2`` of the layer, or ``s_j``.

    Returns
    -------
    list of int
        The ranks ``r_i``.  Beyond the floors, the kept values are a prefix of all values
        sorted by the key (ties by layer, then index): going from rank ``j-1`` to ``j``
        costs ``m + n + 2j - 1`` entries, and the walk down the list stops at the first
        value that does not fit, so every kept value's key is at least every discarded
        one's.
    """
    choice(ranking, "ranking", BUDGET_RANKINGS)
    budget = integer(budget, "budget", minimum=0)
    if not len(singular_values) == len(shapes) == len(min_ranks):
        msg = (
            f"`singular_values`, `shapes` and `min_ranks` must have one entry per layer; got {len(singular_values)}, "
            f"{len(shapes)} and {len(min_ranks)}."
        )
        raise ValueError(msg)
    ranks = [min(int(lo), len(s)) for s, lo in zip(singular_values, min_ranks, strict=True)]
    used = sum(_cost(m, n, r) for (m, n), r in zip(shapes, ranks, strict=True))
    entries = []
    for i, s in enumerate(singular_values):
        s = [float(x) for x in s]
        scale = math.sqrt(sum(x * x for x in s)) if ranking == "relative" else 1.0
        for j in range(ranks[i], len(s)):
            entries.append((-(s[j] / scale if scale > 0 else 0.0), i, j))
    entries.sort()
    for _, i, j in entries:
        if j != ranks[i]:  # a layer's values come in its own order; an earlier one did not fit
            break
        m, n = shapes[i]
        step = m + n + 2 * j + 1
        if used + step > budget:
            break
        used += step
        ranks[i] = j + 1
    return ranks


def budget_core(core: Any, group: dict[str, Any]) -> Any:
    """The group's method with a truncation that keeps every non-zero value when the budget decides alone.

    Without ``tol``/``rtol`` a rank-adaptive method keeps its input rank; under a budget
    the rank must be free to grow (up to ``max_rank``), so ``tol = 0`` is set.
    """
    if group.get("param_budget") is None or not core.rank_adaptive or core.truncation.adaptive:
        return core
    import dataclasses

    core.truncation = dataclasses.replace(core.truncation, tol=0.0)
    return core


@torch.no_grad()
def apply_budget(optimizer: Any) -> None:
    """Cut the ranks of the layers that are at the start of a cycle and not yet allocated to the group's budget.

    Called by :class:`LowRankOptimizer` before and after each ``step()`` and after
    :meth:`~LowRankOptimizer.finish_cycle`; pure Python (no host synchronisation) when no
    layer is due.
    """
    done = optimizer.__dict__.setdefault("_budget_done", {})
    for gi, group in enumerate(optimizer.param_groups):
        if group.get("param_budget") is None:
            continue
        layers = optimizer._layers_of[gi]
        due, fixed = [], 0
        for m in layers:
            st = optimizer.state[m.S]
            step = st.get("step", 0)
            core = optimizer._group_core(group, m)
            if step % core.cycle_length == 0 and done.get(id(m)) != step:
                due.append((m, core, id(m) in done and bool(st)))
            else:
                fixed += m.num_parameters
        if not due:
            continue
        check_group(optimizer, group, layers)
        budget = budget_entries(group["param_budget"], layers) - fixed
        spectra = []
        for m, core, truncated in due:
            param = optimizer._param(core, [m])
            if truncated:  # the method's truncation left S = diag(s), s descending
                spectra.append((param, None, torch.diagonal(param.S, dim1=-2, dim2=-1), None))
            else:  # fresh or loaded: bring it to U diag(s) V^T first
                P, s, Q = _Kit(param.xp, optimizer.counters).svd(param.S)
                spectra.append((param, P, s, Q))
        values = torch.cat([sp[2].reshape(-1) for sp in spectra]).tolist() if spectra else []  # one read-back
        lists, start = [], 0
        for sp in spectra:
            k = sp[2].shape[-1]
            lists.append(values[start : start + k])
            start += k
        ranks = allocate_ranks(
            lists,
            [_shape(m) for m, _, _ in due],
            [group["min_rank"]] * len(due),
            budget,
            ranking=group.get("budget_ranking", "relative"),
        )
        for (m, core, _), (param, P, s, Q), k in zip(due, spectra, ranks, strict=True):
            if P is not None or k < s.shape[-1]:
                U, V = (param.U, param.V) if P is None else (param.U @ P, param.V @ Q)
                U, V = U[..., :k], V[..., :k]
                S = torch.diag_embed(s[..., :k]).to(param.S.dtype)
                Y = LowRank._trusted(U, S, V, param.xp)
                state = param.state
                if state and hasattr(core, "_transport"):  # the method's own transport of its moments
                    state = core._transport(param, Y)
                optimizer._store([m], _with_increments(param, U, S, V, state=state))
            done[id(m)] = optimizer.state[m.S].get("step", 0)


# ====================================================================== schedules
class RankScheduler:
    """Set a rank option of every param group by the epoch, like ``torch.optim.lr_scheduler.LambdaLR``.

    Parameters
    ----------
    optimizer : LowRankOptimizer
    schedule : callable or list of callables
        ``schedule(epoch) -> value`` (one for all groups, or one per group) for
        ``epoch = 0, 1, ...``; a value of ``None`` leaves the group as it is.
    key : {"param_budget", "max_rank"}, default "param_budget"
        The group option set: the group's parameter budget (an int, or a float fraction
        in ``(0, 1]``; see :class:`LowRankOptimizer`) or its ``max_rank`` (an int, clamped to
        each layer's ``max_rank``).
    last_epoch : int, default -1
        As for the learning-rate schedulers: the constructor calls :meth:`step` once, which
        sets the value of epoch ``last_epoch + 1``.

    Notes
    -----
    Call :meth:`step` once per epoch (after the epoch's optimizer steps).  The value takes
    effect at each layer's next basis update: a lower ``max_rank`` or budget does not cut a
    layer in the middle of its cycle (call ``optimizer.finish_cycle()`` to apply it at
    once).  :meth:`state_dict` holds the epoch and the values set, not the schedule
    functions (as ``LambdaLR``).
    """

    def __init__(self, optimizer: Any, schedule: Any, *, key: str = "param_budget", last_epoch: int = -1) -> None:
        from .torch import LowRankOptimizer

        if not isinstance(optimizer, LowRankOptimizer):
            msg = f"`optimizer` must be a LowRankOptimizer; got {type(optimizer).__name__}."
            raise TypeError(msg)
        self.optimizer = optimizer
        self.key = choice(key, "key", _SCHEDULABLE)
        if key == "max_rank" and not optimizer.core.rank_adaptive:
            msg = f"`key` 'max_rank' needs a rank-adaptive method; {optimizer.core.name!r} keeps a fixed rank."
            raise ValueError(msg)
        self._set_schedule(schedule)
        self.last_epoch = integer(last_epoch, "last_epoch", minimum=-1)
        self._last_value: list[Any] = [g.get(self.key) for g in optimizer.param_groups]
        self.step()

    def _set_schedule(self, schedule: Any) -> None:
        groups = len(self.optimizer.param_groups)
        if isinstance(schedule, (list, tuple)):
            if len(schedule) != groups:
                msg = f"`schedule` must be one callable or one per param group ({groups}); got {len(schedule)}."
                raise ValueError(msg)
            fns = list(schedule)
        else:
            fns = [schedule] * groups
        for f in fns:
            if not callable(f):
                msg = f"`schedule` must be a callable epoch -> value (or a list of them); got {type(f).__name__}."
                raise TypeError(msg)
        self.schedules: list[Callable[[int], Any]] | None = fns

    def get_value(self, epoch: int) -> list[Any]:
        """The value of every group at ``epoch``."""
        return [f(epoch) for f in self.schedules]

    def _check_value(self, value: Any) -> Any:
        if value is None:
            return None
        if self.key == "max_rank":
            return integer(value, "max_rank", minimum=1)
        return check_budget(value, "param_budget")

    def step(self) -> None:
        """Advance one epoch and set the groups' values."""
        self.last_epoch += 1
        values = [self._check_value(v) for v in self.get_value(self.last_epoch)]
        for gi, (group, v) in enumerate(zip(self.optimizer.param_groups, values, strict=True)):
            if v is None:
                continue
            old = group[self.key]
            group[self.key] = v
            try:
                if self.key == "param_budget":
                    check_group(self.optimizer, group, self.optimizer._layers_of[gi])
                else:
                    self.optimizer._group_core(group)  # validates min_rank <= max_rank
            except (TypeError, ValueError):
                group[self.key] = old
                raise
        self._last_value = [g.get(self.key) for g in self.optimizer.param_groups]

    def get_last_value(self) -> list[Any]:
        """The values set by the last :meth:`step`, per group."""
        return list(self._last_value)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer and the schedule functions."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "schedules")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the schedule functions are the constructor's)."""
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            msg = "`state_dict` must be a dict from RankScheduler.state_dict()."
            raise TypeError(msg)
        if state_dict.get("key", self.key) != self.key:
            msg = f"`state_dict` is of a scheduler of {state_dict['key']!r}, this one sets {self.key!r}."
            raise ValueError(msg)
        self.__dict__.update(state_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, last_epoch={self.last_epoch})"


class LinearRankSchedule(RankScheduler):
    """Move a rank option linearly from ``start`` (epoch 0) to ``end`` (epoch ``epochs``), then hold it.

    ``value(e) = start + (end - start) min(e, epochs) / epochs``, rounded down to an int
    for ``max_rank`` and for int budgets; floats (fractions) stay floats.  A typical use
    is progressive compression: a generous budget while the bases settle, the target
    budget from epoch ``epochs`` on.

    Parameters
    ----------
    optimizer : LowRankOptimizer
    start, end : int or float
        Values at epoch 0 and from epoch ``epochs`` on (same kind: two ints or two fractions).
    epochs : int
        Epochs of the ramp (``>= 1``).
    key, last_epoch
        See :class:`RankScheduler`.
    """

    def __init__(
        self,
        optimizer: Any,
        start: int | float,
        end: int | float,
        epochs: int,
        *,
        key: str = "param_budget",
        last_epoch: int = -1,
    ) -> None:
        check = (lambda v, n: integer(v, n, minimum=1)) if key == "max_rank" else check_budget
        self.start, self.end = check(start, "start"), check(end, "end")
        if isinstance(self.start, float) != isinstance(self.end, float):
            msg = f"`start` and `end` must be both ints or both float fractions; got {start!r} and {end!r}."
            raise TypeError(msg)
        self.epochs = integer(epochs, "epochs", minimum=1)
        super().__init__(optimizer, self._value, key=key, last_epoch=last_epoch)

    def _value(self, epoch: int) -> int | float:
        t = min(max(epoch, 0), self.epochs) / self.epochs
        v = self.start + (self.end - self.start) * t
        return v if isinstance(self.start, float) else int(math.floor(v + 1e-9))

    def _set_schedule(self, schedule: Any) -> None:
        self.schedules = None  # the value is a method of this object (pickles)

    def get_value(self, epoch: int) -> list[Any]:
        return [self._value(epoch)] * len(self.optimizer.param_groups)


class StepRankSchedule(RankScheduler):
    """Set a rank option to given values at given epochs (``milestones = {epoch: value}``).

    Before the first milestone the groups keep their values; from each milestone on, its
    value holds.  Like ``MultiStepLR`` with explicit values.

    Parameters
    ----------
    optimizer : LowRankOptimizer
    milestones : dict of int to int or float
    key, last_epoch
        See :class:`RankScheduler`.
    """

    def __init__(
        self, optimizer: Any, milestones: dict[int, int | float], *, key: str = "param_budget", last_epoch: int = -1
    ) -> None:
        if not isinstance(milestones, dict) or not milestones:
            msg = f"`milestones` must be a non-empty dict {{epoch: value}}; got {milestones!r}."
            raise TypeError(msg)
        self.milestones = {integer(e, "milestones epoch", minimum=0): v for e, v in sorted(milestones.items())}
        self.key = key
        for v in self.milestones.values():
            self._check_value(v)
        super().__init__(optimizer, None, key=key, last_epoch=last_epoch)

    def _set_schedule(self, schedule: Any) -> None:
        self.schedules = None

    def get_value(self, epoch: int) -> list[Any]:
        passed = [v for e, v in self.milestones.items() if e <= epoch]
        return [passed[-1] if passed else None] * len(self.optimizer.param_groups)


# ====================================================================== log
class RankLogger:
    """Log of the rank and stored entries of every low-rank layer, one row per layer and call.

    Parameters
    ----------
    optimizer : LowRankOptimizer
    model : torch.nn.Module, optional
        Gives the layers their module names (``"0"``, ``"encoder.fc1"``, ...); without it
        they are ``"layer0"``, ``"layer1"``, ... in the optimizer's order.

    Notes
    -----
    :meth:`record` reads :meth:`LowRankOptimizer.ranks`, which ends every open cycle
    (:meth:`~LowRankOptimizer.finish_cycle`), so the rows describe ``W``; call it once per
    epoch, not per step (each call is a basis update for the layers between updates).
    """

    def __init__(self, optimizer: Any, model: torch.nn.Module | None = None) -> None:
        from .torch import LowRankOptimizer

        if not isinstance(optimizer, LowRankOptimizer):
            msg = f"`optimizer` must be a LowRankOptimizer; got {type(optimizer).__name__}."
            raise TypeError(msg)
        if model is not None and not isinstance(model, torch.nn.Module):
            msg = f"`model` must be a torch.nn.Module or None; got {type(model).__name__}."
            raise TypeError(msg)
        self.optimizer = optimizer
        names = {}
        if model is not None:
            names = {id(mod): name for name, mod in model.named_modules()}
        self.names = [names.get(id(m), f"layer{i}") for i, m in enumerate(optimizer.layers)]
        self.rows: list[dict[str, Any]] = []

    def record(self, epoch: int | None = None) -> list[dict[str, Any]]:
        """Append one row per layer: ``epoch``, ``step`` (the layer's optimizer steps),
        ``layer``, ``rank``, ``parameters`` (:attr:`num_parameters`) and ``dense`` (``m n``);
        returns the new rows."""
        epoch = None if epoch is None else integer(epoch, "epoch", minimum=0)
        ranks = self.optimizer.ranks()
        new = []
        for name, m, r in zip(self.names, self.optimizer.layers, ranks, strict=True):
            mm, nn = _shape(m)
            step = self.optimizer.state[m.S].get("step", 0)
            new.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "layer": name,
                    "rank": r,
                    "parameters": m.num_parameters,
                    "dense": mm * nn,
                }
            )
        self.rows.extend(new)
        return new

    def table(self) -> dict[str, list[Any]]:
        """The rows as columns (``{"epoch": [...], "step": [...], "layer": [...], ...}``;
        ``pandas.DataFrame(logger.table())`` makes a data frame)."""
        keys = ("epoch", "step", "layer", "rank", "parameters", "dense")
        return {k: [row[k] for row in self.rows] for k in keys}

    def series(self, column: str = "rank") -> dict[str, list[Any]]:
        """Per layer name, the ``column`` of its rows in recording order."""
        choice(column, "column", ("rank", "parameters", "step", "epoch"))
        out: dict[str, list[Any]] = {name: [] for name in self.names}
        for row in self.rows:
            out[row["layer"]].append(row[column])
        return out

    def plot(self, ax: Any = None, *, column: str = "rank") -> Any:
        """Plot ``column`` per layer against the epoch (or the record index) on ``ax``
        (a new matplotlib figure by default); returns the axes."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(5, 3.5))
        xs = self.series("epoch")
        for name, ys in self.series(column).items():
            x = xs[name] if all(e is not None for e in xs[name]) else list(range(len(ys)))
            ax.plot(x, ys, marker=".", label=name)
        ax.set(xlabel="epoch", ylabel=column)
        ax.legend(fontsize=8)
        return ax

    def state_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or set(state_dict) != {"names", "rows"}:
            msg = "`state_dict` must be a dict from RankLogger.state_dict()."
            raise TypeError(msg)
        self.names, self.rows = list(state_dict["names"]), [dict(r) for r in state_dict["rows"]]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"RankLogger(layers={len(self.names)}, rows={len(self.rows)})"
