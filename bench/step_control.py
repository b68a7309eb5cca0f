"""Step-size control (``solve(..., dt=None, step_rtol=...)``) against the best fixed step.

For each case (problem, method, estimator): the time-stepping error of adaptive solves
over four or more decades of ``step_rtol``, and of fixed-step solves on a dense sweep of
``dt = T / n`` (``n`` spaced by ``2^(1/4)``).  Errors are relative Frobenius errors at
``T`` against a Richardson-extrapolated fine-step solve of the *same* method (so the
low-rank modelling error, which no step size changes, is not counted).  For every
adaptive solve the F evaluations of a fixed step with the same error are interpolated
(log-log, between neighbouring points of the sweep's lower envelope); outside the
sweep they are extrapolated with the power law fitted to its stable points and
marked.  F evaluations and errors are deterministic (no timings are reported).

Cases (lowrank_core.problems):

* Schrödinger N = 12, r = 3, T = 0.1, BUG (first order, step doubling; the case of the
  first version of the controller);
* Schrödinger N = 16, T = 1, RK-BUG ``ssprk3`` at full rank r = 16 (no normal
  component: the pure time-stepping question) with the embedded 3(2) pair and, for
  comparison, with step doubling; and at r = 10, where the normal component's
  ``h eps`` error (first order, invisible to the embedded pair) takes over below 1e-4;
* heat 16 x 16, r = 8, T = 0.1, RK-BUG ``ssprk3`` (explicit stages: the step is
  stability-limited at ``h ~ 2.5 / rho(F)`` for loose tolerances), embedded and doubling.

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/step_control.py [--quick] [--load N]

``--quick`` runs fewer tolerances and a coarser sweep; ``--load N`` runs the same with
``N`` busy background processes (F counts and errors do not depend on load; the option
exists for the project's benchmark convention).  Writes bench/results/step_control.json
(``--quick``: step_control_quick.json).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import lowrank_core as lc
from lowrank_core import problems

OUT = Path(__file__).resolve().parent / "results" / "step_control.json"


@dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class DoublingRKBUG(lc.RKBUG):
    """RK-BUG with its embedded pair hidden: the controller falls back to step doubling
    (for the comparison of the two estimators on the same method)."""

    embedded_order = None


PULSE_WIDTH, PULSE_HEIGHT = 0.03, 30.0


def schrodinger_pulse(N=16, t_end=1.0):
    """Schrödinger with a pulse in time: ``dY/dt = w(t) F_schr(Y)``,
    ``w(t) = 1 + 30 exp(-((t - 0.5) / 0.03)^2)`` (a time-rescaled Schrödinger flow, so
    errors are neither damped nor amplified, while the right step size drops about 30
    times during the pulse).  Dense ``MatrixODE``; ``Y0`` is the full-rank state of
    ``problems.get("schrodinger", N=N, r=N)``."""
    base = problems.get("schrodinger", N=N, r=N, t_end=t_end)
    D, Vc = np.asarray(base.D), np.asarray(base.Vc)

    def f(t, Y):
        w = 1.0 + PULSE_HEIGHT * math.exp(-(((t - 0.5) / PULSE_WIDTH) ** 2))
        return (-1j * w) * (D @ Y + Y @ D.T + Vc @ Y @ Vc.T)

    return lc.MatrixODE(f), base.Y0, base.t_span


def _reference_problem(name, **kwargs):
    p = problems.get(name, **kwargs)
    return p.problem, p.Y0, p.t_span


# (label, problem, factory kwargs, method factory, order of the method, step_rtols, n0, n_count, reference dt)
CASES = [
    ("schrodinger-bug", "schrodinger", {"N": 12, "r": 3, "t_end": 0.1}, lambda: lc.BUG(), 1,
     [1e-1, 1e-2, 1e-3, 1e-4], 5, 33, 5e-5),
    ("schrodinger-rkbug-full", "schrodinger", {"N": 16, "r": 16, "t_end": 1.0},
     lambda: lc.RKBUG(tableau="ssprk3"), 3, [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8], 8, 29, 1e-3),
    ("schrodinger-rkbug-full-doubling", "schrodinger", {"N": 16, "r": 16, "t_end": 1.0},
     lambda: DoublingRKBUG(tableau="ssprk3"), 3, [1e-3, 1e-4, 1e-5, 1e-6, 1e-7], 8, 29, 1e-3),
    ("schrodinger-rkbug-r10", "schrodinger", {"N": 16, "r": 10, "t_end": 1.0},
     lambda: lc.RKBUG(tableau="ssprk3"), 3, [1e-3, 1e-4, 1e-5, 1e-6, 1e-7], 8, 25, 1e-3),
    ("heat-rkbug", "heat", {"size": 16, "r": 8, "t_end": 0.1}, lambda: lc.RKBUG(tableau="ssprk3"), 3,
     [1e-4, 1e-5, 1e-6, 1e-7, 1e-8], 80, 21, 2.5e-5),
    ("heat-rkbug-doubling", "heat", {"size": 16, "r": 8, "t_end": 0.1}, lambda: DoublingRKBUG(tableau="ssprk3"), 3,
     [1e-4, 1e-5, 1e-6, 1e-7, 1e-8], 80, 21, 2.5e-5),
    ("schrodinger-pulse-rkbug", "schrodinger-pulse", {"N": 16, "t_end": 1.0}, lambda: lc.RKBUG(tableau="ssprk3"), 3,
     [1e-3, 1e-4, 1e-5, 1e-6, 1e-7], 20, 29, 2.5e-4),
]  # fmt: skip


def _error(Y, ref):
    value = float(np.linalg.norm(Y.to_dense() - ref) / np.linalg.norm(ref))
    return value if math.isfinite(value) else None


def _envelope(fixed):
    """The sweep's lower envelope: points with error < 0.1 that no cheaper point beats."""
    pts = sorted((f["rhs_evals"], f["error"]) for f in fixed if f["error"] is not None and f["error"] < 0.1)
    env, best = [], math.inf
    for n, e in pts:
        if e < best:
            env.append((n, e))
            best = e
    return env


def _same_error(env, err, stable_limit):
    """F evaluations of the fixed step with error ``err``: interpolated (log-log) on the
    envelope; above its largest error, the cheapest stable fixed step when the sweep
    starts unstable (``stable_limit``: no fixed step is cheaper, its error is smaller:
    marked "s"), else the power law fitted to the envelope (marked "*")."""
    log_n = np.log([n for n, _ in env])
    log_e = np.log([e for _, e in env])
    if log_e.min() <= math.log(err) <= log_e.max():
        order = np.argsort(log_e)
        return float(np.exp(np.interp(math.log(err), log_e[order], log_n[order]))), ""
    if math.log(err) > log_e.max() and stable_limit:
        return float(min(n for n, _ in env)), "s"
    slope, icpt = np.polyfit(log_e, log_n, 1)
    return float(np.exp(icpt + slope * math.log(err))), "*"


def run_case(label, name, kwargs, make, order, tols, n0, n_count, dt_ref):
    problem, Y0, t_span = (
        schrodinger_pulse(**kwargs) if name == "schrodinger-pulse" else _reference_problem(name, **kwargs)
    )
    T = t_span[1] - t_span[0]
    method = make()
    a = lc.solve(problem, Y0, t_span, 2 * dt_ref, method=method).Y.to_dense()
    b = lc.solve(problem, Y0, t_span, dt_ref, method=method).Y.to_dense()
    ref = b + (b - a) / (2**order - 1)
    fixed = []
    for n in sorted({round(n0 * 2 ** (k / 4)) for k in range(n_count)}):
        sol = lc.solve(problem, Y0, t_span, T / n, method=method)
        fixed.append({"n": n, "dt": T / n, "error": _error(sol.Y, ref), "rhs_evals": sol.stats["rhs_evals"]})
    env = _envelope(fixed)
    stable_limit = fixed[0]["error"] is None or fixed[0]["error"] >= 0.1  # the coarsest fixed step blew up
    adaptive = []
    for tol in tols:
        sol = lc.solve(problem, Y0, t_span, method=method, step_rtol=tol)
        err = _error(sol.Y, ref)
        same, mark = _same_error(env, err, stable_limit)
        adaptive.append({
            "step_rtol": tol, "error": err, "error_over_tol": err / tol, "steps": sol.stats["steps"],
            "rejected_steps": sol.stats["rejected_steps"], "rhs_evals": sol.stats["rhs_evals"],
            "min_step": float(sol.step_sizes.min()), "max_step": float(sol.step_sizes.max()),
            "fixed_rhs_evals_same_error": same, "same_error_mark": mark,
            "adaptive_over_fixed": sol.stats["rhs_evals"] / same,
        })  # fmt: skip
    ratios = [r["error_over_tol"] for r in adaptive]
    return {
        "case": label, "problem": name, "kwargs": kwargs, "method": repr(method), "order": order, "T": T,
        "estimator": lc._control.estimator_of(method),
        "reference": f"Richardson extrapolation of dt = {2 * dt_ref:g} and {dt_ref:g} (same method, order {order})",
        "adaptive": adaptive, "fixed": fixed, "ratio_spread": max(ratios) / min(ratios),
    }  # fmt: skip


def heat_transient_check(n=160, split=0.02, refine=16, dt_ref=2.5e-5):
    """Where the heat problem's final error comes from: RK-BUG ssprk3 with the uniform
    step ``T / n``, against the same with the step refined ``refine`` times on
    ``[0, split]`` only (the transient) or on ``[split, T]`` only."""
    problem, Y0, (t0, t1) = _reference_problem("heat", size=16, r=8, t_end=0.1)
    method = lc.RKBUG(tableau="ssprk3")
    a = lc.solve(problem, Y0, (t0, t1), 2 * dt_ref, method=method).Y.to_dense()
    b = lc.solve(problem, Y0, (t0, t1), dt_ref, method=method).Y.to_dense()
    ref = b + (b - a) / 7.0
    dt = (t1 - t0) / n

    def two_phase(dt_early, dt_late):
        first = lc.solve(problem, Y0, (t0, split), dt_early, method=method)
        second = lc.solve(problem, first.Y, (split, t1), dt_late, method=method)
        return _error(second.Y, ref), first.stats["rhs_evals"] + second.stats["rhs_evals"]

    rows = {}
    for label, (early, late) in {
        "uniform": (dt, dt), "transient refined": (dt / refine, dt), "rest refined": (dt, dt / refine),
    }.items():  # fmt: skip
        err, evals = two_phase(early, late)
        rows[label] = {"dt_early": early, "dt_late": late, "error": err, "rhs_evals": evals}
    return {"n": n, "split": split, "refine": refine, "rows": rows}


def _busy(stop):  # pragma: no cover - background load
    x = 0.0
    while not stop.is_set():
        for i in range(10000):
            x += math.sin(i)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tolerances, coarser sweep")
    parser.add_argument("--load", type=int, default=0, help="busy background processes while running")
    args = parser.parse_args(argv)
    stop = mp.Event()
    workers = [mp.Process(target=_busy, args=(stop,), daemon=True) for _ in range(args.load)]
    for w in workers:
        w.start()
    try:
        results = []
        for label, name, kwargs, make, order, tols, n0, n_count, dt_ref in CASES:
            if args.quick:
                tols, n_count = tols[:3], max(5, n_count // 2)
            res = run_case(label, name, kwargs, make, order, tols, n0, n_count, dt_ref)
            results.append(res)
            print(f"\n{label}: {res['method']} [{res['estimator']}], spread of error/tol = {res['ratio_spread']:.2f}")
            header = ("step_rtol", 9), ("error", 9), ("err/tol", 8), ("steps", 6), ("rej", 4), ("F", 7), ("fixed F", 9)
            print(" ".join(f"{name:>{width}}" for name, width in header) + f" {'ratio':>6}")
            for r in res["adaptive"]:
                mark = r["same_error_mark"] or " "
                print(
                    f"{r['step_rtol']:9.0e} {r['error']:9.2e} {r['error_over_tol']:8.3f} {r['steps']:6d} "
                    f"{r['rejected_steps']:4d} {r['rhs_evals']:7d} {r['fixed_rhs_evals_same_error']:8.0f}{mark} "
                    f"{r['adaptive_over_fixed']:6.2f}"
                )
            sys.stdout.flush()
        check = heat_transient_check()
        print(
            f"\nheat, RK-BUG ssprk3, step T/{check['n']}, refined {check['refine']}x on [0, {check['split']}] or after:"
        )
        for label, row in check["rows"].items():
            print(f"  {label:>18}: error {row['error']:.3e}, {row['rhs_evals']} F")
    finally:
        stop.set()
        for w in workers:
            w.join()
    command = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/step_control.py" + (
        " --quick" if args.quick else ""
    )
    payload = {"command": command, "load": args.load, "cases": results, "heat_transient": check}
    out = OUT.with_name("step_control_quick.json") if args.quick else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    print(f"\nwrote {out} (* = extrapolated outside the fixed-step sweep; s = cheapest stable fixed step)")


if __name__ == "__main__":
    main()
