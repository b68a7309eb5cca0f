"""Contention benchmark: the kernel paths against LAPACK, idle and with CPU-bound load.

The measurement of issue 14 ("How we will know"): on a machine whose cores are busy with
other work, the batched kernels must never cost more than 1.5x the LAPACK path
(``linalg="xp"``); idle, their ratios must stay what they were.  Cases:

* ``ksl``, ``bug``, ``abc-psi`` steps (``<method>/<substep>``) at ``n = 1000``,
  ``r = 20`` on a dense right-hand side: ``lc.MatrixODE(f)`` with the gradient flow
  ``f(t, Y) = B - Y`` (``B`` a fixed 1000 x 1000 matrix), so that ``F`` is cheap and
  does not drown the rest of the step.  Figure: the **time per step outside F**, i.e.
  the wall time of ``lc.solve(..., linalg=path)`` over ``--steps`` steps minus the time
  spent inside the user's ``f`` (``f`` is wrapped by a timer), divided by the number of
  steps.  Forming ``Y`` densely for ``f`` and the products with ``F`` are library work
  and count as outside ``F``.  The QR/SVD counts and shapes per step are recorded.
* ``qr 1000x20`` and ``qr 100000x32``: one float64 thin QR through the library's seam
  (``lowrank_core._linalg.thin_qr`` under ``use_linalg(path)``).  Figure: milliseconds
  per QR (each sample repeats the call until it lasts about ``--sample-ms``).

Paths: ``xp`` (``numpy.linalg``, i.e. LAPACK: the reference), ``auto`` (the default size
rule) and ``kernels`` (forced kernels).  Conditions: ``idle`` (``--load 0``) and
``load2`` (``--load 2``: the benchmark starts two pure-Python busy-loop processes, waits
until they report running and have spun for ``--settle`` seconds, measures, and always
stops them, also on Ctrl-C or SIGTERM; the loops also exit by themselves if this process
dies).  Their measured CPU share is recorded.

Two references, both measured under the same condition:

* ``× xp`` (same process): every figure is the median over ``--rounds`` interleaved
  rounds (``lowrank_core.bench.time_rounds``: within a round every path runs
  once, so a drift of the machine's load hits all paths alike), and this ratio is the
  median of the per-round ratios ``path / xp``;
* ``× xp alone``: the xp path timed again in a fresh interpreter that never runs a Numba
  parallel region (started by this script under the same background load), and the
  ratio of medians ``path / xp alone``.  This is LAPACK as a user without the kernels
  runs it.  It matters on few cores: in one process the kernels' worker threads and
  OpenBLAS's threads both spin-wait after their work, so a hand-off between them can
  cost tens of milliseconds and slows the xp path itself; on the xp row this column is
  that slowdown (``--no-isolated`` skips it).

A ratio > 1 means slower than LAPACK.  Target: under load, ``auto``'s ratio <= 1.5 in
every case against both references (the ``kernels`` path is checked too, for
information only).  Idle ratios have no threshold; ``--baseline`` compares them with an
earlier result file.  Nothing here asserts on a time.

Usage (the workplace sets ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE``, which slow
current OpenBLAS; always unset them)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/contention.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/contention.py --quick
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/contention.py --load 2 --rounds 9
    python bench/contention.py --from bench/results/contention.json --markdown   # render only

Options: ``--load 0 2`` (default both), ``--rounds``, ``--steps``, ``--methods``,
``--substeps`` (default ``rk4 euler``: ``rk4`` is the library default, ``euler`` has
fewer products per QR and so exposes the factorizations more), ``--paths``, ``--quick``
(3 rounds, 1 step, ``euler`` only unless ``--substeps``, short settle: a smoke run),
``--out`` (default ``bench/results/contention.json``), ``--markdown`` (print the table
as Markdown), ``--from FILE`` (render an earlier result instead of measuring),
``--baseline FILE``, ``--no-isolated``.  ``settings.seconds`` records how long the
measurement took.
The BLAS and Numba threads are those of the environment and are recorded
(``environment``).

Output JSON: ``meta`` (versions, command, git commit), ``environment`` (Numba threads
and threading layer, thread variables, ``threadpoolctl`` pools, NumPy's BLAS),
``settings``, ``background`` (per condition: ``processes``, their ``settle_cpu_share``
and ``cpu_share``), ``isolated_reference`` (per condition: whether the child imported
Numba or started its threads, its seconds), ``cases`` (one per case: ``case``, ``kind``,
``unit``, shape fields, ``counts_per_step`` per path or ``algorithm``, and
``conditions[cond]`` with ``load``, medians ``ms`` per path (steps also ``f_ms`` and
``wall_ms``), ``ratio`` per non-xp path, ``samples_ms``, ``xp_isolated`` (``ms``,
``samples_ms``) and ``ratio_isolated`` per path), ``target`` (``ratio``, ``path``,
``rule``, ``holds``, ``per_path``, ``failures`` and ``other_paths_over``, each with
``case``, ``condition``, ``path``, ``reference``, ``ratio``) and, with ``--baseline``,
``baseline``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xnp
import numpy as np
from _common import background_load, command, condition_name, environment, exit_on_sigterm, git_commit

import lowrank_core as lc
from lowrank_core._linalg import thin_qr, use_linalg
from lowrank_core.bench import metadata, time_rounds
from lowrank_core.bench._report import Column, format_table

N, RANK = 1000, 20
QR_SHAPES = ((1000, 20), (100000, 32))
METHODS = ("ksl", "bug", "abc-psi")
SUBSTEPS = ("rk4", "euler")
PATHS = ("xp", "auto", "kernels")
TARGET_RATIO = 1.5
TARGET_PATH = "auto"
DT = 0.01
DEFAULT_OUT = Path(__file__).parent / "results" / "contention.json"

# -- cases -----------------------------------------------------------------------------


class _TimedF:
    """The dense right-hand side ``f(t, Y) = B - Y``, accumulating its own run time."""

    def __init__(self, B: np.ndarray) -> None:
        self.B = B
        self.seconds = 0.0

    def __call__(self, t: float, Y: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.B - Y
        self.seconds += time.perf_counter() - t0
        return out


def _step_problem(n: int, r: int, seed: int = 0) -> tuple[_TimedF, lc.LowRank]:
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n)) / np.sqrt(n)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    S = np.diag(np.logspace(0, -3, r))
    return _TimedF(B), lc.LowRank(U, S, V)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _summarise(
    per_round: dict[str, list[float]], extra: dict[str, dict[str, list[float]]] | None = None
) -> dict[str, Any]:
    """Medians (ms) and median per-round ratios against ``xp`` of per-round seconds."""
    out: dict[str, Any] = {
        "ms": {p: 1e3 * _median(v) for p, v in per_round.items()},
        "ratio": {},
        "samples_ms": {p: [round(1e3 * s, 4) for s in v] for p, v in per_round.items()},
    }
    if "xp" in per_round:
        base = per_round["xp"]
        for p, v in per_round.items():
            if p != "xp":
                out["ratio"][p] = _median([a / b for a, b in zip(v, base, strict=True) if b > 0])
    for key, values in (extra or {}).items():
        out[key] = {p: 1e3 * _median(v) for p, v in values.items()}
    return out


def measure_step(method: str, substep: str, paths: list[str], rounds: int, steps: int) -> tuple[dict, dict]:
    """One step case: (per-path counts per step, condition summary)."""
    f, Y0 = _step_problem(N, RANK)
    problem = lc.MatrixODE(f)
    f_seconds: dict[str, list[float]] = {p: [] for p in paths}
    n_steps: dict[str, int] = {}
    counts: dict[str, dict[str, Any]] = {}

    def runner(path: str) -> Callable[[], None]:
        def run() -> None:
            f.seconds = 0.0
            sol = lc.solve(problem, Y0, (0.0, steps * DT), DT, method=method, substep=substep, linalg=path)
            f_seconds[path].append(f.seconds)
            st = sol.stats
            k = st["steps"]
            n_steps[path] = k
            counts[path] = {
                "qr": st["qr"] / k,
                "svd": st["svd"] / k,
                "rhs_evals": st["rhs_evals"] / k,
                "kernel_calls": st["kernel_calls"] / k,
                "qr_shapes": {f"{a}x{b}": c / k for (a, b), c in st["qr_shapes"].items()},
                "svd_shapes": {f"{a}x{b}": c / k for (a, b), c in st["svd_shapes"].items()},
            }

        return run

    walls = time_rounds({p: runner(p) for p in paths}, rounds)
    outside, inside, wall = {}, {}, {}
    for p in paths:
        fs = f_seconds[p][1:]  # the first entry is _time_rounds' warm-up call
        k = n_steps[p]
        wall[p] = [w / k for w in walls[p]]
        inside[p] = [s / k for s in fs]
        outside[p] = [(w - s) / k for w, s in zip(walls[p], fs, strict=True)]
    summary = _summarise(outside, {"f_ms": inside, "wall_ms": wall})
    summary["steps"] = n_steps[paths[0]]
    return counts, summary


def measure_qr(shape: tuple[int, int], paths: list[str], rounds: int, sample_s: float) -> dict[str, Any]:
    """One single-matrix QR case: the condition summary (ms per QR)."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape)

    def once(path: str) -> float:
        with use_linalg(path):
            t0 = time.perf_counter()
            thin_qr(x, xnp)
            return time.perf_counter() - t0

    for p in paths:  # compile, then calibrate on the slowest path
        once(p)
    slowest = max(min(once(p), once(p)) for p in paths)
    inner = max(1, min(10000, math.ceil(sample_s / max(slowest, 1e-7))))

    def runner(path: str) -> Callable[[], None]:
        def run() -> None:
            with use_linalg(path):
                for _ in range(inner):
                    thin_qr(x, xnp)

        return run

    times = time_rounds({p: runner(p) for p in paths}, rounds)
    summary = _summarise({p: [t / inner for t in v] for p, v in times.items()})
    summary["calls_per_sample"] = inner
    return summary


def _qr_algorithm(shape: tuple[int, int]) -> str | None:
    try:
        import lowrank_kernels

        return lowrank_kernels.qr_algorithm(shape, np.float64)
    except (ImportError, AttributeError, TypeError, ValueError):
        return None


# -- run -------------------------------------------------------------------------------


def _target(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The 1.5x target under load, against both references; judged on ``TARGET_PATH``."""
    per_path: dict[str, bool] = {}
    failures, other = [], []
    for case in cases:
        for cond, res in case["conditions"].items():
            if res["load"] == 0:
                continue
            for key, reference in (("ratio", "same process"), ("ratio_isolated", "xp alone")):
                for p, ratio in res.get(key, {}).items():
                    if p == "xp":
                        continue
                    ok = ratio <= TARGET_RATIO
                    per_path[p] = per_path.get(p, True) and ok
                    if not ok:
                        entry = {"case": case["case"], "condition": cond, "path": p, "reference": reference}
                        entry["ratio"] = ratio
                        (failures if p == TARGET_PATH else other).append(entry)
    return {
        "ratio": TARGET_RATIO,
        "path": TARGET_PATH,
        "rule": (
            f"under load, the {TARGET_PATH!r} path at most {TARGET_RATIO}x the 'xp' (LAPACK) path in every case, "
            "against xp in the same process and against xp alone"
        ),
        "holds": per_path.get(TARGET_PATH),  # None: no loaded condition or no auto path measured
        "per_path": per_path,
        "failures": failures,
        "other_paths_over": other,
    }


def _new_cases(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = {}
    for m in args.methods:
        for s in args.substeps:
            name = f"{m}/{s}"
            cases[name] = {
                "case": name,
                "kind": "step",
                "method": m,
                "substep": s,
                "n": N,
                "rank": RANK,
                "dt": DT,
                "unit": "ms per step outside F",
                "conditions": {},
            }
    if not args.no_qr:
        for shape in QR_SHAPES:
            name = f"qr {shape[0]}x{shape[1]}"
            cases[name] = {
                "case": name,
                "kind": "qr",
                "shape": list(shape),
                "dtype": "float64",
                "algorithm": _qr_algorithm(shape),
                "unit": "ms per QR",
                "conditions": {},
            }
    return cases


def _measure(case: dict[str, Any], paths: list[str], args: argparse.Namespace) -> dict[str, Any]:
    if case["kind"] == "step":
        counts, res = measure_step(case["method"], case["substep"], paths, args.rounds, args.steps)
        case.setdefault("counts_per_step", counts)
        return res
    return measure_qr(tuple(case["shape"]), paths, args.rounds, args.sample_ms / 1e3)


def _isolated_main(args: argparse.Namespace) -> None:
    """Child process: the xp path alone (no kernel threads ever start); JSON on stdout."""
    out = {name: _measure(case, ["xp"], args) for name, case in _new_cases(args).items()}
    numba = sys.modules.get("numba")
    started = False
    if numba is not None:
        try:
            numba.threading_layer()
            started = True
        except ValueError:
            started = False
    print(json.dumps({"cases": out, "numba_imported": numba is not None, "numba_threads_started": started}))


def _isolated_reference(args: argparse.Namespace) -> dict[str, Any]:
    """Run :func:`_isolated_main` in a fresh interpreter (under the current load)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--isolated-xp", "--rounds", str(args.rounds)]
    cmd += ["--steps", str(args.steps), "--sample-ms", str(args.sample_ms)]
    cmd += ["--methods", *args.methods, "--substeps", *args.substeps] + (["--no-qr"] if args.no_qr else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = f"the isolated xp reference failed (exit status {proc.returncode}):\n{proc.stderr[-2000:]}"
        raise RuntimeError(msg)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    paths = list(dict.fromkeys(["xp", *args.paths]))  # xp first: the reference
    cases = _new_cases(args)
    t_start = time.perf_counter()
    background: dict[str, dict[str, Any]] = {}
    isolated_info: dict[str, dict[str, Any]] = {}
    for load in args.load:
        cond = condition_name(load)
        with background_load(load, args.settle) as info:
            for name, case in cases.items():
                t0 = time.perf_counter()
                res = _measure(case, paths, args)
                case["conditions"][cond] = {"load": load, **res}
                ratios = ", ".join(f"{p} {r:.2f}x" for p, r in res["ratio"].items())
                print(
                    f"[{cond}] {name:<16} xp {res['ms']['xp']:.4g} ms; {ratios}  ({time.perf_counter() - t0:.1f} s)",
                    flush=True,
                )
            if not args.no_isolated:
                t0 = time.perf_counter()
                iso = _isolated_reference(args)
                isolated_info[cond] = {k: v for k, v in iso.items() if k != "cases"}
                isolated_info[cond]["seconds"] = round(time.perf_counter() - t0, 1)
                for name, case in cases.items():
                    res = case["conditions"][cond]
                    alone = iso["cases"][name]
                    base = alone["ms"]["xp"]
                    res["xp_isolated"] = {k: v for k, v in alone.items() if k != "ratio"}
                    res["ratio_isolated"] = {p: ms / base for p, ms in res["ms"].items()}
                    ratios = ", ".join(f"{p} {r:.2f}x" for p, r in res["ratio_isolated"].items())
                    print(f"[{cond}] {name:<16} xp alone {base:.4g} ms; against it: {ratios}", flush=True)
        background[cond] = info
    case_list = list(cases.values())
    return {
        "meta": metadata("contention", command=command(), load=max(args.load, default=0), git_commit=git_commit()),
        "environment": environment(),
        "settings": {
            "n": N,
            "rank": RANK,
            "dt": DT,
            "qr_shapes": [list(s) for s in QR_SHAPES] if not args.no_qr else [],
            "methods": args.methods,
            "substeps": args.substeps,
            "paths": paths,
            "loads": args.load,
            "rounds": args.rounds,
            "steps": args.steps,
            "settle_s": args.settle,
            "sample_ms": args.sample_ms,
            "isolated_reference": not args.no_isolated,
            "quick": args.quick,
            "seconds": round(time.perf_counter() - t_start, 1),
        },
        "background": background,
        "isolated_reference": isolated_info,
        "cases": case_list,
        "target": _target(case_list),
    }


def compare_baseline(results: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Idle ratios now against those of an earlier result file (``now / then``)."""
    then = {c["case"]: c for c in baseline.get("cases", [])}
    out: dict[str, Any] = {}
    for case in results["cases"]:
        old = then.get(case["case"], {}).get("conditions", {}).get("idle")
        new = case["conditions"].get("idle")
        if not old or not new:
            continue
        entry = {}
        for key in ("ratio", "ratio_isolated"):
            for p, r in new.get(key, {}).items():
                was = old.get(key, {}).get(p)
                if p != "xp" and was:
                    entry[f"{p} ({'alone' if key == 'ratio_isolated' else 'same process'})"] = {
                        "now": r,
                        "baseline": was,
                        "change": r / was,
                    }
        out[case["case"]] = entry
    return out


# -- tables ----------------------------------------------------------------------------


def table_rows(results: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per (case, path): ms and ratio against xp in every condition."""
    conds: list[str] = []
    for case in results["cases"]:
        conds.extend(c for c in case["conditions"] if c not in conds)
    rows = []
    for case in results["cases"]:
        for p in results["settings"]["paths"]:
            row: dict[str, Any] = {"case": case["case"], "unit": case["unit"], "path": p}
            judged = None
            for cond in conds:
                res = case["conditions"].get(cond)
                if res is None:
                    continue
                row[f"ms_{cond}"] = res["ms"].get(p)
                row[f"ratio_{cond}"] = res["ratio"].get(p)
                row[f"alone_{cond}"] = res.get("ratio_isolated", {}).get(p)
                if res["load"] > 0 and p != "xp":
                    for r in (row[f"ratio_{cond}"], row[f"alone_{cond}"]):
                        if r is not None:
                            judged = (r <= TARGET_RATIO) if judged is None else judged and r <= TARGET_RATIO
            row["target"] = None if judged is None else ("yes" if judged else "NO")
            rows.append(row)
    return rows, conds


def _columns(conds: list[str]) -> list[Column]:
    cols = [Column("case", "case", align="<"), Column("path", "path", align="<")]
    for cond in conds:
        cols.append(Column(f"ms {cond}", f"ms_{cond}", "{:.4g}".format))
        cols.append(Column(f"× xp {cond}", f"ratio_{cond}", "{:.2f}".format))
        cols.append(Column(f"× xp alone {cond}", f"alone_{cond}", "{:.2f}".format))
    cols.append(Column(f"≤ {TARGET_RATIO}× loaded", "target", align="<"))
    return cols


def text_table(results: dict[str, Any]) -> str:
    rows, conds = table_rows(results)
    return format_table(rows, _columns(conds))


def markdown_table(results: dict[str, Any]) -> str:
    """The results table as Markdown (for the docs), with a one-line environment note."""
    rows, conds = table_rows(results)
    cols = _columns(conds)
    cells = [[("-" if r.get(c.key) is None else c.fmt(r[c.key])) for c in cols] for r in rows]
    align = ["---" if c.align == "<" else "---:" for c in cols]
    lines = ["| " + " | ".join(c.header for c in cols) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    env, st = results["environment"], results["settings"]
    blas = (env.get("numpy_blas") or {}).get("name")
    note = (
        f"Step cases: ms per step outside F (n = {st['n']}, r = {st['rank']}, dense F = B - Y); "
        f"QR cases: ms per float64 QR. × xp: median per-round ratio to the xp path in the same process "
        f"({st['rounds']} interleaved rounds); × xp alone: ratio of medians to the xp path timed in a separate "
        "process that never starts the kernels' threads (on the xp row: its slowdown from sharing the process). "
        f"{env.get('cpu_count')} CPUs, {env.get('numba_threads')} Numba threads "
        f"({env.get('numba_threading_layer')}), BLAS {blas}, "
        f"OPENBLAS_NUM_THREADS={env.get('OPENBLAS_NUM_THREADS')}."
    )
    return "\n".join([*lines, "", note])


def _print_summary(results: dict[str, Any], markdown: bool) -> None:
    print(markdown_table(results) if markdown else text_table(results))
    tgt = results["target"]
    if tgt["holds"] is not None:
        verdict = "holds" if tgt["holds"] else "does NOT hold"
        print(f"\ntarget ({tgt['rule']}): {verdict}")
        for fail in tgt["failures"]:
            print(f"  {fail['case']} [{fail['condition']}] {fail['path']}: {fail['ratio']:.2f}x ({fail['reference']})")
    for fail in tgt.get("other_paths_over", []):
        print(
            f"  (not judged) {fail['case']} [{fail['condition']}] {fail['path']}: "
            f"{fail['ratio']:.2f}x ({fail['reference']})"
        )
    for name, per_path in results.get("baseline", {}).get("idle_ratios", {}).items():
        for p, v in per_path.items():
            print(f"idle {name} {p}: {v['now']:.2f}x now, {v['baseline']:.2f}x baseline ({v['change']:.2f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, nargs="+", default=[0, 2], help="background processes per condition")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7, quick 3)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed solve (default 3, quick 1)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(lc.METHODS))
    parser.add_argument("--substeps", nargs="+", choices=["rk4", "euler"], help="default rk4 euler (quick: euler)")
    parser.add_argument("--paths", nargs="+", default=list(PATHS[1:]), choices=list(PATHS))
    parser.add_argument("--no-qr", action="store_true", help="skip the single-QR cases")
    parser.add_argument("--settle", type=float, default=None, help="seconds the load spins before timing")
    parser.add_argument("--sample-ms", type=float, default=50.0, help="target length of one QR sample")
    parser.add_argument("--quick", action="store_true", help="3 rounds, 1 step, euler only: a smoke run")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--from", dest="from_file", help="render this earlier result instead of measuring")
    parser.add_argument("--baseline", help="earlier result file whose idle ratios to compare with")
    parser.add_argument("--no-isolated", action="store_true", help="skip the xp-alone reference process")
    parser.add_argument("--isolated-xp", action="store_true", help=argparse.SUPPRESS)  # the reference child
    args = parser.parse_args(argv)

    if args.from_file:
        _print_summary(json.loads(Path(args.from_file).read_text()), args.markdown)
        return
    if any(n < 0 for n in args.load):
        parser.error("--load takes non-negative process counts")
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.steps = args.steps or (1 if args.quick else 3)
    args.substeps = args.substeps or (["euler"] if args.quick else list(SUBSTEPS))
    args.settle = args.settle if args.settle is not None else (0.5 if args.quick else 2.0)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be positive")
    if args.isolated_xp:
        _isolated_main(args)
        return
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var} is set; run under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`", file=sys.stderr)

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    results = run(args)
    if args.baseline:
        results["baseline"] = {
            "file": args.baseline,
            "idle_ratios": compare_baseline(results, json.loads(Path(args.baseline).read_text())),
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print()
    _print_summary(results, args.markdown)
    print(f"\nwrote {out} ({results['settings']['seconds']} s of measurement)")


if __name__ == "__main__":
    main()
