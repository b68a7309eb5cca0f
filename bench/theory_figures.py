"""The convergence-theory figures quoted in the issue notes, measured in one run.

Each block uses a fixed instance of the setting whose property the named test module
asserts over drawn instances, and prints the measured value instead of checking a bound:

* order: log-log slopes against the DLRA solution (tests/theory/test_order.py)
* backward correction: ||S_PSI - S_BC|| ratios per halving of h
  (tests/theory/test_backward_correction.py)
* descent: loss increases of abc-PSI and PSI's S-substep ascents (tests/theory/test_descent.py)
* theta: slope of error vs theta at fixed h, and of error vs h with theta = 0.1 h^2
  (tests/theory/test_rank_adaptive.py)
* structure: norm / energy drift on Schrödinger, asymmetry on heat (tests/theory/test_structure.py)

Writes bench/results/theory_figures.json (one row per figure: ``figure``, ``value``).
Usage: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/theory_figures.py
"""

from __future__ import annotations

import json

import numpy as np
from _common import check_environment, save
from _reference import NonTangentProblem, dense, loglog_slope, rel_err

import lowrank_core as lc
from lowrank_core import problems

OUT: dict = {}


def order() -> None:
    prob = NonTangentProblem()
    Y0, ref, hs = lc.LowRank(*prob.factors), prob.reference(1.0), [0.1, 0.05, 0.025, 0.0125]
    OUT["order_slopes"] = {}
    for m in lc.METHODS:
        errs = [rel_err(dense(lc.solve(lc.MatrixODE(prob.f_np), Y0, (0.0, 1.0), h, method=m).Y), ref) for h in hs]
        OUT["order_slopes"][m] = loglog_slope(hs, errs)
    print("order slopes (test_order.py):", {k: round(v, 3) for k, v in OUT["order_slopes"].items()})


def backward_correction() -> None:
    rng = np.random.default_rng(0)
    m, n, r = 40, 30, 4
    B = rng.standard_normal((m, n))
    B /= np.linalg.norm(B, 2)
    A0 = rng.standard_normal((m, m)) / np.sqrt(m)
    problem = lc.MatrixODE(lambda t, Y: A0 @ Y - Y @ Y.T @ Y + np.cos(t) * B)
    Y0 = lc.LowRank.from_dense(B, rank=r)
    diffs = []
    for h in [0.04, 0.02, 0.01, 0.005]:
        kit = lc.KSL(substep="euler").make_kit(problem, Y0)
        U1, S_hat = kit.qr(kit.k_step(0.0, h, Y0.U @ Y0.S, Y0.V))
        diffs.append(np.linalg.norm(kit.s_step(0.0, h, S_hat, U1, Y0.V, sign=-1.0) - kit.project(Y0, U1)))
    OUT["bc_ratios"] = list(np.array(diffs[:-1]) / np.array(diffs[1:]))
    print("backward-correction ratios per halving (test_backward_correction.py):", np.round(OUT["bc_ratios"], 2))


def descent() -> None:
    qp = problems.quadratic_flow(m=60, n=40, r=5)
    B = qp.B
    loss = lambda Y: 0.5 * np.linalg.norm(Y.to_dense() - B) ** 2  # noqa: E731
    OUT["abc_psi_loss_increases"] = {}
    for h in (0.25, 0.5, 1.0):
        sol = lc.solve(qp.problem, qp.Y0, (0.0, 40.0), h, method="abc-psi", substep="euler")
        losses = np.array([loss(Y) for Y in sol.Ys])
        OUT["abc_psi_loss_increases"][h] = int(np.sum(np.diff(losses) > 1e-12 * losses[:-1]))
    method, Y, ascents, h, steps = lc.KSL(substep="euler"), qp.Y0, 0, 0.5, 100
    for k in range(steps):
        kit = method.make_kit(qp.problem, Y)
        U1, S_hat = kit.qr(kit.k_step(k * h, (k + 1) * h, Y.U @ Y.S, Y.V))
        S_tilde = kit.s_step(k * h, (k + 1) * h, S_hat, U1, Y.V, sign=-1.0)
        ascents += loss(lc.LowRank._trusted(U1, S_tilde, Y.V, Y.xp)) > loss(lc.LowRank._trusted(U1, S_hat, Y.V, Y.xp))
        Y, _, _ = method.step(qp.problem, k * h, (k + 1) * h, Y, None)
    OUT["psi_s_step_ascents"] = f"{int(ascents)}/{steps}"
    print("abc-PSI loss increases per h (test_descent.py):", OUT["abc_psi_loss_increases"],
          "| PSI S-substep ascents at h=0.5:", OUT["psi_s_step_ascents"])


def theta() -> None:
    path = problems.prescribed_path(N=60, r=24, w_norm=1.0)
    thetas, hs = [1e-6, 2e-6, 4e-6, 8e-6, 1.6e-5, 3.2e-5], [0.1, 0.05, 0.025, 0.0125]
    OUT["theta_slope"], OUT["h_slope_theta_h2"] = {}, {}
    for m in ("ra-bug", "abc-psi"):
        errs = [path.error(lc.solve(path.problem, path.Y0, path.t_span, 0.02, method=m, substep="exact", tol=th,
                                    max_rank=40).Y, 1.0) for th in thetas]
        OUT["theta_slope"][m] = loglog_slope(thetas, errs)
    for m in ("ra-bug", "abc-psi", "parallel-bug"):
        errs = [path.error(lc.solve(path.problem, path.Y0, path.t_span, h, method=m, substep="exact", tol=0.1 * h**2,
                                    max_rank=40).Y, 1.0) for h in hs]
        OUT["h_slope_theta_h2"][m] = loglog_slope(hs, errs)
    print("error-vs-theta slope (test_rank_adaptive.py):", {k: round(v, 3) for k, v in OUT["theta_slope"].items()},
          "| error-vs-h slope, theta = 0.1 h^2:", {k: round(v, 2) for k, v in OUT["h_slope_theta_h2"].items()})


def structure() -> None:
    sp = problems.schrodinger(N=100, r=8, t_end=0.5)
    OUT["schrodinger"] = {}
    for m, kw in [("ksl", {}), ("bug", {}), ("ra-bug", {"tol": 1e-6, "max_rank": 30}),
                  ("abc-psi", {"tol": 1e-6, "max_rank": 30})]:
        sol = lc.solve(sp.problem, sp.Y0, sp.t_span, 0.01, method=m, **kw)
        norms = np.array([float(Y.norm()) for Y in sol.Ys])
        energy = np.array([sp.energy(Y) for Y in sol.Ys])
        OUT["schrodinger"][m] = {"max_norm_change_per_step": float(np.max(np.abs(np.diff(norms)))),
                                 "total_norm_drift": float(abs(norms[-1] - norms[0])),
                                 "max_energy_drift": float(np.max(np.abs(energy - energy[0])))}
    hp = problems.heat_lyapunov(size=24, r=8, t_end=0.005)
    OUT["heat_asymmetry"] = {}
    for m in ("ksl", "bug", "ra-bug", "parallel-bug"):
        kw = {"tol": 1e-8, "max_rank": 16} if lc.METHODS[m].rank_adaptive else {}
        Yd = lc.solve(hp.problem, hp.Y0, hp.t_span, hp.suggested_dt, method=m, **kw).Y.to_dense()
        OUT["heat_asymmetry"][m] = float(np.linalg.norm(Yd - Yd.T) / np.linalg.norm(Yd))
    for m, v in OUT["schrodinger"].items():
        print(f"schrodinger {m:8s} (test_structure.py):", {k: f"{x:.2g}" for k, x in v.items()})
    print("heat ||Y - Y^T|| / ||Y|| (test_structure.py):", {k: f"{v:.2g}" for k, v in OUT["heat_asymmetry"].items()})


if __name__ == "__main__":
    check_environment()
    for block in (order, backward_correction, descent, theta, structure):
        block()
    rows = json.loads(json.dumps([{"figure": k, "value": v} for k, v in OUT.items()], default=float))
    print(f"wrote {save('theory-figures', rows)}")
