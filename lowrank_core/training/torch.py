r"""PyTorch adapter: low-rank layers and a ``torch.optim.Optimizer``.

The layers (``LowRankLinear``, ``LowRankConv2d``, ``LowRankEmbedding``, the LoRA-style
``LowRankAdapter``) share the factor storage of ``LowRankLayer``; ``convert`` swaps the
dense modules of a model for them and ``merge`` swaps them back (module ``_layers``).

Install with the ``[torch]`` extra.  This module imports torch; ``import lowrank_core``
and ``import lowrank_core.training`` do not.

The optimizer runs the framework-agnostic optimizers of :mod:`lowrank_core.training`
directly on the layers' torch tensors (through array-api-compat's torch namespace):
no conversion to NumPy, no host copies, so it runs on whatever device the layer lives
on (CPU or CUDA).  Layers with equal shapes and ranks in one param group are stacked
and updated together, so each basis update is one batched QR/SVD call for the group.

Conventions (docs/training.md, "PyTorch conventions"):

* the factors are allocated once at a fixed capacity (``2 max_rank`` columns by default): their
  shapes never change, so DDP, ``torch.compile`` and checkpoints see fixed shapes; the
  active sizes are a buffer (``active_rank``) and the unused columns are zero;
* the optimizer takes parameters or param groups like ``torch.optim`` optimizers and
  reads ``lr``, ``weight_decay``, ``momentum``/``betas`` and the method's options from
  each group at every step (so every ``torch.optim.lr_scheduler`` works);
* layers without gradients (frozen, or unused in this step) are skipped;
* :meth:`LowRankOptimizer.finish_cycle` ends the cycle of every layer, so that the
  factors are ``W = U S V^T`` at the rank ``W`` has; ``state_dict()`` (of the model or
  of the optimizer), ``eval()``, ``ranks()`` and ``compression()`` call it.

Example
-------
>>> import torch
>>> from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer
>>> _ = torch.manual_seed(0)
>>> model = torch.nn.Sequential(LowRankLinear(8, 16, rank=4), torch.nn.ReLU(), torch.nn.Linear(16, 2))
>>> opt = LowRankOptimizer(model.parameters(), "abc-psi", lr=0.1, rtol=0.1)
>>> x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
>>> for _ in range(4):
...     opt.zero_grad()
...     torch.nn.functional.cross_entropy(model(x), y).backward()
...     opt.step()
>>> model[0].rank <= 4
True
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import functools
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import array_api_compat
import torch

from .._lowrank import LowRank
from .._stats import Counters
from . import OPTIMIZERS, AbstractLowRankOptimizer, LowRankParam, NonFiniteGradientError, _rank_control
from ._optimizers import _check_counters, _count, _positive, _real_number, _tolerance, _unit_interval
from ._rank_control import LinearRankSchedule, RankLogger, RankScheduler, StepRankSchedule, allocate_ranks

__all__ = [
    "ConversionSummary",
    "ConvertedLayer",
    "LinearRankSchedule",
    "LowRankAdapter",
    "LowRankConv2d",
    "LowRankEmbedding",
    "LowRankLayer",
    "LowRankLinear",
    "LowRankOptimizer",
    "RankLogger",
    "RankScheduler",
    "StepRankSchedule",
    "allocate_ranks",
    "convert",
    "merge",
]

_FACTORS = ("U", "S", "V", "dK", "dL")
_GRAD_OF = {"K": "dK", "L": "dL", "S": "S"}  # the parameter whose gradient is grad_K, grad_L, grad_S
_XP = array_api_compat.array_namespace(torch.empty(0))
#: dtypes a layer may have; the two 16-bit ones are factorised in float32
_LAYER_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_LOW_PRECISION = (torch.bfloat16, torch.float16)

#: id(factor Parameter) -> its layer (lets the optimizer recognise layers from parameters)
_REGISTRY: weakref.WeakValueDictionary[int, LowRankLinear] = weakref.WeakValueDictionary()


@functools.lru_cache(maxsize=256)
def _block_slices(p: int, q: int) -> dict[str, tuple[slice, slice]]:
    """The in-use block of each factor of a layer with ``U (m, p)`` and ``V (n, q)`` in use."""
    return {
        "U": (slice(None), slice(0, p)),
        "S": (slice(0, p), slice(0, q)),
        "V": (slice(None), slice(0, q)),
        "dK": (slice(None), slice(0, q)),
        "dL": (slice(None), slice(0, p)),
    }


def _is_sharded(p: torch.Tensor) -> bool:
    """Whether ``p`` is a ``torch.distributed`` DTensor (FSDP2's sharded parameters),
    without importing ``torch.distributed``."""
    return any(c.__name__ == "DTensor" and c.__module__.startswith("torch.distributed") for c in type(p).__mro__)


def _layer_of(p: torch.Tensor) -> tuple[LowRankLinear, str] | None:
    """The LowRankLinear owning the factor ``p`` and the factor's name, or None."""
    layer = _REGISTRY.get(id(p))
    if layer is None:
        return None
    for name in _FACTORS:
        if getattr(layer, name, None) is p:
            return layer, name
    return None


#: True inside the ``from_*`` constructors, which write the factors themselves: the layer's
#: random initialisation then skips its SVD (which would double the cost of a conversion)
_CALLER_WRITES_FACTORS: contextvars.ContextVar[bool] = contextvars.ContextVar("_CALLER_WRITES_FACTORS", default=False)


@contextlib.contextmanager
def _caller_writes_factors() -> Iterator[None]:
    """Build layers whose factors the caller overwrites (placeholder factors, no SVD)."""
    token = _CALLER_WRITES_FACTORS.set(True)
    try:
        yield
    finally:
        _CALLER_WRITES_FACTORS.reset(token)


def _is_view_of(value: Any, block: torch.Tensor) -> bool:
    """True when ``value`` is ``block`` itself (same memory, shape, strides and dtype)."""
    return (
        torch.is_tensor(value)
        and value.data_ptr() == block.data_ptr()
        and value.shape == block.shape
        and value.stride() == block.stride()
        and value.dtype == block.dtype
        and value.device == block.device
    )


def _distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class LowRankLayer(torch.nn.Module):
    r"""Base of the low-rank layers: a weight matrix ``W (out_features, in_features)`` in factors.

    The subclasses (:class:`LowRankLinear`, :class:`LowRankConv2d`,
    :class:`LowRankEmbedding`, :class:`LowRankAdapter`) share this storage and differ
    only in how ``forward`` applies ``W`` and in the shape of :attr:`weight`;
    :class:`LowRankOptimizer` recognises and trains all of them alike.

    The weight is stored as ``W = U S V^T + dK V^T + U dL^T`` (the representation of
    :class:`~lowrank_core.training.LowRankParam`, ``m = out_features``,
    ``n = in_features``) in factors of **fixed capacity**: ``U (m, cu)``, ``S (cu, cv)``,
    ``V (n, cv)``, ``dK (m, cv)``, ``dL (n, cu)`` with ``cu = min(capacity, m)``,
    ``cv = min(capacity, n)``, ``capacity = 2 max_rank`` by default (room for the
    augmented bases that abc-PSI and RA-BUG keep between basis updates).
    Only the leading ``p`` columns of ``U`` and ``q`` of ``V`` are in use (the buffer
    ``active_rank = (p, q)``); every other entry is zero, so the forward through the full
    factors is exact and the gradients of the unused entries are zero.  Parameter shapes
    never change (DDP, FSDP-style flattening, ``torch.compile`` and optimizers see fixed
    shapes).

    ``U`` and ``V`` are not trained by autograd (``requires_grad=False``); one backward
    pass gives ``dK.grad = G V``, ``dL.grad = G^T U`` and ``S.grad = U^T G V`` with
    ``G = dL/dW``, the gradients every low-rank optimizer needs.  The forward costs
    ``O(batch (m + n)(cu + cv))``; ``W`` is never formed.

    Parameters
    ----------
    in_features, out_features : int
    rank : int
        Initial rank ``r`` (``1 <= r <= min(in, out)``).
    max_rank : int, optional
        Largest rank after a basis update (default ``rank``: the rank may fall and come
        back, not grow past its start).  The optimizer's truncation is clamped to it.
    capacity : int, optional
        Columns allocated for ``U`` and ``V`` (default ``2 max_rank``; at least
        ``max_rank``).  ``capacity = max_rank`` halves the forward cost and the storage
        and suits the methods that never store an augmented basis (``psi``, ``bc-psi``,
        ``parallel-bug``, ``heavy-ball``, ``adam``); :class:`LowRankOptimizer` refuses
        abc-PSI and RA-BUG on such a layer.
    bias : bool, default True
    device, dtype : optional
        As for :class:`torch.nn.Linear`; ``dtype`` one of float32, float64, bfloat16,
        float16 (the 16-bit layers are factorised and updated in float32, see
        :class:`LowRankOptimizer`).

    Notes
    -----
    Initialised as the best rank-``r`` approximation of a default
    :class:`torch.nn.Linear` weight.  ``load_state_dict`` also accepts the factors of a
    layer of another capacity (or of the earlier format with active-size factors), as
    long as the active rank fits.  Parameter counting: ``sum(p.numel() for p in
    layer.parameters())`` counts the allocated factors (:attr:`num_allocated` plus the
    bias); :attr:`num_parameters` counts the entries a rank-``r`` factorisation needs,
    ``(m + n) r + r^2``, the figure behind compression.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        *,
        max_rank: int | None = None,
        capacity: int | None = None,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        in_features = _count(in_features, "in_features")
        out_features = _count(out_features, "out_features")
        rank = _count(rank, "rank")
        bound = min(in_features, out_features)
        if not 1 <= rank <= bound:
            msg = f"`rank` must satisfy 1 <= rank <= min(in_features, out_features) = {bound}; got {rank}."
            raise ValueError(msg)
        max_rank = rank if max_rank is None else _count(max_rank, "max_rank")
        if not rank <= max_rank <= bound:
            msg = (
                f"`max_rank` must satisfy rank <= max_rank <= min(in_features, out_features), here "
                f"{rank} <= max_rank <= {bound}; got {max_rank}."
            )
            raise ValueError(msg)
        capacity = 2 * max_rank if capacity is None else _count(capacity, "capacity")
        if capacity < max_rank:
            msg = f"`capacity` must be at least max_rank = {max_rank} (columns of U and V); got {capacity}."
            raise ValueError(msg)
        if not isinstance(bias, bool):
            msg = f"`bias` must be True or False; got {bias!r} of type {type(bias).__name__}."
            raise TypeError(msg)
        if dtype is not None and not isinstance(dtype, torch.dtype):
            msg = f"`dtype` must be a torch.dtype (float32, float64, bfloat16 or float16) or None; got {dtype!r}."
            raise TypeError(msg)
        resolved = torch.get_default_dtype() if dtype is None else dtype
        if resolved not in _LAYER_DTYPES:
            where = " (the torch default dtype)" if dtype is None else ""
            msg = (
                f"`dtype` must be torch.float32, float64, bfloat16 or float16; got {resolved}{where}. "
                "Pass dtype=torch.float32."
            )
            raise TypeError(msg)
        self.in_features, self.out_features, self.max_rank = in_features, out_features, max_rank
        work = torch.float32 if resolved in _LOW_PRECISION else resolved
        dense = torch.nn.Linear(in_features, out_features, bias=bias, device=device, dtype=work)
        cu, cv = min(capacity, out_features), min(capacity, in_features)
        P = torch.nn.Parameter
        z = {"device": dense.weight.device, "dtype": resolved}
        self.U = P(torch.zeros(out_features, cu, **z), requires_grad=False)
        self.S = P(torch.zeros(cu, cv, **z))
        self.V = P(torch.zeros(in_features, cv, **z), requires_grad=False)
        self.dK = P(torch.zeros(out_features, cv, **z))
        self.dL = P(torch.zeros(in_features, cu, **z))
        self.register_buffer("active_rank", torch.zeros(2, dtype=torch.int64, device=dense.weight.device))
        self._p = self._q = 0
        self._owner: Any = None
        with torch.no_grad():
            w = dense.weight
            if _CALLER_WRITES_FACTORS.get():  # zero factors of the right rank; the caller writes the real ones
                self._write(w.new_zeros(out_features, rank), w.new_zeros(rank, rank), w.new_zeros(in_features, rank))
            else:
                u, s, vh = torch.linalg.svd(w, full_matrices=False)
                self._write(u[:, :rank], torch.diag(s[:rank]), vh[:rank].mT)
        self.bias = None if dense.bias is None else P(dense.bias.detach().to(resolved))
        self._register()

    # ------------------------------------------------------------------ storage
    def _register(self) -> None:
        for name in _FACTORS:
            _REGISTRY[id(getattr(self, name))] = self

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype of the factorisations and of the optimizer state: float32 for 16-bit layers."""
        return torch.float32 if self.S.dtype in _LOW_PRECISION else self.S.dtype

    def _slices(self, name: str) -> tuple[slice, slice]:
        return _block_slices(self._p, self._q)[name]

    def _active(self, name: str, *, grad: bool = False) -> torch.Tensor | None:
        """The in-use block of a factor (or of its gradient), a view."""
        t = self._parameters[name]
        t = t.grad if grad else t.detach()
        return None if t is None else t[_block_slices(self._p, self._q)[name]]

    @torch.no_grad()
    def _write(self, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor, dK: Any = None, dL: Any = None) -> None:
        """Set the factors' in-use blocks (cast to the layer's dtype) and zero the rest; no host sync."""
        p, q = U.shape[-1], V.shape[-1]
        cu, cv = self.U.shape[-1], self.V.shape[-1]
        if p > cu or q > cv:
            msg = (
                f"factors with {p} and {q} columns exceed the capacity ({cu}, {cv}) of this LowRankLinear "
                f"(max_rank={self.max_rank}); build it with a larger `capacity` (default 2 max_rank)."
            )
            raise ValueError(msg)
        same_size = (p, q) == (getattr(self, "_p", None), getattr(self, "_q", None))
        self._p, self._q = p, q
        for name, value in (("U", U), ("S", S), ("V", V), ("dK", dK), ("dL", dL)):
            buf = getattr(self, name).data
            rows, cols = self._slices(name)
            if value is None:
                buf.zero_()
                continue
            block = buf[rows, cols]
            if same_size and _is_view_of(value, block):
                # an unchanged factor (the optimizer returned the view it was given): its
                # block is already in place and the rest was zeroed when it was written
                continue
            block.copy_(value)
            if same_size:  # the rest was zeroed when this size was first written
                continue
            buf[:, cols.stop :].zero_()
            if name == "S":
                buf[rows.stop :, : cols.stop].zero_()
        self.active_rank[0].fill_(p)  # device-side fills: no host synchronisation
        self.active_rank[1].fill_(q)

    # ------------------------------------------------------------------ views
    @property
    def rank(self) -> int:
        """Rank of ``W`` after the last basis update (``min(p, q)``; see :meth:`LowRankOptimizer.finish_cycle`)."""
        return min(self._p, self._q)

    @property
    def capacity(self) -> tuple[int, int]:
        """Allocated columns ``(cu, cv)`` of ``U`` and ``V``."""
        return (self.U.shape[-1], self.V.shape[-1])

    @property
    def num_parameters(self) -> int:
        """Weight entries of the factorisation ``U S V^T`` at rank ``r``: ``(m + n) r + r^2`` (bias excluded)."""
        r = self.rank
        return (self.in_features + self.out_features) * r + r * r

    @property
    def num_allocated(self) -> int:
        """Entries of the allocated factors ``U, S, V, dK, dL`` (what ``parameters()`` counts, bias excluded)."""
        return sum(getattr(self, n).numel() for n in _FACTORS)

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight ``W`` (``(out, in)``), computed from the factors (differentiable, read-only:
        writing into it does not change the layer)."""
        return (self.U @ self.S + self.dK) @ self.V.mT + self.U @ self.dL.mT

    # ------------------------------------------------------------------ module protocol
    def train(self, mode: bool = True) -> LowRankLayer:
        if not mode:
            self._finish_through_owner("eval()")
        return super().train(mode)

    def _finish_through_owner(self, why: str) -> None:
        owner = self._owner() if self._owner is not None else None
        if owner is not None:
            owner._implicit_finish(why)

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # noqa: ANN001
        self._finish_through_owner("state_dict()")
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):  # noqa: ANN001
        # Accept factors of another capacity (or of the earlier active-size format): the
        # in-use blocks are copied into this layer's capacity, the rest zero.
        keys = {n: prefix + n for n in _FACTORS}
        if all(k in state_dict for k in keys.values()):
            rank_key = prefix + "active_rank"
            if rank_key in state_dict:
                p, q = (int(v) for v in state_dict[rank_key])
            else:
                p, q = state_dict[keys["U"]].shape[-1], state_dict[keys["V"]].shape[-1]
                state_dict[rank_key] = torch.tensor([p, q], dtype=torch.int64)
            cu, cv = self.capacity
            if p > cu or q > cv:
                errors.append(
                    f"{prefix}: a checkpoint with active rank ({p}, {q}) does not fit the capacity ({cu}, {cv}) "
                    f"of this LowRankLinear; build it with capacity >= {max(p, q)}."
                )
                return
            blocks = {"U": (None, p), "S": (p, q), "V": (None, q), "dK": (None, q), "dL": (None, p)}
            for name, (rows, cols) in blocks.items():
                saved, mine = state_dict[keys[name]], getattr(self, name)
                if saved.shape != mine.shape and saved.shape[0] == mine.shape[0] or name == "S":
                    full = torch.zeros(mine.shape, dtype=saved.dtype, device=saved.device)
                    full[:rows, :cols] = saved[:rows, :cols]
                    state_dict[keys[name]] = full
            self._p, self._q = p, q
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

    def _apply(self, fn, recurse=True):  # noqa: ANN001
        out = super()._apply(fn, recurse)
        self._register()  # .to() may create new Parameter objects
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_owner"] = None  # a weak reference to the optimizer does not pickle
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._register()

    def extra_repr(self) -> str:
        sizes = f"in_features={self.in_features}, out_features={self.out_features}"
        return f"{sizes}, rank={self.rank}, max_rank={self.max_rank}, bias={self.bias is not None}"


class LowRankLinear(LowRankLayer):
    r"""Linear layer ``y = x W^T + b`` with a low-rank weight ``W (out, in)``.

    The storage, parameters and conventions of :class:`LowRankLayer` (``m =
    out_features``, ``n = in_features``); the forward never forms ``W``.
    """

    @classmethod
    def from_linear(
        cls, linear: torch.nn.Linear, rank: int, *, max_rank: int | None = None, capacity: int | None = None
    ) -> LowRankLinear:
        """Best rank-``rank`` approximation of a dense :class:`torch.nn.Linear` (truncated SVD, float32 or better)."""
        if not isinstance(linear, torch.nn.Linear):
            msg = f"`linear` must be a torch.nn.Linear; got {type(linear).__name__}."
            raise TypeError(msg)
        with _caller_writes_factors():
            layer = cls(
                linear.in_features,
                linear.out_features,
                rank,
                max_rank=max_rank,
                capacity=capacity,
                bias=linear.bias is not None,
                device=linear.weight.device,
                dtype=linear.weight.dtype,
            )
        with torch.no_grad():
            u, s, vh = torch.linalg.svd(linear.weight.to(layer.compute_dtype), full_matrices=False)
            layer._write(u[:, :rank], torch.diag(s[:rank]), vh[:rank].mT)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xv = x @ self.V
        y = (xv @ self.S.mT + x @ self.dL) @ self.U.mT + xv @ self.dK.mT
        return y if self.bias is None else y + self.bias


# ====================================================================== optimizer
#: per-group options of each method besides lr and weight_decay (constructor names)
def _method_options(cls: type[AbstractLowRankOptimizer]) -> tuple[str, ...]:
    from . import Adam, HeavyBall

    opts = ["basis_update_every"]
    if cls.rank_adaptive:
        opts += ["tol", "rtol", "min_rank", "max_rank"]
    if issubclass(cls, HeavyBall):
        opts += ["momentum", "momentum_transport"]
    if issubclass(cls, Adam):
        opts += ["betas", "eps", "second_moment"]
    return tuple(opts)


def _options_of(core: AbstractLowRankOptimizer) -> dict[str, Any]:
    """The group options of a configured optimizer (``beta`` under its torch name ``momentum``)."""
    out: dict[str, Any] = {"lr": core.lr}
    for name in _method_options(type(core)):
        if name in ("tol", "rtol", "min_rank", "max_rank"):
            out[name] = getattr(core.truncation, name)
        elif name == "momentum":
            out[name] = core.beta
        else:
            out[name] = getattr(core, name)
    return out


def _family(core: AbstractLowRankOptimizer) -> str:
    """Update of the dense parameters: ``"adam"``, ``"heavy-ball"`` or ``"sgd"``."""
    from . import Adam, HeavyBall

    return "adam" if isinstance(core, Adam) else "heavy-ball" if isinstance(core, HeavyBall) else "sgd"


class LowRankOptimizer(torch.optim.Optimizer):
    r"""``torch.optim.Optimizer`` running a low-rank optimizer on every :class:`LowRankLinear`.

    Built like a torch optimizer, from ``model.parameters()`` or param groups: the
    factors of each :class:`LowRankLinear` are recognised among the parameters (the
    layer's ``S``, ``dK``, ``dL`` must be in one group; ``U`` and ``V`` may be passed
    too).  Each layer is updated by the optimizer ``method`` of
    :mod:`lowrank_core.training`, with the options of its group read at every step;
    every other parameter ("dense") gets the matching Euclidean update with its group's
    options: **SGD** for the integrator methods (``psi``, ``bc-psi``, ``abc-psi``,
    ``ra-bug``, ``parallel-bug``), **SGD with heavy-ball momentum** for ``"heavy-ball"``,
    **AdamW** for ``"adam"``.

    Parameters
    ----------
    params : iterable of Parameters or of dicts, or torch.nn.Module
        As for ``torch.optim`` optimizers (a module means its ``parameters()``; kept
        for backward compatibility).  Group dicts may set any option below.
    method : str or AbstractLowRankOptimizer, default "abc-psi"
        A name of :data:`lowrank_core.training.OPTIMIZERS` (then ``lr`` and the options
        build it) or a configured optimizer (its settings become the defaults).
    lr : float, optional
        Learning rate ``h >= 0`` (required with a method name).  ``lr = 0`` leaves ``W``
        unchanged except for the truncation of the basis updates.
    weight_decay : float, default 0
        Decoupled (AdamW-style) decay ``W <- (1 - h lambda) W`` before each step.  For a
        low-rank layer it scales ``S``, ``dK`` and ``dL``: ``W`` is tangent to the
        manifold at ``W``, so this is the exact Riemannian flow of ``lambda ||W||^2 / 2``
        and keeps the rank.
    momentum : float, optional
        ``"heavy-ball"`` only: its ``beta`` (the torch name; ``beta=`` is accepted too).
    batch_layers : bool, default True
        Stack layers of one group whose shapes, ranks and steps agree and update them in
        one batched call (one QR/SVD call per stack and basis update).  A stack shares
        one rank: the largest any member needs.  ``False`` updates layer by layer.
    counters : Counters, optional
        Receives the decompositions of all basis updates (a fresh one by default; read
        it as ``optimizer.counters``).
    param_budget : int or float, optional
        A parameter budget shared by the low-rank layers of each group (an option of the
        group, like ``lr``): an int is a number of weight entries, a float in ``(0, 1]`` a
        fraction of the group's dense entries ``sum m n``.  After every basis update the
        singular values of the group's layers are ranked together and kept in that order
        while ``sum (m + n) r + r^2`` fits (each layer at least ``min_rank``, at most
        ``max_rank``; the rule is :func:`allocate_ranks`, public for planning a budget).
        Needs a rank-adaptive method; without ``tol``/``rtol`` the budget alone sets the
        ranks.  Rank schedules: :class:`RankScheduler`; rank log: :class:`RankLogger`.
    budget_ranking : {"relative", "absolute"}, default "relative"
        Order in which the layers' singular values compete for the budget: ``s_j / ||s||_2``
        of each layer (scale-free) or ``s_j``.
    **options
        The method's options (``basis_update_every``, ``rtol``, ``tol``, ``min_rank``,
        ``max_rank``, ``betas``, ``eps``, ``second_moment``, ``momentum_transport``);
        each may also be set per group.

    Notes
    -----
    * Schedulers: ``step()`` reads ``lr`` (and ``momentum`` / ``betas``) from every
      group, so all of ``torch.optim.lr_scheduler`` works.  ``OneCycleLR`` with
      ``cycle_momentum=True`` needs ``momentum`` or ``betas`` in the groups:
      ``"heavy-ball"`` and ``"adam"`` have them; with the other methods pass
      ``cycle_momentum=False``.
    * Layers whose ``S``, ``dK``, ``dL`` do not require grad, or got no gradient in
      this step (``.grad`` is None), are skipped; their step count does not advance.
    * 16-bit layers: the factors are cast to float32, the step (QR, SVD, truncation,
      the state) runs in float32 and the result is cast back; the optimizer state of
      such layers stays float32 (also through ``load_state_dict``).
    * Steps between basis updates run the method's update in place on the layers' factor
      blocks and optimizer state (no copies); a step that ends a phase runs the
      functional step on the stacked layers and writes the result back.
    * Host synchronisation: none between basis updates.  A basis update reads back one
      NaN/Inf flag, one flag per QR/SVD (the seam's finiteness guard) and the new rank
      (truncation); torch's CUDA QR/SVD may synchronise too.  The NaN/Inf flag covers
      the phase's last gradients (named in the error) and the arrays its earlier steps
      wrote (increments, momenta), where every gradient of the phase has landed; so with
      ``basis_update_every = k > 1`` a non-finite gradient is reported at the end of its
      phase (:class:`NonFiniteGradientError`), after it reached the increments: restore
      a checkpoint.
    * Mid-cycle state: :meth:`finish_cycle` ends every layer's cycle (``W`` back to
      ``U S V^T`` at its rank, see :meth:`AbstractLowRankOptimizer.finish`).  The model's
      and the optimizer's ``state_dict()``, the layers' ``eval()``, :meth:`ranks` and
      :meth:`compression` call it.  Under ``torch.distributed`` with more than one
      process they do not (a save on rank 0 alone would make the replicas diverge):
      they raise if a cycle is open, and every rank must call :meth:`finish_cycle`.
    * DDP: the parameter shapes never change and every replica runs the same
      deterministic step on the averaged gradients, so the replicas stay identical.
    """

    def __init__(
        self,
        params: Any,
        method: str | AbstractLowRankOptimizer = "abc-psi",
        lr: float | None = None,
        *,
        momentum: float | None = None,
        weight_decay: float = 0.0,
        batch_layers: bool = True,
        counters: Counters | None = None,
        param_budget: int | float | None = None,
        budget_ranking: str = "relative",
        **options: Any,
    ) -> None:
        if isinstance(params, torch.nn.Module):
            params = params.parameters()
        elif isinstance(params, (str, bytes, torch.Tensor)) or not isinstance(params, Iterable):
            msg = (
                "`params` must be an iterable of Parameters or of param-group dicts (model.parameters()), or a "
                f"torch.nn.Module; got {type(params).__name__}."
            )
            raise TypeError(msg)
        if not isinstance(batch_layers, bool):
            msg = f"`batch_layers` must be True or False; got {batch_layers!r} of type {type(batch_layers).__name__}."
            raise TypeError(msg)
        counters = _check_counters(counters)
        if isinstance(method, AbstractLowRankOptimizer):
            if lr is not None or options or momentum is not None:
                msg = "pass `lr` and options either to the optimizer object or here with a method name, not both."
                raise ValueError(msg)
            core = method
        elif isinstance(method, str):
            if method not in OPTIMIZERS:
                msg = f"unknown `method` {method!r}; choose one of {sorted(OPTIMIZERS)}."
                raise ValueError(msg)
            if lr is None:
                msg = "`lr` is required when `method` is a name."
                raise ValueError(msg)
            lr = _real_number(lr, "lr")
            if lr < 0:
                msg = f"`lr` must be non-negative; got {lr!r}."
                raise ValueError(msg)
            cls = OPTIMIZERS[method]
            if momentum is not None:
                if "momentum" not in _method_options(cls):
                    msg = f"`momentum` is not an option of {method!r}; 'heavy-ball' and 'adam' (betas) have momentum."
                    raise ValueError(msg)
                if "beta" in options:
                    msg = "pass either `momentum` or its alias `beta`, not both."
                    raise ValueError(msg)
                options["beta"] = momentum
            core = cls(lr if lr > 0 else 1.0, **options)  # validates the options
            core.lr = lr
        else:
            msg = f"`method` must be a name or an AbstractLowRankOptimizer; got {type(method).__name__}."
            raise TypeError(msg)
        self.core = core
        self.batch_layers = batch_layers
        self.counters = counters
        self._layers_of: list[list[LowRankLinear]] = []
        self._dense_of: list[list[torch.Tensor]] = []
        self._cores: dict[tuple, AbstractLowRankOptimizer] = {}
        self._configured: dict[tuple, tuple[tuple, AbstractLowRankOptimizer]] = {}
        defaults = {**_options_of(core), "weight_decay": _tolerance(weight_decay, "weight_decay")}
        defaults.update(param_budget=param_budget, budget_ranking=budget_ranking)  # rank control, _rank_control.py
        super().__init__(params, defaults)
        if not self.layers:
            msg = (
                "`params` contain no LowRankLinear factors; use a torch.optim optimizer for dense models, or "
                "pass model.parameters() of a model with LowRankLinear layers."
            )
            raise ValueError(msg)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (as ``torch.optim``); its LowRankLinear factors are recognised and checked."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._check_group(group)
        seen = {id(m) for ms in self._layers_of for m in ms}
        layers: dict[int, LowRankLinear] = {}
        members: dict[int, set[str]] = {}
        dense = []
        for p in group["params"]:
            if _is_sharded(p):
                msg = (
                    f"`params` holds a sharded parameter ({type(p).__name__} of shape {tuple(p.shape)}, as "
                    "FSDP's fully_shard makes them); LowRankOptimizer needs each layer's whole factors on the "
                    "process that steps it and does not step shards. Train with DistributedDataParallel, or "
                    "leave the low-rank layers out of fully_shard and give the sharded parameters to a "
                    "torch.optim optimizer of their own."
                )
                raise TypeError(msg)
            owner = _layer_of(p)
            if owner is None:
                dense.append(p)
                continue
            layer, name = owner
            layers.setdefault(id(layer), layer)
            members.setdefault(id(layer), set()).add(name)
        for key, layer in layers.items():
            if key in seen:
                msg = (
                    "`params`: a LowRankLinear appears in two param groups; give each layer's parameters to one group."
                )
                raise ValueError(msg)
            missing = {"S", "dK", "dL"} - members[key]
            if missing:
                msg = (
                    f"`params`: a param group holds some factors of a LowRankLinear but not {sorted(missing)}; pass "
                    "all of the layer's parameters (layer.parameters()) in one group."
                )
                raise ValueError(msg)
            self._check_capacity(layer)
            layer._owner = weakref.ref(self)
        self._layers_of.append(list(layers.values()))
        self._dense_of.append(dense)
        _rank_control.check_group(self, group, self._layers_of[-1])

    def _check_capacity(self, layer: LowRankLinear) -> None:
        """abc-PSI and RA-BUG keep bases of up to ``2 r`` columns in the layer between basis updates."""
        from . import ABCPSI, RABUG

        if not isinstance(self.core, (ABCPSI, RABUG)):
            return
        need_u = min(2 * layer.max_rank, layer.out_features)
        need_v = min(2 * layer.max_rank, layer.in_features) if isinstance(self.core, RABUG) else layer.max_rank
        cu, cv = layer.capacity
        if cu < need_u or cv < need_v:
            msg = (
                f"`params`: {self.core.name} keeps augmented bases of up to 2 max_rank columns in the layer between "
                f"basis updates, but a LowRankLinear has capacity ({cu}, {cv}) < ({need_u}, {need_v}); build it with "
                "capacity=None (2 max_rank), or use a method that does not (parallel-bug, heavy-ball, adam)."
            )
            raise ValueError(msg)

    def _check_group(self, group: dict[str, Any]) -> None:
        lr = _real_number(group["lr"], "lr")
        if lr < 0:
            msg = f"`lr` must be non-negative; got {group['lr']!r}."
            raise ValueError(msg)
        _tolerance(group["weight_decay"], "weight_decay")
        self._group_core(group)  # validates the method's options

    @property
    def layers(self) -> list[LowRankLinear]:
        """The low-rank layers, in the order of the param groups."""
        return [m for ms in self._layers_of for m in ms]

    def _group_core(self, group: dict[str, Any], layer: LowRankLinear | None = None) -> AbstractLowRankOptimizer:
        """The method configured with the group's options (lr, momentum and betas as they are now).

        Built once per group, layer capacity and option values: a step reuses it while a
        scheduler leaves the group's values unchanged (the cores are not modified by their
        callers).
        """
        names = _method_options(type(self.core))
        cap = layer.max_rank if layer is not None else None
        values = (group["lr"], group.get("param_budget") is None, *(group[n] for n in names))
        key = (id(group), cap)
        hit = self._configured.get(key)
        try:
            if hit is not None and hit[0] == values:
                return hit[1]
        except (TypeError, RuntimeError, ValueError):  # values that do not compare (tensors): rebuild
            pass
        core = self._configure(group, layer, names)
        self._configured[key] = (values, core)
        return core

    def _configure(
        self, group: dict[str, Any], layer: LowRankLinear | None, names: tuple[str, ...]
    ) -> AbstractLowRankOptimizer:
        structural = tuple((n, group[n]) for n in names if n not in ("momentum", "betas", "eps"))
        base = self._cores.get(structural)
        if base is None:
            base = type(self.core)(1.0, **dict(structural))
            self._cores[structural] = base
        core = copy.copy(base)
        lr = _real_number(group["lr"], "lr")
        if lr < 0:
            msg = f"`lr` must be non-negative; got {group['lr']!r}."
            raise ValueError(msg)
        core.lr = lr
        if "momentum" in names:
            core.beta = _unit_interval(group["momentum"], "momentum")
        if "betas" in names:
            b = tuple(group["betas"])
            core.betas = (_unit_interval(b[0], "betas[0]"), _unit_interval(b[1], "betas[1]"))
            core.eps = _positive(group["eps"], "eps")
        if layer is not None and base.rank_adaptive:
            cap = base.truncation.max_rank
            if cap is None or cap > layer.max_rank:
                core.truncation = dataclasses.replace(base.truncation, max_rank=layer.max_rank)
        return _rank_control.budget_core(core, group)

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One optimizer step on every parameter with a gradient (from the last ``backward``)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        _rank_control.apply_budget(self)  # layers not yet fitted to their group's param_budget
        for gi, group in enumerate(self.param_groups):
            ready, in_place = [], []
            for m in self._layers_of[gi]:
                if not (m.S.requires_grad and m.dK.requires_grad and m.dL.requires_grad):
                    continue  # frozen
                core = self._group_core(group, m)
                st = self.state[m.S]
                step = st.get("step", 0)
                phase = core.phases[(step // core.basis_update_every) % len(core.phases)]
                if any(getattr(m, _GRAD_OF[k]).grad is None for k in core.NEEDS[phase]):
                    continue  # unused in this step
                if st and (step + 1) % core.basis_update_every and m.S.dtype == m.compute_dtype:
                    in_place.append((m, core, phase))  # no basis change: on the layer's own storage
                else:
                    ready.append(m)
            self._steps_in_place(group, in_place)
            for batch in self._batches(ready):
                self._step_batch(group, batch)
            self._dense_step(group, self._dense_of[gi])
        _rank_control.apply_budget(self)  # the layers that have just been truncated
        return loss

    def _batches(self, layers: Iterable[LowRankLinear]) -> list[list[LowRankLinear]]:
        if not self.batch_layers:
            return [[m] for m in layers]
        groups: dict[tuple, list[LowRankLinear]] = {}
        for m in layers:
            st = self.state[m.S]
            extras = tuple(sorted((k, v) for k, v in st.items() if not torch.is_tensor(v)))
            key = (m.out_features, m.in_features, m._p, m._q, m.max_rank, m.S.dtype, m.S.device, bool(st), extras)
            groups.setdefault(key, []).append(m)
        return list(groups.values())

    def _param(self, core: AbstractLowRankOptimizer, layers: list[LowRankLinear]) -> LowRankParam:
        """The stacked parameter of ``layers`` in their compute dtype (fresh state on the first step)."""
        stacked = len(layers) > 1
        dt = layers[0].compute_dtype

        def join(tensors: list[torch.Tensor]) -> torch.Tensor:
            tensors = [t.to(dt) for t in tensors]
            return torch.stack(tensors) if stacked else tensors[0]

        factors = {n: join([m._active(n) for m in layers]) for n in _FACTORS}
        xp = array_api_compat.array_namespace(factors["U"])
        states = [self.state[m.S] for m in layers]
        if not states[0]:
            fresh = core.init(LowRank._trusted(factors["U"], factors["S"], factors["V"], xp))
            return LowRankParam(**factors, state=fresh.state, step=0, xp=xp)
        core_state = {
            k: (torch.stack([s[k] for s in states]) if stacked else states[0][k]) if torch.is_tensor(v) else v
            for k, v in states[0].items()
            if k != "step"
        }
        return LowRankParam(**factors, state=core_state, step=states[0]["step"], xp=xp)

    def _store(self, layers: list[LowRankLinear], new: LowRankParam) -> None:
        stacked = len(layers) > 1
        for i, m in enumerate(layers):
            m._write(*((getattr(new, n)[i] if stacked else getattr(new, n)) for n in _FACTORS))
            st = self.state[m.S]
            st.clear()
            st["step"] = new.step
            for k, v in new.state.items():
                st[k] = (v[i] if stacked else v) if torch.is_tensor(v) else v

    def _steps_in_place(self, group: dict[str, Any], items: list[tuple[LowRankLinear, Any, str]]) -> None:
        """Steps that end no phase, layer by layer, in place on the layers' factor blocks and state.

        The method's own update (``AbstractLowRankOptimizer._update_``) on views of the
        storage: no stacking, no copies, no write-back.  Used for layers whose factors
        are in the compute dtype and whose state exists (not the first step).
        """
        if not items:
            return
        grads = [{key: m._active(_GRAD_OF[key], grad=True) for key in core.NEEDS[phase]} for m, core, phase in items]
        wd = float(group["weight_decay"])
        for (m, core, phase), g in zip(items, grads, strict=True):
            st = self.state[m.S]
            blocks = {n: m._active(n) for n in _FACTORS}
            if wd and core.lr:
                torch._foreach_mul_([blocks["S"], blocks["dK"], blocks["dL"]], 1.0 - core.lr * wd)
            new = core._update_(phase, LowRankParam(**blocks, state=st, step=st["step"], xp=_XP), g)
            st.update(new.state)
            st["step"] += 1
            self.counters.rhs_evals += 1

    def _step_batch(self, group: dict[str, Any], layers: list[LowRankLinear]) -> None:
        core = self._group_core(group, layers[0])
        param = self._param(core, layers)
        dt, stacked = layers[0].compute_dtype, len(layers) > 1
        needs = core.needs(param)
        own = [{key: m._active(_GRAD_OF[key], grad=True) for key in needs} for m in layers]
        if (param.step + 1) % core.basis_update_every == 0:
            self._check_phase(core, core.phase(param), layers, own, param.step)  # before the basis update
        grads = {}
        for key in needs:
            gs = [g[key].to(dt) for g in own]
            grads[f"grad_{key}"] = torch.stack(gs) if stacked else gs[0]
        wd = float(group["weight_decay"])
        if wd and core.lr:
            c = 1.0 - core.lr * wd
            param = param.replace(S=param.S * c, dK=param.dK * c, dL=param.dL * c)
        new = core.step(param, counters=self.counters, check_finite=False, **grads)
        self._store(layers, new)

    def _check_phase(
        self, core: Any, phase: str, layers: list[LowRankLinear], grads: list[dict[str, torch.Tensor]], step: int
    ) -> None:
        """Raise :class:`NonFiniteGradientError` before a basis update if the phase met NaN or Inf.

        The steps before the last one of the phase (``step``) are not checked one by one:
        each gradient enters, with a non-zero coefficient, an array the step overwrites
        (the increments ``S``, ``dK``, ``dL`` of ``WRITES``,
        the momenta of ``STATE_WRITES``), where NaN and Inf
        stay non-finite under the later steps' additions.  So the check reads those
        arrays once, with the last step's gradients (named), in one host read-back per
        stack: ``aminmax`` of each (NaN propagates to both, +-Inf shows in one; nothing
        is allocated).
        """
        start = step - step % core.basis_update_every
        named: list[tuple[str, torch.Tensor]] = []
        for m, gs in zip(layers, grads, strict=True):
            if start < step:  # earlier steps of the phase are in the arrays they wrote
                st = self.state[m.S]
                named += [(n, m._active(n)) for n in core.WRITES[phase]]
                named += [(n, st[n]) for n in core.STATE_WRITES]
            named += [(f"grad_{key}", g) for key, g in gs.items()]
        what = [n for n, _ in named]
        ext = [x for _, a in named for x in torch.aminmax(torch.view_as_real(a) if a.is_complex() else a)]
        if not ext:
            return
        finite = torch.isfinite(torch.stack(ext))
        if bool(finite.all()):  # the one read-back of the phase
            return
        bad = what[int((~finite).nonzero()[0, 0]) // 2]
        if bad.startswith("grad_"):
            msg = f"`{bad}` contains NaN or Inf (the basis update was not taken)"
            raise NonFiniteGradientError(msg, step=step, name=bad)
        # the gradient that feeds the array, by its last letter: dK, B_U, m_U, v_U <- grad_K, ...
        name = "grad_" + {"K": "K", "U": "K", "L": "L", "V": "L", "S": "S"}[bad[-1]]
        msg = (
            f"`{bad}` is NaN or Inf after optimizer steps {start} to {step - 1}: a gradient of those steps "
            "contained NaN or Inf, or the optimizer state overflowed (the basis update was not taken)"
        )
        raise NonFiniteGradientError(msg, step=step, name=name)

    # ------------------------------------------------------------------ dense parameters
    def _dense_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """SGD, SGD with momentum or AdamW (by the method's family) on the group's dense
        parameters, as ``torch.optim`` defines them, with ``torch._foreach_*`` calls over
        the parameters (Adam: over those with the same step count)."""
        ps = [p for p in params if p.grad is not None]
        if not ps:
            return
        h, wd, family = float(group["lr"]), float(group["weight_decay"]), _family(self.core)
        gs = [p.grad for p in ps]
        if wd:
            torch._foreach_mul_(ps, 1.0 - h * wd)
        if family == "heavy-ball":
            states = [self.state[p] for p in ps]
            old = [(st["momentum_buffer"], g) for st, g in zip(states, gs, strict=True) if "momentum_buffer" in st]
            if old:
                bufs = [b for b, _ in old]
                torch._foreach_mul_(bufs, group["momentum"])
                torch._foreach_add_(bufs, [g for _, g in old])
            for st, g in zip(states, gs, strict=True):
                if "momentum_buffer" not in st:  # the first step: the gradient itself
                    st["momentum_buffer"] = g.clone()
            torch._foreach_add_(ps, [st["momentum_buffer"] for st in states], alpha=-h)
        elif family == "adam":
            (b1, b2), eps = group["betas"], group["eps"]
            by_step: dict[int, list[tuple[torch.Tensor, torch.Tensor, dict]]] = {}
            for p, g in zip(ps, gs, strict=True):
                st = self.state[p]
                if "exp_avg" not in st:
                    st.update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                st["step"] = st.get("step", 0) + 1
                by_step.setdefault(st["step"], []).append((p, g, st))
            for t, items in by_step.items():
                p_, g_ = [p for p, _, _ in items], [g for _, g, _ in items]
                m_, v_ = [st["exp_avg"] for *_, st in items], [st["exp_avg_sq"] for *_, st in items]
                torch._foreach_mul_(m_, b1)
                torch._foreach_add_(m_, g_, alpha=1 - b1)
                torch._foreach_mul_(v_, b2)
                torch._foreach_addcmul_(v_, g_, g_, value=1 - b2)
                denom = torch._foreach_div(v_, 1 - b2**t)
                torch._foreach_sqrt_(denom)
                torch._foreach_add_(denom, eps)
                torch._foreach_addcdiv_(p_, m_, denom, value=-h / (1 - b1**t))
        else:
            torch._foreach_add_(ps, gs, alpha=-h)

    # ------------------------------------------------------------------ cycles
    def _open(self) -> list[tuple[dict[str, Any], LowRankLinear]]:
        out = []
        for gi, group in enumerate(self.param_groups):
            for m in self._layers_of[gi]:
                st = self.state[m.S]
                if st and st["step"] % self._group_core(group).cycle_length:
                    out.append((group, m))
        return out

    @torch.no_grad()
    def finish_cycle(self) -> None:
        """End the cycle of every layer that is between basis updates.

        Afterwards every layer holds ``W = U S V^T`` with orthonormal ``U, V`` at the rank
        ``W`` has (:meth:`AbstractLowRankOptimizer.finish`: at most one QR pair and one SVD
        per layer, truncation by the method's rule; ``W`` changes only by what the
        truncation discards), and the next step starts a new cycle.  A layer at the start
        of a cycle is left as it is, so calling it twice costs nothing.  Under DDP call it
        on every rank.
        """
        by_group: dict[int, tuple[dict, list]] = {}
        for group, m in self._open():
            by_group.setdefault(id(group), (group, []))[1].append(m)
        for group, layers in by_group.values():
            for batch in self._batches(layers):
                core = self._group_core(group, batch[0])
                new = core.finish(self._param(core, batch), counters=self.counters)
                self._store(batch, new)
        _rank_control.apply_budget(self)

    def _implicit_finish(self, why: str) -> None:
        if not _distributed():
            self.finish_cycle()
            return
        if self._open():
            msg = (
                f"{why} between basis updates under torch.distributed: call optimizer.finish_cycle() on every rank "
                "first (finishing on one rank only would make the replicas differ)."
            )
            raise RuntimeError(msg)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """As ``torch.optim``, after :meth:`finish_cycle` (so it matches the model's state dict)."""
        self._implicit_finish("optimizer.state_dict()")
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``torch.optim``; the state of 16-bit layers stays float32 (torch would cast it to the layer's dtype)."""
        super().load_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        mine = [p for g in self.param_groups for p in g["params"]]
        index = {id(p): i for i, p in zip(saved_ids, mine, strict=False)}
        for m in self.layers:
            if m.compute_dtype != m.S.dtype and id(m.S) in index:
                saved = state_dict["state"].get(index[id(m.S)], {})
                self.state[m.S] = {
                    k: v.to(device=m.S.device, dtype=m.compute_dtype)
                    if torch.is_tensor(v) and v.is_floating_point()
                    else v
                    for k, v in saved.items()
                }
        self.__dict__.pop("_budget_done", None)  # the loaded layers are fitted to the budget anew

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        for name in ("core", "batch_layers", "counters", "_layers_of", "_dense_of", "_cores"):
            state[name] = getattr(self, name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._configured = {}
        for m in self.layers if "_layers_of" in self.__dict__ else ():
            m._owner = weakref.ref(self)

    # ------------------------------------------------------------------ reporting
    def ranks(self) -> list[int]:
        """Rank of ``W`` in every low-rank layer (after :meth:`finish_cycle`), in group order."""
        self._implicit_finish("ranks()")
        return [m.rank for m in self.layers]

    def compression(self) -> float:
        """``1 - (rank-r factor entries) / (dense weight entries)`` over the low-rank layers, in percent
        (after :meth:`finish_cycle`; the allocated capacity is :attr:`LowRankLinear.num_allocated`)."""
        self._implicit_finish("compression()")
        dense = sum(m.in_features * m.out_features for m in self.layers)
        return 100.0 * (1.0 - sum(m.num_parameters for m in self.layers) / dense)

    def __repr__(self) -> str:
        return f"LowRankOptimizer({self.core!r}, layers={len(self.layers)}, batch_layers={self.batch_layers})"


# the conv, embedding and adapter layers and convert/merge (they subclass LowRankLayer)
from ._layers import ConversionSummary as ConversionSummary  # noqa: E402
from ._layers import ConvertedLayer as ConvertedLayer  # noqa: E402
from ._layers import LowRankAdapter as LowRankAdapter  # noqa: E402
from ._layers import LowRankConv2d as LowRankConv2d  # noqa: E402
from ._layers import LowRankEmbedding as LowRankEmbedding  # noqa: E402
from ._layers import convert as convert  # noqa: E402
from ._layers import merge as merge  # noqa: E402
