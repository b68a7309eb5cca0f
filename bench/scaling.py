"""Scaling benchmark: wall time per step and memory against the problem size (issue 16).

The problem: 1D1V Vlasov advection with a fixed electric field on the sparse path,

    f_t = -v f_x + E(x) f_v,     x in [0, 4 pi) periodic,  v in [-6, 6],
    E(x) = 0.1 sin(x / 2),
    f(0) = (1 + 0.01 cos(x / 2)) exp(-v^2 / 2) / sqrt(2 pi) + a rank-16 perturbation,

on an ``m x n`` grid (``m = n``), ``Y[i, j] ~ f(x_i, v_j)``, written for
``lc.LinearMatrixODE(None, None, terms=[(Dx, -diag(v)), (diag(E), Dv)])``
(``F(Y) = Dx Y diag(-v) + diag(E) Y Dv^T``) with ``Dx`` the periodic and ``Dv`` the
zero-boundary central differences as ``scipy.sparse`` CSR matrices: no ``m x m`` or
``m x n`` array is ever formed.  The initial value is the rank-1 Landau profile plus
15 orthonormal random directions with singular values 1e-3 ... 1e-6 (``rank`` 16 in
all), built from QRs of ``m x r`` blocks.  Step size: one fixed ``dt`` for every size,
half the CFL limit of the finest grid (``0.5 h_x / max|v|`` at the largest ``m``), so
every size takes the same, stable steps; substeps ``rk4`` (the library default).

Methods: ``abc-psi`` (fixed rank: no ``tol``), ``ksl`` and ``bug`` through
``lc.solve``, one step per call, all on ``linalg="auto"`` (the library default).
Baseline: ``full-rank``, the classical full-grid RK4 step of the same ``F`` on the
dense ``m x n`` array (what a user without low-rank methods would run; at most 3 timed
steps), measured only
where ``m n <= --full-max`` (default 1e8: 800 MB per copy of the grid, about six copies
alive in an RK4 step); above that it is not run and its memory ``8 m n`` bytes per copy
is recorded as ``dense_bytes`` in every row.

Each (condition, size, method) runs in a fresh Python process, so that its peak RSS is
its own.  In that process:

1. ``compile_s``: one step of the same method at ``m = n = 64`` (Numba compilation or
   loading of the kernels' cache, first calls into SciPy): reported apart, not timed
   as a step;
2. the problem at size ``m`` is built; ``rss_base`` is the process's resident memory
   then (``/proc/self/statm``);
3. ``first_step_ms``: a warm-up step at size ``m`` (any size-dependent first call);
4. ``ms_per_step``: the median of ``--steps`` further steps (``samples_ms``: each);
5. memory of one more step: ``tracemalloc_peak_bytes``, the peak of the
   Python-tracked allocations (NumPy arrays included) above those alive before the
   step (the state and the operators), and ``rss_growth_bytes``, the peak RSS of the
   process (``getrusage``) minus ``rss_base``, which also sees allocations tracemalloc
   does not (BLAS/LAPACK workspaces, Numba).  ``peak_factors`` is the tracemalloc peak
   in units of one ``m x r`` float64 factor (``factor_bytes``).
6. counts per step from ``sol.stats``: ``rhs_evals``, ``qr``, ``svd``, ``qr_shapes``,
   ``svd_shapes``, ``flops`` (QR + SVD operation counts), ``kernel_calls``.

Fit: for each (condition, method) the exponent ``p`` of ``ms_per_step ~ c m^p`` by
least squares on ``log ms`` against ``log m`` over the sizes measured.  The expected
cost is ``O(m r^2)`` at fixed ``r`` (QRs of ``m x r`` or ``m x 2r`` blocks and sparse
products with ``r``-column blocks), i.e. ``p = 1``; the fitted ``p`` is reported against
that.  Same fit for ``tracemalloc_peak_bytes`` (``memory_exponent``, expected 1: the
memory is ``O(m r)``).

Conditions: ``idle`` and ``load2`` (``--load 0 2``, default both): two CPU-bound
busy-loop processes started and stopped by this script (``background_load`` of
bench/_common.py), running while every worker of the condition
runs; their CPU share is recorded.  ``load_ratio`` in each loaded row is its
``ms_per_step`` over the idle row's.

Usage (the workplace sets ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``, which slow
current OpenBLAS; always unset them)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/scaling.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/scaling.py --sizes 1e3 1e4 --quick
    python bench/scaling.py --from bench/results/scaling.json      # table and plot only

Options: ``--sizes`` (default ``1e4 1e5 1e6``), ``--rank`` (default 16), ``--steps``
(timed steps per case, default 5), ``--methods`` (default ``abc-psi ksl bug``),
``--load`` (default ``0 2``), ``--full-max`` (largest ``m n`` of the full-rank baseline,
default 1e8; 0 skips it), ``--settle`` (seconds the load spins before measuring,
default 3), ``--quick`` (2 timed steps, ``--settle 1``, no full-rank baseline unless
``--full-max`` is given: a smoke run), ``--out`` (default
``bench/results/scaling.json``; the plot goes beside it with the suffix ``.png``),
``--from FILE`` (render an earlier result instead of measuring).

Output JSON (rewritten after every case; ``meta.complete`` is false until the run
ends): ``meta`` (versions, machine, command, git commit, seconds), ``environment``
(thread variables, BLAS, Numba threads), ``settings`` (sizes, rank, steps, dt, substep,
methods, loads, full_max, problem), ``background`` (per condition: ``processes``,
``settle_cpu_share``, ``cpu_share``, ``seconds``), ``rows`` (one per condition, size and
method: ``condition``, ``method``, ``m``, ``n``, ``rank``, ``dt``, ``substep``,
``compile_s``, ``first_step_ms``, ``ms_per_step``, ``samples_ms``,
``tracemalloc_peak_bytes``, ``rss_growth_bytes``, ``factor_bytes``, ``peak_factors``,
``dense_bytes``, the counts per step of item 6 (``null`` for ``full-rank``), and
``load_ratio`` in loaded rows; ``speedup_vs_full_rank`` where the baseline ran), and
``fits`` (one per condition and method: ``condition``, ``method``, ``sizes``,
``exponent``, ``prefactor_ms`` (``c``), ``memory_exponent``, ``expected_exponent``).
Nothing here asserts on a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_OUT = Path(__file__).parent / "results" / "scaling.json"
METHODS = ("abc-psi", "ksl", "bug")
BASELINE = "full-rank"
BASELINE_STEPS = 3  # timed steps of the full-rank baseline at most (seconds each at 1e4 x 1e4)
SUBSTEP = "rk4"
LENGTH, VMAX, KX, ALPHA, E0 = 4 * np.pi, 6.0, 0.5, 0.01, 0.1
EXPECTED_EXPONENT = 1.0


# -- the problem ------------------------------------------------------------------------


def operators(m: int, n: int) -> dict[str, Any]:
    """Grids and sparse operators of the fixed-field Vlasov advection on an ``m x n`` grid."""
    import scipy.sparse as sp

    x = np.arange(m) * (LENGTH / m)
    v = np.linspace(-VMAX, VMAX, n)
    hx, hv = x[1] - x[0], v[1] - v[0]
    one = np.ones(m)
    # periodic central difference: (u_{i+1} - u_{i-1}) / (2 hx), wrap-around corners
    Dx = sp.diags([one[:-1], -one[:-1], [-1.0], [1.0]], [1, -1, m - 1, -(m - 1)], shape=(m, m), format="csr")
    Dx = Dx / (2 * hx)
    onev = np.ones(n - 1)
    Dv = sp.diags([onev, -onev], [1, -1], shape=(n, n), format="csr") / (2 * hv)
    E = E0 * np.sin(KX * x)
    return {"x": x, "v": v, "Dx": Dx.tocsr(), "Dv": Dv.tocsr(), "minus_v": sp.diags(-v, format="csr"),
            "E": sp.diags(E, format="csr")}


def initial_factors(x: np.ndarray, v: np.ndarray, rank: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``U (m, r)``, ``S (r, r)``, ``V (n, r)``: the Landau profile and ``r - 1`` small random directions."""
    rng = np.random.default_rng(seed)
    a = 1 + ALPHA * np.cos(KX * x)
    b = np.exp(-v**2 / 2) / np.sqrt(2 * np.pi)
    U, _ = np.linalg.qr(np.column_stack([a, rng.standard_normal((x.size, rank - 1))]))
    V, _ = np.linalg.qr(np.column_stack([b, rng.standard_normal((v.size, rank - 1))]))
    s = np.concatenate([[np.linalg.norm(a) * np.linalg.norm(b)], np.logspace(-3, -6, rank - 1)])
    return U, np.diag(s), V


def step_size(max_size: int) -> float:
    """Half the CFL limit ``h_x / max|v|`` of the finest grid."""
    return 0.5 * (LENGTH / max_size) / VMAX


# -- one worker: one (size, method) in a fresh process ----------------------------------


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else 1024 * peak


def _low_rank_case(m: int, n: int, rank: int, method: str) -> tuple[Any, Any]:
    import lowrank_core as lc

    ops = operators(m, n)
    problem = lc.LinearMatrixODE(None, None, terms=[(ops["Dx"], ops["minus_v"]), (ops["E"], ops["Dv"])])
    return problem, lc.LowRank(*initial_factors(ops["x"], ops["v"], rank))


def _full_rank_step(ops: dict[str, Any]) -> Any:
    """The classical RK4 step of ``F(Y) = Dx Y diag(-v) + diag(E) Y Dv^T`` on the dense grid."""
    Dx, Ev, Dv = ops["Dx"], ops["E"], ops["Dv"]
    minus_v = -ops["v"]

    def F(Y: np.ndarray) -> np.ndarray:
        out = Dx @ Y
        out *= minus_v
        out += Ev @ (Dv @ Y.T).T  # diag(E) Y Dv^T, with Y Dv^T = (Dv Y^T)^T
        return out

    def step(Y: np.ndarray, dt: float) -> np.ndarray:
        k1 = F(Y)
        k2 = F(Y + (dt / 2) * k1)
        k3 = F(Y + (dt / 2) * k2)
        k4 = F(Y + dt * k3)
        return Y + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)

    return step


def worker(m: int, n: int, rank: int, method: str, steps: int, dt: float) -> dict[str, Any]:
    """Measure one (size, method) in this process; see the module docstring, items 1-6."""
    row: dict[str, Any] = {"method": method, "m": m, "n": n, "rank": rank, "dt": dt, "substep": SUBSTEP}
    if method == BASELINE:
        t0 = time.perf_counter()
        small = operators(64, 64)
        _full_rank_step(small)(np.ones((64, 64)), dt)
        row["compile_s"] = time.perf_counter() - t0
        ops = operators(m, n)
        U, S, V = initial_factors(ops["x"], ops["v"], rank)
        Y = (U * np.diag(S)) @ V.T
        del U, V
        step = _full_rank_step(ops)
        rss_base = _rss_bytes()
        t0 = time.perf_counter()
        Y = step(Y, dt)
        row["first_step_ms"] = 1e3 * (time.perf_counter() - t0)
        samples = []
        for _ in range(min(steps, BASELINE_STEPS)):
            t0 = time.perf_counter()
            Y = step(Y, dt)
            samples.append(time.perf_counter() - t0)
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        Y = step(Y, dt)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        row.update({k: None for k in ("rhs_evals", "qr", "svd", "qr_shapes", "svd_shapes", "flops", "kernel_calls")})
        row["rhs_evals"] = 4
        finite = bool(np.isfinite(Y).all())
    else:
        import lowrank_core as lc

        def one_step(problem: Any, Y: Any) -> Any:
            return lc.solve(problem, Y, (0.0, dt), dt, method=method, substep=SUBSTEP)

        t0 = time.perf_counter()
        one_step(*_low_rank_case(64, 64, rank, method))
        row["compile_s"] = time.perf_counter() - t0
        problem, Y = _low_rank_case(m, n, rank, method)
        rss_base = _rss_bytes()
        t0 = time.perf_counter()
        Y = one_step(problem, Y).Y
        row["first_step_ms"] = 1e3 * (time.perf_counter() - t0)
        samples = []
        for _ in range(steps):
            t0 = time.perf_counter()
            sol = one_step(problem, Y)
            samples.append(time.perf_counter() - t0)
            Y = sol.Y
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        sol = one_step(problem, Y)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        st = sol.stats
        row.update(
            rhs_evals=st["rhs_evals"], qr=st["qr"], svd=st["svd"], flops=st["flops"], kernel_calls=st["kernel_calls"],
            qr_shapes={f"{a}x{b}": c for (a, b), c in sorted(st["qr_shapes"].items())},
            svd_shapes={f"{a}x{b}": c for (a, b), c in sorted(st["svd_shapes"].items())},
        )
        finite = all(bool(np.isfinite(f).all()) for f in (sol.Y.U, sol.Y.S, sol.Y.V))
    factor_bytes = 8 * m * rank
    row.update(
        ms_per_step=1e3 * statistics.median(samples),
        samples_ms=[round(1e3 * s, 4) for s in samples],
        tracemalloc_peak_bytes=int(peak),
        rss_growth_bytes=max(0, _peak_rss_bytes() - rss_base),
        factor_bytes=factor_bytes,
        peak_factors=round(peak / factor_bytes, 2),
        dense_bytes=8 * m * n,
        finite=finite,
    )
    return row


def _run_worker(m: int, rank: int, method: str, steps: int, dt: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", str(m), str(rank), method, str(steps), repr(dt)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        msg = f"worker {method} m={m} failed (status {out.returncode}):\n{out.stderr[-3000:]}"
        raise RuntimeError(msg)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- fits, table, plot ------------------------------------------------------------------


def loglog_fit(sizes: list[float], values: list[float]) -> tuple[float, float]:
    """``(p, c)`` of the least-squares fit ``log value = log c + p log size``."""
    if len(sizes) < 2:
        return math.nan, math.nan
    p, logc = np.polyfit(np.log(sizes), np.log(values), 1)
    return float(p), float(np.exp(logc))


def fits(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for cond in dict.fromkeys(r["condition"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            sel = sorted((r for r in rows if r["condition"] == cond and r["method"] == method), key=lambda r: r["m"])
            if len(sel) < 2:
                continue
            p, c = loglog_fit([r["m"] for r in sel], [r["ms_per_step"] for r in sel])
            pm, _ = loglog_fit([r["m"] for r in sel], [max(1, r["tracemalloc_peak_bytes"]) for r in sel])
            out.append({"condition": cond, "method": method, "sizes": [r["m"] for r in sel], "exponent": round(p, 3),
                        "prefactor_ms": c, "memory_exponent": round(pm, 3), "expected_exponent": EXPECTED_EXPONENT})
    return out


def annotate(rows: list[dict[str, Any]]) -> None:
    """``load_ratio`` (loaded over idle) and ``speedup_vs_full_rank`` in place."""
    idle = {(r["method"], r["m"]): r["ms_per_step"] for r in rows if r["condition"] == "idle"}
    full = {(r["condition"], r["m"]): r["ms_per_step"] for r in rows if r["method"] == BASELINE}
    for r in rows:
        if r["condition"] != "idle" and (r["method"], r["m"]) in idle:
            r["load_ratio"] = round(r["ms_per_step"] / idle[(r["method"], r["m"])], 3)
        if r["method"] != BASELINE and (r["condition"], r["m"]) in full:
            r["speedup_vs_full_rank"] = round(full[(r["condition"], r["m"])] / r["ms_per_step"], 2)


def table(result: dict[str, Any]) -> str:
    lines = [f"{'cond':<6} {'method':<9} {'m=n':>8} {'ms/step':>10} {'first ms':>9} {'compile s':>9} "
             f"{'tracemalloc MB':>14} {'RSS MB':>8} {'factors':>7} {'F':>3} {'QR':>3} {'SVD':>3} {'x load':>6}"]
    for r in result["rows"]:
        lines.append(
            f"{r['condition']:<6} {r['method']:<9} {r['m']:>8.0e} {r['ms_per_step']:>10.2f} {r['first_step_ms']:>9.1f} "
            f"{r['compile_s']:>9.2f} {r['tracemalloc_peak_bytes'] / 2**20:>14.1f} "
            f"{r['rss_growth_bytes'] / 2**20:>8.1f} "
            f"{r['peak_factors']:>7.1f} {r['rhs_evals'] if r['rhs_evals'] is not None else '-':>3} "
            f"{r['qr'] if r['qr'] is not None else '-':>3} {r['svd'] if r['svd'] is not None else '-':>3} "
            f"{r.get('load_ratio', float('nan')):>6.2f}"
        )
    lines.append("")
    for f in result["fits"]:
        lines.append(f"fit {f['condition']:<6} {f['method']:<9} time ~ m^{f['exponent']:.2f} "
                     f"(expected m^{f['expected_exponent']:.0f}), tracemalloc peak ~ m^{f['memory_exponent']:.2f}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["rows"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    conds = list(dict.fromkeys(r["condition"] for r in rows))
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_t, ax_m = fig.subplots(1, 2)
    fit_of = {(f["condition"], f["method"]): f for f in result["fits"]}
    for i, method in enumerate(methods):
        color = colormaps["tab10"](i)
        for j, cond in enumerate(conds):
            sel = sorted((r for r in rows if r["method"] == method and r["condition"] == cond), key=lambda r: r["m"])
            if not sel:
                continue
            ms = [r["m"] for r in sel]
            style = {"color": color, "marker": "os"[j % 2], "linestyle": "-" if cond == "idle" else "--",
                     "markerfacecolor": "none" if j else color}
            f = fit_of.get((cond, method))
            label = f"{method}, {cond}" + (f": m^{f['exponent']:.2f}" if f else "")
            ax_t.plot(ms, [r["ms_per_step"] for r in sel], label=label, **style)
            if cond == "idle":
                ax_m.plot(ms, [r["tracemalloc_peak_bytes"] / 2**20 for r in sel], label=f"{method} tracemalloc",
                          **style)
                ax_m.plot(ms, [r["rss_growth_bytes"] / 2**20 for r in sel], label=f"{method} RSS growth",
                          color=color, marker="x", linestyle=":")
    all_m = sorted({r["m"] for r in rows})
    rank = result["settings"]["rank"]
    ax_m.plot(all_m, [8 * m * rank / 2**20 for m in all_m], color="0.4", linestyle="-", linewidth=0.8,
              label=f"one m×{rank} factor")
    ax_t.set(xscale="log", yscale="log", xlabel="m = n", ylabel="wall time per step [ms]",
             title=f"time per step, rank {rank} (slope 1 = O(m r²))")
    ax_m.set(xscale="log", yscale="log", xlabel="m = n", ylabel="peak memory of a step [MiB]",
             title="memory per step (idle)")
    ax_t.legend(fontsize=7)
    ax_m.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    return path


# -- main -------------------------------------------------------------------------------


def _size(text: str) -> int:
    value = float(text)
    if not (math.isfinite(value) and value >= 16 and value == int(value)):
        msg = f"sizes must be integers >= 16 (e.g. 1e4); got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        m, rank, method, steps, dt = int(argv[1]), int(argv[2]), argv[3], int(argv[4]), float(argv[5])
        print(json.dumps(worker(m, m, rank, method, steps, dt)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=_size, default=[10**4, 10**5, 10**6])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case (default 5, --quick 2)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--load", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--full-max", type=float, default=None, help="largest m*n of the full-rank baseline")
    parser.add_argument("--settle", type=float, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--from", dest="source", type=Path)
    args = parser.parse_args(argv)

    if args.source is not None:
        result = json.loads(args.source.read_text())
        print(table(result))
        print(f"wrote {plot(result, args.source.with_suffix('.png'))}")
        return 0
    if args.rank < 1 or args.rank > min(args.sizes):
        parser.error(f"--rank must be in [1, min(sizes)]; got {args.rank}")
    steps = args.steps or (2 if args.quick else 5)
    full_max = args.full_max if args.full_max is not None else (0 if args.quick else 1e8)
    settle = args.settle if args.settle is not None else (1.0 if args.quick else 3.0)
    sizes = sorted(set(args.sizes))
    dt = step_size(max(sizes))
    methods = list(args.methods)

    from _common import background_load, command, environment, exit_on_sigterm, git_commit

    from lowrank_core.bench import metadata

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    background: dict[str, Any] = {}
    settings = {
        "sizes": sizes, "rank": args.rank, "steps": steps, "dt": dt, "substep": SUBSTEP, "methods": methods,
        "loads": args.load, "full_max": full_max, "settle": settle,
        "problem": "1D1V Vlasov advection f_t = -v f_x + E(x) f_v, E = 0.1 sin(x/2), x in [0, 4pi), "
                   "v in [-6, 6], central differences (scipy.sparse CSR), LinearMatrixODE terms",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(complete: bool) -> dict[str, Any]:
        # written after every case, so that an interrupted run keeps what it measured
        annotate(rows)
        meta = metadata("scaling", command=command(), load=max(args.load, default=0),
                        seconds=round(time.perf_counter() - start, 1), git_commit=git_commit(), complete=complete)
        result = {"meta": meta, "environment": environment(), "settings": settings, "background": background,
                  "rows": rows, "fits": fits(rows)}
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        return result

    for load in args.load:
        cond = "idle" if load == 0 else f"load{load}"
        with background_load(load, settle) as info:
            background[cond] = info
            for m in sizes:
                for method in [*methods, *([BASELINE] if m * m <= full_max else [])]:
                    print(f"{cond} m=n={m:.0e} {method} ...", file=sys.stderr, flush=True)
                    rows.append({"condition": cond, **_run_worker(m, args.rank, method, steps, dt)})
                    save(complete=False)
    result = save(complete=True)
    seconds = time.perf_counter() - start
    print(table(result))
    print(f"\n{seconds:.0f} s; wrote {args.out} and {plot(result, args.out.with_suffix('.png'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
