r"""PyTorch adapter: a low-rank ``Linear`` layer and a ``torch.optim.Optimizer``.

Install with the ``[torch]`` extra.  This module imports torch; ``import lowrank_core``
and ``import lowrank_core.training`` do not.

The optimizer runs the framework-agnostic optimizers of :mod:`lowrank_core.training`
directly on the layers' torch tensors (through array-api-compat's torch namespace):
no conversion to NumPy, no host copies, so it runs on whatever device the layer lives
on (CPU or CUDA).  Layers with equal factor shapes are stacked and updated together,
so each basis update is one batched QR/SVD call for the whole group.

Example
-------
>>> import torch
>>> from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer
>>> _ = torch.manual_seed(0)
>>> model = torch.nn.Sequential(LowRankLinear(8, 16, rank=4), torch.nn.ReLU(), torch.nn.Linear(16, 2))
>>> opt = LowRankOptimizer(model, "abc-psi", lr=0.1, rtol=0.1)
>>> x, y = torch.randn(32, 8), torch.randint(0, 2, (32,))
>>> for _ in range(4):
...     opt.zero_grad()
...     torch.nn.functional.cross_entropy(model(x), y).backward()
...     opt.step()
>>> model[0].rank <= 8
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import array_api_compat
import torch

from .._linalg import Counters
from .._lowrank import LowRank
from . import OPTIMIZERS, AbstractLowRankOptimizer, LowRankParam
from ._optimizers import _check_counters, _count

__all__ = ["LowRankLinear", "LowRankOptimizer"]

_FACTORS = ("U", "S", "V", "dK", "dL")
#: dtypes of the layers' factors (the decompositions need single or double precision)
_LAYER_DTYPES = (torch.float32, torch.float64)


class LowRankLinear(torch.nn.Module):
    r"""Linear layer ``y = x W^T + b`` with a low-rank weight ``W (out, in)``.

    The weight is stored as ``W = U S V^T + dK V^T + U dL^T`` (the representation of
    :class:`~lowrank_core.training.LowRankParam`, ``m = out_features``,
    ``n = in_features``): ``U (m, p)``, ``S (p, q)``, ``V (n, q)``, ``dK (m, q)``,
    ``dL (n, p)``.  ``U`` and ``V`` are not trained by autograd (``requires_grad=False``);
    one backward pass gives ``dK.grad = G V``, ``dL.grad = G^T U`` and
    ``S.grad = U^T G V`` with ``G = dL/dW``, the gradients every low-rank optimizer needs.
    The forward costs ``O(batch (m + n)(p + q))``; ``W`` is never formed.

    Parameters
    ----------
    in_features, out_features : int
    rank : int
        Initial rank ``r`` (``1 <= r <= min(in, out)``).
    bias : bool, default True
    device, dtype : optional
        As for :class:`torch.nn.Linear`.

    Notes
    -----
    Initialised as the best rank-``r`` approximation of a default
    :class:`torch.nn.Linear` weight.  ``load_state_dict`` accepts factors of another
    rank (the optimizer changes the rank during training).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        *,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        in_features = _count(in_features, "in_features")
        out_features = _count(out_features, "out_features")
        rank = _count(rank, "rank")
        if not 1 <= rank <= min(in_features, out_features):
            bound = min(in_features, out_features)
            msg = f"`rank` must satisfy 1 <= rank <= min(in_features, out_features) = {bound}; got {rank}."
            raise ValueError(msg)
        if not isinstance(bias, bool):
            msg = f"`bias` must be True or False; got {bias!r} of type {type(bias).__name__}."
            raise TypeError(msg)
        if dtype is not None and not isinstance(dtype, torch.dtype):
            msg = f"`dtype` must be a torch.dtype (torch.float32 or torch.float64) or None; got {dtype!r}."
            raise TypeError(msg)
        resolved = torch.get_default_dtype() if dtype is None else dtype
        if resolved not in _LAYER_DTYPES:
            where = " (the torch default dtype)" if dtype is None else ""
            msg = (
                f"`dtype` must be torch.float32 or torch.float64; got {resolved}{where}. The factors need an SVD "
                "and QR in that precision; pass dtype=torch.float32."
            )
            raise TypeError(msg)
        dense = torch.nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.in_features, self.out_features = in_features, out_features
        with torch.no_grad():
            u, s, vh = torch.linalg.svd(dense.weight, full_matrices=False)
        self._set_factors(u[:, :rank], torch.diag(s[:rank]), vh[:rank].mT)
        self.bias = dense.bias

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, rank: int) -> LowRankLinear:
        """Best rank-``rank`` approximation (truncated SVD) of a dense :class:`torch.nn.Linear`."""
        if not isinstance(linear, torch.nn.Linear):
            msg = f"`linear` must be a torch.nn.Linear; got {type(linear).__name__}."
            raise TypeError(msg)
        layer = cls(
            linear.in_features,
            linear.out_features,
            rank,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        with torch.no_grad():
            u, s, vh = torch.linalg.svd(linear.weight, full_matrices=False)
            layer._set_factors(u[:, :rank], torch.diag(s[:rank]), vh[:rank].mT)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def _set_factors(self, U: torch.Tensor, S: torch.Tensor, V: torch.Tensor) -> None:
        P = torch.nn.Parameter
        self.U = P(U.detach().clone(), requires_grad=False)
        self.S = P(S.detach().clone())
        self.V = P(V.detach().clone(), requires_grad=False)
        self.dK = P(torch.zeros(U.shape[0], V.shape[1], dtype=U.dtype, device=U.device))
        self.dL = P(torch.zeros(V.shape[0], U.shape[1], dtype=U.dtype, device=U.device))

    @property
    def rank(self) -> int:
        """Rank of the last basis update."""
        return int(min(self.U.shape[-1], self.V.shape[-1]))

    @property
    def num_parameters(self) -> int:
        """Weight entries of the factorisation at rank ``r``: ``(m + n) r + r^2`` (bias excluded)."""
        r = self.rank
        return (self.in_features + self.out_features) * r + r * r

    def weight(self) -> torch.Tensor:
        """The dense weight ``W`` (``(out, in)``; for inspection only)."""
        return (self.U @ self.S + self.dK) @ self.V.mT + self.U @ self.dL.mT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xv = x @ self.V
        y = (xv @ self.S.mT + x @ self.dL) @ self.U.mT + xv @ self.dK.mT
        return y if self.bias is None else y + self.bias

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # The rank may differ from this layer's: resize the factors before torch copies.
        for name in _FACTORS:
            key = prefix + name
            if key in state_dict and state_dict[key].shape != getattr(self, name).shape:
                getattr(self, name).data = torch.empty_like(state_dict[key], device=self.U.device, dtype=self.U.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        sizes = f"in_features={self.in_features}, out_features={self.out_features}"
        return f"{sizes}, rank={self.rank}, bias={self.bias is not None}"


class LowRankOptimizer(torch.optim.Optimizer):
    r"""``torch.optim.Optimizer`` running a low-rank optimizer on every :class:`LowRankLinear`.

    The low-rank layers of ``model`` are updated by the optimizer ``method`` of
    :mod:`lowrank_core.training` (its factors change in place, including their shapes
    when the rank changes); every other trainable parameter (biases, dense layers) gets
    the matching Euclidean update: SGD for the integrator methods, heavy ball for
    ``"heavy-ball"``, Adam for ``"adam"``.

    Parameters
    ----------
    model : torch.nn.Module
        Module containing :class:`LowRankLinear` layers.
    method : str or AbstractLowRankOptimizer, default "abc-psi"
        A name of :data:`lowrank_core.training.OPTIMIZERS` (then ``lr`` and ``**options``
        build it) or a configured optimizer.
    lr : float, optional
        Learning rate (required with a method name).
    batch_layers : bool, default True
        Stack layers whose factors have equal shapes and update them in one batched
        call (one QR/SVD call per group and basis update).  A stack shares one rank: the
        largest any member needs, so every member meets the tolerance.  ``False``
        updates layer by layer, each with its own rank.
    counters : Counters, optional
        Receives the decompositions of all basis updates (a fresh one by default; read
        it as ``optimizer.counters``).
    **options
        Passed to the optimizer class (``basis_update_every``, ``rtol``, ``tol``,
        ``min_rank``, ``max_rank``, ``beta``, ``betas``, ``eps``, ...).

    Notes
    -----
    Use it like any torch optimizer: ``zero_grad()``, ``loss.backward()``, ``step()``;
    ``state_dict()``/``load_state_dict()`` round-trip (load the model's state dict too:
    the factor shapes are part of it).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        method: str | AbstractLowRankOptimizer = "abc-psi",
        lr: float | None = None,
        *,
        batch_layers: bool = True,
        counters: Counters | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            msg = f"`model` must be a torch.nn.Module containing LowRankLinear layers; got {type(model).__name__}."
            raise TypeError(msg)
        if not isinstance(batch_layers, bool):
            msg = f"`batch_layers` must be True or False; got {batch_layers!r} of type {type(batch_layers).__name__}."
            raise TypeError(msg)
        counters = _check_counters(counters)
        if isinstance(method, AbstractLowRankOptimizer):
            if lr is not None or options:
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
            core = OPTIMIZERS[method](lr, **options)
        else:
            msg = f"`method` must be a name or an AbstractLowRankOptimizer; got {type(method).__name__}."
            raise TypeError(msg)
        self.core = core
        self.layers = [m for m in model.modules() if isinstance(m, LowRankLinear)]
        if not self.layers:
            msg = "`model` contains no LowRankLinear layer; use a torch.optim optimizer for dense models."
            raise ValueError(msg)
        factor_ids = {id(getattr(m, n)) for m in self.layers for n in _FACTORS}
        dense = [p for p in model.parameters() if p.requires_grad and id(p) not in factor_ids]
        # S, dK, dL of every layer (S first: it keys the layer's state); in the groups so
        # that zero_grad() clears them.
        groups = [{"params": [getattr(m, n) for m in self.layers for n in ("S", "dK", "dL")], "lowrank": True}]
        if dense:
            groups.append({"params": dense, "lowrank": False})
        super().__init__(groups, {"lr": core.lr})
        self.batch_layers = batch_layers
        self.counters = counters

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One optimizer step on every parameter (gradients from the last ``backward``)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self._groups(self.layers):
            self._step_group(group)
        for group in self.param_groups:
            if not group["lowrank"]:
                for p in group["params"]:
                    if p.grad is not None:
                        self._dense_update(p)
        return loss

    def _groups(self, layers: Iterable[LowRankLinear]) -> list[list[LowRankLinear]]:
        if not self.batch_layers:
            return [[m] for m in layers]
        groups: dict[tuple, list[LowRankLinear]] = {}
        for m in layers:
            key = (*(tuple(getattr(m, n).shape) for n in _FACTORS), m.U.dtype, m.U.device)
            groups.setdefault(key, []).append(m)
        return list(groups.values())

    def _step_group(self, layers: list[LowRankLinear]) -> None:
        core = self.core
        states = [self.state[m.S] for m in layers]
        stacked = len(layers) > 1

        def join(tensors: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(tensors) if stacked else tensors[0]

        factors = {n: join([getattr(m, n).detach() for m in layers]) for n in _FACTORS}
        xp = array_api_compat.array_namespace(factors["U"])
        if not states[0]:
            fresh = core.init(LowRank._trusted(factors["U"], factors["S"], factors["V"], xp))
            core_state, step = fresh.state, 0
        else:
            core_state = {
                k: (join([s[k] for s in states]) if torch.is_tensor(states[0][k]) else states[0][k])
                for k in states[0]
                if k != "step"
            }
            step = states[0]["step"]
        param = LowRankParam(**factors, state=core_state, step=step, xp=xp)
        grads = {}
        for key, name in (("grad_K", "dK"), ("grad_L", "dL"), ("grad_S", "S")):
            gs = [getattr(m, name).grad for m in layers]
            if any(g is None for g in gs):
                continue
            grads[key] = join(gs)
        new = core.step(param, counters=self.counters, **grads)
        for i, m in enumerate(layers):
            for name in _FACTORS:
                value = getattr(new, name)
                self._assign(m, name, value[i] if stacked else value)
            st = self.state[m.S]
            st.clear()
            st["step"] = new.step
            for k, v in new.state.items():
                st[k] = (v[i] if stacked else v) if torch.is_tensor(v) else v

    def _assign(self, layer: LowRankLinear, name: str, value: torch.Tensor) -> None:
        """Set a factor to ``value``: in place when the shape is unchanged, else a new Parameter.

        A new shape needs a new Parameter object: autograd caches a leaf's shape in its
        gradient accumulator, which lives as long as any graph through it (for example the
        previous step's ``loss`` still held by the training loop).
        """
        old = getattr(layer, name)
        if old.shape == value.shape:
            old.data = value
            return
        new = torch.nn.Parameter(value, requires_grad=old.requires_grad)
        setattr(layer, name, new)
        group = self.param_groups[0]["params"]
        for j, p in enumerate(group):
            if p is old:
                group[j] = new
        if name == "S":  # the S factors are the optimizer's handle on each layer's state
            self.state[new] = self.state.pop(old, {})

    # ------------------------------------------------------------------ dense parameters
    def _dense_update(self, p: torch.Tensor) -> None:
        core, g, st = self.core, p.grad, self.state[p]
        h = core.lr
        name = core.name
        if name == "heavy-ball":
            buf = st.get("momentum")
            buf = g.clone() if buf is None else buf.mul_(core.beta).add_(g)
            st["momentum"] = buf
            p.add_(buf, alpha=-h)
        elif name == "adam":
            (b1, b2), t = core.betas, st.get("step", 0) + 1
            m = st.get("exp_avg", torch.zeros_like(p)).mul_(b1).add_(g, alpha=1 - b1)
            v = st.get("exp_avg_sq", torch.zeros_like(p)).mul_(b2).addcmul_(g, g, value=1 - b2)
            st.update(step=t, exp_avg=m, exp_avg_sq=v)
            denom = (v / (1 - b2**t)).sqrt_().add_(core.eps)
            p.addcdiv_(m, denom, value=-h / (1 - b1**t))
        else:
            p.add_(g, alpha=-h)

    # ------------------------------------------------------------------ reporting
    def ranks(self) -> list[int]:
        """Current rank of every low-rank layer, in model order."""
        return [m.rank for m in self.layers]

    def compression(self) -> float:
        """``1 - (factor entries) / (dense weight entries)`` over the low-rank layers, in percent."""
        dense = sum(m.in_features * m.out_features for m in self.layers)
        return 100.0 * (1.0 - sum(m.num_parameters for m in self.layers) / dense)

    def __repr__(self) -> str:
        return f"LowRankOptimizer({self.core!r}, layers={len(self.layers)}, batch_layers={self.batch_layers})"
