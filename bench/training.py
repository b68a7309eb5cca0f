"""Training benchmark: dense training against every low-rank optimizer.

1. Digits (scikit-learn ``load_digits``), MLP 64-256-256-10 with low-rank hidden layers
   (``examples/train_digits.py``; settings in its ``SETTINGS``): test accuracy, final
   ranks, parameters and compression of the hidden layers, QR/SVD counts, wall time.
2. The ill-conditioned toy of methods.md §3.3 (rank-5 target, sigma = 10, 5, 1, 0.1,
   0.01, 50 x 40, beta = 0.9): steps to L < 1e-6 of heavy ball on the raw factors and of
   the geometric heavy ball, at equal step sizes.
3. The quadratic toy of §6.6 (``problems.quadratic_flow``, 60 x 40, r = 5): steps until
   the loss is within 1e-8 (relative) of the Eckart-Young optimum, with QR/SVD counts.

Writes bench/results/training.json and bench/results/training.png.  Runs in about two
minutes on one CPU core.  Usage: python bench/training.py [--epochs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
import lowrank_core as lc  # noqa: E402
import lowrank_core.training as lt  # noqa: E402
from lowrank_core import problems  # noqa: E402
from tests.training._baselines import factor_heavy_ball  # noqa: E402

OUT = ROOT / "bench" / "results"


def digits(epochs: int) -> list[dict]:
    import torch
    import train_digits as td

    torch.set_num_threads(1)
    data = td.load_data()
    rows = []
    for method in td.SETTINGS:
        res = td.train(method, epochs=epochs, data=data)
        rows.append(res)
        print(
            f"  {method:<13} acc {res['test_accuracy']:6.2f} %  ranks {str(res['ranks']):<9} "
            f"params {res['parameters']:>6} compr {res['compression']:5.1f} %  QR {res['qr']:>5}  "
            f"SVD {res['svd']:>5}  {res['wall_time']:5.1f} s",
            flush=True,
        )
    return rows


def ill_conditioned() -> dict:
    q = problems.quadratic_flow(50, 40, 5, spectrum=(10, 5, 1, 0.1, 0.01))
    B, Y0 = q.B, q.Y0
    sq = np.sqrt(np.diag(Y0.S))
    loss = lambda W: 0.5 * float(np.sum((W - B) ** 2))  # noqa: E731
    out = {"spectrum": [10, 5, 1, 0.1, 0.01], "beta": 0.9, "target": 1e-6, "runs": []}
    for lr in (0.02, 0.05, 0.1, 0.15):
        n_f, curve_f = factor_heavy_ball(B, Y0.U * sq, Y0.V * sq, lr=lr, beta=0.9, steps=5000, target=1e-6)
        _, hist = lt.fit(lt.HeavyBall(lr, beta=0.9), Y0, lambda W: W - B, steps=5000, loss=loss, target=1e-6)
        n_g = len(hist["loss"]) - 1
        stable = bool(np.all(np.isfinite(curve_f)) and max(curve_f) <= curve_f[0])
        out["runs"].append({"lr": lr, "factor_steps": n_f, "factor_stable": stable, "geometric_steps": n_g,
                            "ratio": n_f / n_g, "factor_loss": curve_f[:3000:10], "geometric_loss": hist["loss"]})
        print(f"  lr {lr:<5} factor HB {n_f:>5} steps ({'stable' if stable else 'diverges'}), "
              f"geometric HB {n_g:>4} steps, ratio {n_f / n_g:.1f}", flush=True)
    return out


def quadratic() -> list[dict]:
    q = problems.quadratic_flow(60, 40, 5)
    B = q.B
    loss = lambda W: 0.5 * float(np.sum((W - B) ** 2))  # noqa: E731
    target = q.optimal_loss * (1 + 1e-8)
    rows = []
    for name, opt in [("psi", lt.PSI(0.5)), ("bc-psi", lt.BCPSI(0.5)), ("abc-psi", lt.ABCPSI(0.5)),
                      ("abc-psi k=5", lt.ABCPSI(0.2, basis_update_every=5)), ("ra-bug", lt.RABUG(0.5)),
                      ("parallel-bug", lt.ParallelBUG(0.5)), ("heavy-ball", lt.HeavyBall(0.2, beta=0.5)),
                      ("adam", lt.Adam(0.02, basis_update_every=5))]:
        c = lc.Counters()
        t0 = time.perf_counter()
        _, hist = lt.fit(opt, q.Y0, lambda W: W - B, steps=3000, loss=loss, target=target, counters=c)
        wall = time.perf_counter() - t0
        n = len(hist["loss"]) - 1
        rows.append({"method": name, "steps": n, "reached": hist["loss"][-1] < target, "qr": c.qr, "svd": c.svd,
                     "wall_time": wall, "loss_gap": [max(v - q.optimal_loss, 1e-16) for v in hist["loss"]]})
        print(f"  {name:<13} {n:>5} steps (reached: {rows[-1]['reached']}), QR {c.qr:>5}, SVD {c.svd:>5}, "
              f"{wall:.2f} s", flush=True)
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ax = axes[0]
    for row in result["digits"]:
        acc = row["history"]["test_accuracy"]
        label = f"{row['method']} ({row['test_accuracy']:.1f} %, {row['compression']:.0f} % compr.)"
        ax.plot(range(1, len(acc) + 1), acc, label=label, ls="--" if row["method"].startswith("dense") else "-")
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="digits, MLP 64-256-256-10", ylim=(80, 100))
    ax.legend(fontsize=7)
    ax = axes[1]
    for run in result["ill_conditioned"]["runs"]:
        if run["lr"] in (0.05, 0.1):
            f = run["factor_loss"]
            ax.semilogy(np.arange(len(f)) * 10, f, label=f"factor heavy ball, lr {run['lr']}")
            ax.semilogy(run["geometric_loss"], label=f"geometric heavy ball, lr {run['lr']}")
    ax.axhline(1e-6, color="k", lw=0.5)
    ax.set(xlabel="optimizer step", ylabel="loss", title="ill-conditioned target, beta = 0.9", ylim=(1e-8, 1e3))
    ax.legend(fontsize=7)
    ax = axes[2]
    for row in result["quadratic"]:
        ax.semilogy(row["loss_gap"], label=f"{row['method']} (QR {row['qr']})")
    ax.set(xlabel="optimizer step", ylabel="loss - optimal loss", title="quadratic toy (§6.6), 60 x 40, r = 5")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="training benchmark")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    print("ill-conditioned toy (methods.md §3.3):")
    ill = ill_conditioned()
    print("quadratic toy (methods.md §6.6):")
    quad = quadratic()
    print(f"digits, {args.epochs} epochs:")
    dig = digits(args.epochs)
    result = {"digits": dig, "ill_conditioned": ill, "quadratic": quad, "epochs": args.epochs}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "training.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, OUT / "training.png")
    print(f"wrote {OUT / 'training.json'} and {OUT / 'training.png'}")


if __name__ == "__main__":
    main()
