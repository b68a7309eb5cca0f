"""The measurement behind ``lowrank-core bench training-cost``: one cycle of each low-rank
optimizer of :mod:`lowrank_core.training` at the layer shapes of a 784-1024-1024-10 MLP.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._qr_savings import Progress, _shapes

__all__ = ["MLP_LAYERS", "TRAINING_RANKS", "run_training_cost"]

#: Layer shapes ``(out, in)`` of the 784 -> 1024 -> 1024 -> 10 MLP whose weights are
#: low rank (the 10 x 1024 output layer is at full rank 10 for any r >= 10, so it stays dense).
MLP_LAYERS: tuple[tuple[int, int], ...] = ((1024, 784), (1024, 1024))
#: Ranks of the training-cost benchmark.
TRAINING_RANKS: tuple[int, ...] = (32, 128)


def _training_namespace() -> tuple[str, Any]:
    """``("torch", array_api_compat.torch)`` when PyTorch is installed, else NumPy's."""
    if importlib.util.find_spec("torch") is not None:
        return "torch", importlib.import_module("array_api_compat.torch")
    return "numpy", importlib.import_module("array_api_compat.numpy")


def _best_time(fn: Callable[[], Any], repeat: int) -> float:
    """Shortest of ``repeat`` timed calls after a warm-up (the least disturbed by other load)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run_training_cost(
    *,
    layers: Sequence[tuple[int, int]] = MLP_LAYERS,
    ranks: Sequence[int] = TRAINING_RANKS,
    optimizers: Sequence[str] | None = None,
    repeat: int = 5,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Time one cycle of each low-rank optimizer at the given layer shapes and ranks.

    A cycle is ``len(optimizer.phases)`` optimizer steps (``basis_update_every=1``): one
    basis update, the unit that costs the decompositions.  The full-matrix gradient is a
    fixed random matrix (its computation, the same for every method, is left out).  The
    time of the decompositions is measured apart: each QR and SVD shape the cycle used,
    timed alone on random matrices of that shape, times its count; ``products_ms`` is
    the rest (gradient projections, Galerkin products, basis products).  Rank-adaptive
    optimizers run without a tolerance, so every method stays at rank ``r``.

    Returns
    -------
    list of dict
        One row per (layer, rank, optimizer): ``backend``, ``m``, ``n``, ``rank``,
        ``optimizer``, ``steps`` (per cycle), ``qr``, ``svd``, their shapes and flops,
        ``cycle_ms`` (shortest of ``repeat`` timed cycles), ``qr_ms``, ``svd_ms``,
        ``products_ms``.
    """
    import numpy as np

    from .. import Counters
    from .._lowrank import LowRank
    from ..training import OPTIMIZERS

    backend, xp = _training_namespace()
    names = list(optimizers or OPTIMIZERS)
    unknown = [name for name in names if name not in OPTIMIZERS]
    if unknown:
        msg = f"unknown optimizer {unknown[0]!r} in `optimizers`; choose from {', '.join(OPTIMIZERS)}."
        raise ValueError(msg)
    rng = np.random.default_rng(0)
    jobs = [(shape, r, name) for shape in layers for r in ranks for name in names]
    rows = []
    decomposition_ms: dict[tuple[str, tuple[int, int]], float] = {}

    def decomposition_time(op: str, shape: tuple[int, int]) -> float:
        if (op, shape) not in decomposition_ms:
            A = xp.asarray(rng.standard_normal(shape))
            fn = (lambda: xp.linalg.qr(A)) if op == "qr" else (lambda: xp.linalg.svd(A, full_matrices=False))
            decomposition_ms[(op, shape)] = 1e3 * _best_time(fn, repeat)
        return decomposition_ms[(op, shape)]

    for done, ((m, n), r, name) in enumerate(jobs):
        if progress is not None:
            progress(done, len(jobs), f"{m}x{n} r={r} {name}")
        W = rng.standard_normal((m, n)) / math.sqrt(n)
        Y0 = LowRank.from_dense(xp.asarray(W), rank=r)
        G = xp.asarray(rng.standard_normal((m, n)) * 1e-3)
        opt = OPTIMIZERS[name](1e-2)
        param0 = opt.init(Y0)
        counters = Counters()

        def cycle(counters: Any = None, opt: Any = opt, param0: Any = param0, G: Any = G) -> Any:
            param = param0
            for _ in range(opt.cycle_length):
                param = opt.step(param, grad=G, counters=counters, check_finite=False)
            return param

        cycle(counters)
        cycle_ms = 1e3 * _best_time(cycle, repeat)
        qr_shapes, svd_shapes = dict(counters.qr_shapes), dict(counters.svd_shapes)
        qr_ms = sum(c * decomposition_time("qr", s) for s, c in qr_shapes.items())
        svd_ms = sum(c * decomposition_time("svd", s) for s, c in svd_shapes.items())
        rows.append({
            "backend": backend, "m": m, "n": n, "rank": r, "optimizer": name, "steps": opt.cycle_length,
            "qr": counters.qr, "svd": counters.svd, "qr_shapes": _shapes(qr_shapes), "svd_shapes": _shapes(svd_shapes),
            "qr_flops": counters.qr_flops, "svd_flops": counters.svd_flops,
            "cycle_ms": cycle_ms, "qr_ms": qr_ms, "svd_ms": svd_ms, "products_ms": max(cycle_ms - qr_ms - svd_ms, 0.0),
        })  # fmt: skip
    if progress is not None:
        progress(len(jobs), len(jobs), "done")
    return rows
