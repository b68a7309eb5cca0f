"""The measurement behind ``lowrank-core bench problems``: the physics a user checks.

Every reference problem of :mod:`lowrank_core.problems` whose ``conserved`` mapping is
non-empty (the kinetic and PDE problems: Vlasov–Poisson, Schrödinger, Burgers, ...) is
solved with a few integrators, and each solve records along the trajectory

* every conserved quantity ``q(Y)`` of ``problem.conserved`` and its drift from the
  initial value ``q(Y0)`` (relative, ``(q - q0) / |q0|``, unless ``|q0| <=``
  :data:`ABSOLUTE_BELOW`, then absolute ``q - q0``: a zero momentum has no relative
  drift);
* the electric energy ``problem.electric_energy(Y)`` where the problem has one, with
  its linear-theory rate ``problem.linear_rate``;
* the rank after every step (rank-adaptive methods change it).

:func:`run_problems` returns one row per (problem, method); :func:`plot_problems`
draws them.  Nothing here prints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import LowRankIntegrationError
from .._integrate import solve
from ..integrators import METHODS
from ..problems import PROBLEMS, ReferenceProblem

__all__ = [
    "ABSOLUTE_BELOW",
    "DEFAULT_METHODS",
    "PROBLEM_CASES",
    "ProblemCase",
    "conserved_problems",
    "plot_problems",
    "drift_summary",
    "fitted_rate",
    "run_problems",
    "solve_problem",
]

Progress = Callable[[int, int, str], None]

#: ``|q(Y0)|`` at or below which a conserved quantity's drift is reported as absolute:
#: a momentum that is zero but for the small random directions of ``Y0`` (``~1e-7`` in
#: the Vlasov problems) has no meaningful relative drift.
ABSOLUTE_BELOW = 1e-6

#: Methods of the default run: projector splitting (fixed rank), the library default
#: (abc-PSI, rank-adaptive here) and the rank-adaptive BUG.
DEFAULT_METHODS = ("ksl", "abc-psi", "ra-bug")

#: Steps of a ``--quick`` solve (from the start of the problem's time span).
QUICK_STEPS = 20


@dataclass(frozen=True)
class ProblemCase:
    """How ``bench problems`` builds one problem: factory arguments of the default and
    of the ``--quick`` run (empty: the factory's defaults, sized for tests)."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    quick_kwargs: dict[str, Any] = field(default_factory=dict)


#: Factory arguments per registered problem; a problem with conserved quantities that is
#: not listed here runs with its factory's defaults.
PROBLEM_CASES: dict[str, ProblemCase] = {
    "schrodinger": ProblemCase(kwargs={"N": 64}, quick_kwargs={"N": 32}),
    "stochastic-burgers": ProblemCase(quick_kwargs={"m": 64, "n": 32}),
    "allen-cahn": ProblemCase(quick_kwargs={"N": 32}),
}


def conserved_problems(names: Sequence[str] | None = None) -> list[str]:
    """Names of the registered problems with conserved quantities (or check ``names``).

    Raises
    ------
    ValueError
        A name that is not registered, or whose problem conserves nothing.
    """
    if names is None:
        return [name for name in PROBLEMS if _has_conserved(name)]
    out = []
    for name in names:
        if name not in PROBLEMS:
            msg = f"unknown problem {name!r}; choose from {', '.join(conserved_problems())}."
            raise ValueError(msg)
        if not _has_conserved(name):
            msg = (f"problem {name!r} has no conserved quantities; choose from "
                   f"{', '.join(conserved_problems())}.")
            raise ValueError(msg)
        out.append(name)
    return out


def _has_conserved(name: str) -> bool:
    return bool(_build(name, quick=True).conserved)


_BUILT: dict[tuple[str, bool], ReferenceProblem] = {}


def _build(name: str, *, quick: bool) -> ReferenceProblem:
    """The problem ``name`` at the size of the run (built once per process and size)."""
    key = (name, quick)
    if key not in _BUILT:
        case = PROBLEM_CASES.get(name, ProblemCase())
        _BUILT[key] = PROBLEMS[name](**(case.quick_kwargs if quick else case.kwargs))
    return _BUILT[key]


def _float(value: Any) -> float:
    return float(value)


def _drift(values: list[float]) -> tuple[list[float], str]:
    q0 = values[0]
    if abs(q0) <= ABSOLUTE_BELOW:
        return [q - q0 for q in values], "absolute"
    return [(q - q0) / abs(q0) for q in values], "relative"


def solve_problem(
    name: str, reference: ReferenceProblem, method: str, *, quick: bool, rtol: float, dt: float | None = None
) -> dict[str, Any]:
    """Solve one problem with ``method``; return its row (trajectories of the diagnostics).

    The step size is ``dt`` or the problem's ``suggested_dt`` (one hundredth of the time
    span if it has none); ``quick`` stops after :data:`QUICK_STEPS` steps.  Rank-adaptive
    methods run with ``rtol`` and ``max_rank = 2 r``.  A numerical breakdown gives a row
    with ``status`` ``"failed: ..."`` and no trajectories.
    """
    ref = reference
    t0, t1 = ref.t_span
    dt = float(dt or ref.suggested_dt or (t1 - t0) / 100)
    if quick:
        t1 = min(t1, t0 + QUICK_STEPS * dt)
    r = ref.Y0.rank
    kwargs: dict[str, Any] = {"method": method}
    if METHODS[method].rank_adaptive:
        kwargs.update(rtol=rtol, max_rank=2 * r)
    row: dict[str, Any] = {"problem": name, "method": method, "dt": dt, "t0": t0, "t1": t1, "rank0": r,
                           "shape": list(ref.shape), "rtol": rtol if METHODS[method].rank_adaptive else None}
    try:
        start = time.perf_counter()
        sol = solve(ref.problem, ref.Y0, (t0, t1), dt, **kwargs)
        row["wall_time"] = time.perf_counter() - start
    except LowRankIntegrationError as exc:
        return {**row, "status": f"failed: {exc}"}
    st = sol.stats
    row.update(status="ok", steps=st["steps"], qr=st["qr"], svd=st["svd"], rhs_evals=st["rhs_evals"],
               t=[float(t) for t in sol.t], rank=[int(k) for k in sol.ranks])
    row["max_rank"], row["final_rank"] = max(row["rank"]), row["rank"][-1]
    row["conserved"] = list(ref.conserved)
    for qname, q in ref.conserved.items():
        values = [_float(q(Y)) for Y in sol.Ys]
        drift, kind = _drift(values)
        row[f"q_{qname}"], row[f"drift_{qname}"] = values, drift
        row[f"drift_kind_{qname}"], row[f"max_drift_{qname}"] = kind, max(abs(d) for d in drift)
    energy = getattr(ref, "electric_energy", None)
    if callable(energy):
        row["electric_energy"] = [_float(energy(Y)) for Y in sol.Ys]
        rate = getattr(ref, "linear_rate", None)
        row["linear_rate"] = None if rate is None else _float(rate)
        row["rate"] = fitted_rate(row["t"], row["electric_energy"], row["linear_rate"])
    return row


def run_problems(
    names: Sequence[str] | None,
    methods: Sequence[str] | None,
    *,
    quick: bool = False,
    rtol: float = 1e-5,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Solve every selected problem with every method.

    Parameters
    ----------
    names : sequence of str, optional
        Registered problems with conserved quantities (default: all of them).
    methods : sequence of str, optional
        Keys of :data:`lowrank_core.METHODS` (default: :data:`DEFAULT_METHODS`).
    quick : bool
        Build the problems at their ``--quick`` size and stop after
        :data:`QUICK_STEPS` steps.
    rtol : float
        Relative truncation tolerance of the rank-adaptive methods.
    progress : callable, optional
        ``progress(done, total, label)``, called before each solve and at the end.

    Returns
    -------
    list of dict
        One row per (problem, method); see :func:`solve_problem`.

    Raises
    ------
    ValueError
        Unknown method or problem, or a problem without conserved quantities.
    """
    methods = list(methods or DEFAULT_METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        msg = f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}."
        raise ValueError(msg)
    names = conserved_problems(names)
    jobs = [(name, m) for name in names for m in methods]
    rows = []
    for done, (name, m) in enumerate(jobs):
        if progress is not None:
            progress(done, len(jobs), f"{name} {m}")
        rows.append(solve_problem(name, _build(name, quick=quick), m, quick=quick, rtol=rtol))
    if progress is not None:
        progress(len(jobs), len(jobs), "done")
    return rows


def drift_summary(row: dict[str, Any]) -> str:
    """``"mass: 1.2e-14, momentum: 3.0e-16 (abs)"``: the largest drift of each conserved quantity."""
    return ", ".join(
        f"{q}: {row[f'max_drift_{q}']:.1e}{'' if row[f'drift_kind_{q}'] == 'relative' else ' (abs)'}"
        for q in row.get("conserved", []))


def fitted_rate(t: Sequence[float], energy: Sequence[float], linear_rate: float | None = None) -> float | None:
    """Rate of the electric field's amplitude: half the slope of the least-squares line
    through ``log energy`` against ``t``.

    With a positive ``linear_rate`` (an instability), only the linear growth phase is
    fitted: from the smallest energy (after the initial transient) to the largest one
    after it (saturation).  ``None`` with fewer than 3 positive finite values to fit.
    """
    import numpy as np

    t_, e = np.asarray(t, dtype=float), np.asarray(energy, dtype=float)
    ok = np.isfinite(e) & (e > 0)
    if linear_rate is not None and linear_rate > 0 and ok.any():
        start = int(np.argmin(np.where(ok, e, np.inf)))
        stop = start + int(np.argmax(np.where(ok, e, -np.inf)[start:]))
        ok &= (t_ >= t_[start]) & (t_ <= t_[stop])
    if ok.sum() < 3:
        return None
    return float(np.polyfit(t_[ok], np.log(e[ok]), 1)[0] / 2)


# ====================================================================== plots
def plot_problems(rows: Sequence[dict[str, Any]], out_dir: Path, *, stem: str = "problems") -> list[Path]:
    """Write the figures of ``bench problems``; return their paths.

    ``stem_electric_energy.png`` (electric energy vs time, log scale, one panel per
    problem that has one, with the linear-theory line), ``stem_drift.png`` (absolute
    value of the drift of each conserved quantity vs time, log scale, one panel per
    problem and quantity) and ``stem_rank.png`` (rank after each step, one panel per
    problem).
    """
    from ._plots import _figure, _finish, _log_axis, _style

    ok = [r for r in rows if r.get("status") == "ok"]
    problems = list(dict.fromkeys(r["problem"] for r in ok))
    keys = list(METHODS)
    paths = []

    def series(problem: str) -> list[dict[str, Any]]:
        return [r for r in ok if r["problem"] == problem]

    # electric energy
    with_energy = [p for p in problems if any(r.get("electric_energy") for r in series(p))]
    if with_energy:
        fig, axes = _figure(len(with_energy))
        for ax, problem in zip(axes, with_energy, strict=True):
            prs = series(problem)
            for r in prs:
                t, e = r["t"], r["electric_energy"]
                pts = [(a, b) for a, b in zip(t, e, strict=True) if b > 0 and math.isfinite(b)]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=r["method"],
                        markevery=max(1, len(pts) // 8), **_style(r["method"], keys))
            rate = prs[0].get("linear_rate")
            if rate is not None:
                t0, t1 = prs[0]["t"][0], prs[0]["t"][-1]
                e0 = prs[0]["electric_energy"][0]
                ax.plot([t0, t1], [e0, e0 * math.exp(2 * rate * (t1 - t0))], color="0.2", linestyle="--",
                        linewidth=1.2, label="linear theory: energy ~ exp(2 γ t)")
                ax.text(0.97, 0.95, f"γ = {rate:.4g}", transform=ax.transAxes, ha="right", va="top", fontsize=9)
            ax.set_title(problem)
            ax.set_xlabel("time t")
            ax.set_ylabel("electric energy ½∫E² dx")
            ax.set_yscale("log")
        paths.append(_finish(fig, axes, "Electric energy vs time", out_dir / f"{stem}_electric_energy.png"))

    # conserved quantities
    panels = [(p, q) for p in problems for q in dict.fromkeys(q for r in series(p) for q in r["conserved"])]
    if panels:
        fig, axes = _figure(len(panels))
        for ax, (problem, q) in zip(axes, panels, strict=True):
            kind = "relative"
            for r in series(problem):
                if q not in r["conserved"]:
                    continue
                kind = r[f"drift_kind_{q}"]
                drift = r[f"drift_{q}"]
                pts = [(a, abs(d)) for a, d in zip(r["t"], drift, strict=True) if d != 0 and math.isfinite(d)]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], label=r["method"],
                            markevery=max(1, len(pts) // 8), **_style(r["method"], keys))
            ax.set_title(f"{problem}: {q}")
            ax.set_xlabel("time t")
            ax.set_ylabel(f"|{kind} drift|")
            if ax.lines:
                _log_axis(ax, "y")
        paths.append(_finish(fig, axes, "Drift of the conserved quantities", out_dir / f"{stem}_drift.png"))

    # rank
    if problems:
        from matplotlib.ticker import MaxNLocator

        fig, axes = _figure(len(problems))
        for ax, problem in zip(axes, problems, strict=True):
            for r in series(problem):
                ax.plot(r["t"], r["rank"], drawstyle="steps-post", label=r["method"],
                        markevery=max(1, len(r["t"]) // 8), **_style(r["method"], keys))
            ax.set_title(problem)
            ax.set_xlabel("time t")
            ax.set_ylabel("rank")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        paths.append(_finish(fig, axes, "Rank after each step", out_dir / f"{stem}_rank.png"))
    return paths

