"""Command line: ``lowrank-core`` (or ``python -m lowrank_core``).

Subcommands
-----------
bench qr-savings
    Every integrator on the reference problems at several step sizes: a table, JSON and
    CSV files and PNG plots in ``--out``.
bench kernels
    The batched QR/SVD kernel comparison, with the same outputs.
bench scale
    abc-PSI on Dask factors chunked by rows on a LocalCluster of ``--workers`` worker
    processes: time per step, peak memory per worker (needs the dask extra).
bench problems
    The kinetic and PDE reference problems with a few integrators: electric energy,
    drift of the conserved quantities and rank vs time (JSON, CSV, PNG in ``--out``).
demo
    A short guided run on one reference problem (the default without a subcommand).

Mistakes in the arguments print one line on stderr and exit with status 2; a missing
optional dependency prints one line naming the extra to install and exits with 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import bench
from .integrators import METHODS

DEFAULT_OUT = "lowrank-core-results"


class _UsageError(Exception):
    """A mistake in the arguments or the environment, reported in one line."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"must be a positive number; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        msg = f"must be a positive integer; got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _parser() -> argparse.ArgumentParser:
    backend = _Parser(add_help=False)
    backend.add_argument(
        "--backend", default="numpy", choices=list(bench.BACKEND_NAMES), help="array library to run on (default: numpy)"
    )
    backend.add_argument(
        "--device",
        metavar="DEVICE",
        help="device of the backend: cpu, cuda, cuda:N (torch, cupy); default: cpu or cuda",
    )
    output = _Parser(add_help=False)
    output.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"folder for the JSON, CSV and PNG files (default: ./{DEFAULT_OUT}/)",
    )
    output.add_argument(
        "--quick",
        action="store_true",
        help="a shorter run (qr-savings: the two largest step sizes, 110 solves instead of 165; "
        "20 s warm, 56 s cold with compilation on a 2-core machine)",
    )
    output.add_argument("--quiet", action="store_true", help="no progress bar")

    parser = _Parser(
        prog="lowrank-core",
        description="Dynamical low-rank integrators: benchmarks and a guided demo.",
        epilog="Without a subcommand, runs `demo`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{bench,demo}")
    bench_cmd = sub.add_parser("bench", help="measure the integrators or the QR/SVD kernels; write tables and plots")
    bench_sub = bench_cmd.add_subparsers(dest="bench", metavar="{qr-savings,training-cost,kernels,problems,scale}")
    qr = bench_sub.add_parser(
        "qr-savings",
        parents=[backend, output],
        help="every integrator on the reference problems at several step sizes",
        description=(
            "Solve the reference problems with every integrator at several step sizes, every method at the "
            "same rank r (rank-adaptive methods capped at r, tolerance per unit time); print the error at "
            "the final time, rank, QR/SVD counts with shapes and flops, F evaluations and wall time, and an "
            "equal-accuracy table (each method's cheapest step size reaching a target error); write JSON, CSV "
            "and PNG plots (error vs dt, vs decomposition flops, vs number of QRs, vs wall time; decompositions "
            "at equal accuracy; rank vs t) to --out."
        ),
    )
    qr.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        choices=list(METHODS),
        help=f"methods to run (default: all of {', '.join(METHODS)})",
    )
    qr.add_argument(
        "--problem",
        nargs="+",
        metavar="NAME",
        choices=list(bench.QR_SAVINGS_PROBLEMS),
        help=f"problems to run (default: all of {', '.join(bench.QR_SAVINGS_PROBLEMS)})",
    )
    qr.add_argument(
        "--dt",
        nargs="+",
        type=_positive_float,
        metavar="DT",
        help="step sizes for every problem (default: 3 to 5 per problem, 2 with --quick)",
    )
    train = bench_sub.add_parser(
        "training-cost",
        parents=[output],
        help="one cycle of each low-rank optimizer at the layer shapes of a 784-1024-1024-10 MLP",
        description=(
            "Time one cycle (one basis update) of each lowrank_core.training optimizer at the low-rank layer "
            "shapes of a 784 -> 1024 -> 1024 -> 10 MLP (1024x784, 1024x1024) at ranks 32 and 128, with PyTorch "
            "if installed (else NumPy); split the time into QR, SVD (each shape timed alone) and products; "
            "write JSON and CSV to --out."
        ),
    )
    train.add_argument(
        "--repeat",
        type=_positive_int,
        default=None,
        help="timed cycles per case; the shortest is reported (default: 5, 2 with --quick)",
    )
    kern = bench_sub.add_parser(
        "kernels",
        parents=[output],
        help="batched QR/SVD kernels against NumPy and a SciPy loop",
        description=(
            "Time the batched QR/SVD kernels against NumPy's batched linalg and a SciPy loop; print the "
            "table and write JSON, CSV and PNG plots (speedup, time per call) to --out."
        ),
    )
    kern.add_argument(
        "--ops", nargs="+", choices=["qr", "svd"], default=["qr", "svd"], help="operations (default: both)"
    )
    kern.add_argument(
        "--dtypes",
        nargs="+",
        choices=["float64", "float32"],
        default=["float64", "float32"],
        help="dtypes (default: both)",
    )
    kern.add_argument("--repeat", type=_positive_int, default=5, help="timed repetitions per case (default: 5)")
    phys = bench_sub.add_parser(
        "problems",
        parents=[output],
        help="kinetic and PDE problems: electric energy, conserved quantities, rank vs time",
        description=(
            "Solve the reference problems that have conserved quantities (Vlasov-Poisson, Schrodinger, ...) with "
            "a few integrators; print the largest drift of each conserved quantity, the fitted electric-energy "
            "rate against linear theory and the ranks; write JSON, CSV and PNG plots (electric energy vs t on a "
            "log scale with the linear-theory rate, drift of each conserved quantity vs t, rank vs t) to --out."
        ),
    )
    phys.add_argument(
        "--problem",
        nargs="+",
        metavar="NAME",
        help="problems to run (default: every registered problem with conserved quantities)",
    )
    phys.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        choices=list(METHODS),
        help="methods to run (default: ksl abc-psi ra-bug)",
    )
    phys.add_argument(
        "--rtol",
        type=_positive_float,
        default=1e-5,
        help="relative truncation tolerance of the rank-adaptive methods (default: 1e-5)",
    )
    scale = bench_sub.add_parser(
        "scale",
        parents=[output],
        help="abc-PSI on row-chunked Dask factors: time per step and memory per worker (needs the dask extra)",
        description=(
            "abc-PSI steps of a 1D advection-diffusion problem (rank 16, stencil operators with halo exchange) on "
            "Dask factors chunked by rows, on a LocalCluster of --workers worker processes (or the cluster at "
            "--address); print the time per step, peak memory per worker and synchronisations per step; write "
            "JSON to --out."
        ),
    )
    scale.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster (default: 2)")
    scale.add_argument("--rows", nargs="+", type=float, default=[1e6], help="rows m of the factor (default: 1e6)")
    scale.add_argument("--steps", type=int, default=2, help="timed steps after a warm-up step (default: 2)")
    scale.add_argument("--chunk", type=int, default=250_000, help="rows per chunk (default: 250000)")
    scale.add_argument("--memory-limit", default="auto", help="memory limit per worker, e.g. 4GB (default: auto)")
    scale.add_argument("--address", default=None, help="scheduler address of an existing cluster (Client(address))")

    demo = sub.add_parser(
        "demo",
        parents=[backend],
        help="a short guided run on one reference problem (default; 2 s warm, 21 s cold with compilation "
        "on a 2-core machine)",
        description="Solve one reference problem, explain what the integrator did, then compare every method.",
    )
    demo.add_argument(
        "--problem",
        default="prescribed-path",
        choices=list(bench.QR_SAVINGS_PROBLEMS),
        help="the problem (default: prescribed-path)",
    )
    demo.add_argument(
        "--method", default="abc-psi", choices=list(METHODS), help="the method explained (default: abc-psi)"
    )
    demo.add_argument("--dt", type=_positive_float, help="step size (default: chosen per problem)")
    return parser


def _require_bench_extras() -> None:
    missing = [name for name in ("matplotlib", "tqdm") if importlib.util.find_spec(name) is None]
    if missing:
        msg = (
            f"`lowrank-core bench` needs {' and '.join(missing)}, not installed here; "
            'install the bench extra: python -m pip install "lowrank-core[bench]"'
        )
        raise _UsageError(msg, code=1)


class _ProgressBar:
    """``progress(done, total, label)`` drawn with tqdm on stderr (nothing when quiet)."""

    def __init__(self, *, quiet: bool, unit: str) -> None:
        self.quiet, self.unit, self.bar = quiet, unit, None

    def __call__(self, done: int, total: int, label: str) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr, dynamic_ncols=True, leave=False)
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix_str(label)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _checked(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a ``ValueError`` (a bad argument found late) becomes a one-line usage error,
    an ``ImportError`` (a missing optional dependency) one with status 1."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    except ImportError as exc:
        raise _UsageError(str(exc), code=1) from None


def _command() -> str:
    """This process's command line, as recorded in the results files."""
    return " ".join(["lowrank-core", *sys.argv[1:]])


def _run(args: argparse.Namespace, unit: str, fn: Any, *fn_args: Any, **kwargs: Any) -> bench.BenchResult:
    """``fn(*fn_args, out=--out, progress=<bar>, command=<this command line>, **kwargs)``."""
    with _ProgressBar(quiet=args.quiet, unit=unit) as progress:
        return _checked(fn, *fn_args, out=args.out, progress=progress, command=_command(), **kwargs)


def _wrote(paths: Sequence[Path]) -> None:
    print("\nwrote " + "\n      ".join(str(p) for p in paths))


def _note_failures(rows: Sequence[dict[str, Any]], *, with_dt: bool = False) -> None:
    """One ``note:`` line on stderr per row whose ``status`` is not ``"ok"``."""
    for r in rows:
        if r["status"] != "ok":
            dt = f" dt={r['dt']:.3g}" if with_dt else ""
            print(f"note: {r['problem']} {r['method']}{dt} {r['status']}", file=sys.stderr)


def _finish(res: bench.BenchResult, notes: str, unit: str, where: str = "") -> int:
    """Print ``notes``, how many ``unit`` ran and in how long (``where``, e.g. " on numpy"),
    then the files written; the exit status 0."""
    print(f"{notes}\n{len(res.rows)} {unit} in {res.meta['seconds']:.1f} s{where}.")
    _wrote(res.files)
    return 0


def _bench_qr_savings(args: argparse.Namespace) -> int:
    from .bench._report import EQUAL_ACCURACY_COLUMNS, QR_SAVINGS_COLUMNS, format_table

    res = _run(
        args,
        "solve",
        bench.qr_savings,
        args.problem,
        args.methods,
        backend=args.backend,
        device=args.device,
        dts=args.dt,
        quick=args.quick,
    )
    rows = res.rows
    for (problem, case), eq in zip(res.meta["cases"].items(), res.tables["equal_rank"], strict=True):
        print(
            f"\n{problem}: {case['title']}; rank-adaptive methods: max_rank = r, "
            f"tol = {case['tol']:g} per unit time (theta = tol*dt)"
        )
        same = ", ".join(f"{dt:.3g}" for dt in eq["dts"]) or "none"
        print(
            f"every method ends at rank {eq['rank']} at dt = {same}"
            if eq["dts"]
            else "the methods end at different ranks at every dt (see the rank column)"
        )
        print(format_table([r for r in rows if r["problem"] == problem], QR_SAVINGS_COLUMNS[1:]))
    print(
        "\nequal accuracy: each method's largest dt whose error is <= the target "
        "(1.1 x the median of the methods' smallest errors)"
    )
    print(format_table(res.tables["equal_accuracy"], EQUAL_ACCURACY_COLUMNS))
    _note_failures(rows, with_dt=True)
    return _finish(
        res,
        "\nerror: relative Frobenius error at the final time; best@rank: best approximation at the final rank;"
        "\nF: right-hand-side evaluations; QR/SVD Mflop: decomposition operation counts (LAPACK estimates);"
        "\nms: wall time of the solve, without the two-step warm-up solve before it that compiles the kernels.",
        "solves",
        f" on {res.meta['backend']}",
    )


def _bench_training_cost(args: argparse.Namespace) -> int:
    from .bench._report import TRAINING_COST_COLUMNS, format_table

    res = _run(args, "case", bench.training_cost, repeat=args.repeat, quick=args.quick)
    rows = res.rows
    print(
        f"\none cycle (one basis update) per optimizer, {rows[0]['backend'] if rows else '-'}, "
        f"shortest of {res.meta['repeat']} timed cycles"
    )
    print(format_table(rows, TRAINING_COST_COLUMNS))
    return _finish(
        res,
        "\nms QR / ms SVD: the cycle's decompositions timed alone (shape by shape); ms products: the rest of "
        "the cycle.",
        "cases",
    )


def _bench_kernels(args: argparse.Namespace) -> int:
    from .bench._report import KERNEL_COLUMNS, format_table

    res = _run(
        args,
        "case",
        bench.kernels,
        ops=tuple(args.ops),
        dtypes=tuple(args.dtypes),
        repeat=args.repeat,
        quick=args.quick,
    )
    print(format_table(res.rows, KERNEL_COLUMNS))
    return _finish(
        res,
        "\nms: median milliseconds per batched call; × numpy / × scipy-loop: median speedup of the kernel over"
        "\nNumPy's batched linalg / a Python loop of SciPy LAPACK calls; errors: largest orthonormality and"
        "\nrelative reconstruction errors of the kernel's factors.",
        "cases",
    )


def _bench_problems(args: argparse.Namespace) -> int:
    from .bench._problems import drift_summary
    from .bench._report import PROBLEMS_COLUMNS, format_table

    res = _run(args, "solve", bench.problems, args.problem, args.methods, quick=args.quick, rtol=args.rtol)
    rows = res.rows
    print(format_table([{**r, "drifts": drift_summary(r)} for r in rows], PROBLEMS_COLUMNS))
    _note_failures(rows)
    return _finish(
        res,
        "\nrate: half the slope of log(electric energy) vs t (amplitude rate), against the linear-theory rate;"
        "\nlargest drift: max over t of |q(t) - q(0)| / |q(0)| per conserved quantity (abs: |q(t) - q(0)|);"
        f"\nrank-adaptive methods: rtol = {args.rtol:g}, max_rank = 2r.",
        "solves",
    )


def _bench_scale(args: argparse.Namespace) -> int:
    res = _checked(
        bench.scale,
        args.rows,
        workers=args.workers,
        steps=args.steps,
        chunk=args.chunk,
        memory_limit=args.memory_limit,
        address=args.address,
        out=args.out,
        command=_command(),
    )
    print(f"{'rows':>10} {'workers':>7} {'s/step':>8} {'peak GiB/worker':>16} {'syncs/step':>10}")
    for r in res.rows:
        peak = max(r["peak_rss_per_worker_bytes"]) / 2**30
        print(
            f"{r['m']:>10.3g} {r['workers']:>7} {r['ms_per_step'] / 1e3:>8.3g} {peak:>16.3g} "
            f"{r['dask_syncs_per_step']:>10.3g}"
        )
    _wrote(res.files)
    return 0


def _demo(args: argparse.Namespace) -> int:
    _checked(
        bench.demo,
        getattr(args, "problem", "prescribed-path"),
        getattr(args, "method", "abc-psi"),
        backend=getattr(args, "backend", "numpy"),
        device=getattr(args, "device", None),
        dt=getattr(args, "dt", None),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lowrank-core``; returns the process exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a one-line error (2), already printed
        return int(exc.code or 0)
    try:
        if args.command == "bench":
            if args.bench is None:
                msg = (
                    "choose a benchmark: `lowrank-core bench qr-savings`, `lowrank-core bench kernels` or "
                    "`lowrank-core bench problems`"
                )
                raise _UsageError(msg)
            _require_bench_extras()
            runs = {
                "qr-savings": _bench_qr_savings,
                "training-cost": _bench_training_cost,
                "kernels": _bench_kernels,
                "problems": _bench_problems,
                "scale": _bench_scale,
            }
            return runs[args.bench](args)
        return _demo(args)
    except _UsageError as exc:
        print(f"lowrank-core: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("lowrank-core: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
