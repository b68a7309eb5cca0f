"""Train a small MLP on scikit-learn's digits (8x8 images, 10 classes) with dense training
or with a low-rank optimizer of ``lowrank_core.training``, under a parameter budget, and
plot the rank of each low-rank layer per epoch.

Network: 64 -> 256 -> 256 -> 10 with ReLU; the two hidden layers are ``LowRankLinear``
(initial and largest rank ``rank``) in the low-rank runs, the classifier stays dense.
The rank-adaptive methods share one budget over the two hidden layers,
``param_budget=0.2`` (at most 20 % of their dense weight entries: >= 80 % compression):
after every basis update the layers' singular values are ranked together and kept while
they fit.  By default the budget starts at 40 % and falls linearly to 20 % over the first
third of the epochs (``LinearRankSchedule``, a rank schedule).  ``RankLogger`` records the
ranks per layer per epoch; ``--plot`` draws them.
The data are the 1797 images of ``sklearn.datasets.load_digits``, split 75/25
(stratified, fixed seed) and standardised per pixel with the training statistics.

Usage::

    python examples/train_digits.py                       # abc-PSI, budget 40 % -> 20 %, plot
    python examples/train_digits.py --method adam --epochs 30 --budget 0.1
    python examples/train_digits.py --method dense-sgd
    python examples/train_digits.py --plot ranks.png      # where the rank plot goes

``bench/training.py`` runs every method over seeds (MLP and a small CNN) and writes
the results; ``tests/training/test_torch.py`` runs a short version of this example.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # one thread: idle OpenMP/Numba workers spin and slow a loaded machine
    for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import torch  # noqa: E402

# Run from a checkout: import this repository's lowrank_core, not an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lowrank_core.training.torch import LinearRankSchedule, LowRankLinear, LowRankOptimizer, RankLogger  # noqa: E402

#: per method: learning rate and options used by the example.  The learning rates are those
#: bench/training.py chose by its sweep on a validation split (not on the test set).
SETTINGS: dict[str, dict[str, Any]] = {
    "dense-sgd": {"lr": 1.0},
    "dense-adam": {"lr": 3e-3},
    "psi": {"lr": 0.1, "basis_update_every": 5},  # not in the benchmark's sweep
    "bc-psi": {"lr": 1.0, "basis_update_every": 5},
    "abc-psi": {"lr": 0.3, "basis_update_every": 5},
    "ra-bug": {"lr": 1.0, "basis_update_every": 5},
    "parallel-bug": {"lr": 0.3, "basis_update_every": 5},
    "heavy-ball": {"lr": 0.03, "beta": 0.9, "basis_update_every": 5},
    "adam": {"lr": 3e-3, "basis_update_every": 5},
}
#: methods whose rank adapts (they take the parameter budget); psi and bc-psi keep their rank
RANK_ADAPTIVE = ("abc-psi", "ra-bug", "parallel-bug", "heavy-ball", "adam")


def load_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as float32 tensors ``(X_train, y_train, X_test, y_test)``, standardised with training statistics."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0) + 1.0  # +1: constant border pixels

    def f(a):
        return torch.tensor((a - mean) / std, dtype=torch.float32)

    return f(X_tr), torch.tensor(y_tr), f(X_te), torch.tensor(y_te)


def make_model(low_rank: bool, *, hidden: int = 256, rank: int = 32, seed: int = 0) -> torch.nn.Sequential:
    """The MLP; ``low_rank`` makes the two hidden layers ``LowRankLinear`` of initial (and largest) rank ``rank``."""
    torch.manual_seed(seed)
    layer = (lambda i, o: LowRankLinear(i, o, rank)) if low_rank else torch.nn.Linear
    return torch.nn.Sequential(
        layer(64, hidden), torch.nn.ReLU(), layer(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )


def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Classification accuracy in percent (in eval mode, which finishes the optimizer's open cycle)."""
    model.eval()
    with torch.no_grad():
        acc = 100.0 * float((model(X).argmax(dim=1) == y).float().mean())
    model.train()
    return acc


def train(
    method: str,
    *,
    epochs: int = 40,
    batch_size: int = 32,
    rank: int = 32,
    seed: int = 0,
    data: tuple | None = None,
    param_budget: float | int | None = 0.2,
    budget_start: float | int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train with ``method`` (a key of ``SETTINGS``); return the measured figures.

    ``param_budget`` (default 0.2: at most 20 % of the hidden layers' dense entries) is
    given to the rank-adaptive methods (``RANK_ADAPTIVE``); ``None`` trains them with
    the per-layer ``rtol`` of ``overrides`` instead.  ``budget_start``: a rank schedule,
    the budget moving linearly from ``budget_start`` to ``param_budget`` over the first
    third of the epochs (``LinearRankSchedule``), then held.

    Returns a dict with ``method``, ``test_accuracy`` (%), ``ranks`` (final ranks of the
    low-rank layers), ``parameters`` (weights of the hidden layers), ``compression`` (%
    saved on the hidden layers versus dense), ``qr``/``svd`` (decompositions counted by
    the seam), ``steps``, ``wall_time`` (s), per-epoch ``history`` (test accuracy, loss,
    ranks) and ``rank_log`` (``RankLogger.table()``: epoch, step, layer, rank, parameters).
    """
    options = {**SETTINGS[method], **overrides}
    lr = options.pop("lr")
    X_tr, y_tr, X_te, y_te = load_data(seed) if data is None else data
    dense = method.startswith("dense")
    model = make_model(not dense, rank=rank, seed=seed)
    if dense:
        opt = (torch.optim.Adam if method == "dense-adam" else torch.optim.SGD)(model.parameters(), lr=lr)
    else:
        budgeted = method in RANK_ADAPTIVE and param_budget is not None
        if budgeted:
            options["param_budget"] = param_budget if budget_start is None else budget_start
        opt = LowRankOptimizer(model.parameters(), method, lr, **options)
        if budgeted and budget_start is not None:
            schedule = LinearRankSchedule(opt, budget_start, param_budget, epochs=max(1, epochs // 3))
            options["param_budget"] = param_budget
    log = None if dense else RankLogger(opt, model)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"test_accuracy": [], "loss": [], "ranks": []}
    steps = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(X_tr.shape[0], generator=gen)
        total = 0.0
        for i in range(0, X_tr.shape[0], batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
            steps += 1
        history["loss"].append(total / X_tr.shape[0])
        history["test_accuracy"].append(accuracy(model, X_te, y_te))
        history["ranks"].append([] if log is None else [row["rank"] for row in log.record(epoch)])
        if not dense and budgeted and budget_start is not None:
            schedule.step()  # the budget of the next epoch
    wall = time.perf_counter() - start
    hidden = [model[0], model[2]]
    dense_params = sum(m.in_features * m.out_features for m in hidden)
    params = dense_params if dense else sum(m.num_parameters for m in hidden)
    return {
        "method": method,
        "lr": lr,
        "options": options,
        "test_accuracy": history["test_accuracy"][-1],
        "ranks": [] if dense else opt.ranks(),
        "parameters": params,
        "compression": 100.0 * (1.0 - params / dense_params),
        "qr": 0 if dense else opt.counters.qr,
        "svd": 0 if dense else opt.counters.svd,
        "steps": steps,
        "wall_time": wall,
        "history": history,
        "budget_start": budget_start,
        "rank_log": None if log is None else log.table(),
        "logger": log,
    }


def plot_ranks(result: dict[str, Any], path: str | Path) -> Path:
    """Save the rank of each low-rank layer per epoch (left) and the test accuracy (right) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    result["logger"].plot(ax)
    budget = result["options"].get("param_budget")
    start = result.get("budget_start")
    what = "per-layer truncation" if budget is None else f"budget {budget:g}"
    if budget is not None and start is not None:
        what = f"budget {start:g} -> {budget:g}"
    ax.set_title(f"{result['method']}, {what}: rank per layer (layers named as in the model)", fontsize=9)
    acc = result["history"]["test_accuracy"]
    ax2.plot(range(len(acc)), acc, marker=".")
    ax2.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"{result['compression']:.1f} % compression")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="abc-psi", choices=sorted(SETTINGS))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--budget", type=float, default=0.2, help="param_budget (fraction); 0 for none")
    parser.add_argument(
        "--budget-start",
        type=float,
        default=0.4,
        help="start of the linear budget schedule over the first third of the epochs; 0 for none",
    )
    parser.add_argument("--plot", default="train_digits_ranks.png", help="rank plot file ('' for none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    res = train(
        args.method,
        epochs=args.epochs,
        rank=args.rank,
        param_budget=args.budget or None,
        budget_start=args.budget_start or None,
    )
    print(
        f"{res['method']}: test accuracy {res['test_accuracy']:.2f} %, ranks {res['ranks']}, "
        f"compression {res['compression']:.1f} %, QR {res['qr']}, SVD {res['svd']}, {res['wall_time']:.1f} s"
    )
    if res["logger"] is not None:
        for layer, ranks in res["logger"].series("rank").items():
            print(f"  layer {layer}: ranks per epoch {ranks}")
        if args.plot:
            print(f"rank plot: {plot_ranks(res, args.plot)}")


if __name__ == "__main__":
    main()
