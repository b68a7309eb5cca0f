"""Dask: tall-factor states, chunked stacks and halo-exchange operators on a 2-worker
LocalCluster (separate worker processes).

Tolerances: every comparison is between the Dask path and the NumPy path of the same
algorithm in float64.  They differ only in the order of floating-point sums (a TSQR
sums over row chunks; Dask's products reduce chunk-wise), so they agree to a small
multiple of ``eps * (number of operations per entry)``, ~1e-15 relative here; the issue's
bound 1e-12 leaves a wide margin and is used throughout.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import lowrank_core as lc  # noqa: E402
from lowrank_core import dask as lcd  # noqa: E402
from lowrank_core.integrators import METHODS as METHODS_ALL  # noqa: E402

METHODS = ["ksl", "ksl-strang", "bc-psi", "abc-psi", "bug", "ra-bug", "parallel-bug"]
RTOL = 1e-12
M, N, R = 240, 48, 3


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 worker processes (1 thread each), the default client of the module."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
    )
    cl = distributed.Client(cluster)
    try:
        yield cl
    finally:
        cl.close()
        cluster.close()


def _problem(m: int = M, n: int = N) -> lc.LinearMatrixODE:
    return lc.LinearMatrixODE(lcd.advection_diffusion(m, nu=0.002), lcd.advection_diffusion(n, speed=-0.5))


def _state() -> lc.LowRank:
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, M, endpoint=False)[:, None]
    v = np.linspace(0, 1, N, endpoint=False)[None, :]
    dense = np.exp(-50 * (x - 0.5) ** 2) * np.cos(2 * np.pi * v) + 1e-3 * rng.standard_normal((M, N))
    return lc.LowRank.from_dense(dense, rank=R)


def _rel(a: lc.LowRank, b: lc.LowRank) -> float:
    A, B = a.to_dense(), b.to_dense()
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


@pytest.mark.parametrize("method", METHODS)
def test_every_integrator_equals_numpy(client, method):
    """Each integrator on a row-chunked Dask state (2 row chunks of U and of V, halo-exchange
    stencils, 2 steps) equals the NumPy solve to 1e-12 relative.  Guards against a TSQR that
    combines the leaf R factors wrongly (e.g. the Q_2 blocks of the wrong leaves; checked
    by planting), and against products or decompositions that silently drop chunks."""
    Y0 = _state()
    Yd = lcd.from_numpy(Y0, row_chunks=120)
    Yd = lc.LowRank(Yd.U, Yd.S, Yd.V.rechunk({0: 24}))
    problem = _problem()
    opts = {"tol": 1e-6} if method in ("abc-psi", "ra-bug", "parallel-bug") else {}
    ref = lc.solve(problem, Y0, (0.0, 0.004), 0.002, method=method, substep="euler", **opts)
    sol = lc.solve(problem, Yd, (0.0, 0.004), 0.002, method=method, substep="euler", **opts)
    assert sol.Y.rank == ref.Y.rank
    assert _rel(lcd.to_numpy(sol.Y), ref.Y) < RTOL
    assert sol.stats["qr"] == ref.stats["qr"]


#: Synchronisations per step (the driver waits on the cluster) with check_finite=True and
#: a rank-adaptive tolerance: one per in-memory small decomposition or TSQR R factor,
#: one per rank decision, one for the end-of-step finiteness check.  docs/dask.md lists them.
SYNCS_PER_STEP = {"ksl": 1, "ksl-strang": 1, "bc-psi": 1, "bug": 1, "abc-psi": 3, "ra-bug": 3, "parallel-bug": 3}


@pytest.mark.parametrize("method", ["bc-psi", "abc-psi"])
def test_sync_counts_match_the_documented_numbers(client, method):
    """``stats["dask_syncs"]`` counts the synchronisations: the documented number per step
    for a fixed-rank and a rank-adaptive method, and one persist per tall QR/SVD and state.
    Guards against a hidden compute in the step (a ``bool()`` of a lazy array, such as the
    per-decomposition finiteness guard of the NumPy path; checked by planting it)."""
    Yd = lcd.from_numpy(_state(), row_chunks=60)
    opts = {"tol": 1e-6} if method == "abc-psi" else {}
    sol = lc.solve(_problem(), Yd, (0.0, 0.004), 0.002, method=method, substep="euler", **opts)
    assert sol.stats["dask_syncs"] == SYNCS_PER_STEP[method] * sol.stats["steps"]


def test_graph_stays_bounded_over_50_steps(client):
    """The persisted state's graph has one key per chunk after every one of 50 steps (the
    same count at step 50 as at step 1).  Guards against a step that does not cut the
    graph, whose state would carry the whole history (checked by removing the persist)."""
    Yd = lcd.from_numpy(_state(), row_chunks=120)
    problem = lc.LinearMatrixODE(lcd.advection_diffusion(M), None)
    sol = lc.solve(problem, Yd, (0.0, 0.05), 0.001, method="bc-psi", substep="euler", check_finite=False)
    sizes = [(len(Y.U.__dask_graph__()), len(Y.S.__dask_graph__()), len(Y.V.__dask_graph__())) for Y in sol.Ys[1:]]
    assert len(sizes) == 50
    assert set(sizes) == {(2, 1, 1)}


def test_chunked_stack_equals_in_memory_stack(client):
    """A stack of 6 problems in 3 batch chunks, solved chunk by chunk on the workers by the
    NumPy path, equals the in-memory stacked solve (fixed rank, and abc-psi whose chunks
    choose their rank; also with a per-chunk problem factory).  Guards against chunks
    solved with the wrong members' problems (the factory's slice; checked by planting an
    off-by-one start)."""
    rng = np.random.default_rng(3)
    Ys = lc.LowRank.from_dense(rng.standard_normal((6, 30, 20)), rank=3)
    decay = rng.uniform(0.5, 2.0, size=(6, 1, 1))
    L = -2 * np.eye(30) + np.eye(30, k=1) + np.eye(30, k=-1)
    Ld = lcd.from_numpy(Ys, batch_chunks=2)
    for method, opts in (("bug", {}), ("abc-psi", {"tol": 1e-8})):
        ref = lc.solve(lc.LinearMatrixODE(decay * L, None), Ys, (0.0, 0.1), 0.02, method=method, **opts)
        sol = lcd.solve_stack(_StackFactory(decay, L), Ld, (0.0, 0.1), 0.02, method=method, **opts)
        assert sol.Y.U.chunks[0] == (2, 2, 2)
        assert sol.Y.rank == ref.Y.rank
        assert _rel(lcd.to_numpy(sol.Y), ref.Y) < RTOL
        assert sol.stats["qr"] == ref.stats["qr"]


def test_uneven_chunks_and_rank_padding_leave_results_and_stats_alone(client):
    """A stack of 7 members in batch chunks of 2, 4 and 1 members (not a divisor of 7),
    all of rank 2 at the start, with sources ``C`` of rank 0, 0 | 2, 2, 2, 2 | 1, solved
    with abc-psi (rank adaptive, tol 1e-8): the chunks end at ranks 2, 4 and 3, and the
    first and last are padded to 4.

    * Each chunk's matrices equal the in-memory solve of its members alone (to 1e-12): the
      padding adds zero singular values only, with orthonormal complements in ``U``, ``V``.
    * ``stats`` are the chunks' own work summed (counts, decompositions per shape and flops
      of the three sub-stack solves, none at the padded rank); ``step_ranks`` the largest.
    * Fixed-rank ``bug`` on the same uneven chunks equals the in-memory stacked solve and
      its counters.

    Members whose rank is below the stack's (exactly zero singular values) are avoided: their
    extra basis directions are set by rounding, which moves the result by the method's own
    error (~1e-6 here, seen from a Fortran-ordered copy of the same input), not by 1e-12.

    Guards against (checked by planting each): chunk offsets computed from a uniform chunk
    size (the 4-member chunk solved with the problems of members 2..5 shifted); the padding's
    first columns not kept equal to the chunk's factor (a sign flip changes ``Y``); stats
    that drop the per-shape counts of the chunks."""
    rng = np.random.default_rng(5)
    B, m, n, r = 7, 30, 20, 4
    Ys = lc.LowRank.from_dense(rng.standard_normal((B, m, n)), rank=2)
    C = np.zeros((B, m, n))
    for b, k in enumerate((0, 0, 2, 2, 2, 2, 1)):
        C[b] = rng.standard_normal((m, k)) @ rng.standard_normal((k, n))
    decay = rng.uniform(0.5, 2.0, size=(B, 1, 1))
    L = -2 * np.eye(m) + np.eye(m, k=1) + np.eye(m, k=-1)
    factory = _StackFactory(decay, L, C)
    chunks = (2, 4, 1)
    Ld = lcd.from_numpy(Ys)
    Ld = lc.LowRank(*(x.rechunk({0: chunks}) for x in (Ld.U, Ld.S, Ld.V)))
    span, dt, opts = (0.0, 0.1), 0.02, {"method": "abc-psi", "tol": 1e-8, "max_rank": 6}

    sol = lcd.solve_stack(factory, Ld, span, dt, **opts)
    Y = lcd.to_numpy(sol.Y)
    assert sol.Y.U.chunks[0] == chunks
    assert (Y.U.shape, Y.S.shape, Y.V.shape) == ((B, m, r), (B, r, r), (B, n, r))
    starts = np.cumsum((0, *chunks))
    parts = []
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        sl = slice(int(lo), int(hi))
        part = lc.solve(factory(sl), lc.LowRank(Ys.U[sl], Ys.S[sl], Ys.V[sl]), span, dt, **opts)
        parts.append(part)
        k = part.Y.rank
        ref = part.Y.to_dense()
        assert np.linalg.norm(Y.to_dense()[sl] - ref) < RTOL * np.linalg.norm(ref)
        assert np.all(Y.S[sl][:, k:, :] == 0)
        assert np.all(Y.S[sl][:, :, k:] == 0)
        eye = np.broadcast_to(np.eye(r), (hi - lo, r, r))
        for F in (Y.U[sl], Y.V[sl]):
            np.testing.assert_allclose(np.swapaxes(F, -1, -2) @ F, eye, rtol=0, atol=1e-13)
    assert [p.Y.rank for p in parts] == [2, 4, 3]
    assert sol.Y.rank == 4
    for key in ("rhs_evals", "qr", "svd", "qr_flops", "svd_flops"):
        assert sol.stats[key] == pytest.approx(sum(p.stats[key] for p in parts), rel=1e-15), key
    for key in ("qr_shapes", "svd_shapes"):
        total: dict = {}
        for p in parts:
            for shape, count in p.stats[key].items():
                total[shape] = total.get(shape, 0) + count
        assert sol.stats[key] == total, key
    assert sol.stats["steps"] == 5
    assert sol.step_ranks == [max(col) for col in zip(*(p.step_ranks for p in parts), strict=True)]

    fixed = lcd.solve_stack(factory, Ld, span, dt, method="bug")
    ref = lc.solve(lc.LinearMatrixODE(decay * L, None, C=C), Ys, span, dt, method="bug")
    assert _rel(lcd.to_numpy(fixed.Y), ref.Y) < RTOL
    for key in ("rhs_evals", "qr", "svd", "qr_shapes", "svd_shapes"):
        assert fixed.stats[key] == ref.stats[key], key


class _StackFactory:
    """The problem ``Y' = decay_b L Y (+ C_b)`` of the members ``sl`` of the stack (module
    level: it pickles)."""

    def __init__(self, decay: np.ndarray, L: np.ndarray, C: np.ndarray | None = None) -> None:
        self.decay, self.L, self.C = decay, L, C

    def __call__(self, sl: slice) -> lc.LinearMatrixODE:
        return lc.LinearMatrixODE(self.decay[sl] * self.L, None, C=None if self.C is None else self.C[sl])


def test_stencil_products_equal_dense_and_exchange_halos_only():
    """The four products of a variable-coefficient stencil (periodic and zero boundary) on
    a row-chunked Dask block equal the dense matrix's, and the graph of a product reads
    neighbour chunks only (no task takes every chunk: no gather).  Guards against wrong
    halo offsets at chunk edges (checked by planting ``d + o`` -> ``d - o`` in the forward
    shift)."""
    rng = np.random.default_rng(0)
    m = 50
    for boundary in ("periodic", "zero"):
        op = lcd.StencilOperator([-2, 0, 1], [1.5, rng.standard_normal(m), 0.3], size=m, boundary=boundary)
        A = op.to_dense()
        x = rng.standard_normal((m, 3))
        xd = da.from_array(x, chunks=(10, 3))
        for name, ref in (("apply", A @ x), ("apply_h", A.T @ x), ("apply_t", A.T @ x), ("apply_conj", A @ x)):
            out = getattr(op, name)(xd, None)
            np.testing.assert_allclose(out.compute(), ref, rtol=0, atol=1e-13)
            deps = dict(out.__dask_graph__().dependencies)
            assert max(len(d) for d in deps.values()) < xd.numblocks[0]


def test_tsqr_implementations_agree():
    """Both TSQRs (ours with batched-kernel leaves, Dask's) give Q with orthonormal columns,
    R upper triangular with a non-negative diagonal, and the same factors (unique for a
    full-rank input).  Guards against a sign convention that differs between them, which
    would make the two paths' states differ."""
    rng = np.random.default_rng(1)
    x = da.from_array(rng.standard_normal((400, 8)), chunks=(50, 8))
    (q1, r1), (q2, r2) = (lcd.tsqr(x, kind) for kind in lcd.TSQR_IMPLEMENTATIONS)
    q1, r1, q2, r2 = (np.asarray(a) for a in (q1, r1, q2, r2))
    np.testing.assert_allclose(q1.T @ q1, np.eye(8), atol=1e-13)
    assert np.all(np.diag(r1) >= 0)
    np.testing.assert_allclose(np.tril(r1, -1), 0, atol=1e-13)
    np.testing.assert_allclose(q1, q2, atol=1e-12)
    np.testing.assert_allclose(r1, r2, atol=1e-12)
    np.testing.assert_allclose(q1 @ r1, x.compute(), atol=1e-12)


def test_bad_input_is_named():
    """Factors chunked along the rank axis, a Dask factor with a NumPy or torch one, a stack
    with row chunks, an operator whose halo is wider than a chunk, coefficients chunked
    unlike the factor: each is refused with an error naming the argument and the
    expected chunking.  Guards against a silent rechunk or a NumPy conversion (a gather)."""
    Y0 = _state()
    U = da.from_array(Y0.U, chunks=(60, 2))
    S = da.from_array(Y0.S)
    V = da.from_array(Y0.V, chunks=(24, R))
    with pytest.raises(ValueError, match=r"`U` is chunked along its rank axis.*rows only"):
        lc.LowRank(U, S, V)
    with pytest.raises(TypeError, match=r"`U`, `S`, `V` must come from one array library"):
        lc.LowRank(U.rechunk({1: -1}), S, Y0.V)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"one array library.*torch"):
        lc.LowRank(U.rechunk({1: -1}), S, torch.asarray(Y0.V))
    rng = np.random.default_rng(0)
    stack = lc.LowRank.from_dense(rng.standard_normal((4, 20, 10)), rank=2)
    with pytest.raises(ValueError, match=r"`U` of a stack.*batch axes only"):
        lc.LowRank(da.from_array(stack.U, chunks=(2, 10, 2)), da.from_array(stack.S), da.from_array(stack.V))
    op = lcd.StencilOperator([-3, 0, 3], [1.0, -2.0, 1.0], size=M)
    with pytest.raises(ValueError, match=r"at least 3 rows.*row chunks \(2, 2"):
        op.apply(da.ones((M, 2), chunks=(2, 2)), None)
    var = lcd.StencilOperator([0], [da.ones(M, chunks=50)], size=M)
    with pytest.raises(ValueError, match=r"chunked \(50, 50, 50, 50, 40\).*row chunks \(60, 60, 60, 60\)"):
        var.apply(da.ones((M, 2), chunks=(60, 2)), None)
    with pytest.raises(TypeError, match=r"`coefficients\[0\]` must be a number"):
        lcd.StencilOperator([0], ["x"], size=M)
    with pytest.raises(ValueError, match=r"`boundary`"):
        lcd.StencilOperator([0], [1.0], size=M, boundary="reflect")


def test_lost_worker_process_is_resumable(tmp_path):
    """A worker *process* killed (SIGKILL) while step 1 runs, on a 2-worker LocalCluster that
    gives up on a task after one worker died running it (``allowed-failures = 0``): the
    solve raises LowRankIntegrationError naming the cluster failure with the step index and
    time; resuming from ``err.checkpoint`` (and from ``err.Y``) reaches the uninterrupted
    solve's state to 1e-12 relative (the module's bound: the Dask path's products and TSQRs
    are not reproducible bit for bit from run to run, ~1e-16 apart), with the counters of
    the uninterrupted solve (the failed step's partial work is not in the checkpoint).

    The killed worker held chunks of the last finished state, so the resume also exercises
    their recomputation by the scheduler.  Guards against (checked by planting each): the
    checkpoint's state under the keys of the failed step, which the scheduler still holds as
    erred while the traceback keeps their futures (the resumed step fails again with the
    same KilledWorker); a failure that escapes as a bare ``KilledWorker``; counters of the
    failed step counted twice after the resume."""
    marker = tmp_path / "killed"
    B = lcd.advection_diffusion(N)
    problem = lc.LinearMatrixODE(_KillingA(str(marker), t_kill=0.001), B)
    t_span, dt, opts = (0.0, 0.003), 0.001, {"method": "bc-psi", "substep": "euler"}
    Y0 = _state()
    ref = lc.solve(lc.LinearMatrixODE(lcd.advection_diffusion(M, nu=0.002), B), Y0, t_span, dt, **opts)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=50
        )
    try:
        with distributed.Client(cluster) as cl:
            Yd = lcd.from_numpy(Y0, row_chunks=60)
            with pytest.raises(lc.LowRankIntegrationError, match=r"Dask cluster failed \(KilledWorker") as info:
                lc.solve(problem, Yd, t_span, dt, **opts)
            err = info.value
            assert marker.exists()  # the worker process was killed (not a simulated failure)
            assert isinstance(err.__cause__, distributed.scheduler.KilledWorker)
            assert (err.step, err.t) == (1, pytest.approx(0.001))
            assert "(step 1, t = 0.001)" in str(err)
            assert (err.checkpoint.step, err.checkpoint.t) == (1, pytest.approx(0.001))
            resumed = lc.solve(problem, None, t_span, resume=err.checkpoint)
            assert resumed.stats["steps"] == ref.stats["steps"] == 3
            assert _rel(lcd.to_numpy(resumed.Y), ref.Y) < RTOL
            for key in ("rhs_evals", "qr", "svd", "qr_shapes", "svd_shapes", "qr_flops"):
                assert resumed.stats[key] == ref.stats[key], key
            again = lc.solve(problem, err.Y, (err.t, t_span[1]), dt, **opts)
            assert again.stats["steps"] == 2
            assert _rel(lcd.to_numpy(again.Y), ref.Y) < RTOL
            cl.wait_for_workers(2, timeout=60)  # the nanny's restart done: close a whole cluster
    finally:
        cluster.close()


def _die_once(block: np.ndarray, marker: str) -> np.ndarray:
    """Kill the process running this task (a Dask worker) the first time any task runs it
    (``marker`` is created atomically); afterwards return ``block`` unchanged."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return block
    os.kill(os.getpid(), signal.SIGKILL)
    return block  # not reached: SIGKILL ends the process


class _KillingStencil(lcd.StencilOperator):
    """A stencil whose products pass through :func:`_die_once` (same values)."""

    def __init__(self, op: lcd.StencilOperator, marker: str) -> None:
        super().__init__(op.offsets, op.coefficients, op.size, boundary=op.boundary)
        self.marker = marker

    def _run(self, x, forward, conj):
        out = super()._run(x, forward, conj)
        if not hasattr(out, "map_blocks"):
            return out
        return out.map_blocks(_die_once, self.marker, meta=np.empty((0, 0), dtype=out.dtype))


class _KillingA:
    """``A(t)``: the advection-diffusion stencil, through :func:`_die_once` from ``t_kill`` on."""

    def __init__(self, marker: str, t_kill: float) -> None:
        self.op = lcd.advection_diffusion(M, nu=0.002)
        self.killing = _KillingStencil(self.op, marker)
        self.t_kill = t_kill

    def __call__(self, t: float) -> lcd.StencilOperator:
        return self.killing if t >= self.t_kill - 1e-12 else self.op


def test_objects_sent_to_workers_pickle(client):
    """The stencil operator, a problem holding it, a Dask state and the stack factory
    pickle and round-trip to equal objects.  Guards against a namespace module or a Dask
    client kept in them (neither pickles)."""
    op = lcd.advection_diffusion(M)
    back = pickle.loads(pickle.dumps(op))
    np.testing.assert_array_equal(back.to_dense(), op.to_dense())
    problem = pickle.loads(pickle.dumps(_problem()))
    assert isinstance(problem, lc.LinearMatrixODE)
    Yd = lcd.from_numpy(_state(), row_chunks=60)
    Yb = pickle.loads(pickle.dumps(Yd))
    np.testing.assert_array_equal(lcd.to_numpy(Yb).to_dense(), lcd.to_numpy(Yd).to_dense())
    factory = pickle.loads(pickle.dumps(_StackFactory(np.ones((2, 1, 1)), np.eye(3))))
    assert isinstance(factory(slice(0, 1)), lc.LinearMatrixODE)


#: Columns of the ``bench qr-savings`` table that count work (not time, not error).
COUNT_COLUMNS = (
    "status", "steps", "rank", "step_ranks", "qr", "svd", "decompositions", "rhs_evals",
    "qr_shapes", "svd_shapes", "qr_flops", "svd_flops", "max_rank_hits", "rejections",
)  # fmt: skip


@pytest.mark.slow
def test_bench_qr_savings_dask_rows_count_as_numpy(tmp_path):
    """``lowrank-core bench qr-savings --backend dask`` (the command line, in a fresh
    process) has a row for every method, and each row's QR/SVD counts, shapes and flops, F
    evaluations, steps and ranks equal the ``--backend numpy`` row of the same (problem,
    method, dt); the errors agree to 1e-9 relative (the same arithmetic in another array
    library: rounding-level differences, ~1e-15 seen).  One problem (the 60x40 quadratic
    gradient flow) at one large step (2 steps per solve): a step's counts do not depend on
    its size, and every method's decomposition sequence runs.

    Guards against a Dask decomposition path that counts differently from NumPy (a tall SVD
    counted as its TSQR plus the SVD of ``R``, a TSQR's combine QR counted as another QR),
    and against a dask backend that falls back to NumPy arrays (its rows would say numpy)."""
    root = Path(__file__).resolve().parent.parent
    rows = {}
    for backend in ("numpy", "dask"):
        out = tmp_path / backend
        cmd = ["bench", "qr-savings", "--backend", backend, "--problem", "quadratic", "--dt", "2.5"]
        proc = subprocess.run(
            [sys.executable, "-m", "lowrank_core", *cmd, "--out", str(out), "--quiet"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = json.loads((out / "qr_savings.json").read_text())
        rows[backend] = {(r["problem"], r["method"], r["dt"]): r for r in data["rows"]}
    assert {k[1] for k in rows["dask"]} == set(METHODS_ALL)
    assert set(rows["dask"]) == set(rows["numpy"])
    for key, ref in rows["numpy"].items():
        got = rows["dask"][key]
        assert (ref["backend"], got["backend"]) == ("numpy", "dask")
        assert ref["status"] == "ok", key
        for col in COUNT_COLUMNS:
            assert got[col] == ref[col], (key, col)
        assert got["error"] == pytest.approx(ref["error"], rel=1e-9), key


def _bench_module(name: str):
    """A script of ``bench/`` as a module (the scripts import ``_common`` as a top-level module)."""
    import importlib.util

    bench = Path(__file__).resolve().parent.parent / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dask_scale_results_keep_idle_and_loaded_runs_side_by_side(tmp_path, monkeypatch):
    """``bench/dask_scale.py`` merges each run into its results file: a loaded run adds rows
    beside the idle ones (each with its ``load``, and ``load_ratio`` against the idle row of
    the same case), a rerun of a case replaces only that case's row, rows of another memory
    limit (the spilling run) stay, rows from before ``--load`` (no ``load``, "uncontrolled")
    stay until a controlled row of the same case replaces them, and the generated docs
    table has one line per row.  Guards against a run that overwrites the
    other condition's results (the file held one run only), and against a merge key without
    the load (a loaded run would replace the idle figures)."""
    scale = _bench_module("dask_scale")
    tables = _bench_module("tables")
    monkeypatch.setattr(scale, "environment", lambda: {})
    out = tmp_path / "dask_scale.json"

    def row(backend, m, workers, load, ms, limit="8GB"):
        r = {"backend": backend, "m": m, "workers": workers, "load": load, "condition": "idle" if not load else "load2",
             "ms_per_step": ms, "peak_rss_per_worker_bytes": [2**30] * workers}  # fmt: skip
        return {**r, "memory_limit": limit} if backend == "dask" else r

    legacy = [{**row("dask", 10**6, 2, 0, 9.0), "load": None}, {**row("dask", 10**7, 2, 0, 70.0), "load": None}]
    out.write_text(json.dumps({"meta": {}, "rows": legacy, "tsqr": []}))
    scale.write(out, [row("dask", 10**6, 1, 0, 100.0), row("dask", 10**6, 2, 0, 60.0)], [], {"idle": {}})
    scale.write(out, [row("dask", 4 * 10**7, 2, 0, 900.0, limit="4GB")], [], {"idle": {}})
    scale.write(out, [row("dask", 10**6, 1, 2, 150.0), row("dask", 10**6, 2, 2, 120.0)], [], {"load2": {}})
    scale.write(out, [row("dask", 10**6, 2, 0, 50.0)], [], {"idle": {}})  # a rerun of one idle case
    doc = json.loads(out.read_text())
    got = {
        (r["m"], r["workers"], r["memory_limit"], r["load"]): (r["ms_per_step"], r.get("load_ratio"))
        for r in doc["rows"]
    }
    assert got == {
        (10**6, 1, "8GB", 0): (100.0, None),
        (10**6, 2, "8GB", 0): (50.0, None),
        (4 * 10**7, 2, "4GB", 0): (900.0, None),
        (10**6, 1, "8GB", 2): (150.0, 1.5),
        (10**6, 2, "8GB", 2): (120.0, 2.4),
        (10**7, 2, "8GB", None): (70.0, None),
    }
    assert doc["meta"]["loads"] == [0, 2]
    assert set(doc["background"]) == {"idle", "load2"}
    table = tables.dask_scale(tmp_path).splitlines()[2:]
    assert len(table) == len(doc["rows"])
    assert sum("| load2 |" in line and "| 2.40 |" in line for line in table) == 1


def test_bench_scale_command_refuses_bad_workers(tmp_path, capsys):
    """``lowrank-core bench scale --workers 0`` exits with status 2 and one line naming
    ``--workers``, before any cluster starts.  Guards against a LocalCluster started with
    no workers, which would wait forever for one."""
    from lowrank_core.__main__ import main

    assert main(["bench", "scale", "--workers", "0", "--out", str(tmp_path)]) == 2
    assert "--workers must be >= 1; got 0" in capsys.readouterr().err
