"""The documentation's benchmark tables, generated from the results files in ``bench/results/``.

Each table is one Markdown file in ``docs/tables/`` that a page includes::

    ```{include} tables/kernels.md
    ```

``docs/conf.py`` calls :func:`write_all` at the start of every Sphinx build, so the
numbers on the pages are those of the results files, never typed by hand; rerunning a
benchmark (``--out bench/results``) and rebuilding the docs updates them.  Run it alone
to look at the tables::

    python bench/tables.py                  # writes docs/tables/*.md, prints their names
    python bench/tables.py --print kernels  # prints one table

The module reads JSON only (no lowrank_core import), so that the docs build does not
depend on the benchmarks' own dependencies.

==================  ===================================  ==============================================
table               results file                         command that writes the results (--out bench/results)
==================  ===================================  ==============================================
``qr_savings``      ``qr_savings_equal_accuracy.json``   ``lowrank-core bench qr-savings``
``equal_accuracy``  ``qr_savings_equal_accuracy.json``   (same)
``training_cost``   ``training_cost.json``               ``lowrank-core bench training-cost``
``kernels``         ``kernels.json``                     ``lowrank-core bench kernels``
``stacked_solves``  ``stacked_solves.json``              ``python bench/bench_kernels.py --solves-only ...``
``dask_scale``      ``dask_scale.json``                  ``python bench/dask_scale.py ...`` (docs/dask.md)
``training_step_*`` ``training_step.json``               ``python bench/training_step.py --load 0 2``
``training_floor``  ``training_step.json``               (same)
``training_insitu`` ``training_step.json``               (same; or ``... --only insitu --load 0 2``)
``loaded_baseline`` ``loaded_baseline.json``             ``python bench/loaded_baseline.py --load 0 2``
==================  ===================================  ==============================================
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TABLES = ROOT / "docs" / "tables"


def _rows(name: str, results: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    doc = json.loads((results / name).read_text(encoding="utf-8"))
    return doc["rows"], doc["meta"]


def _md(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _g(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _f(value: float | None, decimals: int) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


def _mflop(flops: float) -> str:
    return f"{flops / 1e6:.3g}"


def _ranks(meta: dict[str, Any]) -> dict[str, Any]:
    return {p: case["kwargs"].get("r") for p, case in meta.get("cases", {}).items()}


def qr_savings(results: Path = RESULTS) -> str:
    """Per problem: the methods with the fewest QRs, decompositions and decomposition flops at equal accuracy."""
    rows, meta = _rows("qr_savings_equal_accuracy.json", results)
    ranks = _ranks(meta)
    body = []
    for problem in dict.fromkeys(r["problem"] for r in rows):
        reached = [r for r in rows if r["problem"] == problem and r.get("dt") is not None]
        if not reached:
            body.append([f"`{problem}`", "–", "–", "–"])
            continue

        def best(key: str, fmt: Callable[[Any], str], reached: list[dict[str, Any]] = reached) -> str:
            low = min(r[key] for r in reached)
            names = ", ".join(f"`{r['method']}`" for r in reached if r[key] == low)
            return f"{names}: {fmt(low)}"

        rank = ranks.get(problem)
        label = f"`{problem}` ({rank})" if rank is not None else f"`{problem}`"
        flops = best("flops", lambda v: f"{_mflop(v)} Mflop")
        body.append([label, best("qr", str), best("decompositions", str), flops])
    return _md(["problem ($r$)", "fewest QRs", "fewest decompositions (QR + SVD)",
                "least decomposition work (QR + SVD flops)"], body)  # fmt: skip


def equal_accuracy(results: Path = RESULTS) -> str:
    """Every method at its largest step size reaching the problem's target error, with its costs there."""
    rows, _ = _rows("qr_savings_equal_accuracy.json", results)
    body = [
        [f"`{r['problem']}`", f"`{r['method']}`", _g(r["target"]), _g(r["dt"]), _g(r["error"]),
         *(["–"] * 5 if r.get("dt") is None else
           [str(r["qr"]), str(r["svd"]), _mflop(r["qr_flops"]), _mflop(r["svd_flops"]), str(r["rhs_evals"])])]
        for r in rows
    ]  # fmt: skip
    return _md(["problem", "method", "target", "dt", "error", "QR", "SVD", "QR Mflop", "SVD Mflop", "F"], body)


def training_cost(results: Path = RESULTS) -> str:
    """One cycle of each low-rank optimizer per layer and rank: decompositions and time split."""
    rows, _ = _rows("training_cost.json", results)
    body = [
        [f"{r['m']}×{r['n']}", str(r["rank"]), f"`{r['optimizer']}`", str(r["qr"]), str(r["svd"]),
         _f(r["cycle_ms"], 2), _f(r["qr_ms"], 2), _f(r["svd_ms"], 2), _f(r["products_ms"], 2)]
        for r in rows
    ]  # fmt: skip
    return _md(["layer", "rank", "optimizer", "QR", "SVD", "ms cycle", "ms QR", "ms SVD", "ms products"], body)


def kernels(results: Path = RESULTS) -> str:
    """The batched QR/SVD kernels against NumPy's batched linalg and a SciPy loop."""
    rows, _ = _rows("kernels.json", results)
    body = [
        [r["op"], f"{r['B']} × ({r['m']} × {r['k']})", r["dtype"], r["algorithm"], _f(r["ms_kernel"], 1),
         _f(r["ms_numpy"], 1), _f(r["speedup_numpy"], 2), _f(r["ms_scipy_loop"], 1), _f(r["speedup_scipy_loop"], 2)]
        for r in rows
    ]  # fmt: skip
    return _md(["op", "B × (m × k)", "dtype", "algorithm", "kernel ms", "NumPy ms", "× NumPy", "SciPy loop ms",
                "× loop"], body)  # fmt: skip


def stacked_solves(results: Path = RESULTS) -> str:
    """One solve of a stack of problems against separate solves, per method, dense and structured ``F``."""
    rows, _ = _rows("stacked_solves.json", results)

    def cell(r: dict[str, Any] | None) -> str:
        return "–" if r is None else f"{r['s_stacked']:.2f} / {r['s_separate']:.2f} / {r['speedup']:.1f}×"

    body = []
    for method in dict.fromkeys(r["method"] for r in rows):
        by_kind = {("dense" if "dense" in r["problem"] else "structured"): r for r in rows if r["method"] == method}
        body.append([f"`{method}`", cell(by_kind.get("dense")), cell(by_kind.get("structured"))])
    return _md(["method", "dense F: stacked s / separate s / ×", "structured: stacked s / separate s / ×"], body)


def dask_scale(results: Path = RESULTS) -> str:
    """abc-PSI on row-chunked Dask factors: time per step and peak memory per process, per load condition."""
    rows, _ = _rows("dask_scale.json", results)

    def run(r: dict[str, Any]) -> str:
        if r["backend"] == "numpy":
            return "NumPy, in memory"
        return f"Dask, {r['workers']} worker{'s' if r['workers'] > 1 else ''} (limit {r.get('memory_limit', '–')})"

    def peak(r: dict[str, Any]) -> str:
        values = [r["peak_rss_bytes"]] if "peak_rss_bytes" in r else r.get("peak_rss_per_worker_bytes", [])
        return ", ".join(f"{v / 2**30:.2f}" for v in values) or "–"

    def spilled(r: dict[str, Any]) -> str:
        return _g(sum(r["spilled_bytes_per_worker"]) / 1e9) if "spilled_bytes_per_worker" in r else "–"

    order = sorted(rows, key=lambda r: (r.get("load") is None, r.get("load") or 0, r["m"], r["backend"] != "numpy",
                                        r.get("workers", 1), str(r.get("memory_limit"))))  # fmt: skip
    body = [
        [str(r.get("condition", "–")), f"{r['m']:.0e}", f"{r['m'] * 16 * 8 / 1e9:.2g}", run(r),
         _g(r["ms_per_step"] / 1e3) if "ms_per_step" in r else "failed", _f(r.get("load_ratio"), 2),
         _g(r["first_step_s"]) if "first_step_s" in r else "–", peak(r), spilled(r)]
        for r in order
    ]  # fmt: skip
    return _md(["condition", "rows m", "U (GB)", "run", "s per step", "× idle", "first step (s)",
                "peak RSS per process (GiB)", "spilled (GB)"], body)  # fmt: skip


_STEP_NAMES = {
    "dense-adam": "torch Adam, dense model",
    "factor-adam": "torch Adam, naive factors",
    "abc-psi": "abc-PSI",
    "bc-psi": "BC-PSI",
    "ra-bug": "RA-BUG",
    "parallel-bug": "parallel BUG",
    "heavy-ball": "low-rank heavy ball",
    "adam": "low-rank Adam",
}


def _step_table(rows: list[dict[str, Any]], value: Callable[[dict[str, Any]], str], name: str, load: int) -> str:
    """One row per contender (``rows``' key ``name``), one column per rank and ``k``, rows of ``load`` only."""
    rows = [r for r in rows if r["load"] == load]
    cols = sorted({(r["rank"], r["round_k"]) for r in rows})
    cell = {(r[name], r["rank"], r["round_k"]): r for r in rows}
    names = [n for n in _STEP_NAMES if any(key[0] == n for key in cell)]
    header = ["optimizer"] + [f"r = {r}, k = {k}" for r, k in cols]
    body = [[_STEP_NAMES[n]] + [value(cell[(n, *c)]) if (n, *c) in cell else "–" for c in cols] for n in names]
    return _md(header, body)


def _step_time(r: dict[str, Any]) -> str:
    return f"{r['ms_per_step']:.2f} ms ({r['ratio_to_factor_adam']:.1f}×)"


def training_step_idle(results: Path = RESULTS) -> str:
    """Time per ``optimizer.step()`` (its ratio to torch Adam on naive factors) per rank and ``k``, idle."""
    return _step_table(_rows("training_step.json", results)[0], _step_time, "contender", 0)


def training_step_loaded(results: Path = RESULTS) -> str:
    """The same with the largest background load of the results file."""
    rows = _rows("training_step.json", results)[0]
    return _step_table(rows, _step_time, "contender", max(r["load"] for r in rows))


def training_floor(results: Path = RESULTS) -> str:
    """The decompositions alone per step, idle (ms, and as a ratio to torch Adam on factors of the same rounds);
    for low-rank Adam also with its per-step tangent projections and moment updates
    (``products_ms_per_step``, ``moments_ms_per_step``)."""
    doc = json.loads((results / "training_step.json").read_text(encoding="utf-8"))
    rows = [{**r, "round_k": r["basis_update_every"]} for r in doc.get("floor", [])]

    def value(r: dict[str, Any]) -> str:
        out = f"{r['floor_ms_per_step']:.2f} ms ({r['floor_ratio_to_factor_adam']:.1f}×)"
        if r.get("products_ms_per_step"):
            what = "products and moments" if "moments_ms_per_step" in r else "products"
            out += f"; + {what} {r['step_floor_ratio_to_factor_adam']:.1f}×"
        return out

    return _step_table(rows, value, "method", 0)


def training_insitu(results: Path = RESULTS) -> str:
    """Low-rank Adam's step between basis updates, its bare arithmetic and its products, after a backward
    pass (ms and ratio to torch Adam on factors of the same rounds), and the bound per ``k``, idle."""
    doc = json.loads((results / "training_step.json").read_text(encoding="utf-8"))
    rows = [r for r in doc.get("insitu", []) if r["load"] == 0]
    ks = sorted({int(k[len("bound_ratio_k") :]) for r in rows for k in r if k.startswith("bound_ratio_k")})

    def cell(r: dict[str, Any], key: str) -> str:
        return f"{r[key + '_ms_per_step']:.2f} ms ({r[key + '_ratio_to_factor_adam']:.2f}×)"

    body = [
        [str(r["rank"]), f"{r['factor_adam_ms_per_step']:.2f} ms", cell(r, "step"), cell(r, "arithmetic"),
         cell(r, "products")] + [f"{r[f'bound_ratio_k{k}']:.2f}×" if f"bound_ratio_k{k}" in r else "–" for k in ks]
        for r in rows
    ]  # fmt: skip
    header = ["r", "torch Adam, naive factors", "low-rank Adam step", "its arithmetic", "its products"]
    return _md(header + [f"bound, k = {k}" for k in ks], body)


def loaded_baseline(results: Path = RESULTS) -> str:
    """Per load and thread variant: torch Adam's step on the factors (median over batches
    of the batch's mean, fastest-slowest batch, ms) and each geometric optimizer's (median
    over batches of its cycle's mean, ms, and median ratio to torch Adam in the same batches)."""
    rows, _ = _rows("loaded_baseline.json", results)
    keys = list(dict.fromkeys((r["load"], r["variant"]) for r in rows))
    methods = list(dict.fromkeys(r["contender"] for r in rows if r.get("contender", "factor-adam") != "factor-adam"))
    cell = {(r["load"], r["variant"], r.get("contender", "factor-adam")): r for r in rows}
    body = []
    for load, variant in keys:
        base = cell[(load, variant, "factor-adam")]
        line = [
            "idle" if load == 0 else f"{load} busy processes",
            variant,
            f"{_f(base['ms_median'], 2)} ({_f(base['ms_min'], 2)}–{_f(base['ms_max'], 2)})",
        ]
        for n in methods:
            r = cell.get((load, variant, n))
            line.append("–" if r is None else f"{_f(r['ms_median'], 2)} ({r['ratio_to_factor_adam']:.1f}×)")
        body.append(line)
    header = ["machine", "variant", "torch Adam, naive factors (fastest–slowest batch)"]
    return _md(header + [f"{_STEP_NAMES.get(n, n)}, k = 50" for n in methods], body)


#: table name -> generator (each returns Markdown).
TABLE_BUILDERS: dict[str, Callable[[Path], str]] = {
    "qr_savings": qr_savings,
    "equal_accuracy": equal_accuracy,
    "training_cost": training_cost,
    "kernels": kernels,
    "stacked_solves": stacked_solves,
    "dask_scale": dask_scale,
    "training_step_idle": training_step_idle,
    "training_step_loaded": training_step_loaded,
    "training_floor": training_floor,
    "training_insitu": training_insitu,
    "loaded_baseline": loaded_baseline,
}


def write_all(results: Path = RESULTS, tables: Path = TABLES) -> list[Path]:
    """Write every table to ``tables/<name>.md``; a file is rewritten only when its text changes."""
    tables.mkdir(parents=True, exist_ok=True)
    written = []
    for name, build in TABLE_BUILDERS.items():
        path = tables / f"{name}.md"
        text = build(results)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", dest="show", choices=list(TABLE_BUILDERS), help="print this table only")
    args = parser.parse_args(argv)
    if args.show:
        print(TABLE_BUILDERS[args.show](RESULTS), end="")
        return 0
    for path in write_all():
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
