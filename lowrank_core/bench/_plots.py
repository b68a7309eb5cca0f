"""Every plot of ``lowrank-core bench`` (PNG files, Matplotlib's Agg renderer).

Figures are built with :class:`matplotlib.figure.Figure` and an explicit Agg canvas,
not with ``pyplot``: nothing opens a window and no global Matplotlib state (the
backend, the current figure) is touched.  Each method keeps one colour and marker
in every figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._integrate import time_grid
from ..integrators import METHODS

__all__ = ["plot_kernels", "plot_qr_savings"]

_MARKERS = "os^vDP*Xhp<>"
_LINESTYLES = ("-", "--", "-.", ":")


def _style(key: str, keys: Sequence[str]) -> dict[str, Any]:
    """Colour, marker and line style of series ``key`` (stable within ``keys``)."""
    from matplotlib import colormaps

    i = list(keys).index(key)
    # Later series get smaller, hollow markers and thinner lines, so that series which
    # coincide (e.g. methods with equal errors) stay visible on top of each other.
    return {
        "color": colormaps["tab10"](i % 10),
        "marker": _MARKERS[i % len(_MARKERS)],
        "markersize": max(3.0, 10.0 - 1.0 * i),
        "markerfacecolor": "none",
        "markeredgewidth": 1.4,
        "linewidth": max(0.8, 2.4 - 0.25 * i),
        "linestyle": _LINESTYLES[(i // 10) % len(_LINESTYLES)],
    }


def _sci_label(value: float, _pos: Any = None) -> str:
    """``2e-3`` -> ``$2\\times10^{-3}$``, ``1e-3`` -> ``$10^{-3}$`` (mathtext)."""
    if value <= 0:
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = f"{value / 10.0**exponent:.2g}"
    power = f"10^{{{exponent}}}"
    return f"${power}$" if mantissa == "1" else f"${mantissa}\\times{power}$"


def _log_axis(ax: Any, which: str) -> None:
    """Log scale with readable labels.

    Over two decades or more: labels at ``10^k``; between one and two decades: at 1, 2
    and 5 times ``10^k``; below one decade (Matplotlib would fall back to crowded linear
    ticks): four geometrically spaced ticks rounded to two digits.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log") if which == "x" else ax.set_yscale("log")
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()  # get_*lim applies pending autoscaling
    axis = ax.xaxis if which == "x" else ax.yaxis
    decades = math.log10(hi / lo) if 0 < lo < hi else 0.0
    if decades >= 1:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if decades >= 2 else (1.0, 2.0, 5.0)))
    elif decades > 0:
        pad = 0.1 * decades
        ticks = [10 ** (math.log10(lo) + pad + j * (decades - 2 * pad) / 3) for j in range(4)]
        axis.set_major_locator(FixedLocator([float(f"{t:.2g}") for t in ticks]))
    axis.set_major_formatter(FuncFormatter(_sci_label))
    axis.set_minor_formatter(NullFormatter())


def _figure(n_panels: int, *, width: float = 4.4, height: float = 3.5) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(3, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _finish(fig: Any, axes: Sequence[Any], title: str, path: Path) -> Path:
    """Add the title and one legend for the whole figure, then write ``path``."""
    handles: dict[str, Any] = {}
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.suptitle(title)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 5))
    fig.savefig(path, dpi=110)
    return path


def _ok(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and r.get("error", 0) > 0 and math.isfinite(r["error"])]


def _per_problem(
    rows: Sequence[dict[str, Any]],
    path: Path,
    title: str,
    draw: Callable[[Any, list[dict[str, Any]], dict[str, Any]], None],
    xlabel: str,
    ylabel: str,
    *,
    logx: bool = True,
    logy: bool = True,
) -> Path:
    """One panel per problem, one series per method; ``draw(ax, method_rows, style)``."""
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    fig, axes = _figure(len(problems))
    for ax, problem in zip(axes, problems, strict=True):
        ax.set_title(problem)  # draw() may replace it
        for method in methods:
            mrows = [r for r in rows if r["problem"] == problem and r["method"] == method]
            if mrows:
                draw(ax, mrows, {"label": method, **_style(method, list(METHODS))})
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logx:
            _log_axis(ax, "x")
        if logy:
            _log_axis(ax, "y")
        if not (logx or logy):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(fig, axes, title, path)


def _modal_rank(rows: Sequence[dict[str, Any]]) -> int | None:
    ranks = [r["rank"] for r in rows if r.get("rank") is not None]
    return max(set(ranks), key=ranks.count) if ranks else None


def plot_qr_savings(
    rows: Sequence[dict[str, Any]],
    out_dir: Path,
    *,
    stem: str = "qr_savings",
    accuracy: Sequence[dict[str, Any]] | None = None,
) -> list[Path]:
    """Write the QR-savings figures; return their paths.

    ``stem_error_vs_dt.png``, ``stem_error_vs_flops.png`` (QR + SVD flops),
    ``stem_error_vs_qr_count.png`` (number of QRs per solve),
    ``stem_error_vs_wall_time.png`` (relative error at the final time, log-log, one
    panel per problem; the final rank of every point is in the panel title, and a
    point that ends at another rank carries its rank as a label),
    ``stem_equal_accuracy.png`` (with ``accuracy``, from
    :func:`~lowrank_core.bench._qr_savings.equal_accuracy_table`: QRs and SVDs per method at the
    target error) and ``stem_rank_vs_t.png`` (rank after every step of the smallest step
    size).
    """
    ok = _ok(rows)
    err_label = r"relative error at $T$:  $\|Y - X\|_F \,/\, \|X\|_F$"
    modal = {p: _modal_rank([r for r in ok if r["problem"] == p]) for p in dict.fromkeys(r["problem"] for r in ok)}

    def vs(key: str) -> Callable[[Any, list[dict[str, Any]], dict[str, Any]], None]:
        def draw(ax: Any, mrows: list[dict[str, Any]], style: dict[str, Any]) -> None:
            pts = sorted((r[key], r["error"], r["rank"]) for r in mrows)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], **style)
            common = modal[mrows[0]["problem"]]
            for x, y, rank in pts:
                if rank != common:
                    ax.annotate(f"r={rank}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7,
                                color=style["color"])
            ax.set_title(f"{mrows[0]['problem']} (every point at rank {common} unless labelled)", fontsize=9)

        return draw

    def ranks(ax: Any, mrows: list[dict[str, Any]], style: dict[str, Any]) -> None:
        row = min(mrows, key=lambda r: r["dt"])
        t = time_grid((row["t0"], row["t1"]), row["dt"])
        ax.plot(t, row["step_ranks"], drawstyle="steps-post", markevery=max(1, len(t) // 8), **style)

    backend = rows[0].get("backend", "numpy") if rows else "numpy"
    paths = [
        _per_problem(ok, out_dir / f"{stem}_error_vs_dt.png", f"Error vs step size, equal rank ({backend})", vs("dt"),
                     "step size dt (problem time units)", err_label),
        _per_problem(ok, out_dir / f"{stem}_error_vs_flops.png",
                     f"Error vs decomposition work, QR + SVD flops, equal rank ({backend})", vs("flops"),
                     "QR + SVD flops per solve (LAPACK estimates)", err_label),
        _per_problem(ok, out_dir / f"{stem}_error_vs_qr_count.png", f"Error vs number of QRs, equal rank ({backend})",
                     vs("qr"), "QR decompositions per solve", err_label),
        _per_problem(ok, out_dir / f"{stem}_error_vs_wall_time.png", f"Error vs wall time, equal rank ({backend})",
                     vs("wall_time"), "wall time per solve (s)", err_label),
    ]
    if accuracy:
        paths.append(_plot_equal_accuracy(accuracy, out_dir / f"{stem}_equal_accuracy.png", backend))
    paths.append(
        _per_problem(ok, out_dir / f"{stem}_rank_vs_t.png", f"Rank after each step, smallest dt ({backend})", ranks,
                     "time t (problem time units)", "rank", logx=False, logy=False)
    )
    return paths


def _plot_equal_accuracy(accuracy: Sequence[dict[str, Any]], path: Path, backend: str) -> Path:
    """Stacked bars: QRs and SVDs per method at its cheapest step size reaching the target."""
    problems = list(dict.fromkeys(r["problem"] for r in accuracy))
    fig, axes = _figure(len(problems), width=5.0, height=3.6)
    for ax, problem in zip(axes, problems, strict=True):
        prows = [r for r in accuracy if r["problem"] == problem]
        names = [r["method"] for r in prows]
        qr = [r["qr"] or 0 for r in prows]
        svd = [r["svd"] or 0 for r in prows]
        x = list(range(len(prows)))
        ax.bar(x, qr, color="tab:blue", label="QR")
        ax.bar(x, svd, bottom=qr, color="tab:orange", label="SVD")
        for i, r in enumerate(prows):
            if r["dt"] is None:
                ax.annotate("not reached", (i, 0), rotation=90, fontsize=7, ha="center", va="bottom")
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("decompositions per solve")
        ax.set_title(f"{problem}: error <= {prows[0]['target']:.2g}", fontsize=9)
    return _finish(fig, axes, f"Decompositions at equal accuracy, cheapest dt per method ({backend})", path)


def _case_label(row: dict[str, Any]) -> str:
    return f"{row['B']}×({row['m']}×{row['k']})"


def plot_kernels(rows: Sequence[dict[str, Any]], out_dir: Path, *, stem: str = "kernels") -> list[Path]:
    """Write the kernel figures; return their paths.

    ``stem_speedup.png``: time of the baseline divided by the kernel's time, per case
    (batch ``B`` of ``m × k`` matrices), per dtype and baseline; ``stem_time.png``:
    milliseconds per batched call of the kernel and of the baselines.  One panel per
    operation (QR, SVD).
    """
    ops = list(dict.fromkeys(r["op"] for r in rows))

    def cases(op: str) -> list[str]:
        op_rows = sorted((r for r in rows if r["op"] == op), key=lambda r: (r["B"] * r["m"] * r["k"] ** 2, r["B"]))
        return list(dict.fromkeys(_case_label(r) for r in op_rows))

    def series(op: str, specs: Sequence[tuple[str, str]]) -> list[tuple[str, list[float], list[float]]]:
        labels = cases(op)
        out = []
        for dtype in dict.fromkeys(r["dtype"] for r in rows):
            for key, name in specs:
                xs, ys = [], []
                for r in rows:
                    if r["op"] == op and r["dtype"] == dtype and r.get(key) is not None:
                        xs.append(labels.index(_case_label(r)))
                        ys.append(float(r[key]))
                if xs:
                    order = sorted(range(len(xs)), key=xs.__getitem__)
                    out.append((f"{name}, {dtype}", [xs[i] for i in order], [ys[i] for i in order]))
        return out

    def draw(path: Path, title: str, specs: Sequence[tuple[str, str]], ylabel: str, *, unity: bool) -> Path:
        # One style per (baseline, dtype) across both panels; cases are categories, so
        # the points are not joined by lines.
        names = [f"{name}, {dtype}" for dtype in dict.fromkeys(r["dtype"] for r in rows) for _, name in specs]
        fig, axes = _figure(len(ops), width=5.5, height=4.0)
        for ax, op in zip(axes, ops, strict=True):
            labels = cases(op)
            for name, xs, ys in series(op, specs):
                ax.plot(xs, ys, label=name, **{**_style(name, names), "linestyle": "none"})
            if unity:
                ax.axhline(1.0, color="0.3", linewidth=1.0, label="break-even (1×)")
            ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
            _log_axis(ax, "y")
            ax.set_title(op.upper())
            ax.set_xlabel("case: batch B × (m × k) matrices")
            ax.set_ylabel(ylabel)
        return _finish(fig, axes, title, path)

    return [
        draw(
            out_dir / f"{stem}_speedup.png",
            "Batched kernel speedup (baseline time / kernel time)",
            [("speedup_numpy", "vs NumPy batched"), ("speedup_scipy_loop", "vs SciPy loop")],
            "speedup (×)",
            unity=True,
        ),
        draw(
            out_dir / f"{stem}_time.png",
            "Time per batched call",
            [("ms_kernel", "kernel"), ("ms_numpy", "NumPy batched"), ("ms_scipy_loop", "SciPy loop")],
            "time per call (ms)",
            unity=False,
        ),
    ]
