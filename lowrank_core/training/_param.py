r"""The trainable low-rank parameter and the checks on the gradients it receives.

A :class:`LowRankParam` stores the *current representation* of a weight matrix

.. math::

    W = U S V^H + dK\, V^H + U\, dL^H ,

with ``U (..., m, p)``, ``S (..., p, q)``, ``V (..., n, q)``, ``dK (..., m, q)`` and
``dL (..., n, p)``.  After a basis update ``U`` and ``V`` have orthonormal columns,
``p = q = r`` and ``dK = dL = 0``, so ``W = U S V^H`` is a point of the rank-``r``
manifold.  Between basis updates the optimizers move ``S``, ``dK`` and ``dL`` only
(``K = U S + dK`` is the K-step unknown with ``V`` frozen, ``L = V S^H + dL`` the L-step
unknown with ``U`` frozen), so no QR is needed there.

One backward pass through this representation gives all three gradients an optimizer
can ask for, for any loss ``\mathcal L(W)`` with ``G = \nabla_W \mathcal L``:

.. math::

    \nabla_{dK}\mathcal L = G V = \nabla_K, \qquad
    \nabla_{dL}\mathcal L = G^H U = \nabla_L, \qquad
    \nabla_S \mathcal L = U^H G V .

No ``S^{-1}`` appears (unlike ``\nabla_U = G V S^H``), which is what makes the
integrators robust to small singular values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .._lowrank import LowRank, factored_batch_shape, factored_shape
from .._namespace import conj_transpose, is_floating_dtype, namespace_of

__all__ = ["LowRankParam", "NonFiniteGradientError"]


class NonFiniteGradientError(FloatingPointError):
    """A gradient passed to an optimizer contains NaN or Inf.

    Attributes
    ----------
    step : int
        Index (0-based) of the optimizer step that received the gradient.
    name : str
        Which gradient (``"grad"``, ``"grad_K"``, ``"grad_L"`` or ``"grad_S"``).
    """

    def __init__(self, message: str, *, step: int, name: str) -> None:
        super().__init__(f"{message} (optimizer step {step})")
        self.step = step
        self.name = name


@dataclass(frozen=True, eq=False)
class LowRankParam:
    r"""A low-rank trainable weight: factors, tangent increments and optimizer state.

    Build it with an optimizer's ``init`` (``opt.init(Y)`` for a :class:`~lowrank_core.LowRank`
    ``Y``); every optimizer step returns a new one and never modifies the old one.

    Attributes
    ----------
    U : array, shape (..., m, p)
    S : array, shape (..., p, q)
    V : array, shape (..., n, q)
    dK : array, shape (..., m, q)
    dL : array, shape (..., n, p)
        The weight is ``W = U S V^H + dK V^H + U dL^H`` (module docstring).
    state : dict of str to array
        Optimizer state (momentum and second-moment coordinates, a stored K-step result).
    step : int
        Number of optimizer steps taken so far.
    xp : namespace
        Array namespace of the factors.
    """

    U: Any
    S: Any
    V: Any
    dK: Any
    dL: Any
    state: dict = field(default_factory=dict)
    step: int = 0
    xp: Any = None

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        # The namespace is a module, which does not pickle; it is found again from U.
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "xp"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "xp", namespace_of(state["U"]))

    # ------------------------------------------------------------------ views
    shape = factored_shape
    batch_shape = factored_batch_shape

    @property
    def rank(self) -> int:
        """Rank ``r`` of the last basis update (columns of ``V``; ``U`` has ``2r`` in an augmented phase)."""
        return int(min(self.U.shape[-1], self.V.shape[-1]))

    @property
    def on_manifold(self) -> bool:
        """True right after a basis update (``p = q``, ``dK = dL = 0`` by construction)."""
        return self.U.shape[-1] == self.V.shape[-1] and "K1" not in self.state and self._zero_increments

    @property
    def _zero_increments(self) -> bool:
        xp = self.xp
        return not (bool(xp.any(self.dK != 0)) or bool(xp.any(self.dL != 0)))

    @property
    def num_parameters(self) -> int:
        """Stored weight entries per matrix on the manifold: ``(m + n) r + r^2``."""
        m, n, r = self.shape[-2], self.shape[-1], self.rank
        return (m + n) * r + r * r

    def to_dense(self) -> Any:
        """The weight ``W`` of shape ``(..., m, n)`` (for tests and small problems)."""
        xp = self.xp
        return (self.U @ self.S + self.dK) @ conj_transpose(self.V, xp) + self.U @ conj_transpose(self.dL, xp)

    def lowrank(self) -> LowRank:
        """``W`` as a :class:`~lowrank_core.LowRank` (only right after a basis update).

        Raises
        ------
        ValueError
            In the middle of a phase, where ``W`` is not in ``U S V^H`` form.
        """
        if not self.on_manifold:
            msg = (
                f"the parameter is between basis updates (step {self.step}); `lowrank()` is only "
                "defined right after one. Use `to_dense()` or step to the end of the cycle."
            )
            raise ValueError(msg)
        return LowRank._trusted(self.U, self.S, self.V, self.xp)

    def replace(self, **changes: Any) -> LowRankParam:
        """A copy with some fields replaced (arrays are shared, never modified)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ gradients
    def factor_grads(self, G: Any) -> dict[str, Any]:
        """``grad_K = G V``, ``grad_L = G^H U`` and ``grad_S = U^H G V`` from a full gradient ``G (..., m, n)``."""
        xp = self.xp
        GV = G @ self.V
        return {"K": GV, "L": conj_transpose(G, xp) @ self.U, "S": conj_transpose(self.U, xp) @ GV}

    def check_grads(
        self, grad: Any, grads: dict[str, Any], needed: tuple[str, ...], *, check_finite: bool = True
    ) -> dict[str, Any]:
        """Validate the gradients of one step; return ``{"K": ..., "L": ..., "S": ...}`` (needed ones).

        ``check_finite=False`` skips the NaN/Inf scan (it reads a flag back to the host,
        a synchronisation on GPUs; the PyTorch optimizer does its own deferred check).

        Raises
        ------
        TypeError
            Wrong array library or dtype.
        ValueError
            Wrong shape, or a needed gradient is missing.
        NonFiniteGradientError
            NaN or Inf in a gradient.
        """
        expected = {"K": self.dK.shape, "L": self.dL.shape, "S": self.S.shape}
        if grad is not None:
            if any(g is not None for g in grads.values()):
                msg = (
                    "pass either the full gradient `grad` or the factor gradients `grad_K`/`grad_L`/`grad_S`, not both."
                )
                raise ValueError(msg)
            self._check_array(grad, "grad", self.shape)
            if check_finite:
                self._check_finite(grad, "grad")
            return self.factor_grads(grad)
        out = {}
        for key in needed:
            g = grads.get(key)
            name = f"grad_{key}"
            if g is None:
                msg = (
                    f"`{name}` is required at optimizer step {self.step} (this step needs "
                    f"{', '.join('grad_' + k for k in needed)}); got None. Pass it, or pass the full gradient `grad`."
                )
                raise ValueError(msg)
            self._check_array(g, name, expected[key])
            if check_finite:
                self._check_finite(g, name)
            out[key] = g
        return out

    def _check_array(self, g: Any, name: str, shape: tuple) -> None:
        xp = self.xp
        if not hasattr(g, "shape") or not hasattr(g, "dtype"):
            msg = (
                f"`{name}` must be an array of the parameter's library ({getattr(xp, '__name__', xp)}); got "
                f"{type(g).__module__}.{type(g).__name__}. Convert it with that library first."
            )
            raise TypeError(msg)
        try:
            g_xp = namespace_of(g)
        except TypeError:
            g_xp = None
        if g_xp is not xp:
            msg = (
                f"`{name}` must come from the same array library as the parameter "
                f"({getattr(xp, '__name__', xp)}); got {type(g).__module__}.{type(g).__name__}."
            )
            raise TypeError(msg)
        if not is_floating_dtype(g.dtype, xp) or g.dtype != self.S.dtype:
            msg = f"`{name}` must have the parameter's dtype {self.S.dtype}; got {g.dtype}. Cast it first."
            raise TypeError(msg)
        if tuple(g.shape) != tuple(shape):
            msg = (
                f"`{name}` must have shape {tuple(shape)} at optimizer step {self.step}; got "
                f"{tuple(g.shape)}. The factor shapes change at basis updates: take the gradient "
                "with respect to the parameter's current U, S, V, dK, dL."
            )
            raise ValueError(msg)

    def _check_finite(self, g: Any, name: str) -> None:
        xp = self.xp
        if math.prod(g.shape) and not bool(xp.all(xp.isfinite(g))):
            msg = f"`{name}` contains NaN or Inf"
            raise NonFiniteGradientError(msg, step=self.step, name=name)
