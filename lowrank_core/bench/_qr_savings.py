"""The measurement behind ``lowrank-core bench qr-savings`` and ``lowrank-core demo``.

* :func:`run_qr_savings` solves reference problems of :mod:`lowrank_core.problems` with
  every integrator at several step sizes and returns one row per solve: error at the
  final time, final rank, QR/SVD counts with shapes, flops, right-hand-side
  evaluations and wall time.  Rank-adaptive methods are capped at the rank ``r`` of the
  fixed-rank methods (``max_rank=r``) with a tolerance per unit time
  (``tol_per_unit_time=True``), so that every method ends at the same rank.
* :func:`equal_rank_table` and :func:`equal_accuracy_table` summarise those rows: which
  step sizes have every method at the same final rank, and each method's cheapest
  step size reaching a target error with its decomposition counts, flops, F
  evaluations and time there.

Both take ``progress(done, total, label)`` callbacks, so the command line can show a
progress bar; neither prints or plots (see ``_report`` and ``_plots``).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import LowRankIntegrationError
from .._integrate import solve, time_grid
from ..integrators import METHODS
from ..problems import PROBLEMS, ReferenceProblem

__all__ = [
    "BACKENDS",
    "QR_SAVINGS_CASES",
    "Backend",
    "Case",
    "PreparedCase",
    "equal_accuracy_table",
    "equal_rank_table",
    "prepare_cases",
    "resolve_backend",
    "run_qr_savings",
    "solve_case",
]

Progress = Callable[[int, int, str], None]


# ====================================================================== backends
#: backend name -> (module that must be importable, array-API namespace module, pip hint)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "numpy": ("numpy", "array_api_compat.numpy", "python -m pip install numpy"),
    "torch": ("torch", "array_api_compat.torch", 'python -m pip install "lowrank-core[torch]"'),
    "cupy": ("cupy", "array_api_compat.cupy", 'python -m pip install "lowrank-core[cuda]"'),
    "array_api_strict": ("array_api_strict", "array_api_strict", "python -m pip install array-api-strict"),
    # Dask: the problems' arrays are built as one-chunk Dask arrays (lowrank_core.dask, docs/dask.md).
    "dask": ("dask", "array_api_compat.dask.array", 'python -m pip install "lowrank-core[dask]"'),
}


@dataclass(frozen=True)
class Backend:
    """An array namespace, the device the problems are placed on, and how to wait for it."""

    name: str
    xp: Any
    device: Any = None
    sync: Callable[[], None] = field(default=lambda: None, repr=False)

    @property
    def label(self) -> str:
        """``"numpy"``, ``"torch (cuda:0)"``, ..."""
        return self.name if self.device is None else f"{self.name} ({self.device})"


def resolve_backend(name: str, device: str | None = None) -> Backend:
    """Check that backend ``name`` is installed and ``device`` exists; return the :class:`Backend`.

    Raises
    ------
    ValueError
        Unknown or uninstalled backend, or a device the backend does not have (one-line
        messages meant for the command line).
    """
    if name not in BACKENDS:
        msg = f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}."
        raise ValueError(msg)
    module, namespace, hint = BACKENDS[name]
    if importlib.util.find_spec(module) is None:
        msg = f"backend {name!r} needs the package {module!r}, which is not installed; install it with: {hint}"
        raise ValueError(msg)
    xp = importlib.import_module(namespace)
    if name == "torch":
        return _torch_backend(xp, device)
    if name == "cupy":
        return _cupy_backend(xp, device)
    if device not in (None, "cpu"):
        msg = f"backend {name!r} runs on the CPU only; got --device {device!r} (use --backend torch or cupy for GPUs)."
        raise ValueError(msg)
    return Backend(name, xp)


def _torch_backend(xp: Any, device: str | None) -> Backend:
    import torch

    try:
        dev = torch.device(device or "cpu")
    except (RuntimeError, TypeError, ValueError):
        msg = f"--device {device!r} is not a PyTorch device; use 'cpu', 'cuda' or 'cuda:N'."
        raise ValueError(msg) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            msg = f"--device {device!r}: PyTorch sees no CUDA device here; use --device cpu."
            raise ValueError(msg)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            msg = f"--device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible."
            raise ValueError(msg)
        return Backend("torch", xp, dev, sync=torch.cuda.synchronize)
    if dev.type != "cpu":
        msg = f"--device {device!r} is not supported; use 'cpu', 'cuda' or 'cuda:N'."
        raise ValueError(msg)
    return Backend("torch", xp, dev)


def _cupy_backend(xp: Any, device: str | None) -> Backend:
    import cupy

    text = (device or "cuda").removeprefix("cuda").removeprefix(":") or "0"
    if not text.isdigit():
        msg = f"--device {device!r} is not a CUDA device; use 'cuda' or 'cuda:N'."
        raise ValueError(msg)
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - CUDA runtime errors have backend-specific types
        count = 0
    if int(text) >= count:
        msg = f"--device {device!r}: CuPy sees {count} CUDA device(s) here."
        raise ValueError(msg)
    dev = cupy.cuda.Device(int(text))
    return Backend("cupy", xp, dev, sync=dev.synchronize)


# ====================================================================== QR savings
@dataclass(frozen=True)
class Case:
    """A reference problem as the QR-savings benchmark runs it.

    ``dts`` are absolute step sizes, or multiples of the problem's ``suggested_dt``
    (the RK4 stability limit of stiff problems) when ``relative`` is true.  ``tol`` is
    the truncation tolerance of the rank-adaptive methods per unit time
    (``solve(..., tol_per_unit_time=True)``: ``theta = tol * dt`` per step).
    """

    problem: str
    title: str
    kwargs: dict[str, Any]
    substep: str
    dts: tuple[float, ...]
    tol: float
    relative: bool = False


#: The embedded default of ``lowrank-core bench qr-savings``: every reference problem,
#: with ranks at which the best rank-``r`` approximation is far below the time-stepping
#: errors (so that the errors compare the methods, not the rank), sized so that the
#: full run takes about a minute on this machine.
QR_SAVINGS_CASES: dict[str, Case] = {
    case.problem: case
    for case in (
        Case(
            "prescribed-path",
            "matrix path A(t), 100×100, r = 16, exact increments",
            {"N": 100, "r": 16},
            "exact",
            (0.1, 0.05, 0.02),
            1e-6,
        ),
        Case(
            "heat",
            "heat equation (stiff), 24×24, r = 8, RK4",
            {"size": 24, "r": 8, "t_end": 0.05},
            "rk4",
            (1.0, 0.5, 0.25),
            1e-6,
            relative=True,
        ),
        Case(
            "schrodinger",
            "Schrödinger, 64×64 complex, r = 8, RK4",
            {"N": 64, "r": 8},
            "rk4",
            (0.1, 0.05, 0.02),
            1e-6,
        ),
        Case(
            "riccati",
            "Riccati (stiff), 32×32, r = 16, RK4",
            {"m": 32, "r": 16, "t_end": 0.02},
            "rk4",
            (1.0, 0.5, 0.25),
            1e-6,
            relative=True,
        ),
        Case(
            "quadratic",
            "gradient flow of ||W - B||²/2, 60×40, rank(B) = r = 5, Euler",
            {"m": 60, "n": 40, "r": 5, "t_end": 5.0, "spectrum": (1.0, 0.7071, 0.5, 0.3536, 0.25)},
            "euler",
            (0.5, 0.2, 0.1),
            1e-6,
        ),
    )
}


@dataclass
class PreparedCase:
    """A :class:`Case` with its problem built on a backend and its step sizes resolved."""

    case: Case
    reference: ReferenceProblem
    dts: list[float]


def prepare_cases(
    problems: Sequence[str] | None,
    backend: Backend,
    *,
    dts: Sequence[float] | None = None,
    quick: bool = False,
) -> list[PreparedCase]:
    """Build the reference problems and check every step size against their time spans.

    Parameters
    ----------
    problems : sequence of str, optional
        Keys of :data:`QR_SAVINGS_CASES` (default: all).
    backend : Backend
        Where the problems are built.
    dts : sequence of float, optional
        Step sizes for every problem, replacing the defaults of the cases.
    quick : bool
        Keep the two largest default step sizes of each case.

    Raises
    ------
    ValueError
        Unknown problem, or a step size that does not fit a problem's time span.
    """
    names = list(problems or QR_SAVINGS_CASES)
    prepared = []
    for name in names:
        if name not in QR_SAVINGS_CASES:
            msg = f"unknown problem {name!r}; choose from {', '.join(QR_SAVINGS_CASES)}."
            raise ValueError(msg)
        case = QR_SAVINGS_CASES[name]
        dtype = backend.xp.complex128 if name == "schrodinger" else backend.xp.float64
        ref = PROBLEMS[name](**case.kwargs, xp=backend.xp, dtype=dtype, device=backend.device)
        if dts:
            steps = [float(dt) for dt in dts]
        else:
            scale = ref.suggested_dt if case.relative else 1.0
            steps = [scale * f for f in (case.dts[:2] if quick else case.dts)]
        for dt in steps:
            try:
                time_grid(ref.t_span, dt)
            except (TypeError, ValueError) as exc:
                msg = f"--dt {dt:g} does not fit problem {name!r} on t in {ref.t_span}: {exc}"
                raise ValueError(msg) from None
        prepared.append(PreparedCase(case, ref, steps))
    return prepared


def _shapes(counts: dict[tuple[int, int], int]) -> dict[str, int]:
    return {f"{a}x{b}": c for (a, b), c in sorted(counts.items())}


def solve_case(
    prepared: PreparedCase, method: str, dt: float, backend: Backend, *, warmup: bool = True
) -> dict[str, Any]:
    """Solve one prepared case with ``method`` at step size ``dt``; return its result row.

    A warm-up solve of two steps (compilation, caches; its time is ``warmup_time``)
    precedes the timed solve, so ``wall_time`` leaves compilation out.  The wall time
    covers the whole solve and waits for the device (``backend.sync``).  A
    numerical breakdown (for example an explicit substep beyond its stability limit)
    gives a row with ``status`` ``"failed: ..."`` and a NaN error.
    """
    case, ref = prepared.case, prepared.reference
    r = ref.Y0.rank
    kwargs: dict[str, Any] = {"method": method}
    if not hasattr(METHODS[method], "TABLEAUX"):
        # Runge-Kutta methods (rk-bug, projected-rk) evaluate F at their stages with
        # their default tableau instead of a substep solver.
        kwargs["substep"] = case.substep
    if METHODS[method].rank_adaptive:
        # Equal rank: capped at the fixed rank r; the tolerance per unit time keeps the
        # truncation error of the whole solve <= (t1 - t0) * tol whatever dt is.
        kwargs.update(tol=case.tol, max_rank=r, tol_per_unit_time=True)
    t0, t1 = ref.t_span
    row: dict[str, Any] = {"problem": case.problem, "method": method, "dt": dt, "backend": backend.label}
    try:
        warm = time.perf_counter()
        if warmup:
            # Two steps where the span allows: the first compiles the kernels of the
            # step, the second those of a step that starts from a step's output.
            solve(ref.problem, ref.Y0, (t0, min(t0 + 2 * dt, t1)), dt, **kwargs)
        backend.sync()
        row["warmup_time"] = time.perf_counter() - warm
        start = time.perf_counter()
        sol = solve(ref.problem, ref.Y0, ref.t_span, dt, **kwargs)
        backend.sync()
        wall = time.perf_counter() - start
    except LowRankIntegrationError as exc:
        return {**row, "status": f"failed: {exc}", "error": float("nan")}
    st = sol.stats
    rank = sol.Y.rank
    row.update(
        status="ok",
        steps=st["steps"],
        error=ref.error(sol.Y, t1),
        best_error=ref.best_error(t1, rank),
        rank=rank,
        max_rank=max(sol.step_ranks),
        qr=st["qr"],
        svd=st["svd"],
        qr_shapes=_shapes(st["qr_shapes"]),
        svd_shapes=_shapes(st["svd_shapes"]),
        qr_flops=st["qr_flops"],
        svd_flops=st["svd_flops"],
        flops=st["flops"],
        decompositions=st["qr"] + st["svd"],
        rhs_evals=st["rhs_evals"],
        max_rank_hits=st["max_rank_hits"],
        rejections=st["rejections"],
        wall_time=wall,
        t0=t0,
        t1=t1,
        step_ranks=list(sol.step_ranks),
    )
    return row


def run_qr_savings(
    prepared: Sequence[PreparedCase],
    methods: Sequence[str] | None,
    backend: Backend,
    *,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Solve every prepared case with every method at each of its step sizes.

    Parameters
    ----------
    prepared : sequence of PreparedCase
        From :func:`prepare_cases`.
    methods : sequence of str, optional
        Keys of :data:`lowrank_core.METHODS` (default: all).
    backend : Backend
        The backend the cases were prepared on.
    progress : callable, optional
        ``progress(done, total, label)``, called before each solve and at the end.

    Returns
    -------
    list of dict
        One row per (problem, step size, method); see :func:`solve_case`.
    """
    methods = list(methods or METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        msg = f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}."
        raise ValueError(msg)
    jobs = [(p, dt, m) for p in prepared for dt in p.dts for m in methods]
    rows = []
    for done, (p, dt, m) in enumerate(jobs):
        if progress is not None:
            progress(done, len(jobs), f"{p.case.problem} {m} dt={dt:.3g}")
        rows.append(solve_case(p, m, dt, backend))
    if progress is not None:
        progress(len(jobs), len(jobs), "done")
    _mark_equal_rank(rows)
    return rows


def _mark_equal_rank(rows: Sequence[dict[str, Any]]) -> None:
    """Set ``row["equal_rank"]``: every method solved (problem, dt) and ended at one rank."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["problem"], row["dt"]), []).append(row)
    for group in groups.values():
        ranks = {r.get("rank") for r in group}
        same = all(r["status"] == "ok" for r in group) and len(ranks) == 1
        for r in group:
            r["equal_rank"] = same


def equal_rank_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per problem: the step sizes at which every method ends at the same rank.

    Returns
    -------
    list of dict
        One entry per problem: ``problem``, ``rank`` (the common final rank, or
        ``None``), ``dts`` (step sizes with equal ranks), ``all_dts`` and
        ``methods``.
    """
    out = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        prows = [r for r in rows if r["problem"] == problem]
        equal = [r for r in prows if r.get("equal_rank")]
        out.append(
            {
                "problem": problem,
                "rank": equal[0]["rank"] if equal else None,
                "dts": sorted({r["dt"] for r in equal}, reverse=True),
                "all_dts": sorted({r["dt"] for r in prows}, reverse=True),
                "methods": list(dict.fromkeys(r["method"] for r in prows)),
            }
        )
    return out


def _reached(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["status"] == "ok" and math.isfinite(r["error"])]


#: Slack of the default equal-accuracy target over the median best error: errors at the
#: truncation plateau differ by a few per cent between methods and step sizes.
TARGET_SLACK = 1.1


def default_target(rows: Sequence[dict[str, Any]]) -> float:
    """The equal-accuracy target of one problem: ``TARGET_SLACK`` times the median over
    the methods of each method's smallest error over the step sizes.

    About half of the methods reach it within the benchmark's step sizes; methods that
    fail at every step size are left out of the choice.
    """
    best: dict[str, float] = {}
    for r in _reached(rows):
        best[r["method"]] = min(best.get(r["method"], math.inf), r["error"])
    return TARGET_SLACK * statistics.median(best.values()) if best else math.nan


def equal_accuracy_table(
    rows: Sequence[dict[str, Any]], targets: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """Each method's cheapest step size reaching a target error, per problem.

    Parameters
    ----------
    rows : sequence of dict
        From :func:`run_qr_savings`.
    targets : dict, optional
        Problem -> target error (relative error at the final time); default
        :func:`default_target` of each problem's rows.

    Returns
    -------
    list of dict
        One row per (problem, method): ``target``, ``dt`` (the largest step size whose
        error is ``<= target``; ``None`` when no step size reaches it) and, at that
        step size, ``error``, ``rank``, ``qr``, ``svd``, ``decompositions``,
        ``qr_flops``, ``svd_flops``, ``flops``, ``rhs_evals`` and ``wall_time``.
    """
    keys = ("error", "rank", "qr", "svd", "decompositions", "qr_flops", "svd_flops", "flops", "rhs_evals", "wall_time")
    out = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        prows = [r for r in rows if r["problem"] == problem]
        target = (targets or {}).get(problem, default_target(prows))
        for method in dict.fromkeys(r["method"] for r in prows):
            hits = [r for r in _reached(prows) if r["method"] == method and r["error"] <= target * (1 + 1e-9)]
            row: dict[str, Any] = {"problem": problem, "method": method, "target": target}
            if hits:
                best = max(hits, key=lambda r: r["dt"])
                row.update(dt=best["dt"], **{k: best[k] for k in keys})
            else:
                row.update(dt=None, **dict.fromkeys(keys))
            out.append(row)
    return out
