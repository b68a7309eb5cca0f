r"""Dask support: tall factors chunked by rows, decompositions by TSQR, one cut per step.

This module is imported by the library only when a state's factors are Dask arrays
(``dask`` is an optional dependency: ``pip install "lowrank-core[dask]"``).  The public
entry points are in :mod:`lowrank_core.dask`.

A *tall-factor state* is a :class:`~lowrank_core.LowRank` whose ``U (m, r)`` and
``V (n, r)`` are ``dask.array`` arrays chunked by rows only (one chunk along the rank
axis) and whose core ``S (r, r)`` is a one-chunk Dask array (:func:`lowrank_core.dask.from_numpy`
builds one).  Every integrator runs on it through the same code as on NumPy:

* products are Dask's (factor-wise, lazily: ``U S`` is a ``map_blocks``, ``U^H K`` a
  tree reduction over the row chunks);
* a thin QR of a tall ``(p, k)`` array is a TSQR (:func:`tsqr`): a QR of every row
  chunk on the worker that holds it, a QR of the stacked ``R`` factors in one task, and
  the products ``Q_i Q_{2,i}`` on the workers;
* a thin SVD of a tall array is a TSQR followed by the SVD of its small ``R`` in the
  driver's memory (``U = Q u``); a small (one-chunk) QR or SVD is computed in memory;
* after each step the state is persisted (:func:`cut`), which replaces its task graph by
  one key per chunk: the graph of a step never grows with the step count.

Synchronisations (the driver waits for a result) are counted per solve in
``sol.stats["dask_syncs"]``, graph cuts (persists) in ``sol.stats["dask_persists"]``;
the numbers per method are in ``docs/dask.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import array_api_compat

__all__ = [
    "TSQR_IMPLEMENTATIONS",
    "check_factors",
    "cut",
    "dask_scope",
    "is_dask_namespace",
    "is_worker_failure",
    "thin_qr",
    "thin_svd",
    "tsqr",
]

#: The two TSQR implementations (``"dask"``: :func:`dask.array.linalg.tsqr`; ``"kernels"``:
#: ours, leaves by ``lowrank_kernels.batched_qr``).  The default is the faster one in
#: ``bench/dask_scale.py --tsqr`` (see ``docs/dask.md``).
TSQR_IMPLEMENTATIONS = ("kernels", "dask")


def is_dask_namespace(xp: Any) -> bool:
    """Whether ``xp`` is array-api-compat's Dask namespace (false when Dask is absent)."""
    return xp is not None and bool(array_api_compat.is_dask_namespace(xp))


def _kind(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__qualname__}"


# ----------------------------------------------------------------------------- checks
def check_factors(U: Any, S: Any, V: Any) -> None:
    """Chunking rules of Dask factors (raise ``ValueError`` naming the factor).

    * A tall-factor state (``U``, ``V`` 2-D): ``U`` and ``V`` chunked by rows only (one
      chunk along the rank axis), ``S`` one chunk.
    * A stack (batch axes ``...``): every factor chunked along the batch axes only (the
      matrices of a member in one chunk), with the same batch chunks in ``U``, ``S``
      and ``V``.
    """
    for name, x in (("U", U), ("V", V)):
        if len(x.chunks[-1]) != 1:
            msg = (
                f"`{name}` is chunked along its rank axis (chunks {x.chunks[-1]} over {x.shape[-1]} columns); "
                f"a Dask factor must be chunked by rows only, e.g. {name}.rechunk({{-1: -1}}) "
                f"(chunks (row_chunks, {x.shape[-1]}))."
            )
            raise ValueError(msg)
    if any(len(c) != 1 for c in S.chunks[-2:]):
        msg = (
            f"`S` must be one chunk in its last two axes (an r x r core held whole); got chunks {S.chunks}. "
            "Use S.rechunk({-2: -1, -1: -1}) or lowrank_core.dask.from_numpy."
        )
        raise ValueError(msg)
    if U.ndim > 2:
        for name, x in (("U", U), ("V", V)):
            if len(x.chunks[-2]) != 1:
                msg = (
                    f"`{name}` of a stack (shape {tuple(x.shape)}) must be chunked along its batch axes only; got "
                    f"row chunks {x.chunks[-2]}. Rechunk with {name}.rechunk({{-2: -1, -1: -1}}) "
                    "(tall factors with row chunks are supported for 2-D states only)."
                )
                raise ValueError(msg)
        batch = U.chunks[:-2]
        for name, x in (("S", S), ("V", V)):
            if x.chunks[:-2] != batch:
                msg = (
                    f"`{name}` must have the batch chunks of `U` {batch}; got {x.chunks[:-2]}. "
                    "Chunk U, S and V alike along the batch axes."
                )
                raise ValueError(msg)


# ----------------------------------------------------------------------------- session
@dataclass
class _Session:
    """Per-solve tallies (in a ContextVar: scoped to the solve, thread and task)."""

    syncs: int = 0
    persists: int = 0
    #: Whether tall QRs persist their outputs: needed only when the step synchronises
    #: after them (rank-adaptive methods), else the end-of-step cut computes them once.
    #: Learned from the previous step (True for the first).
    persist_qr: bool = True
    step_syncs: int = 0
    base: Any = None  # the scheduler ``get`` in force when the solve started
    client: Any = None  # the distributed Client, if one is the default


_SESSION: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("lowrank_core_dask", default=None)


class _CountingGet:
    """A scheduler ``get`` that counts the computations (synchronisations) it runs."""

    def __init__(self, session: _Session) -> None:
        self.session = session

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        self.session.syncs += 1
        return self.session.base(dsk, keys, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        # It sits in dask.config during a solve, and the config is pickled into every worker
        # process started then (a nanny restarting a lost worker; a cluster scaling up): the
        # session holds the Client, which does not pickle, and the restart failed.  The count
        # belongs to this process; in another one it is no scheduler (Dask's default).
        return (_no_scheduler, ())


def _no_scheduler() -> None:
    return None


def _default_client() -> Any:
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


@contextlib.contextmanager
def dask_scope(Y0: Any) -> Iterator[_Session | None]:
    """Within the block (a solve of ``Y0``), count Dask synchronisations; nothing for
    other backends.  Dask is imported only when ``Y0`` is a Dask state."""
    if not is_dask_namespace(getattr(Y0, "xp", None)):  # (a bad Y0 is refused by the solve)
        yield None
        return
    import dask
    import dask.base

    session = _Session(base=dask.base.get_scheduler(collections=[Y0.U]), client=_default_client())
    token = _SESSION.set(session)
    try:
        # Low-level fusion renames keys (``getitem`` -> ``matmul-getitem`` aliases), so a
        # key persisted in one submission would come back with another definition in the
        # next: the distributed scheduler warns of deadlocks.  Keys are kept as built.
        with dask.config.set({"scheduler": _CountingGet(session), "optimization.fuse.active": False}):
            yield session
    finally:
        _SESSION.reset(token)


def session_stats() -> dict[str, int]:
    """``{"dask_syncs": ..., "dask_persists": ...}`` of the current solve (empty outside one)."""
    session = _SESSION.get()
    if session is None:
        return {}
    return {"dask_syncs": session.syncs, "dask_persists": session.persists}


def persist(*arrays: Any) -> tuple[Any, ...]:
    """Persist ``arrays`` together (a graph cut): on the cluster of the default client
    (which returns at once), else with the scheduler of the solve (which blocks)."""
    import dask

    session = _SESSION.get()
    if session is not None:
        session.persists += 1
    if session is not None and session.client is not None:
        return tuple(session.client.persist(list(arrays)))
    scheduler = session.base if session is not None else None
    return dask.persist(*arrays, scheduler=scheduler)


def compute(*arrays: Any) -> tuple[Any, ...]:
    """Compute ``arrays`` together (one synchronisation, counted by the solve's scheduler)."""
    import dask

    return dask.compute(*arrays)


def cut(Y: Any, t: float, step: int, check_finite: bool) -> Any:
    """The state ``Y`` after a step: persisted (its graph replaced by one key per chunk)
    and, with ``check_finite``, checked for NaN/Inf in one synchronisation."""
    from ._errors import LowRankIntegrationError
    from ._lowrank import LowRank

    if not is_dask_namespace(Y.xp):
        return Y
    session = _SESSION.get()
    if session is not None:
        session.persist_qr = session.step_syncs > 0
        session.step_syncs = 0
    U, S, V = persist(Y.U, Y.S, Y.V)
    if check_finite:
        xp = Y.xp
        flags = compute(*(xp.all(xp.isfinite(x)) for x in (U, S, V)))
        names = [n for n, ok in zip("USV", flags, strict=True) if not bool(ok)]
        if names:
            msg = (
                f"non-finite values in factor{'s' if len(names) > 1 else ''} {', '.join(names)} after the step; the "
                "right-hand side returned NaN/Inf or the step size is too large for the substep solver"
            )
            raise LowRankIntegrationError(msg, t=t, step=step)
    return LowRank._trusted(U, S, V, Y.xp)


def is_worker_failure(exc: BaseException) -> bool:
    """An error of the Dask cluster rather than of the computation: a worker lost
    (``KilledWorker``), a connection closed, a computation cancelled or timed out."""
    names = {"KilledWorker", "CommClosedError", "FutureCancelledError", "CancelledError", "TimeoutError"}
    mods = ("distributed", "asyncio", "concurrent")
    return any(type(e).__name__ in names and type(e).__module__.split(".")[0] in mods for e in _chain(exc))


def _same(block: Any) -> Any:
    return block


def resumable(Y: Any) -> Any:
    """``Y`` under fresh task keys: one lazy identity task per chunk over its persisted chunks.

    After a worker loss the scheduler holds the keys of the failed step as *erred* for as
    long as a future of that step is alive (in a traceback the user or a debugger keeps,
    for instance).  A step rebuilt from a state with the same keys has the same keys
    again (Dask names tasks by their inputs) and would fail at once with the old error; a
    state renamed here makes every key of the resumed steps new.  Nothing is sent to the
    cluster (it may be gone); chunks that lived on a lost worker are recomputed by the
    scheduler from their lineage when the resumed solve needs them.
    """
    import uuid

    from ._lowrank import LowRank

    token = uuid.uuid4().hex
    U, S, V = (
        x.map_blocks(_same, name=f"lowrank-resume-{name}-{token}", dtype=x.dtype, meta=x._meta)
        for name, x in (("U", Y.U), ("S", Y.S), ("V", Y.V))
    )
    return LowRank._trusted(U, S, V, Y.xp)


def worker_failure(exc: BaseException, t: float, step: int, Y: Any, checkpoint: Any) -> Any:
    """The resumable error of a step that a cluster failure stopped (``exc``: see
    :func:`is_worker_failure`).

    A :class:`~lowrank_core.LowRankIntegrationError` with ``t`` and ``step`` of the failed
    step, ``.checkpoint`` (the solve up to the last finished step, its state under fresh
    keys: :func:`resumable`) for ``lc.solve(problem, None, t_span, resume=err.checkpoint)``,
    and ``.Y``, the state at ``t`` (fresh keys too) for ``lc.solve(problem, err.Y, (err.t,
    t1), dt)``.
    """
    from ._errors import LowRankIntegrationError

    msg = (
        f"the Dask cluster failed ({type(exc).__name__}: {exc}); resume with "
        "solve(problem, None, t_span, resume=err.checkpoint) or solve(problem, err.Y, (err.t, t1), dt)"
    )
    ck = checkpoint.copy()
    ck.Y = resumable(checkpoint.Y)
    err = LowRankIntegrationError(msg, t=t, step=step, checkpoint=ck)
    err.Y = ck.Y if Y is checkpoint.Y else resumable(Y)
    return err


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


# ----------------------------------------------------------------------------- TSQR
_TSQR: contextvars.ContextVar[str] = contextvars.ContextVar("lowrank_core_tsqr", default="kernels")


@contextlib.contextmanager
def use_tsqr(kind: str) -> Iterator[None]:
    """Within the block, tall thin QRs of Dask arrays use the TSQR ``kind``
    (``"kernels"`` or ``"dask"``, see :data:`TSQR_IMPLEMENTATIONS`)."""
    from ._checks import choice

    token = _TSQR.set(choice(kind, "tsqr", TSQR_IMPLEMENTATIONS))
    try:
        yield
    finally:
        _TSQR.reset(token)


def _leaf_qr(block: Any) -> tuple[Any, Any]:
    """QR of one row chunk, on its worker, through the library's seam (the batched
    kernels of ``lowrank_kernels`` where the size rule sends it there)."""
    import numpy as np

    from . import _linalg
    from ._namespace import namespace_of

    xp = namespace_of(block)
    if block.shape[0] < block.shape[1]:  # fewer rows than columns: R padded with zero rows
        q, r = _linalg.thin_qr(block, xp)
        pad = np.zeros((block.shape[1] - r.shape[0], r.shape[1]), dtype=r.dtype)
        return q, np.concatenate([r, pad])
    return _linalg.thin_qr(block, xp)


def _combine(rs: list[Any]) -> tuple[Any, ...]:
    """QR of the stacked leaf ``R`` factors: ``[R_1; ...; R_N] = Q_2 R`` -> ``(R, Q_2 blocks)``."""
    import numpy as np

    from . import _linalg
    from ._namespace import namespace_of

    stacked = np.concatenate(rs, axis=0)
    q2, r = _linalg.thin_qr(stacked, namespace_of(stacked))
    k = rs[0].shape[0]
    return (r, *(q2[i * k : (i + 1) * k] for i in range(len(rs))))


def _leaf_product(q: Any, q2: Any) -> Any:
    if q.shape[1] < q2.shape[0]:  # a short leaf: its Q has fewer columns than R rows
        q2 = q2[: q.shape[1]]
    return q @ q2


def _tsqr_kernels(x: Any) -> tuple[Any, Any]:
    """TSQR whose leaves are the library's thin QR (``lowrank_kernels.batched_qr``)."""
    import dask
    import dask.array as da

    k = x.shape[1]
    blocks = x.to_delayed().ravel()
    leaves = [dask.delayed(_leaf_qr, nout=2, pure=True)(b) for b in blocks]
    parts = dask.delayed(_combine, nout=len(blocks) + 1, pure=True)([r for _, r in leaves])
    r = da.from_delayed(parts[0], shape=(k, k), dtype=x.dtype)
    q_blocks = [
        da.from_delayed(dask.delayed(_leaf_product, pure=True)(q, parts[i + 1]), shape=(rows, k), dtype=x.dtype)
        for i, ((q, _), rows) in enumerate(zip(leaves, x.chunks[0], strict=True))
    ]
    return da.concatenate(q_blocks, axis=0), r


def _tsqr_dask(x: Any) -> tuple[Any, Any]:
    """:func:`dask.array.linalg.tsqr`, with the diagonal of ``R`` made real non-negative."""
    import dask.array as da

    q, r = da.linalg.tsqr(x)
    d = da.diagonal(r)
    if x.dtype.kind == "c":
        mag = abs(d)
        phase = da.where(mag > 0, d / da.where(mag > 0, mag, 1), 1).astype(x.dtype)
        return q * phase[None, :], phase.conj()[:, None] * r
    phase = da.where(d < 0, -1, 1).astype(x.dtype)
    return q * phase[None, :], phase[:, None] * r


def tsqr(x: Any, kind: str | None = None) -> tuple[Any, Any]:
    """Thin QR of a tall Dask array ``x (p, k)`` chunked by rows: ``Q (p, k)``, ``R (k, k)``.

    Parameters
    ----------
    x : dask.array.Array, shape (p, k), ``p >= k``
        One chunk along the columns (rechunked to one if not); not modified.
    kind : {"kernels", "dask"}, optional
        The implementation (default: the one in force, see :func:`use_tsqr`).

    Returns
    -------
    Q : dask.array.Array, shape (p, k)
        Orthonormal columns, chunked as ``x``'s rows.
    R : dask.array.Array, shape (k, k)
        Upper triangular with a real non-negative diagonal, one chunk.
    """
    if len(x.chunks[1]) != 1:
        x = x.rechunk({1: -1})
    k = x.shape[1]
    if kind is None:
        kind = _TSQR.get()
    if kind == "dask":
        if min(x.chunks[0]) < k:  # Dask's TSQR needs leaves at least as tall as wide
            x = x.rechunk({0: max(k, max(x.chunks[0]))})
        return _tsqr_dask(x)
    return _tsqr_kernels(x)


# ----------------------------------------------------------------------------- decompositions
def _np_namespace() -> Any:
    import numpy as np

    return array_api_compat.array_namespace(np.empty(0))


def _in_memory(x: Any) -> Any:
    """``x`` computed into the driver's memory (one synchronisation)."""
    session = _SESSION.get()
    if session is not None:
        session.step_syncs += 1
    (out,) = compute(x)
    return out


def _one_chunk(a: Any) -> Any:
    import dask.array as da

    return da.from_array(a, chunks=a.shape)


def _check_2d(x: Any, op: str) -> None:
    if x.ndim != 2:
        msg = (
            f"the {op} of a Dask array of shape {tuple(x.shape)}: tall-factor Dask states are 2-D; solve a stack "
            "of problems with lowrank_core.dask.solve_stack (chunks of the batch axis solved with NumPy)."
        )
        raise ValueError(msg)


def thin_qr(x: Any) -> tuple[Any, Any]:
    """Thin QR of a Dask array ``x (p, k)`` (the conventions of :func:`lowrank_core._linalg.thin_qr`).

    Tall (``p >= k``) arrays: :func:`tsqr`, its outputs persisted (a graph cut, so the
    work before it is not repeated by a later synchronisation of the step) when the
    previous step of the solve synchronised mid-step (and in the first step); otherwise
    left lazy for the end-of-step cut.  Wide ones (``p < k``, small): in memory.
    """
    from . import _linalg

    _check_2d(x, "thin QR")
    p, k = x.shape
    if p >= k:
        session = _SESSION.get()
        return persist(*tsqr(x)) if session is None or session.persist_qr else tsqr(x)
    q, r = _linalg.thin_qr(_in_memory(x), _np_namespace())
    return _one_chunk(q), _one_chunk(r)


def thin_svd(x: Any) -> tuple[Any, Any, Any]:
    """Thin SVD of a Dask array ``x (p, k)`` (the conventions of
    :func:`lowrank_core._linalg.thin_svd`, except the phases of the singular pairs of a
    chunked array, which are not made canonical: the product ``U diag(s) V^H`` is).

    One chunk: computed in memory.  Tall and chunked: TSQR ``x = Q R`` (persisted), the
    SVD ``R = u diag(s) v^H`` in memory, ``U = Q u``.  Wide and chunked: the same on ``x^H``.
    """
    from . import _linalg
    from ._namespace import conj_transpose

    _check_2d(x, "thin SVD")
    xp_np = _np_namespace()
    if x.numblocks == (1, 1):
        u, s, v = _linalg.thin_svd(_in_memory(x), xp_np)
        return _one_chunk(u), _one_chunk(s), _one_chunk(v)
    p, k = x.shape
    if p < k:
        v, s, u = thin_svd(conj_transpose(x, array_api_compat.array_namespace(x)))
        return u, s, v
    q, r = persist(*tsqr(x))
    u, s, v = _linalg.thin_svd(_in_memory(r), xp_np)
    return q @ _one_chunk(u), _one_chunk(s), _one_chunk(v)
