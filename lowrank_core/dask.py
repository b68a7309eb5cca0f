r"""Scale out on Dask: tall factors chunked by rows, stacks chunked over workers.

Needs the ``dask`` extra (``pip install "lowrank-core[dask]"``: ``dask[array,distributed]``).
Nothing else in ``lowrank_core`` imports Dask unless a state's factors are Dask arrays.

Two ways to run on a cluster (a :class:`distributed.LocalCluster`, or an existing one
through ``distributed.Client(address)``; with a default client every computation below
runs there):

* **Tall factors** — :func:`lowrank_core.solve` on a :class:`~lowrank_core.LowRank`
  whose ``U (m, r)`` and ``V (n, r)`` are Dask arrays chunked by rows and whose core
  ``S (r, r)`` is a one-chunk Dask array (:func:`from_numpy` builds one).  Every
  integrator runs; thin QRs are TSQRs over the row chunks, small SVDs run in memory, the
  state is persisted once per step (``sol.stats["dask_syncs"]``, ``["dask_persists"]``).
  Operators that act row-block-wise (:class:`StencilOperator`) exchange halos only.
* **Stacks** — :func:`solve_stack` on a stacked :class:`~lowrank_core.LowRank` whose
  factors ``(B, m, r)`` are chunked along the batch axis: each chunk is solved by the
  NumPy path (batched kernels) on a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._dask import TSQR_IMPLEMENTATIONS, tsqr, use_tsqr
from ._dask_operators import StencilOperator, advection_diffusion
from ._integrate import _DEFAULT, Solution, _resolve_method, solve
from ._lowrank import LowRank
from ._namespace import namespace_of_named
from ._problem import AbstractMatrixODE

__all__ = [
    "TSQR_IMPLEMENTATIONS",
    "StencilOperator",
    "advection_diffusion",
    "from_numpy",
    "solve_stack",
    "to_numpy",
    "tsqr",
    "use_tsqr",
]


def _require_dask() -> Any:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - exercised only without the extra
        msg = 'lowrank_core.dask needs Dask: install the dask extra, python -m pip install "lowrank-core[dask]"'
        raise ImportError(msg) from None
    return da


def from_numpy(Y: LowRank, row_chunks: int | None = None, *, batch_chunks: int | None = None) -> LowRank:
    """A Dask copy of a NumPy state: tall factors chunked by rows, or a stack chunked by members.

    Parameters
    ----------
    Y : LowRank
        NumPy factors ``U (..., m, r)``, ``S (..., r, r)``, ``V (..., n, r)``.
    row_chunks : int, optional
        For a 2-D state: rows per chunk of ``U`` and ``V`` (each at least ``2 r`` is
        best: the augmentation QRs are ``2r`` wide).  Default: one chunk.
    batch_chunks : int, optional
        For a stack (one batch axis): members per chunk (default: one chunk).

    Returns
    -------
    LowRank
        Dask factors; ``S`` in one chunk (2-D) or chunked as the members (stack).
    """
    da = _require_dask()
    if not isinstance(Y, LowRank):
        msg = f"`Y` must be a LowRank of NumPy factors; got {type(Y).__name__}."
        raise TypeError(msg)
    if Y.batch_shape:
        if len(Y.batch_shape) != 1 or row_chunks is not None:
            msg = (
                f"`Y` is a stack of shape {Y.shape}: give `batch_chunks` (members per chunk) for one batch axis, "
                "not `row_chunks`."
            )
            raise ValueError(msg)
        b = batch_chunks or Y.batch_shape[0]
        return LowRank(
            *(da.from_array(x, chunks=(b, *x.shape[1:])) for x in (Y.U, Y.S, Y.V)),
            check=False,
        )
    if batch_chunks is not None:
        msg = f"`batch_chunks` applies to stacks; `Y` is one matrix of shape {Y.shape}. Give `row_chunks`."
        raise ValueError(msg)
    m, n = Y.shape
    c = row_chunks or max(m, n)
    U = da.from_array(Y.U, chunks=(min(c, m), Y.rank))
    V = da.from_array(Y.V, chunks=(min(c, n), Y.rank))
    S = da.from_array(Y.S, chunks=Y.S.shape)
    return LowRank(U, S, V, check=False)


def to_numpy(Y: LowRank) -> LowRank:
    """The NumPy state of a Dask state (computes ``U``, ``S``, ``V`` together: one gather)."""
    import dask

    U, S, V = dask.compute(Y.U, Y.S, Y.V)
    return LowRank(np.asarray(U), np.asarray(S), np.asarray(V), check=False)


# ----------------------------------------------------------------------------- stacks
def _solve_chunk(
    problem: Any, start: int, U: Any, S: Any, V: Any, t_span: Any, dt: Any, options: dict[str, Any]
) -> dict[str, Any]:
    """Solve the members ``start : start + len(U)`` with the NumPy path (on a worker)."""
    if not isinstance(problem, AbstractMatrixODE):
        problem = problem(slice(start, start + U.shape[0]))
    sol = solve(problem, LowRank(U, S, V, check=False), t_span, dt, save_every=10**9, **options)
    stats = {
        k: (dict(v) if isinstance(v, dict) else v)
        for k, v in sol.stats.items()
        if isinstance(v, (int, float, dict)) and not isinstance(v, bool)
    }
    return {"U": sol.Y.U, "S": sol.Y.S, "V": sol.Y.V, "stats": stats, "step_ranks": sol.step_ranks}


def _summary(part: dict[str, Any]) -> dict[str, Any]:
    return {"stats": part["stats"], "step_ranks": part["step_ranks"], "rank": part["U"].shape[-1]}


def _padded(part: dict[str, Any], rank: int, name: str) -> Any:
    """Factor ``name`` of a chunk widened to ``rank`` columns: ``S`` with zeros, ``U``
    and ``V`` with orthonormal complements (``Y`` unchanged exactly)."""
    x = part[name]
    have = x.shape[-1]
    if have == rank:
        return x
    if name == "S":
        out = np.zeros((*x.shape[:-2], rank, rank), dtype=x.dtype)
        out[..., :have, :have] = x
        return out
    rng = np.random.default_rng(0)
    filler = rng.standard_normal((*x.shape[:-1], rank - have)).astype(x.dtype)
    q, _ = np.linalg.qr(np.concatenate([x, filler], axis=-1))
    q[..., :have] = x  # the first columns of the QR span range(x): keep x itself
    return q


def solve_stack(
    problem: AbstractMatrixODE | Callable[[slice], AbstractMatrixODE],
    Y0: LowRank,
    t_span: tuple[float, float],
    dt: float,
    method: Any = "abc-psi",
    **options: Any,
) -> Solution:
    r"""Solve a stack of independent problems whose batch axis is chunked over the workers.

    Each chunk of members is one task: :func:`lowrank_core.solve` on the chunk's NumPy
    factors (the batched kernels), on the worker that holds it.  Only the chunks' ranks
    and counters come back to the driver (one synchronisation); the final factors stay
    on the workers as Dask arrays chunked like ``Y0``.

    Parameters
    ----------
    problem : AbstractMatrixODE or callable ``problem(members) -> AbstractMatrixODE``
        A problem shared by every member (its operators 2-D, or broadcasting against
        any chunk), or a factory called on the worker with the ``slice`` of the
        chunk's members that returns the problem of those members.  Sent to the
        workers, so it must pickle.
    Y0 : LowRank
        ``U (B, m, r)``, ``S (B, r, r)``, ``V (B, n, r)`` Dask arrays chunked along the
        batch axis only (:func:`from_numpy` with ``batch_chunks``).
    t_span, dt, method, **options
        As :func:`lowrank_core.solve` (``save_every`` is not accepted: only the final
        state is kept).

    Returns
    -------
    Solution
        ``Y`` (Dask factors chunked as ``Y0``), ``t = [t0, t1]``, ``Ys = [Y0, Y]``,
        ``stats`` (the counters of the chunks' solves summed, the decompositions per
        shape included: the work each chunk did at its own rank; ``wall_time`` the
        driver's, ``dask_syncs`` and ``chunks``), ``step_ranks`` (per step, the largest
        over chunks).

    Notes
    -----
    A stack shares one rank.  In memory it is the largest any member needs; here each
    chunk chooses its own (the largest its members need), and chunks that end with a
    smaller rank than the largest are padded with zero singular values (orthonormal
    complements in ``U``, ``V``; ``Y`` unchanged).  With a fixed rank, or when the
    chunks agree, the result equals the in-memory stacked solve.
    """
    import time

    import dask

    da = _require_dask()
    if not isinstance(Y0, LowRank):
        msg = f"`Y0` must be a LowRank of Dask factors; got {type(Y0).__name__}."
        raise TypeError(msg)
    if not isinstance(problem, AbstractMatrixODE) and not callable(problem):
        msg = (
            f"`problem` must be an AbstractMatrixODE or a callable problem(members) -> AbstractMatrixODE; "
            f"got {type(problem).__name__}."
        )
        raise TypeError(msg)
    import array_api_compat

    if not array_api_compat.is_dask_array(Y0.U):
        msg = (
            f"`Y0` must have Dask factors chunked along the batch axis; got {type(Y0.U).__module__} arrays. "
            "Build it with lowrank_core.dask.from_numpy(Y, batch_chunks=...), or call lowrank_core.solve."
        )
        raise TypeError(msg)
    namespace_of_named(U=Y0.U, S=Y0.S, V=Y0.V)
    if len(Y0.batch_shape) != 1:
        msg = f"`Y0` must be a stack with one batch axis (B, m, n); got shape {Y0.shape}."
        raise ValueError(msg)
    if "save_every" in options:
        msg = "`save_every` is not accepted by solve_stack (only the final state is kept); drop it."
        raise TypeError(msg)
    start_time = time.perf_counter()
    options = {"method": method, **options}
    starts = np.cumsum((0, *Y0.U.chunks[0][:-1]))
    parts = [
        dask.delayed(_solve_chunk, pure=True)(problem, int(s), u, sc, v, t_span, dt, options)
        for s, u, sc, v in zip(
            starts,
            Y0.U.to_delayed().ravel(),
            Y0.S.to_delayed().ravel(),
            Y0.V.to_delayed().ravel(),
            strict=True,
        )
    ]
    parts = list(dask.persist(*parts))
    summaries = dask.compute(*(dask.delayed(_summary)(p) for p in parts))
    rank = max(s["rank"] for s in summaries)
    factors = {}
    for name, like in (("U", Y0.U), ("S", Y0.S), ("V", Y0.V)):
        blocks = []
        for p, rows in zip(parts, like.chunks[0], strict=True):
            shape = (rows, *like.shape[1:-1], rank) if name != "S" else (rows, rank, rank)
            blocks.append(da.from_delayed(dask.delayed(_padded)(p, rank, name), shape=shape, dtype=like.dtype))
        factors[name] = da.concatenate(blocks, axis=0)
    U, S, V = dask.persist(factors["U"], factors["S"], factors["V"])
    Y = LowRank._trusted(U, S, V, Y0.xp)
    stats: dict[str, Any] = {}
    for s in summaries:  # the chunks' own work (at their own ranks, before any padding), summed
        for k, v in s["stats"].items():
            if k in ("steps", "wall_time"):
                continue
            if isinstance(v, dict):  # decompositions per shape
                merged = stats.setdefault(k, {})
                for shape, count in v.items():
                    merged[shape] = merged.get(shape, 0) + count
            else:
                stats[k] = stats.get(k, 0) + v
    stats["steps"] = summaries[0]["stats"].get("steps", 0)
    stats["wall_time"] = time.perf_counter() - start_time
    stats["dask_syncs"] = 1
    stats["chunks"] = len(parts)
    step_ranks = [max(col) for col in zip(*(s["step_ranks"] for s in summaries), strict=True)]
    t0, t1 = (float(v) for v in t_span)
    integrator = _resolve_method(method, *(options.get(k, _DEFAULT) for k in _RESOLVE_KEYS))
    return Solution(
        Y=Y,
        t=np.asarray([t0, t1]),
        Ys=[Y0, Y],
        ranks=[Y0.rank, rank],
        stats=stats,
        method=integrator,
        step_ranks=step_ranks,
    )


#: The options of :func:`lowrank_core.solve` that configure the integrator (in the order
#: of ``_resolve_method``'s parameters).
_RESOLVE_KEYS = ("substep", "tol", "rtol", "min_rank", "max_rank", "variant", "truncation_rule", "conserve")
