"""Training benchmark: the papers' claims over seeds (issue 19), and two toys.

1. **Digits** (scikit-learn ``load_digits``, 8x8 images, 10 classes; a fixed stratified
   75/25 train/test split), two models, each method over ``--seeds`` seeds (model
   initialisation and batch order; mean and sample standard deviation):

   * MLP 64-256-256-10; the two hidden layers low rank;
   * CNN conv(1->16, 3x3) - conv(16->32, 3x3) - maxpool 2 - fc(512->128) - fc(128->10)
     (ReLU between); ``conv2`` (the ``32 x 144`` kernel matrix) and ``fc1`` (``128 x 512``) low rank.

   Methods: dense SGD and Adam (torch); heavy ball (SGD, momentum 0.9) and Adam on naive
   factors ``W = A B^T`` (torch); abc-PSI, BC-PSI, RA-BUG, parallel BUG, low-rank heavy
   ball and low-rank Adam (``LowRankOptimizer``, ``basis_update_every=5``).  Every
   low-rank model stores at most 20 % of the dense entries of its low-rank layers (>= 80 %
   compression): the rank-adaptive methods through ``param_budget=0.2`` (initial rank
   32, ``max_rank`` 32), BC-PSI and the factor baselines at the fixed rank that fits
   (18 for the MLP, 16 for the CNN).  The compression reported is measured from the
   trained weights after ``finish_cycle`` (stored factor entries ``(m + n) r + r^2`` at
   the rank ``r`` of the stored factors, ``(m + n) r`` for naive factors; the numerical
   rank of each ``W`` is checked not to exceed it), not taken from the optimizer.

   Learning rates: the value of each method's four-point grid (``LR_GRID``) with the
   best validation accuracy (a stratified 20 % of the training split, seed 0; the test
   split is never used to choose), found by ``--sweep`` and written to
   ``bench/results/training_sweep.json``; the chosen values are ``LR`` below.

2. The ill-conditioned toy of methods.md §3.3 (rank-5 target, sigma = 10, 5, 1, 0.1,
   0.01, 50 x 40, beta = 0.9): steps to L < 1e-6 of heavy ball on the raw factors and of
   the geometric heavy ball, at equal step sizes.
3. The quadratic toy of §6.6 (``problems.quadratic_flow``, 60 x 40, r = 5): steps until
   the loss is within 1e-8 (relative) of the Eckart-Young optimum, with QR/SVD counts.

Writes ``bench/results/training.json`` and ``bench/results/training.png``.  Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/training.py           # all
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/training.py --sweep   # the lr sweep
    ... --models mlp --seeds 0 1 2 --epochs-mlp 30 --epochs-cnn 20 --load 0

Accuracies are deterministic given the seeds (one torch thread); wall times are
reported as measured (``--load N`` adds N busy processes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

# One thread everywhere, set before numpy/numba/torch load: idle OpenMP/Numba worker threads
# spin-wait after each parallel region, and on a loaded 2-core machine that made every
# training step 10-30 times slower (measured: MLP abc-PSI step 62 -> 7 ms).
for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))  # this checkout's lowrank_core, also without an installed one

from _common import background_load, check_environment, exit_on_sigterm, save  # noqa: E402

import lowrank_core as lc  # noqa: E402
import lowrank_core.training as lt  # noqa: E402
from lowrank_core import problems  # noqa: E402
from lowrank_core.bench import factor_heavy_ball  # noqa: E402

#: the methods, in the order of the tables
METHODS = (
    "dense-sgd",
    "dense-adam",
    "factor-heavy-ball",
    "factor-adam",
    "abc-psi",
    "bc-psi",
    "ra-bug",
    "parallel-bug",
    "heavy-ball",
    "adam",
)
#: learning-rate grid per method (--sweep): three points a factor ~3 apart, and a fourth above
#: them because the first sweep's best was at the upper end for most methods
LR_GRID = {
    "dense-sgd": (0.03, 0.1, 0.3, 1.0),
    "dense-adam": (3e-4, 1e-3, 3e-3, 1e-2),
    "factor-heavy-ball": (0.003, 0.01, 0.03, 0.1),
    "factor-adam": (3e-4, 1e-3, 3e-3, 1e-2),
    "abc-psi": (0.03, 0.1, 0.3, 1.0),
    "bc-psi": (0.03, 0.1, 0.3, 1.0),
    "ra-bug": (0.03, 0.1, 0.3, 1.0),
    "parallel-bug": (0.03, 0.1, 0.3, 1.0),
    "heavy-ball": (0.003, 0.01, 0.03, 0.1),
    "adam": (3e-4, 1e-3, 3e-3, 1e-2),
}
#: learning rates chosen by --sweep on the validation split (bench/results/training_sweep.json)
LR = {
    "mlp": {
        "dense-sgd": 1.0,
        "dense-adam": 3e-3,
        "factor-heavy-ball": 0.03,
        "factor-adam": 1e-2,
        "abc-psi": 0.3,
        "bc-psi": 1.0,
        "ra-bug": 1.0,
        "parallel-bug": 0.3,
        "heavy-ball": 0.03,
        "adam": 3e-3,
    },
    "cnn": {
        "dense-sgd": 0.3,
        "dense-adam": 3e-3,
        "factor-heavy-ball": 0.03,
        "factor-adam": 3e-3,
        "abc-psi": 0.3,
        "bc-psi": 0.3,
        "ra-bug": 0.3,
        "parallel-bug": 0.3,
        "heavy-ball": 0.01,
        "adam": 1e-2,
    },
}
#: low-rank optimizer options besides lr
OPTIONS: dict[str, dict[str, Any]] = {
    "abc-psi": {"basis_update_every": 5},
    "bc-psi": {"basis_update_every": 5},
    "ra-bug": {"basis_update_every": 5},
    "parallel-bug": {"basis_update_every": 5},
    "heavy-ball": {"basis_update_every": 5, "momentum": 0.9},
    "adam": {"basis_update_every": 5},
}
#: fixed rank of BC-PSI and the factor baselines: the largest with >= 80 % compression
FIXED_RANK = {"mlp": 18, "cnn": 16}
INITIAL_RANK = 32
BUDGET = 0.2
BATCH = 32


# ====================================================================== data and models
def load_data(validation: bool = False) -> tuple[Any, Any, Any, Any]:
    """Digits ``(X_train, y_train, X_eval, y_eval)`` as float32 tensors ``(N, 64)``, standardised with
    the training statistics.  ``validation``: the evaluation set is a stratified 20 % of the
    training split (the test split is not touched)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    if validation:
        X_tr, X_te, y_tr, y_te = train_test_split(X_tr, y_tr, test_size=0.2, random_state=0, stratify=y_tr)
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0) + 1.0  # +1: constant border pixels

    def f(a):
        return torch.tensor((a - mean) / std, dtype=torch.float32)

    return f(X_tr), torch.tensor(y_tr), f(X_te), torch.tensor(y_te)


def _factor_modules():
    import torch

    class FactorLinear(torch.nn.Module):
        """``y = x (A B^T)^T + b`` with naive factors ``A (m, r)``, ``B (n, r)`` trained by autograd,
        initialised as ``A = U sqrt(s)``, ``B = V sqrt(s)`` from the truncated SVD of a default layer."""

        def __init__(self, n: int, m: int, r: int) -> None:
            super().__init__()
            dense = torch.nn.Linear(n, m)
            u, s, vh = torch.linalg.svd(dense.weight.detach(), full_matrices=False)
            self.A = torch.nn.Parameter(u[:, :r] * s[:r].sqrt())
            self.B = torch.nn.Parameter(vh[:r].T * s[:r].sqrt())
            self.bias = torch.nn.Parameter(dense.bias.detach().clone())

        def matrix(self):
            return self.A @ self.B.T

        def forward(self, x):
            return (x @ self.B) @ self.A.T + self.bias

    class FactorConv2d(torch.nn.Module):
        """Convolution with kernel ``(A B^T).reshape(out, in, kh, kw)``: a rank-``r`` convolution with
        ``B^T`` then a 1x1 convolution with ``A``."""

        def __init__(self, cin: int, cout: int, k: int, r: int, padding: int) -> None:
            super().__init__()
            dense = torch.nn.Conv2d(cin, cout, k, padding=padding)
            u, s, vh = torch.linalg.svd(dense.weight.detach().reshape(cout, -1), full_matrices=False)
            self.A = torch.nn.Parameter(u[:, :r] * s[:r].sqrt())
            self.B = torch.nn.Parameter(vh[:r].T * s[:r].sqrt())
            self.bias = torch.nn.Parameter(dense.bias.detach().clone())
            self.shape, self.padding = (cin, k, k), padding

        def matrix(self):
            return self.A @ self.B.T

        def forward(self, x):
            z = torch.nn.functional.conv2d(x, self.B.T.reshape(-1, *self.shape), padding=self.padding)
            return torch.nn.functional.conv2d(z, self.A[:, :, None, None], self.bias)

    return FactorLinear, FactorConv2d


def build(model: str, kind: str, seed: int) -> Any:
    """The ``model`` ("mlp" or "cnn") with its compressible layers ``kind``: "dense", "lowrank"
    (``LowRankLinear``/``LowRankConv2d`` of rank 32, ``max_rank`` 32), "fixed" (the same at the
    fixed rank) or "factor" (naive factors at the fixed rank)."""
    import torch

    from lowrank_core.training.torch import LowRankConv2d, LowRankLinear

    torch.manual_seed(seed)
    FactorLinear, FactorConv2d = _factor_modules()
    r = INITIAL_RANK if kind == "lowrank" else FIXED_RANK[model]

    def linear(n, m):
        if kind == "dense":
            return torch.nn.Linear(n, m)
        if kind == "factor":
            return FactorLinear(n, m, r)
        return LowRankLinear(n, m, r, max_rank=r)

    def conv(cin, cout):
        if kind == "dense":
            return torch.nn.Conv2d(cin, cout, 3, padding=1)
        if kind == "factor":
            return FactorConv2d(cin, cout, 3, r, 1)
        return LowRankConv2d(cin, cout, 3, r, padding=1, max_rank=r)

    relu = torch.nn.ReLU
    if model == "mlp":
        return torch.nn.Sequential(linear(64, 256), relu(), linear(256, 256), relu(), torch.nn.Linear(256, 10))
    return torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8, 8)),
        torch.nn.Conv2d(1, 16, 3, padding=1),
        relu(),
        conv(16, 32),
        relu(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        linear(512, 128),
        relu(),
        torch.nn.Linear(128, 10),
    )


def compressible(model: Any, name: str) -> list[Any]:
    """The layers that are low rank in the low-rank runs (dense or factored alike)."""
    return [model[0], model[2]] if name == "mlp" else [model[3], model[7]]


def measured_compression(layers: list[Any]) -> dict[str, Any]:
    """Compression from the stored weights (call after ``finish_cycle``/``eval()``).

    Per layer: the matrix ``W (m, n)``, its numerical rank (``torch.linalg.matrix_rank``,
    default tolerance), the stored rank ``r`` (columns of the stored factors) and the stored
    entries, ``(m + n) r + r^2`` for ``U S V^T``, ``(m + n) r`` for naive factors, ``m n`` dense.
    """
    import torch

    from lowrank_core.training.torch import LowRankLayer

    out = {"ranks": [], "numerical_ranks": [], "stored": 0, "dense": 0}
    for layer in layers:
        if isinstance(layer, LowRankLayer):
            W = layer.weight.detach().reshape(layer.out_features, layer.in_features)
            r = int(layer.active_rank.min())
            stored = (W.shape[0] + W.shape[1]) * r + r * r
        elif hasattr(layer, "A"):
            W = layer.matrix().detach()
            r = layer.A.shape[1]
            stored = (W.shape[0] + W.shape[1]) * r
        else:
            W = layer.weight.detach().reshape(layer.weight.shape[0], -1)
            r = min(W.shape)
            stored = W.numel()
        finite = bool(torch.isfinite(W).all())  # a diverged run has no numerical rank
        num = int(torch.linalg.matrix_rank(W)) if finite else None  # tolerance sigma_1 max(m, n) eps of the dtype
        if num is not None and num > r:
            msg = f"a layer's weight has numerical rank {num} above its stored rank {r}"
            raise AssertionError(msg)
        out["ranks"].append(r)
        out["numerical_ranks"].append(num)
        out["stored"] += stored
        out["dense"] += W.numel()
    out["compression"] = 100.0 * (1.0 - out["stored"] / out["dense"])
    return out


def _optimizer(method: str, model_name: str, net: Any, lr: float) -> Any:
    import torch

    from lowrank_core.training.torch import LowRankOptimizer

    if method in ("dense-sgd",):
        return torch.optim.SGD(net.parameters(), lr=lr)
    if method == "factor-heavy-ball":
        return torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    if method in ("dense-adam", "factor-adam"):
        return torch.optim.Adam(net.parameters(), lr=lr)
    options = dict(OPTIONS[method])
    if method != "bc-psi":
        options["param_budget"] = BUDGET
    return LowRankOptimizer(net.parameters(), method, lr, **options)


def _kind(method: str) -> str:
    if method.startswith("dense"):
        return "dense"
    if method.startswith("factor"):
        return "factor"
    return "fixed" if method == "bc-psi" else "lowrank"


def accuracy(net: Any, X: Any, y: Any) -> float:
    """Accuracy in percent (eval mode: finishes the optimizer's open cycles)."""
    import torch

    net.eval()
    with torch.no_grad():
        acc = 100.0 * float((net(X).argmax(dim=1) == y).float().mean())
    net.train()
    return acc


def run(method: str, model_name: str, seed: int, epochs: int, data: tuple, lr: float | None = None) -> dict[str, Any]:
    """Train one model; return accuracy, measured compression, ranks per epoch, counts, time."""
    import torch

    from lowrank_core.training.torch import LowRankOptimizer, RankLogger

    lr = LR[model_name][method] if lr is None else lr
    X_tr, y_tr, X_ev, y_ev = data
    net = build(model_name, _kind(method), seed)
    opt = _optimizer(method, model_name, net, lr)
    log = RankLogger(opt, net) if isinstance(opt, LowRankOptimizer) else None
    gen = torch.Generator().manual_seed(seed)
    losses = []
    diverged = False
    start = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(X_tr.shape[0], generator=gen)
        total = 0.0
        for i in range(0, X_tr.shape[0], BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(X_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.shape[0]
        losses.append(total / X_tr.shape[0])
        if not math.isfinite(losses[-1]):
            diverged = True
            break
        if log is not None:
            log.record(epoch)
    wall = time.perf_counter() - start
    acc = accuracy(net, X_ev, y_ev) if not diverged else float("nan")
    comp = measured_compression(compressible(net, model_name))
    row = {
        "model": model_name,
        "method": method,
        "seed": seed,
        "lr": lr,
        "epochs": epochs,
        "accuracy": acc,
        "diverged": diverged,
        "loss": losses,
        **{k: comp[k] for k in ("ranks", "numerical_ranks", "stored", "dense", "compression")},
        "wall_time": wall,
    }
    if isinstance(opt, LowRankOptimizer):
        row["optimizer_compression"] = opt.compression()
        row["qr"], row["svd"] = opt.counters.qr, opt.counters.svd
        row["rank_log"] = log.table()
    return row


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds, per model and method."""
    out = []
    keys = sorted({(r["model"], r["method"]) for r in rows}, key=lambda k: (k[0], METHODS.index(k[1])))
    for model_name, method in keys:
        rs = [r for r in rows if r["model"] == model_name and r["method"] == method]
        acc = [r["accuracy"] for r in rs]
        comp = [r["compression"] for r in rs]
        out.append(
            {
                "model": model_name,
                "method": method,
                "lr": rs[0]["lr"],
                "seeds": [r["seed"] for r in rs],
                "accuracy_mean": statistics.fmean(acc),
                "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "compression_mean": statistics.fmean(comp),
                "compression_min": min(comp),
                "ranks": [r["ranks"] for r in rs],
                "wall_time_mean": statistics.fmean(r["wall_time"] for r in rs),
            }
        )
    dense = {
        m: max(s["accuracy_mean"] for s in out if s["model"] == m and s["method"].startswith("dense"))
        for m in {s["model"] for s in out}
        if any(s["method"].startswith("dense") for s in out if s["model"] == m)
    }
    for s in out:
        if s["model"] in dense:
            s["gap_to_best_dense"] = s["accuracy_mean"] - dense[s["model"]]
    return out


def sweep(models: list[str], methods: list[str], epochs: dict[str, int], done: list[dict]) -> dict[str, Any]:
    """Validation accuracy of every method at each lr of its grid (seed 0); the best per method.

    ``done``: rows of an earlier sweep at the same epochs (not rerun)."""
    data = load_data(validation=True)
    out: dict[str, Any] = {"rows": [], "best": {}}
    for model_name in models:
        best = {}
        for method in methods:
            scores = []
            for lr in LR_GRID[method]:
                old = [
                    r
                    for r in done
                    if (r["model"], r["method"], r["lr"], r.get("epochs"))
                    == (model_name, method, lr, epochs[model_name])
                ]
                if old:
                    row = old[0]
                else:
                    row = run(method, model_name, 0, epochs[model_name], data, lr=lr)
                    row = {k: row[k] for k in ("model", "method", "lr", "epochs", "accuracy", "compression")}
                    print(
                        f"  sweep {model_name} {method:<17} lr {lr:<7g} validation {row['accuracy']:6.2f} %", flush=True
                    )
                acc = row["accuracy"]
                scores.append((acc if math.isfinite(acc) else -1.0, -lr, lr))
                out["rows"].append(row)
            best[method] = max(scores)[2]  # ties: the smaller lr
        out["best"][model_name] = best
    return out


def abc_psi_study(seeds: list[int], epochs: int) -> list[dict[str, Any]]:
    """abc-PSI on the MLP with one setting changed at a time (lr, basis_update_every, budget,
    initial rank): where does its gap to dense come from?  Test accuracy over ``seeds``
    (a diagnosis of the chosen setting, not a selection: nothing here feeds back into ``LR``)."""
    global BUDGET, INITIAL_RANK
    data = load_data()
    variants = [
        ("as benchmarked (lr 0.3, k 5, budget 0.2, rank 32)", {}),
        ("lr 0.1", {"lr": 0.1}),
        ("basis_update_every 1", {"basis_update_every": 1}),
        ("basis_update_every 20", {"basis_update_every": 20}),
        ("initial/max rank 64", {"rank": 64}),
        ("budget 0.3 (70 % compression)", {"budget": 0.3}),
        ("budget 0.5 (50 % compression)", {"budget": 0.5}),
        (f"{2 * epochs} epochs", {"epochs": 2 * epochs}),
    ]
    rows = []
    saved = (BUDGET, INITIAL_RANK, dict(OPTIONS["abc-psi"]))
    try:
        for label, change in variants:
            BUDGET = change.get("budget", saved[0])
            INITIAL_RANK = change.get("rank", saved[1])
            OPTIONS["abc-psi"] = {**saved[2], **{k: v for k, v in change.items() if k == "basis_update_every"}}
            accs, comps = [], []
            for seed in seeds:
                r = run("abc-psi", "mlp", seed, change.get("epochs", epochs), data, lr=change.get("lr"))
                accs.append(r["accuracy"])
                comps.append(r["compression"])
            rows.append(
                {
                    "variant": label,
                    "accuracy_mean": statistics.fmean(accs),
                    "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "accuracies": accs,
                    "compression_mean": statistics.fmean(comps),
                }
            )
            print(
                f"  abc-PSI {label:<52} {rows[-1]['accuracy_mean']:6.2f} ± {rows[-1]['accuracy_std']:.2f} % "
                f"({rows[-1]['compression_mean']:.1f} % compression)",
                flush=True,
            )
    finally:
        BUDGET, INITIAL_RANK, OPTIONS["abc-psi"] = saved
    return rows


# ====================================================================== toys
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
        out["runs"].append(
            {
                "lr": lr,
                "factor_steps": n_f,
                "factor_stable": stable,
                "geometric_steps": n_g,
                "ratio": n_f / n_g,
                "factor_loss": curve_f[:3000:10],
                "geometric_loss": hist["loss"],
            }
        )
        print(
            f"  lr {lr:<5} factor HB {n_f:>5} steps ({'stable' if stable else 'diverges'}), "
            f"geometric HB {n_g:>4} steps, ratio {n_f / n_g:.1f}",
            flush=True,
        )
    return out


def quadratic() -> list[dict]:
    q = problems.quadratic_flow(60, 40, 5)
    B = q.B
    loss = lambda W: 0.5 * float(np.sum((W - B) ** 2))  # noqa: E731
    target = q.optimal_loss * (1 + 1e-8)
    rows = []
    for name, opt in [
        ("psi", lt.PSI(0.5)),
        ("bc-psi", lt.BCPSI(0.5)),
        ("abc-psi", lt.ABCPSI(0.5)),
        ("abc-psi k=5", lt.ABCPSI(0.2, basis_update_every=5)),
        ("ra-bug", lt.RABUG(0.5)),
        ("parallel-bug", lt.ParallelBUG(0.5)),
        ("heavy-ball", lt.HeavyBall(0.2, beta=0.5)),
        ("adam", lt.Adam(0.02, basis_update_every=5)),
    ]:
        c = lc.Counters()
        t0 = time.perf_counter()
        _, hist = lt.fit(opt, q.Y0, lambda W: W - B, steps=3000, loss=loss, target=target, counters=c)
        wall = time.perf_counter() - t0
        n = len(hist["loss"]) - 1
        rows.append(
            {
                "method": name,
                "steps": n,
                "reached": hist["loss"][-1] < target,
                "qr": c.qr,
                "svd": c.svd,
                "wall_time": wall,
                "loss_gap": [max(v - q.optimal_loss, 1e-16) for v in hist["loss"]],
            }
        )
        print(
            f"  {name:<13} {n:>5} steps (reached: {rows[-1]['reached']}), QR {c.qr:>5}, SVD {c.svd:>5}, {wall:.2f} s",
            flush=True,
        )
    return rows


# ====================================================================== output
LABELS = {
    "dense-sgd": "dense SGD",
    "dense-adam": "dense Adam",
    "factor-heavy-ball": "factor heavy ball",
    "factor-adam": "factor Adam",
    "abc-psi": "abc-PSI",
    "bc-psi": "BC-PSI",
    "ra-bug": "RA-BUG",
    "parallel-bug": "parallel BUG",
    "heavy-ball": "low-rank heavy ball",
    "adam": "low-rank Adam",
}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in ("mlp", "cnn") if any(s["model"] == m for s in result["summary"])]
    fig, axes = plt.subplots(2, max(len(models), 1) + 1, figsize=(6 * (len(models) + 1), 9))
    for j, model_name in enumerate(models):
        ax = axes[0, j]
        ss = [s for s in result["summary"] if s["model"] == model_name]
        y = np.arange(len(ss))
        ax.barh(y, [s["accuracy_mean"] for s in ss], xerr=[s["accuracy_std"] for s in ss], color="C0")
        ax.set_yticks(y, [f"{LABELS[s['method']]} ({s['compression_mean']:.0f} %)" for s in ss], fontsize=8)
        best = max(s["accuracy_mean"] for s in ss if s["method"].startswith("dense"))
        ax.axvline(best, color="k", lw=0.8)
        ax.axvline(best - 1, color="k", lw=0.8, ls="--")
        lo = min(s["accuracy_mean"] for s in ss if math.isfinite(s["accuracy_mean"]))
        ax.set(
            xlim=(max(lo - 2, 0), 100),
            xlabel="test accuracy (%), mean ± std over seeds",
            title=f"digits {model_name.upper()} (compression in brackets); dashed: best dense - 1",
        )
        ax.invert_yaxis()
        ax = axes[1, j]
        row = next((r for r in result["rows"] if r["model"] == model_name and r["method"] == "abc-psi"), None)
        if row is not None:
            t = row["rank_log"]
            for name in dict.fromkeys(t["layer"]):
                pts = [(e, r) for e, lay, r in zip(t["epoch"], t["layer"], t["rank"], strict=True) if lay == name]
                ax.plot(*zip(*pts, strict=True), marker=".", label=f"layer {name}")
            ax.set(
                xlabel="epoch",
                ylabel="rank",
                title=f"{model_name.upper()}, abc-PSI, budget 20 %, seed {row['seed']}: rank per layer",
            )
            ax.legend(fontsize=8)
    ax = axes[0, -1]
    for run_ in result.get("ill_conditioned", {}).get("runs", []):
        if run_["lr"] in (0.05, 0.1):
            f = run_["factor_loss"]
            ax.semilogy(np.arange(len(f)) * 10, f, label=f"factor heavy ball, lr {run_['lr']}")
            ax.semilogy(run_["geometric_loss"], label=f"geometric heavy ball, lr {run_['lr']}")
    ax.axhline(1e-6, color="k", lw=0.5)
    ax.set(xlabel="optimizer step", ylabel="loss", title="ill-conditioned target, beta = 0.9", ylim=(1e-8, 1e3))
    ax.legend(fontsize=7)
    ax = axes[1, -1]
    for row in result.get("quadratic", []):
        ax.semilogy(row["loss_gap"], label=f"{row['method']} (QR {row['qr']})")
    ax.set(xlabel="optimizer step", ylabel="loss - optimal loss", title="quadratic toy (§6.6), 60 x 40, r = 5")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(summary: list[dict[str, Any]]) -> None:
    print(f"{'model':<5} {'method':<19} {'lr':>7} {'test acc. %':>16} {'vs dense':>8} {'compr. %':>9}  ranks (seed 0)")
    for s in summary:
        gap = s.get("gap_to_best_dense", float("nan"))
        print(
            f"{s['model']:<5} {LABELS[s['method']]:<19} {s['lr']:>7g} {s['accuracy_mean']:>8.2f} ± "
            f"{s['accuracy_std']:<5.2f} {gap:>+8.2f} {s['compression_mean']:>9.1f}  {s['ranks'][0]}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="training benchmark: digits MLP and CNN over seeds, toys")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs-mlp", type=int, default=30)
    parser.add_argument("--epochs-cnn", type=int, default=15)
    parser.add_argument("--sweep", action="store_true", help="run the lr sweep on the validation split only")
    parser.add_argument("--no-toys", action="store_true", help="skip the two toy problems")
    parser.add_argument(
        "--abc-psi-study",
        action="store_true",
        help="abc-PSI on the MLP with one setting changed at a time (bench/results/training_abc_psi.json)",
    )
    parser.add_argument("--load", type=int, default=0, help="N busy background processes during the run")
    parser.add_argument("--out", default=None, help="results file (default bench/results/training.json)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="do not keep the other models' runs and the toys of an existing results file",
    )
    args = parser.parse_args(argv)
    check_environment()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    import torch

    torch.set_num_threads(1)
    epochs = {"mlp": args.epochs_mlp, "cnn": args.epochs_cnn}
    with background_load(args.load, 2.0) as background:
        if args.sweep:
            path = OUT / "training_sweep.json"
            old = json.loads(path.read_text()) if path.exists() else {"rows": [], "best": {}, "epochs": {}}
            for key in ("rows", "best", "epochs"):  # keep the other models' sweep
                old.setdefault(key, {} if key != "rows" else [])
            for r in old["rows"]:  # rows of the first sweep carry no epochs: those of its record
                r.setdefault("epochs", old["epochs"].get(r["model"]))
            result = sweep(args.models, args.methods, epochs, old["rows"])
            redo = {(r["model"], r["method"]) for r in result["rows"]}
            old["rows"] = [r for r in old["rows"] if (r["model"], r["method"]) not in redo] + result["rows"]
            for m, best in result["best"].items():
                old["best"].setdefault(m, {}).update(best)
            old["epochs"].update({m: epochs[m] for m in args.models})
            old["grid"], old["command"] = LR_GRID, " ".join(["python bench/training.py", *sys.argv[1:]])
            path.write_text(json.dumps(old, indent=1))
            print("best lr per method:", json.dumps(result["best"], indent=1))
            print(f"wrote {path}")
            return
        if args.abc_psi_study:
            study = abc_psi_study(args.seeds, epochs["mlp"])
            path = save("training-abc-psi", study, load=args.load, epochs=epochs["mlp"], seeds=args.seeds)
            print(f"wrote {path}")
            return
        result: dict[str, Any] = {}
        if not args.no_toys:
            print("ill-conditioned toy (methods.md §3.3):")
            result["ill_conditioned"] = ill_conditioned()
            print("quadratic toy (methods.md §6.6):")
            result["quadratic"] = quadratic()
        data = load_data()
        rows = []
        for model_name in args.models:
            for method in args.methods:
                for seed in args.seeds:
                    row = run(method, model_name, seed, epochs[model_name], data)
                    rows.append(row)
                    print(
                        f"  {model_name} {method:<17} seed {seed} lr {row['lr']:<7g} acc {row['accuracy']:6.2f} % "
                        f"compr {row['compression']:5.1f} % ranks {row['ranks']} {row['wall_time']:5.1f} s",
                        flush=True,
                    )
    target = Path(args.out) if args.out else OUT / "training.json"
    if target.exists() and not args.fresh:  # keep what this run did not redo (the other model, the toys)
        previous = json.loads(target.read_text())
        redo = {(r["model"], r["method"]) for r in rows}
        rows = [r for r in previous.get("runs", []) if (r["model"], r["method"]) not in redo] + rows
        for key in ("ill_conditioned", "quadratic"):
            if key not in result and key in previous:
                result[key] = previous[key]
    summary = summarise(rows)
    print_table(summary)
    result.update(summary=summary, rows=rows)
    sections = {k: v for k, v in result.items() if k not in ("summary", "rows")}
    settings = {
        "epochs": epochs,
        "seeds": args.seeds,
        "batch": BATCH,
        "budget": BUDGET,
        "initial_rank": INITIAL_RANK,
        "fixed_rank": FIXED_RANK,
        "lr": LR,
        "options": OPTIONS,
        "lr_choice": "best validation accuracy of LR_GRID (bench/results/training_sweep.json)",
    }
    path = save(
        "training",
        summary,
        out=args.out,
        load=args.load,
        sections={"runs": rows, **sections, "background": background},
        **settings,
    )
    plot(result, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
