"""Benchmarks of lowrank_core: the measurements behind ``lowrank-core bench ...`` and ``lowrank-core demo``.

Each benchmark is one function that runs the measurement, returns a :class:`BenchResult`
(rows, metadata, the files written) and, given ``out``, writes its results there: a JSON
file in the common envelope ``{"meta": {...}, "rows": [...]}`` (see :func:`metadata`
and :func:`write_results`), a CSV file of the same rows and, where the benchmark has
them, PNG plots.  The command line (``lowrank_core.__main__``) only parses arguments
and prints these results.

============================  ================================================  ==========================
function                      what it measures                                  command
============================  ================================================  ==========================
:func:`qr_savings`            every integrator on the reference problems at     ``lowrank-core bench
                              several step sizes (error, rank, QR/SVD counts,   qr-savings``
                              flops, F evaluations, wall time)
:func:`training_cost`         one cycle of each low-rank optimizer at the       ``lowrank-core bench
                              layer shapes of a 784-1024-1024-10 MLP            training-cost``
:func:`kernels`               the batched QR/SVD kernels of                     ``lowrank-core bench
                              :mod:`lowrank_kernels` against NumPy and a        kernels``
                              SciPy loop
:func:`problems`              kinetic and PDE problems: electric energy,        ``lowrank-core bench
                              drift of conserved quantities, rank vs time       problems``
:func:`scale`                 abc-PSI on row-chunked Dask factors: time per     ``lowrank-core bench
                              step, peak memory per worker                      scale``
:func:`demo`                  one problem narrated, then every method compared  ``lowrank-core demo``
============================  ================================================  ==========================

The scripts in the repository's ``bench/`` folder (one measurement each, results in
``bench/results/``) write the same envelope through :func:`metadata` and
:func:`write_results`.

The non-robust reference methods that the scripts and the tests contrast the library
with: :func:`naive_factor_euler` (explicit Euler on the factor ODEs of the DLRA) and
:func:`factor_heavy_ball` (heavy ball on the raw factors ``W = A C^T``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ._baselines import factor_heavy_ball, naive_factor_euler
from ._kernels import environment as kernel_environment
from ._kernels import time_rounds
from ._qr_savings import BACKENDS, QR_SAVINGS_CASES
from ._report import metadata, write_results

__all__ = [
    "BACKEND_NAMES",
    "QR_SAVINGS_PROBLEMS",
    "BenchResult",
    "demo",
    "factor_heavy_ball",
    "kernel_environment",
    "kernels",
    "metadata",
    "naive_factor_euler",
    "problems",
    "qr_savings",
    "scale",
    "time_rounds",
    "training_cost",
    "write_results",
]

#: Array libraries :func:`qr_savings` and :func:`demo` run on (``backend=``).
BACKEND_NAMES: tuple[str, ...] = tuple(BACKENDS)
#: Problems of :func:`qr_savings` and :func:`demo` (``problems=`` / ``problem=``).
QR_SAVINGS_PROBLEMS: tuple[str, ...] = tuple(QR_SAVINGS_CASES)

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BenchResult:
    """What a benchmark measured and where it wrote it.

    Attributes
    ----------
    benchmark : str
        The benchmark's name (``"qr-savings"``, ``"kernels"``, ...); also ``meta["benchmark"]``.
    rows : list of dict
        One row per measured case; the keys of each benchmark are documented with its
        function.  These are the ``"rows"`` of the JSON file.
    meta : dict
        The run's metadata (:func:`metadata`: versions, machine, command, date, load) and
        the benchmark's settings; the ``"meta"`` of the JSON file.
    tables : dict of str to list of dict
        Summaries derived from ``rows`` and written to files of their own (for example
        ``"equal_accuracy"`` of :func:`qr_savings`); empty for most benchmarks.
    files : tuple of pathlib.Path
        The files written (JSON, CSV, PNG), in writing order; empty when ``out`` was ``None``.
    """

    benchmark: str
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: tuple[Path, ...] = ()


def _out_dir(out: str | os.PathLike[str] | None) -> Path | None:
    """``out`` checked for writing before anything runs (``None``: write nothing)."""
    from ._report import prepare_out_dir

    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        msg = f"`out` must be a folder path (str or os.PathLike) or None; got {type(out).__name__}."
        raise TypeError(msg)
    return prepare_out_dir(out)


def _command(name: str, command: str | None, **options: Any) -> str:
    """The command recorded in the metadata: the one given, else the Python call."""
    if command is not None:
        return command
    args = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return f"lowrank_core.bench.{name}({args})"


def qr_savings(
    problems: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    *,
    backend: str = "numpy",
    device: str | None = None,
    dts: Sequence[float] | None = None,
    quick: bool = False,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> BenchResult:
    """Every integrator on the reference problems at several step sizes, at equal rank.

    Every method runs at the rank ``r`` of the problem's fixed-rank methods; the
    rank-adaptive methods are capped at ``r`` (``max_rank=r``) with a truncation
    tolerance per unit time, so that all end at the same rank and their costs compare.
    Each solve is preceded by a two-step warm-up solve (compilation), timed apart.

    Parameters
    ----------
    problems : sequence of str, optional
        Names of :data:`QR_SAVINGS_PROBLEMS` (default: all).
    methods : sequence of str, optional
        Keys of :data:`lowrank_core.METHODS` (default: all).
    backend : str
        One of :data:`BACKEND_NAMES`.
    device : str, optional
        Device of the backend (``"cpu"``, ``"cuda"``, ``"cuda:N"`` for torch and cupy).
    dts : sequence of float, optional
        Step sizes for every problem (default: 3 to 5 per problem, the two largest with ``quick``).
    quick : bool
        The two largest default step sizes per problem.
    out : str or os.PathLike, optional
        Folder for ``qr_savings.json/.csv``, ``qr_savings_equal_accuracy.json/.csv`` and
        the PNG plots (error vs dt, vs decomposition flops, vs number of QRs, vs wall
        time; decompositions at equal accuracy; rank vs t).  ``None``: write nothing.
    progress : callable, optional
        ``progress(done, total, label)`` before each solve and at the end.
    command : str, optional
        The command line recorded in the metadata (default: this call).

    Returns
    -------
    BenchResult
        ``rows``: one per (problem, step size, method) with ``error`` (relative Frobenius
        error at the final time), ``best_error`` (best approximation at the final rank),
        ``rank``, ``qr``/``svd`` counts with ``qr_shapes``/``svd_shapes`` and flops,
        ``rhs_evals``, ``wall_time``, ``warmup_time``, ``status``; ``tables``:
        ``"equal_rank"`` (per problem, the step sizes at which every method ends at the
        same rank) and ``"equal_accuracy"`` (each method's largest step size whose error
        is at most the target, with its costs there).

    Raises
    ------
    ValueError
        Unknown problem or method, or a step size that does not fit a problem's time span.
    ImportError
        The backend's library is not installed (the message names the extra).
    """
    from ._plots import plot_qr_savings
    from ._qr_savings import equal_accuracy_table, equal_rank_table, prepare_cases, resolve_backend, run_qr_savings
    from ._report import write_results

    resolved = resolve_backend(backend, device)
    out_dir = _out_dir(out)
    prepared = prepare_cases(problems, resolved, dts=dts, quick=quick)
    start = time.perf_counter()
    rows = run_qr_savings(prepared, methods, resolved, progress=progress)
    seconds = time.perf_counter() - start
    equal_rank = equal_rank_table(rows)
    accuracy = equal_accuracy_table(rows)
    cases = {
        p.case.problem: {"title": p.case.title, "dts": p.dts, "tol": p.case.tol, "tol_per_unit_time": True,
                         "max_rank": "r", "substep": p.case.substep, "kwargs": p.case.kwargs}
        for p in prepared
    }  # fmt: skip
    meta = metadata(
        "qr-savings",
        command=_command("qr_savings", command, problems=problems, methods=methods, backend=backend, dts=dts,
                         quick=quick),
        backend=resolved.label, seconds=seconds, cases=cases, equal_rank=equal_rank, equal_accuracy=accuracy,
    )  # fmt: skip
    files: list[Path] = []
    if out_dir is not None:
        files += write_results(rows, out_dir, "qr_savings", meta)
        files += write_results(accuracy, out_dir, "qr_savings_equal_accuracy", meta)
        files += plot_qr_savings(rows, out_dir, accuracy=accuracy)
    return BenchResult("qr-savings", rows, meta, {"equal_rank": equal_rank, "equal_accuracy": accuracy}, tuple(files))


def training_cost(
    *,
    layers: Sequence[tuple[int, int]] | None = None,
    ranks: Sequence[int] | None = None,
    optimizers: Sequence[str] | None = None,
    repeat: int | None = None,
    quick: bool = False,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> BenchResult:
    """One cycle of each low-rank optimizer at the layer shapes of a 784-1024-1024-10 MLP.

    A cycle is one basis update (``len(optimizer.phases)`` optimizer steps) at the
    low-rank layer shapes 1024x784 and 1024x1024, with PyTorch if installed (else
    NumPy); its time is split into QR, SVD (each shape timed alone, times its count) and
    the rest (products).

    Parameters
    ----------
    layers : sequence of (int, int), optional
        Layer shapes ``(out, in)`` (default: 1024x784 and 1024x1024).
    ranks : sequence of int, optional
        Ranks of the layers (default: 32 and 128; 32 alone with ``quick``).
    optimizers : sequence of str, optional
        Keys of :data:`lowrank_core.training.OPTIMIZERS` (default: all).
    repeat : int, optional
        Timed cycles per case, the shortest reported (default: 5, 2 with ``quick``).
    quick : bool
        The shorter run described above.
    out : str or os.PathLike, optional
        Folder for ``training_cost.json`` and ``.csv``; ``None``: write nothing.
    progress : callable, optional
        ``progress(done, total, label)`` before each case and at the end.
    command : str, optional
        The command line recorded in the metadata (default: this call).

    Returns
    -------
    BenchResult
        ``rows``: one per (layer, rank, optimizer) with ``backend``, ``m``, ``n``,
        ``layer`` (``"mxn"``), ``rank``, ``optimizer``, ``steps`` (per cycle), ``qr``,
        ``svd``, their shapes and flops, ``cycle_ms``, ``qr_ms``, ``svd_ms``, ``products_ms``.

    Raises
    ------
    ValueError
        ``repeat`` or a rank that is not a positive integer, or an unknown optimizer.
    """
    from ._report import write_results
    from ._training_cost import MLP_LAYERS, TRAINING_RANKS, run_training_cost

    repeat = (2 if quick else 5) if repeat is None else repeat
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        msg = f"`repeat` must be a positive integer; got {repeat!r}."
        raise ValueError(msg)
    ranks = tuple(TRAINING_RANKS[:1] if quick else TRAINING_RANKS) if ranks is None else tuple(ranks)
    if not ranks or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ranks):
        msg = f"`ranks` must be positive integers; got {ranks!r}."
        raise ValueError(msg)
    out_dir = _out_dir(out)
    start = time.perf_counter()
    layers = tuple(MLP_LAYERS if layers is None else (tuple(int(v) for v in shape) for shape in layers))
    rows = run_training_cost(layers=layers, ranks=ranks, optimizers=optimizers, repeat=repeat, progress=progress)
    seconds = time.perf_counter() - start
    for row in rows:
        row["layer"] = f"{row['m']}x{row['n']}"
    meta = metadata(
        "training-cost",
        command=_command("training_cost", command, layers=layers, ranks=ranks, optimizers=optimizers, repeat=repeat),
        seconds=seconds,
        repeat=repeat,
        layers=[list(shape) for shape in layers],
        ranks=list(ranks),
    )
    files = write_results(rows, out_dir, "training_cost", meta) if out_dir is not None else []
    return BenchResult("training-cost", rows, meta, {}, tuple(files))


def kernels(
    *,
    ops: Sequence[str] = ("qr", "svd"),
    dtypes: Sequence[str] = ("float64", "float32"),
    cases: Mapping[str, Sequence[tuple[int, int, int]]] | None = None,
    repeat: int = 5,
    quick: bool = False,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> BenchResult:
    """The batched QR/SVD kernels of :mod:`lowrank_kernels` against NumPy and a SciPy loop.

    For every case ``(B, m, k)`` and dtype the kernel, NumPy's batched linalg and a
    per-matrix SciPy loop run interleaved in rounds (:func:`time_rounds`); speed-ups
    are medians of the per-round ratios.

    Parameters
    ----------
    ops : sequence of {"qr", "svd"}
    dtypes : sequence of str
        NumPy dtype names (float32, float64, complex64, complex128).
    cases : mapping, optional
        ``{"qr": [(B, m, k), ...], "svd": [(B, k, k), ...]}`` (default: the cases of
        ``docs/kernels.md``).
    repeat : int
        Timed rounds per contender, after one warm-up round.
    quick : bool
        Batch sizes divided by 10 (the tall single matrix's rows by 5).
    out : str or os.PathLike, optional
        Folder for ``kernels.json/.csv`` and ``kernels_speedup.png``/``kernels_time.png``;
        ``None``: write nothing.
    progress : callable, optional
        ``progress(done, total, label)`` after every case.
    command : str, optional
        The command line recorded in the metadata (default: this call).

    Returns
    -------
    BenchResult
        ``rows``: one per (op, case, dtype) with ``op, B, m, k, dtype, algorithm,
        ms_kernel, ms_numpy, ms_scipy_loop, speedup_numpy, speedup_scipy_loop,
        max_orth_error, max_recon_error, repeat`` (``None`` where the SciPy loop was not
        timed); ``meta["environment"]``: threads and versions (:func:`kernel_environment`).

    Raises
    ------
    ValueError
        An operation other than ``"qr"``/``"svd"`` or a ``repeat`` that is not a positive integer.
    """
    from . import _kernels
    from ._plots import plot_kernels
    from ._report import write_results

    out_dir = _out_dir(out)
    start = time.perf_counter()
    rows = _kernels.run(
        ops=tuple(ops),
        cases=None if cases is None else dict(cases),
        dtypes=tuple(dtypes),
        repeat=repeat,
        quick=quick,
        progress=progress,
    )
    seconds = time.perf_counter() - start
    meta = metadata("kernels", command=_command("kernels", command, ops=ops, dtypes=dtypes, repeat=repeat,
                                                quick=quick),
                    seconds=seconds, ops=list(ops), dtypes=list(dtypes), repeat=repeat, quick=quick,
                    environment=kernel_environment())  # fmt: skip
    files = (
        [*write_results(rows, out_dir, "kernels", meta), *plot_kernels(rows, out_dir)] if out_dir is not None else []
    )
    return BenchResult("kernels", rows, meta, {}, tuple(files))


def problems(
    problems: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    *,
    rtol: float = 1e-5,
    quick: bool = False,
    out: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> BenchResult:
    """Kinetic and PDE problems: electric energy, drift of conserved quantities, rank vs time.

    Parameters
    ----------
    problems : sequence of str, optional
        Registered problems with conserved quantities (default: all of them).
    methods : sequence of str, optional
        Keys of :data:`lowrank_core.METHODS` (default: ``ksl``, ``abc-psi``, ``ra-bug``).
    rtol : float
        Relative truncation tolerance of the rank-adaptive methods (``max_rank = 2r``).
    quick : bool
        The problems at their small size, 20 steps.
    out : str or os.PathLike, optional
        Folder for ``problems.json/.csv`` and the PNG plots (electric energy, drift,
        rank vs t); ``None``: write nothing.
    progress : callable, optional
        ``progress(done, total, label)`` before each solve and at the end.
    command : str, optional
        The command line recorded in the metadata (default: this call).

    Returns
    -------
    BenchResult
        ``rows``: one per (problem, method) with ``t``, ``rank`` and each conserved
        quantity per step, ``max_drift_<q>`` and ``drift_kind_<q>``, the fitted ``rate``
        of the electric energy with ``linear_rate``, ``wall_time``, ``status``.

    Raises
    ------
    ValueError
        Unknown problem or method, a problem without conserved quantities, a bad ``rtol``.
    """
    from ._problems import plot_problems, run_problems
    from ._report import write_results

    out_dir = _out_dir(out)
    start = time.perf_counter()
    rows = run_problems(problems, methods, quick=quick, rtol=rtol, progress=progress)
    seconds = time.perf_counter() - start
    meta = metadata("problems", command=_command("problems", command, problems=problems, methods=methods, rtol=rtol,
                                                 quick=quick),
                    seconds=seconds, rtol=rtol, quick=quick)  # fmt: skip
    files = (
        [*write_results(rows, out_dir, "problems", meta), *plot_problems(rows, out_dir)] if out_dir is not None else []
    )
    return BenchResult("problems", rows, meta, {}, tuple(files))


def scale(
    rows: Sequence[float] = (1e6,),
    *,
    workers: int = 2,
    steps: int = 2,
    chunk: int = 250_000,
    memory_limit: str = "auto",
    address: str | None = None,
    out: str | os.PathLike[str] | None = None,
    command: str | None = None,
) -> BenchResult:
    """abc-PSI on Dask factors chunked by rows: time per step and peak memory per worker.

    A 1D advection-diffusion problem (``m`` rows times 64, rank 16, stencil operators
    with halo exchange) on a ``LocalCluster`` of ``workers`` processes (or the cluster
    at ``address``); one warm-up step, then ``steps`` timed steps.  Needs the ``dask`` extra.

    Parameters
    ----------
    rows : sequence of float
        Rows ``m`` of the factor, one case each.
    workers : int
        Worker processes of the LocalCluster.
    steps : int
        Timed steps after the warm-up step.
    chunk : int
        Rows per chunk.
    memory_limit : str
        Memory limit per worker (``"4GB"``, ``"auto"``).
    address : str, optional
        Scheduler address of an existing cluster.
    out : str or os.PathLike, optional
        Folder for ``scale.json`` and ``.csv``; ``None``: write nothing.
    command : str, optional
        The command line recorded in the metadata (default: this call).

    Returns
    -------
    BenchResult
        ``rows``: one per size with ``m``, ``workers``, ``ms_per_step``,
        ``peak_rss_per_worker_bytes``, ``dask_syncs_per_step``, ``dask_persists_per_step``,
        ``build_s``, ``first_step_s``, ``factor_bytes``.

    Raises
    ------
    ImportError
        Dask's ``distributed`` is not installed.
    ValueError
        ``workers`` below 1.
    """
    from . import _scale
    from ._report import write_results

    out_dir = _out_dir(out)
    start = time.perf_counter()
    result = _scale.run(
        rows=rows, workers=workers, steps=steps, chunk=chunk, memory_limit=memory_limit, address=address
    )
    meta = metadata(
        "scale",
        command=_command("scale", command, rows=rows, workers=workers, steps=steps),
        seconds=time.perf_counter() - start,
        workers=workers,
    )
    files = write_results(result, out_dir, "scale", meta) if out_dir is not None else []
    return BenchResult("scale", result, meta, {}, tuple(files))


def demo(
    problem: str = "prescribed-path",
    method: str = "abc-psi",
    *,
    backend: str = "numpy",
    device: str | None = None,
    dt: float | None = None,
    stream: TextIO | None = None,
) -> BenchResult:
    """Solve one reference problem with ``method``, explain what it did, then compare every method.

    Parameters
    ----------
    problem : str
        One of :data:`QR_SAVINGS_PROBLEMS`.
    method : str
        A key of :data:`lowrank_core.METHODS`, the method narrated first.
    backend, device : str
        As for :func:`qr_savings`.
    dt : float, optional
        Step size (default: the second step size of the problem's benchmark case).
    stream : file, optional
        Where the narration goes (default ``sys.stdout``).

    Returns
    -------
    BenchResult
        ``rows``: one per method (the narrated method first), as in :func:`qr_savings`;
        nothing is written to files.

    Raises
    ------
    ValueError
        Unknown problem or method, or a step size that does not fit the problem's time span.
    """
    from ._demo import run_demo
    from ._qr_savings import resolve_backend

    resolved = resolve_backend(backend, device)
    rows = run_demo(problem, method, resolved, dt=dt, stream=stream)
    meta = metadata(
        "demo",
        command=_command("demo", None, problem=problem, method=method, backend=backend, dt=dt),
        backend=resolved.label,
    )
    return BenchResult("demo", rows, meta)
