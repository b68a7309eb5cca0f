"""The measurements behind ``lowrank-core bench`` and ``lowrank-core demo``.

* :func:`run_qr_savings` solves reference problems of :mod:`lowrank_core.problems` with
  every integrator at several step sizes and returns one row per solve: error at the
  final time, final rank, QR/SVD counts with shapes, flops, right-hand-side
  evaluations and wall time.
* :func:`run_kernels` runs ``lowrank_core._linalg.kernel_benchmark`` (the batched QR/SVD
  kernel comparison) and returns its rows.

Both take ``progress(done, total, label)`` callbacks, so the command line can show a
progress bar; neither prints or plots (see ``_report`` and ``_plots``).
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import LowRankIntegrationError
from ._integrate import solve, time_grid
from .integrators import METHODS
from .problems import PROBLEMS, ReferenceProblem

__all__ = [
    "BACKENDS",
    "QR_SAVINGS_CASES",
    "kernel_benchmark",
    "Backend",
    "Case",
    "PreparedCase",
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
    (the RK4 stability limit of stiff problems) when ``relative`` is true.
    """

    problem: str
    title: str
    kwargs: dict[str, Any]
    substep: str
    dts: tuple[float, ...]
    tol: float
    relative: bool = False


#: The embedded default of ``lowrank-core bench qr-savings``: every reference problem,
#: sized so that the full run takes well under a minute per problem on one CPU core.
QR_SAVINGS_CASES: dict[str, Case] = {
    case.problem: case
    for case in (
        Case(
            "prescribed-path",
            "matrix path A(t), 100×100, r = 8, exact increments",
            {"N": 100, "r": 8},
            "exact",
            (0.1, 0.05, 0.02, 0.01, 0.005),
            1e-6,
        ),
        Case(
            "heat",
            "heat equation (stiff), 24×24, r = 8, RK4",
            {"size": 24, "r": 8, "t_end": 0.05},
            "rk4",
            (1.0, 0.5, 0.25),
            1e-8,
            relative=True,
        ),
        Case(
            "schrodinger",
            "Schrödinger, 64×64 complex, r = 8, RK4",
            {"N": 64, "r": 8},
            "rk4",
            (0.1, 0.05, 0.02, 0.01),
            1e-8,
        ),
        Case(
            "riccati",
            "Riccati (stiff), 32×32, r = 8, RK4",
            {"m": 32, "r": 8, "t_end": 0.02},
            "rk4",
            (1.0, 0.5, 0.25),
            1e-8,
            relative=True,
        ),
        Case(
            "quadratic",
            "gradient flow of ||W - B||²/2, 60×40, r = 5, Euler",
            {"m": 60, "n": 40, "r": 5, "t_end": 5.0},
            "euler",
            (0.5, 0.2, 0.1, 0.05),
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

    A one-step warm-up solve (compilation, caches) precedes the timed solve.  The wall
    time covers the whole solve and waits for the device (``backend.sync``).  A
    numerical breakdown (for example an explicit substep beyond its stability limit)
    gives a row with ``status`` ``"failed: ..."`` and a NaN error.
    """
    case, ref = prepared.case, prepared.reference
    r = ref.Y0.rank
    kwargs: dict[str, Any] = {"method": method, "substep": case.substep}
    if METHODS[method].rank_adaptive:
        kwargs.update(tol=case.tol, max_rank=2 * r)
    t0, t1 = ref.t_span
    row: dict[str, Any] = {"problem": case.problem, "method": method, "dt": dt, "backend": backend.label}
    try:
        if warmup:
            solve(ref.problem, ref.Y0, (t0, t0 + dt), dt, **kwargs)
        backend.sync()
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
    return rows


# ====================================================================== kernels
def kernel_benchmark() -> Callable[..., list[dict[str, Any]]]:
    """``lowrank_core._linalg.kernel_benchmark``, the batched QR/SVD kernel comparison.

    Raises
    ------
    ValueError
        If this build of the library has no kernel benchmark.
    """
    from . import _linalg

    bench = getattr(_linalg, "kernel_benchmark", None)
    if bench is None:
        msg = "this build of lowrank_core has no kernel benchmark (lowrank_core._linalg.kernel_benchmark is missing)."
        raise ValueError(msg)
    return bench
