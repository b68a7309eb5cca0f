r"""Low-rank convolution, embedding and adapter layers; one-call conversion and merge.

Every layer here is a :class:`~lowrank_core.training.torch.LowRankLayer`: the same
fixed-capacity factors ``U, S, V, dK, dL`` of a weight matrix ``W (m, n)``, the same
``active_rank`` buffer, checkpoint, pickling and ``finish_cycle`` behaviour, and
:class:`~lowrank_core.training.torch.LowRankOptimizer` trains them with no per-layer
code.  They differ from :class:`~lowrank_core.training.torch.LowRankLinear` only in
how ``forward`` applies ``W`` and in the shape of :attr:`weight`:

* :class:`LowRankConv2d`: ``W (out, in kh kw)``, the kernel reshaped as in DLRT's
  convolution layers; the forward is two convolutions and never forms ``W``.
* :class:`LowRankEmbedding`: ``W (num_embeddings, dim)``; rows of ``U`` and ``dK`` are
  gathered, then multiplied by the small factors.
* :class:`LowRankAdapter`: ``W0 + W`` with a frozen ``nn.Linear`` or ``nn.Conv2d``
  holding ``W0`` and the factors holding the update ``W`` (LoRA's setup, trained by the
  geometric optimizers).

:func:`convert` swaps the ``nn.Linear`` / ``nn.Conv2d`` / ``nn.Embedding`` modules of a
model for these layers (truncated SVD of their weights, or adapters around them);
:func:`merge` swaps every low-rank layer back for the dense module with its ``W``.

This module is imported by :mod:`lowrank_core.training.torch`, which exports its names
(the classes carry that module's name, so pickles and the API docs refer to it).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from ._optimizers import _count
from .torch import _CALLER_WRITES_FACTORS, LowRankLayer, LowRankLinear, _caller_writes_factors

__all__ = [
    "ConversionSummary",
    "ConvertedLayer",
    "LowRankAdapter",
    "LowRankConv2d",
    "LowRankEmbedding",
    "convert",
    "merge",
]

_PUBLIC_MODULE = "lowrank_core.training.torch"
_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


# ====================================================================== helpers
def _pair(value: Any, name: str, *, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (each >= minimum), as torch's conv arguments."""
    items = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        msg = f"`{name}` must be an int or a pair of ints; got {value!r}."
        raise TypeError(msg)
    if any(v < minimum for v in items):
        msg = f"`{name}` must be at least {minimum}; got {value!r}."
        raise ValueError(msg)
    return items  # type: ignore[return-value]


def _check_rank(rank: Any, bound: int, shape: str) -> int:
    rank = _count(rank, "rank")
    if rank > bound:
        msg = f"`rank` must satisfy 1 <= rank <= {shape} = {bound}; got {rank}."
        raise ValueError(msg)
    return rank


@torch.no_grad()
def _write_svd(layer: LowRankLayer, matrix: torch.Tensor, rank: int) -> None:
    """Set the layer's factors to the truncated SVD of ``matrix`` (computed in the compute dtype)."""
    u, s, vh = torch.linalg.svd(matrix.to(device=layer.S.device, dtype=layer.compute_dtype), full_matrices=False)
    layer._write(u[:, :rank], torch.diag(s[:rank]), vh[:rank].mT)


def _matrix(layer: LowRankLayer) -> torch.Tensor:
    """``W (m, n)`` of the factors (differentiable)."""
    return LowRankLayer.weight.fget(layer)  # type: ignore[attr-defined]


def _linear_update(layer: LowRankLayer, x: torch.Tensor) -> torch.Tensor:
    """``x W^T`` through the factors (as LowRankLinear's forward, without bias)."""
    xv = x @ layer.V
    return (xv @ layer.S.mT + x @ layer.dL) @ layer.U.mT + xv @ layer.dK.mT


def _conv_update(layer: LowRankLayer, geometry: Any, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    r"""The convolution with kernel ``W (out, in kh kw)`` as two convolutions, ``W`` never formed.

    ``W = [U S + dK, U] [V, dL]^T``: a ``(cv + cu, in, kh, kw)`` convolution with the
    columns of ``[V, dL]`` as kernels (stride, padding, dilation of ``geometry``, an
    ``nn.Conv2d`` or a :class:`LowRankConv2d`), then a 1x1 convolution with
    ``[U S + dK, U]``.  Autograd through it gives the factor gradients of
    :class:`LowRankLayer` (``S.grad = U^T G V`` etc.).
    """
    kh, kw = geometry.kernel_size
    first = torch.cat([layer.V, layer.dL], dim=1).mT.reshape(-1, geometry.in_channels, kh, kw)
    second = torch.cat([layer.U @ layer.S + layer.dK, layer.U], dim=1)[:, :, None, None]
    if geometry.padding_mode != "zeros":
        x = F.pad(x, geometry._reversed_padding_repeated_twice, mode=geometry.padding_mode)
        padding: Any = 0
    else:
        padding = geometry.padding
    z = F.conv2d(x, first, None, geometry.stride, padding, geometry.dilation)
    return F.conv2d(z, second, bias)


def _check_conv(conv: Any, subject: str) -> None:
    """``subject``: how the messages name the module (an argument in backticks, or a module name)."""
    if not isinstance(conv, torch.nn.Conv2d):
        msg = f"{subject} must be a torch.nn.Conv2d; got {type(conv).__name__}."
        raise TypeError(msg)
    if conv.groups != 1:
        msg = (
            f"{subject} has groups={conv.groups}; the low-rank convolution factors the kernel as one "
            "(out, in kh kw) matrix and supports groups=1 only (leave grouped and depthwise convolutions dense)."
        )
        raise ValueError(msg)


# ====================================================================== Conv2d
class LowRankConv2d(LowRankLayer):
    r"""2-D convolution with a low-rank kernel, ``W (out, in kh kw)`` in factors.

    The kernel ``(out_channels, in_channels, kh, kw)`` reshaped to the matrix
    ``W (m, n) = (out_channels, in_channels kh kw)`` (DLRT's convolution layers) is
    stored as in :class:`LowRankLayer`; ``in_features = in_channels kh kw`` and
    ``out_features = out_channels`` are the matrix sizes.  The output equals
    ``torch.nn.functional.conv2d(x, W.reshape(out, in, kh, kw), bias, ...)``.

    Forward: a ``(cu + cv)``-channel convolution with the kernels ``[V, dL]`` (stride,
    padding, dilation of the layer), then a 1x1 convolution with ``[U S + dK, U]``; cost
    ``O(batch H' W' (cu + cv)(in kh kw + out))`` against ``O(batch H' W' out in kh kw)``
    dense, and ``W`` is never formed.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    rank : int
        Initial rank, ``1 <= rank <= min(out_channels, in_channels kh kw)``.
    stride, padding, dilation, padding_mode : optional
        As for :class:`torch.nn.Conv2d` (``padding`` an int, a pair, ``"valid"`` or
        ``"same"``; ``padding_mode`` ``"zeros"``, ``"reflect"``, ``"replicate"`` or
        ``"circular"``).
    groups : int, default 1
        Only 1: a grouped kernel is not one matrix (a ``ValueError`` otherwise).
    bias : bool, default True
    max_rank, capacity, device, dtype : optional
        As for :class:`LowRankLayer`.

    Notes
    -----
    Initialised as the best rank-``r`` approximation of a default
    :class:`torch.nn.Conv2d` kernel (same distribution: Kaiming-uniform with fan-in
    ``in kh kw``).  :attr:`weight` is the ``(out, in, kh, kw)`` kernel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        rank: int,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        max_rank: int | None = None,
        capacity: int | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        in_channels = _count(in_channels, "in_channels")
        out_channels = _count(out_channels, "out_channels")
        kh, kw = _pair(kernel_size, "kernel_size", minimum=1)
        stride = _pair(stride, "stride", minimum=1)
        dilation = _pair(dilation, "dilation", minimum=1)
        if isinstance(groups, bool) or not isinstance(groups, int):
            msg = f"`groups` must be an int; got {groups!r}."
            raise TypeError(msg)
        if groups != 1:
            msg = (
                f"`groups` must be 1 (the kernel is factored as one (out, in kh kw) matrix); got {groups}. "
                "Leave grouped and depthwise convolutions dense."
            )
            raise ValueError(msg)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                msg = f"`padding` must be an int, a pair of ints, 'valid' or 'same'; got {padding!r}."
                raise ValueError(msg)
            if padding == "same" and stride != (1, 1):
                msg = f"`padding='same'` needs stride 1 (as torch.nn.Conv2d); got stride={stride}."
                raise ValueError(msg)
        else:
            padding = _pair(padding, "padding", minimum=0)
        if padding_mode not in _PADDING_MODES:
            msg = f"`padding_mode` must be one of {_PADDING_MODES}; got {padding_mode!r}."
            raise ValueError(msg)
        n = in_channels * kh * kw
        rank = _check_rank(rank, min(out_channels, n), "min(out_channels, in_channels kh kw)")
        super().__init__(
            n, out_channels, rank, max_rank=max_rank, capacity=capacity, bias=bias, device=device, dtype=dtype
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, 1
        self.padding_mode = padding_mode
        if padding == "valid":
            pads: list[int] = [0, 0, 0, 0]
        elif padding == "same":
            pads = []
            for d, k in zip(reversed(dilation), reversed((kh, kw)), strict=True):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
        else:
            pads = [padding[1], padding[1], padding[0], padding[0]]
        self._reversed_padding_repeated_twice = pads

    @classmethod
    def from_conv2d(
        cls, conv: torch.nn.Conv2d, rank: int, *, max_rank: int | None = None, capacity: int | None = None
    ) -> LowRankConv2d:
        """Best rank-``rank`` approximation of a :class:`torch.nn.Conv2d` kernel (truncated SVD of
        ``weight.reshape(out, in kh kw)``), with its geometry and bias."""
        _check_conv(conv, "`conv`")
        with _caller_writes_factors():
            layer = cls(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                rank,
                stride=conv.stride,
                padding=conv.padding,
                dilation=conv.dilation,
                bias=conv.bias is not None,
                padding_mode=conv.padding_mode,
                max_rank=max_rank,
                capacity=capacity,
                device=conv.weight.device,
                dtype=conv.weight.dtype,
            )
        with torch.no_grad():
            _write_svd(layer, conv.weight.reshape(conv.out_channels, -1), layer.rank)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer

    @property
    def weight(self) -> torch.Tensor:
        """The kernel ``W.reshape(out, in, kh, kw)`` (differentiable, read-only: writing into it does not
        change the layer)."""
        return _matrix(self).reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_update(self, self, x, self.bias)

    def extra_repr(self) -> str:
        geo = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1):
            geo += f", dilation={self.dilation}"
        if self.padding_mode != "zeros":
            geo += f", padding_mode={self.padding_mode!r}"
        return (
            f"{self.in_channels}, {self.out_channels}, {geo}, rank={self.rank}, max_rank={self.max_rank}, "
            f"bias={self.bias is not None}"
        )


# ====================================================================== Embedding
class LowRankEmbedding(LowRankLayer):
    r"""Embedding table with a low-rank weight ``W (num_embeddings, embedding_dim)`` in factors.

    ``forward(idx)`` returns ``W[idx]`` computed as ``(U[idx] S + dK[idx]) V^T +
    U[idx] dL^T``: rows of the tall factors are gathered, then multiplied by the small
    ones; ``W`` is never formed (cost ``O(len(idx) (cu + cv) dim)``).

    Parameters
    ----------
    num_embeddings, embedding_dim : int
    rank : int
        Initial rank, ``1 <= rank <= min(num_embeddings, embedding_dim)``.
    padding_idx : int, optional
        As :class:`torch.nn.Embedding`: the output at ``padding_idx`` is zero and the
        positions holding it contribute no gradient.  Here the row is zero by
        construction (the forward and :attr:`weight` mask it), so it cannot be set to
        a non-zero vector; :meth:`from_embedding` refuses an ``nn.Embedding`` whose
        padding row is not zero.
    max_rank, capacity, device, dtype : optional
        As for :class:`LowRankLayer`.

    Notes
    -----
    Initialised as the best rank-``r`` approximation of a default
    :class:`torch.nn.Embedding` table (standard normal entries, padding row zero).
    ``max_norm``, ``scale_grad_by_freq`` and ``sparse`` of ``nn.Embedding`` are not
    supported (they act on rows of a stored table).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        rank: int,
        *,
        padding_idx: int | None = None,
        max_rank: int | None = None,
        capacity: int | None = None,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        num_embeddings = _count(num_embeddings, "num_embeddings")
        embedding_dim = _count(embedding_dim, "embedding_dim")
        rank = _check_rank(rank, min(num_embeddings, embedding_dim), "min(num_embeddings, embedding_dim)")
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, int):
                msg = f"`padding_idx` must be an int or None; got {padding_idx!r}."
                raise TypeError(msg)
            if not -num_embeddings <= padding_idx < num_embeddings:
                msg = f"`padding_idx` must be within num_embeddings = {num_embeddings}; got {padding_idx}."
                raise ValueError(msg)
            padding_idx %= num_embeddings
        super().__init__(
            embedding_dim,
            num_embeddings,
            rank,
            max_rank=max_rank,
            capacity=capacity,
            bias=False,
            device=device,
            dtype=dtype,
        )
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        if not _CALLER_WRITES_FACTORS.get():
            table = torch.randn(num_embeddings, embedding_dim, device=self.S.device, dtype=self.compute_dtype)
            if padding_idx is not None:
                table[padding_idx] = 0
            _write_svd(self, table, rank)

    @classmethod
    def from_embedding(
        cls, embedding: torch.nn.Embedding, rank: int, *, max_rank: int | None = None, capacity: int | None = None
    ) -> LowRankEmbedding:
        """Best rank-``rank`` approximation of a :class:`torch.nn.Embedding` table (truncated SVD)."""
        _check_embedding(embedding, "`embedding`")
        with _caller_writes_factors():
            layer = cls(
                embedding.num_embeddings,
                embedding.embedding_dim,
                rank,
                padding_idx=embedding.padding_idx,
                max_rank=max_rank,
                capacity=capacity,
                device=embedding.weight.device,
                dtype=embedding.weight.dtype,
            )
        _write_svd(layer, embedding.weight.detach(), layer.rank)
        return layer

    @property
    def weight(self) -> torch.Tensor:
        """The table ``W (num_embeddings, embedding_dim)``, padding row zero (differentiable, read-only)."""
        w = _matrix(self)
        return w if self.padding_idx is None else w.index_fill(0, torch.tensor([self.padding_idx], device=w.device), 0)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        u = F.embedding(idx, self.U)
        k = F.embedding(idx, self.dK)
        y = (u @ self.S + k) @ self.V.mT + u @ self.dL.mT
        if self.padding_idx is not None:
            y = y * (idx != self.padding_idx).unsqueeze(-1).to(y.dtype)
        return y

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}, rank={self.rank}, max_rank={self.max_rank}"


def _check_embedding(embedding: Any, subject: str) -> None:
    """``subject``: how the messages name the module (an argument in backticks, or a module name)."""
    if not isinstance(embedding, torch.nn.Embedding):
        msg = f"{subject} must be a torch.nn.Embedding; got {type(embedding).__name__}."
        raise TypeError(msg)
    unsupported = [
        f"{k}={v!r}"
        for k, v in (
            ("max_norm", embedding.max_norm),
            ("scale_grad_by_freq", embedding.scale_grad_by_freq),
            ("sparse", embedding.sparse),
        )
        if v not in (None, False)
    ]
    if unsupported:
        msg = (
            f"{subject} has {', '.join(unsupported)}; LowRankEmbedding supports none of max_norm, "
            "scale_grad_by_freq, sparse."
        )
        raise ValueError(msg)
    pad = embedding.padding_idx
    if pad is not None and bool(embedding.weight[pad].any()):
        msg = (
            f"{subject} has a non-zero padding row (padding_idx={pad}); LowRankEmbedding keeps the padding row zero. "
            "Zero it first (embedding.weight.data[padding_idx] = 0) or convert without padding_idx."
        )
        raise ValueError(msg)


# ====================================================================== Adapter
class LowRankAdapter(LowRankLayer):
    r"""LoRA-style adapter: a frozen ``nn.Linear`` / ``nn.Conv2d`` with weight ``W0`` plus a
    low-rank update ``W`` in factors, trained by the geometric optimizers.

    ``forward(x) = base(x) + x W^T`` (linear) or ``base(x) + conv2d(x, W)`` with the
    base's stride, padding and dilation (conv, through :class:`LowRankConv2d`'s two
    convolutions).  The update ``W (out, in)`` or ``W (out, in kh kw)`` is stored as in
    :class:`LowRankLayer` and trained by :class:`LowRankOptimizer` like any low-rank
    layer; the base's parameters get ``requires_grad = False`` (no gradient is ever
    computed for them, the optimizer skips them).  This is the fine-tuning setup of
    the ABC-PSI / GeoLoRA authors: the rank-adaptive geometric integrator trains the
    adapter ``U S V^T`` of a frozen pretrained weight.

    Parameters
    ----------
    base : torch.nn.Linear or torch.nn.Conv2d
        The pretrained layer (``groups = 1`` for a convolution).  It becomes the
        submodule ``base``; its parameters are frozen in place.
    rank : int
        Rank of the update, ``1 <= rank <= min(m, n)``.
    max_rank, capacity : int, optional
        As for :class:`LowRankLayer`.

    Notes
    -----
    Initial update zero: ``S = 0`` with ``U``, ``V`` random orthonormal (QR of Gaussian
    matrices, from torch's global generator), so the adapted model starts as the base
    model (LoRA's ``B = 0``) while the bases span ``r`` directions for the first
    K- and L-steps, whose gradients ``G V`` and ``G^T U`` are then not zero.  ``rank``
    reports the size of the factors, not the rank of the zero update.
    :attr:`weight` is ``W0 + W`` in the base's shape; :attr:`delta_weight` is ``W``.
    The factors have the base weight's dtype and device.  :func:`merge` folds the
    update into ``W0``.
    """

    def __init__(
        self,
        base: torch.nn.Linear | torch.nn.Conv2d,
        rank: int,
        *,
        max_rank: int | None = None,
        capacity: int | None = None,
    ) -> None:
        if isinstance(base, LowRankLayer) or not isinstance(base, (torch.nn.Linear, torch.nn.Conv2d)):
            msg = f"`base` must be a torch.nn.Linear or torch.nn.Conv2d; got {type(base).__name__}."
            raise TypeError(msg)
        if isinstance(base, torch.nn.Conv2d):
            _check_conv(base, "`base`")
        m = base.weight.shape[0]
        n = base.weight[0].numel()
        rank = _check_rank(
            rank,
            min(m, n),
            "min(out, in kh kw)" if isinstance(base, torch.nn.Conv2d) else "min(out_features, in_features)",
        )
        w0 = base.weight
        with _caller_writes_factors():  # the update's factors are written below
            super().__init__(
                n, m, rank, max_rank=max_rank, capacity=capacity, bias=False, device=w0.device, dtype=w0.dtype
            )
        self._base_requires_grad = {name: p.requires_grad for name, p in base.named_parameters()}
        base.requires_grad_(False)
        self.base = base
        with torch.no_grad():
            gen = {"device": self.S.device, "dtype": self.compute_dtype}
            u = torch.linalg.qr(torch.randn(m, rank, **gen)).Q
            v = torch.linalg.qr(torch.randn(n, rank, **gen)).Q
            self._write(u, torch.zeros(rank, rank, **gen), v)

    @property
    def delta_weight(self) -> torch.Tensor:
        """The update ``W`` in the base weight's shape (differentiable, read-only)."""
        return _matrix(self).reshape(self.base.weight.shape)

    @property
    def weight(self) -> torch.Tensor:
        """The adapted weight ``W0 + W`` in the base weight's shape (read-only)."""
        return self.base.weight + self.delta_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.base, torch.nn.Conv2d):
            return self.base(x) + _conv_update(self, self.base, x, None)
        return self.base(x) + _linear_update(self, x)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, max_rank={self.max_rank}"


for _cls in (LowRankConv2d, LowRankEmbedding, LowRankAdapter):
    _cls.__module__ = _PUBLIC_MODULE


# ====================================================================== convert / merge
@dataclasses.dataclass(frozen=True)
class ConvertedLayer:
    """One module replaced by :func:`convert`.

    Attributes
    ----------
    name : str
        Qualified module name (as ``model.named_modules()``).
    kind : str
        ``"linear"``, ``"conv2d"``, ``"embedding"``, ``"adapter-linear"`` or ``"adapter-conv2d"``.
    shape : (int, int)
        The factored matrix ``(m, n)``.
    rank, max_rank : int
    dense_parameters : int
        ``m n``, the weight entries of the dense module.
    factor_parameters : int
        ``(m + n) r + r^2``, the entries of the rank-``r`` factors (what the optimizer trains).
    """

    name: str
    kind: str
    shape: tuple[int, int]
    rank: int
    max_rank: int
    dense_parameters: int
    factor_parameters: int


@dataclasses.dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert` replaced; ``str()`` prints a table."""

    layers: tuple[ConvertedLayer, ...]

    @property
    def names(self) -> list[str]:
        """Qualified names of the converted modules."""
        return [c.name for c in self.layers]

    def __len__(self) -> int:
        return len(self.layers)

    def __str__(self) -> str:
        rows = [("module", "kind", "shape (m, n)", "rank", "max_rank", "dense", "factors")]
        rows += [
            (
                c.name,
                c.kind,
                f"{c.shape[0]} x {c.shape[1]}",
                str(c.rank),
                str(c.max_rank),
                str(c.dense_parameters),
                str(c.factor_parameters),
            )
            for c in self.layers
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        dense = sum(c.dense_parameters for c in self.layers)
        factors = sum(c.factor_parameters for c in self.layers)
        lines.append(f"{len(self.layers)} modules: {dense} dense weight entries -> {factors} factor entries")
        return "\n".join(lines)


def _patterns(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, bytes):
        items = tuple(value)
        if all(isinstance(v, str) for v in items):
            return items
    msg = f"`{name}` must be a name pattern (str), a list of them, or None; got {value!r}."
    raise TypeError(msg)


def _matches(name: str, pattern: str) -> bool:
    """fnmatch on the qualified name or on one of its dotted suffixes (peft's target_modules)."""
    parts = name.split(".")
    return any(fnmatch.fnmatchcase(".".join(parts[i:]), pattern) for i in range(len(parts)))


_CONVERTIBLE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)


def _kind(module: torch.nn.Module, adapter: bool) -> str:
    base = (
        "conv2d"
        if isinstance(module, torch.nn.Conv2d)
        else "embedding"
        if isinstance(module, torch.nn.Embedding)
        else "linear"
    )
    return f"adapter-{base}" if adapter else base


def _set_child(model: torch.nn.Module, name: str, new: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _low_rank_subtree(model: torch.nn.Module) -> set[str]:
    """Names of low-rank layers and of every module inside one (never converted again)."""
    inside = set()
    for name, mod in model.named_modules():
        if isinstance(mod, LowRankLayer):
            inside.update(f"{name}.{sub}" if sub else name for sub, _ in mod.named_modules())
    return inside


def convert(
    model: torch.nn.Module,
    rank: int | dict[str, int],
    *,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    adapter: bool = False,
    max_rank: int | None = None,
    capacity: int | None = None,
) -> tuple[torch.nn.Module, ConversionSummary]:
    r"""Replace the ``nn.Linear`` / ``nn.Conv2d`` / ``nn.Embedding`` modules of ``model`` by low-rank layers.

    In place, like ``peft.get_peft_model``: each selected module becomes
    :class:`LowRankLinear`, :class:`LowRankConv2d` or :class:`LowRankEmbedding`
    initialised with the truncated SVD of its weight (the best rank-``rank``
    approximation; exact when ``rank`` is the full rank), or, with ``adapter=True``, a
    :class:`LowRankAdapter` around it (the module frozen, the update zero).  Bias,
    convolution geometry, ``padding_idx``, dtype, device and training mode carry over;
    a module whose weight is frozen gives a frozen low-rank layer.

    Parameters
    ----------
    model : torch.nn.Module
    rank : int or dict of str to int
        Rank of every converted layer; ``1 <= rank <= min(m, n)`` for each selected
        module (``m, n`` the sizes of its weight matrix, ``n = in kh kw`` for a
        convolution), else a ``ValueError`` naming the module.  A dict maps name
        patterns (as ``include``) to ranks, like peft's ``rank_pattern``: each selected
        module gets the rank of the first pattern that matches it (every selected
        module must match one; end with ``"*"`` for a default).
    include : str or list of str, optional
        Name patterns (:mod:`fnmatch` syntax: ``*``, ``?``, ``[seq]``) matched against
        each module's qualified name as in ``model.named_modules()`` and against its
        dotted suffixes, so ``"fc1"`` selects ``"encoder.fc1"`` (like peft's
        ``target_modules``) and ``"features.*"`` everything under ``features``.  Default:
        every convertible module.  Each pattern must select at least one convertible
        module (else a ``ValueError``, or a ``TypeError`` if it matches only modules of
        other kinds).
    exclude : str or list of str, optional
        Patterns (same syntax) of modules to leave dense.
    adapter : bool, default False
        Wrap ``nn.Linear`` / ``nn.Conv2d`` in :class:`LowRankAdapter` instead of
        replacing the weight (an ``nn.Embedding`` then raises a ``TypeError``).  The
        other parameters of the model are left as they are: freeze them for LoRA's
        setup (peft freezes them).
    max_rank : int, optional
        Largest rank after a basis update (default ``rank``), clamped to each module's
        ``min(m, n)``.
    capacity : int, optional
        As for :class:`LowRankLayer` (default ``2 max_rank``).

    Returns
    -------
    model : torch.nn.Module
        The same object, modified (or the new layer, if ``model`` itself is converted).
    summary : ConversionSummary
        The converted modules with their shapes, ranks and parameter counts.

    Raises
    ------
    TypeError
        Wrong argument kinds; a pattern that matches only unsupported modules;
        ``adapter=True`` on an embedding.
    ValueError
        ``rank`` too large for a selected module; a pattern matching nothing; a grouped
        convolution or an ``nn.Embedding`` with ``max_norm``/``sparse``/a non-zero
        padding row among the selected modules.

    Examples
    --------
    >>> import torch
    >>> from lowrank_core.training.torch import convert, merge
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> model, summary = convert(model, rank=2, include="0")
    >>> type(model[0]).__name__, summary.names
    ('LowRankLinear', ['0'])
    """
    if not isinstance(model, torch.nn.Module):
        msg = f"`model` must be a torch.nn.Module; got {type(model).__name__}."
        raise TypeError(msg)
    if isinstance(rank, dict):
        if not rank or not all(isinstance(k, str) for k in rank):
            msg = f"`rank` as a dict must map name patterns (str) to ranks and not be empty; got {rank!r}."
            raise TypeError(msg)
        ranks = {k: _count(v, f"rank[{k!r}]") for k, v in rank.items()}
    else:
        ranks = {"*": _count(rank, "rank")}
    if not isinstance(adapter, bool):
        msg = f"`adapter` must be True or False; got {adapter!r} of type {type(adapter).__name__}."
        raise TypeError(msg)
    if max_rank is not None:
        max_rank = _count(max_rank, "max_rank")
    includes, excludes = _patterns(include, "include"), _patterns(exclude, "exclude") or ()
    skip = _low_rank_subtree(model)
    modules = [(n, m) for n, m in model.named_modules() if n not in skip]

    def convertible(m: torch.nn.Module) -> bool:
        return isinstance(m, _CONVERTIBLE)

    if includes is None:
        selected = [(n, m) for n, m in modules if convertible(m)]
    else:
        chosen: dict[str, torch.nn.Module] = {}
        for pat in includes:
            hits = [(n, m) for n, m in model.named_modules() if _matches(n, pat)]
            good = [(n, m) for n, m in hits if convertible(m) and n not in skip]
            if not hits:
                names = ", ".join(repr(n) for n, _ in modules[1:8])
                msg = f"`include` pattern {pat!r} matches no module of the model; module names are e.g. {names}."
                raise ValueError(msg)
            if not good:
                kinds = sorted({type(m).__name__ + (" (already low-rank)" if n in skip else "") for n, m in hits})
                msg = (
                    f"`include` pattern {pat!r} matches only modules of unsupported kinds ({', '.join(kinds)}); "
                    "convert replaces torch.nn.Linear, torch.nn.Conv2d and torch.nn.Embedding."
                )
                raise TypeError(msg)
            chosen.update(good)
        selected = [(n, m) for n, m in modules if n in chosen]
    selected = [(n, m) for n, m in selected if not any(_matches(n, p) for p in excludes)]
    if not selected:
        msg = (
            "no module to convert: `include`/`exclude` leave no torch.nn.Linear, torch.nn.Conv2d or torch.nn.Embedding."
        )
        raise ValueError(msg)

    # validate everything first, so that a bad module leaves the model untouched
    plans = []
    for name, mod in selected:
        label = name or "<model>"
        if isinstance(mod, torch.nn.Embedding):
            if adapter:
                msg = f"`adapter=True` wraps nn.Linear and nn.Conv2d only; {label!r} is an nn.Embedding (exclude it)."
                raise TypeError(msg)
            _check_embedding(mod, f"module {label!r} (selected by `include`)")
        if isinstance(mod, torch.nn.Conv2d):
            _check_conv(mod, f"module {label!r} (selected by `include`)")
        m, n = mod.weight.shape[0], mod.weight[0].numel()
        if isinstance(mod, torch.nn.Embedding):
            m, n = mod.weight.shape
        bound = min(m, n)
        r = next((v for k, v in ranks.items() if _matches(name, k)), None)
        if r is None:
            msg = f"`rank`: no pattern of {sorted(ranks)} matches the selected module {label!r}; add one (e.g. '*')."
            raise ValueError(msg)
        if r > bound:
            msg = (
                f"`rank` = {r} exceeds min(m, n) = {bound} of {label!r} ({type(mod).__name__}, weight matrix "
                f"{m} x {n}); lower the rank or exclude the module."
            )
            raise ValueError(msg)
        if max_rank is not None and max_rank < r:
            msg = f"`max_rank` must be at least the rank ({r} for {label!r}); got {max_rank}."
            raise ValueError(msg)
        plans.append((name, mod, m, n, r, min(max_rank, bound) if max_rank is not None else r))

    summary = []
    for name, mod, m, n, r, mr in plans:
        kw = {"max_rank": mr, "capacity": capacity}
        if adapter:
            new: LowRankLayer = LowRankAdapter(mod, r, **kw)
        elif isinstance(mod, torch.nn.Conv2d):
            new = LowRankConv2d.from_conv2d(mod, r, **kw)
        elif isinstance(mod, torch.nn.Embedding):
            new = LowRankEmbedding.from_embedding(mod, r, **kw)
        else:
            new = LowRankLinear.from_linear(mod, r, **kw)
        if not adapter:
            if not mod.weight.requires_grad:
                for f in ("S", "dK", "dL"):
                    getattr(new, f).requires_grad_(False)
            if getattr(mod, "bias", None) is not None and not mod.bias.requires_grad:
                new.bias.requires_grad_(False)
        new.train(mod.training)
        if name:
            _set_child(model, name, new)
        else:
            model = new
        summary.append(ConvertedLayer(name, _kind(mod, adapter), (m, n), r, new.max_rank, m * n, new.num_parameters))
    return model, ConversionSummary(tuple(summary))


def _dense_of(layer: LowRankLayer) -> torch.nn.Module:
    """The dense module with the layer's ``W`` (and bias, geometry), same dtype and device."""
    dt, dev = layer.S.dtype, layer.S.device
    with torch.no_grad():
        w = _matrix(layer).detach()
        if isinstance(layer, LowRankAdapter):
            base = layer.base
            base.weight.copy_(base.weight + w.reshape(base.weight.shape).to(base.weight.dtype))
            for pname, p in base.named_parameters():
                p.requires_grad_(layer._base_requires_grad.get(pname, True))
            return base
        if isinstance(layer, LowRankConv2d):
            dense: torch.nn.Module = torch.nn.Conv2d(
                layer.in_channels,
                layer.out_channels,
                layer.kernel_size,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                bias=layer.bias is not None,
                padding_mode=layer.padding_mode,
                device=dev,
                dtype=dt,
            )
            dense.weight.copy_(w.reshape(dense.weight.shape))
        elif isinstance(layer, LowRankEmbedding):
            dense = torch.nn.Embedding(
                layer.num_embeddings, layer.embedding_dim, padding_idx=layer.padding_idx, device=dev, dtype=dt
            )
            dense.weight.copy_(layer.weight.detach())
        elif type(layer) is LowRankLinear or isinstance(layer, LowRankLinear):
            dense = torch.nn.Linear(
                layer.in_features, layer.out_features, bias=layer.bias is not None, device=dev, dtype=dt
            )
            dense.weight.copy_(w)
        else:
            msg = f"`model` holds a {type(layer).__name__}, a LowRankLayer that merge does not know how to make dense."
            raise TypeError(msg)
        if layer.bias is not None and hasattr(dense, "bias") and dense.bias is not None:
            dense.bias.copy_(layer.bias)
            dense.bias.requires_grad_(layer.bias.requires_grad)
        dense.weight.requires_grad_(layer.S.requires_grad)
    dense.train(layer.training)
    return dense


def merge(model: torch.nn.Module) -> torch.nn.Module:
    r"""Replace every low-rank layer of ``model`` by the dense module with its weight ``W``.

    :class:`LowRankLinear` becomes ``nn.Linear``, :class:`LowRankConv2d` ``nn.Conv2d``
    (same geometry), :class:`LowRankEmbedding` ``nn.Embedding`` (same
    ``padding_idx``), and :class:`LowRankAdapter` its base module with ``W0 + W``
    folded into the weight (the base's ``requires_grad`` flags restored).  Bias, dtype,
    device and training mode carry over.  In place; returns ``model`` (or the dense
    module, if ``model`` itself is a low-rank layer).

    A layer between basis updates is finished first, as by ``eval()``:
    :meth:`LowRankOptimizer.finish_cycle` of the optimizer that trains it (``W`` may
    change by what the truncation discards; the merged model then equals the finished
    low-rank model).  Under ``torch.distributed`` with an open cycle it raises a
    ``RuntimeError``: call ``optimizer.finish_cycle()`` on every rank first.  The
    optimizer keeps references to the removed layers: build a new one to go on training.

    Examples
    --------
    >>> import torch
    >>> from lowrank_core.training.torch import LowRankLinear, merge
    >>> model = torch.nn.Sequential(LowRankLinear(8, 4, rank=2))
    >>> type(merge(model)[0]).__name__
    'Linear'
    """
    if not isinstance(model, torch.nn.Module):
        msg = f"`model` must be a torch.nn.Module; got {type(model).__name__}."
        raise TypeError(msg)
    layers = []
    for name, mod in model.named_modules():
        if isinstance(mod, LowRankLayer) and not any(name.startswith(f"{n}.") for n, _ in layers):
            layers.append((name, mod))
    for _, layer in layers:
        layer._finish_through_owner("merge()")
    for name, layer in layers:
        dense = _dense_of(layer)
        if name:
            _set_child(model, name, dense)
        else:
            model = dense
    return model


for _cls in (ConvertedLayer, ConversionSummary):
    _cls.__module__ = _PUBLIC_MODULE
for _fn in (convert, merge):
    _fn.__module__ = _PUBLIC_MODULE
