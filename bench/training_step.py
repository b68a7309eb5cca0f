"""Time per ``optimizer.step()`` of the geometric optimizers against torch Adam.

Command (idle, then with two background CPU-bound processes)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/training_step.py --load 0 2

Model: the MLP 784 -> 1024 -> 1024 -> 10 (float32, batch 128), its two hidden layers
``LowRankLinear`` of rank ``r`` (``max_rank = r``, default capacity ``2 r``; no ``tol``, so
the rank stays ``r``), the output layer dense.  Contenders, all in the same run and
interleaved round by round (one *window* of each per round):

* ``dense-adam`` -- ``torch.optim.Adam`` on the dense model (``nn.Linear`` layers);
* ``factor-adam`` -- ``torch.optim.Adam`` on naive factors ``W = A B^T`` (``A (out, r)``,
  ``B (in, r)``), the low-rank model a PyTorch user writes without this library;
* ``abc-psi``, ``bc-psi``, ``ra-bug``, ``parallel-bug``, ``heavy-ball``, ``adam`` --
  :class:`lowrank_core.training.torch.LowRankOptimizer` with ``basis_update_every = k``.

Only ``optimizer.step()`` is timed (the forward/backward before it is not).  A window
is one whole cycle of the method (``len(phases) * k`` steps), so the steps with and
without basis changes are weighted as in training, and ``BASE_WINDOW`` (50) steps of
torch Adam; the figure is the window's time divided by its steps, median over
``--repeat`` windows (default 20) after ``--warmup`` windows.  Every window is a mean
over tens of milliseconds, longer than the scheduler's time slice: on a busy machine a
window of one short step is mostly not preempted, and the median of such windows drops
the steps that were, which would understate torch Adam's time beside the methods'
whole cycles.  ``ratio_to_factor_adam`` is the median of the per-round
ratios.  The process CPU time of the same steps is recorded beside the wall time
(``cpu_ms_per_step``, ``cpu_ratio_to_factor_adam``): on a machine shared with other
CPU-bound work the wall time mostly measures the scheduler, while the CPU time of a run
with ``--threads 1`` and ``NUMBA_NUM_THREADS=1`` approximates the idle one-core wall time.

Also measured:

* ``stacking``: a model with three equal 1024 x 1024 low-rank layers (784 -> 1024 ->
  1024 -> 1024 -> 1024 -> 10), each method with ``batch_layers=True`` (the equal layers
  stacked into one batched QR/SVD call) and ``False`` (layer by layer), interleaved;
* ``floor``: the decompositions alone (:func:`floor_rows`): each method's QR and SVD
  shapes per cycle, each timed as the faster of the library's seam and
  ``torch.linalg``, summed and divided by the cycle's steps; a lower bound on the
  method's time per step, given also as a ratio to torch Adam on naive factors;
* ``insitu``: low-rank Adam's step between basis updates against its bare arithmetic
  (:class:`AdamArithmetic`) and its products alone, all on the model's own arrays right
  after a backward pass, interleaved with torch Adam on naive factors
  (:func:`insitu_rows`); with the ``floor`` decompositions, a bound on its step;
* ``profile``: cProfile of the slowest geometric optimizer at the largest rank
  (``--profile-windows`` windows), the top entries by own time, per step.

Writes ``bench/results/training_step.json``.  Options: ``--ranks`` (default 32 128),
``--k`` (``basis_update_every`` values, default 1 10 50), ``--repeat``, ``--warmup``,
``--load N ...``, ``--threads`` (torch threads; default torch's), ``--no-stacking``,
``--only stacking`` or ``--only insitu`` (rerun that section, keep the others of ``--out``), ``--out``.
A quick check: ``--ranks 32 --k 1 --repeat 3 --warmup 1 --profile-windows 2``.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import datetime
import json
import os
import platform
import pstats
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import array_api_compat
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import background_load, command, exit_on_sigterm  # noqa: E402  (bench/, the script's folder)

import lowrank_core as lc  # noqa: E402
from lowrank_core.training.torch import LowRankLinear, LowRankOptimizer  # noqa: E402

METHODS = ("abc-psi", "bc-psi", "ra-bug", "parallel-bug", "heavy-ball", "adam")
LR = {"heavy-ball": 1e-3, "adam": 1e-4}  # the others 1e-3 (SGD); the step time does not depend on lr
BATCH = 128
WINDOW = 25  # steps per window of the in-situ section
BASE_WINDOW = 50  # steps per window of torch Adam (a mean over more than a scheduler time slice)


# ---------------------------------------------------------------------- models
class FactorLinear(torch.nn.Module):
    """``y = x B A^T + b``: the naive factorisation ``W = A B^T`` trained by a torch optimizer."""

    def __init__(self, in_features: int, out_features: int, rank: int) -> None:
        super().__init__()
        self.A = torch.nn.Parameter(torch.randn(out_features, rank) / rank**0.5)
        self.B = torch.nn.Parameter(torch.randn(in_features, rank) / in_features**0.5)
        self.bias = torch.nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.B) @ self.A.mT + self.bias


def mlp(widths: list[int], kind: str, rank: int) -> torch.nn.Sequential:
    """``widths[0] -> ... -> widths[-1]`` with ReLUs; hidden layers of ``kind``, the last dense."""
    layers: list[torch.nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        last = i == len(widths) - 2
        if last or kind == "dense":
            layers.append(torch.nn.Linear(n_in, n_out))
        elif kind == "factor":
            layers.append(FactorLinear(n_in, n_out, rank))
        else:
            layers.append(LowRankLinear(n_in, n_out, rank))
        if not last:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class Contender:
    """A model, its optimizer and one fixed batch; :meth:`window` times one window of steps
    (a method's cycle, or ``window`` steps of torch Adam)."""

    def __init__(
        self, name: str, widths: list[int], rank: int, k: int, *, batch_layers: bool = True, window: int = BASE_WINDOW
    ) -> None:
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        self.name = name
        self.x = torch.randn(BATCH, widths[0], generator=gen)
        self.y = torch.randint(0, widths[-1], (BATCH,), generator=gen)
        if name in ("dense-adam", "factor-adam"):
            self.model = mlp(widths, name.split("-")[0], rank)
            self.opt: torch.optim.Optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
            self.steps = window  # torch Adam: `window` steps (a method: one cycle)
        else:
            self.model = mlp(widths, "lowrank", rank)
            self.opt = LowRankOptimizer(
                self.model.parameters(), name, lr=LR.get(name, 1e-3), basis_update_every=k, batch_layers=batch_layers
            )
            self.steps = self.opt.core.cycle_length

    def _backward(self) -> None:
        self.opt.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(self.model(self.x), self.y).backward()

    def window(self) -> tuple[float, float]:
        """Wall and CPU seconds per ``optimizer.step()``, the mean over one window (forward/backward not timed)."""
        wall = cpu = 0.0
        for _ in range(self.steps):
            self._backward()
            t0, c0 = time.perf_counter(), time.process_time()
            self.opt.step()
            wall += time.perf_counter() - t0
            cpu += time.process_time() - c0
        return wall / self.steps, cpu / self.steps


def interleaved(contenders: list[Contender], repeat: int, warmup: int, base: str | None) -> dict[str, dict]:
    """Median ms per step of each contender over ``repeat`` interleaved rounds, and per-round ratios to ``base``."""
    for c in contenders:
        for _ in range(warmup):
            c.window()
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpu: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(repeat):
        for c in contenders:
            w, p = c.window()
            samples[c.name].append(w)
            cpu[c.name].append(p)
    out = {}
    for c in contenders:
        s, p = samples[c.name], cpu[c.name]
        row = {
            "ms_per_step": 1e3 * statistics.median(s),
            "ms_min": 1e3 * min(s),
            "ms_max": 1e3 * max(s),
            "cpu_ms_per_step": 1e3 * statistics.median(p),
            "steps_per_window": c.steps,
        }
        if base is not None:
            tag = base.replace("-", "_")
            row["ratio_to_" + tag] = statistics.median(a / b for a, b in zip(s, samples[base], strict=True))
            row["cpu_ratio_to_" + tag] = statistics.median(a / b for a, b in zip(p, cpu[base], strict=True))
        out[c.name] = row
    return out


def profile(contender: Contender, windows: int, top: int = 15) -> dict[str, Any]:
    """cProfile of ``windows`` cycles of ``contender``: the ``top`` entries by own time, ms per step."""
    prof = cProfile.Profile()
    steps = 0
    for _ in range(windows):
        for _ in range(contender.steps):
            contender._backward()
            prof.enable()
            contender.opt.step()
            prof.disable()
            steps += 1
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        where = f"{Path(file).name}:{line}({func})" if line else func
        rows.append(
            {
                "function": where,
                "calls_per_step": nc / steps,
                "own_ms_per_step": 1e3 * tt / steps,
                "cumulative_ms_per_step": 1e3 * ct / steps,
            }
        )
    rows.sort(key=lambda r: -r["own_ms_per_step"])
    total = sum(r["own_ms_per_step"] for r in rows)
    return {"method": contender.name, "steps": steps, "total_ms_per_step": total, "top": rows[:top]}


# ---------------------------------------------------------------------- runs
def main_rows(ranks: list[int], ks: list[int], repeat: int, warmup: int, load: int) -> tuple[list[dict], dict]:
    widths = [784, 1024, 1024, 10]
    rows = []
    slowest: tuple[float, str, int, int] | None = None
    for r in ranks:
        for k in ks:
            names = ["dense-adam", "factor-adam", *METHODS]
            contenders = [Contender(n, widths, r, k) for n in names]
            res = interleaved(contenders, repeat, warmup, "factor-adam")
            for n in names:
                row = {
                    "condition": "idle" if load == 0 else f"load{load}",
                    "load": load,
                    "model": "784-1024-1024-10",
                    "rank": r,
                    "basis_update_every": k if n in METHODS else None,
                    "round_k": k,  # the k of the methods timed in the same rounds
                    "contender": n,
                    **res[n],
                }
                rows.append(row)
                print(
                    f"  r {r:>4} k {k:>3} {n:<13} {row['ms_per_step']:8.2f} ms/step  "
                    f"x{row['ratio_to_factor_adam']:6.2f} of factor Adam  (CPU {row['cpu_ms_per_step']:8.2f} ms, "
                    f"x{row['cpu_ratio_to_factor_adam']:6.2f})",
                    flush=True,
                )
                if n in METHODS and r == max(ranks) and (slowest is None or row["ms_per_step"] > slowest[0]):
                    slowest = (row["ms_per_step"], n, r, k)
    assert slowest is not None
    return rows, {"method": slowest[1], "rank": slowest[2], "basis_update_every": slowest[3]}


def floor_rows(ranks: list[int], ks: list[int], repeat: int, load: int, main: list[dict]) -> list[dict]:
    """The decompositions alone: a lower bound on each method's time per step.

    One cycle of each method records in its :class:`lowrank_core.Counters` the QR and SVD
    shapes it takes; each shape (float32, one matrix) is timed through the library's
    seam (``lowrank_core._linalg``, as the optimizer runs it) and through
    ``torch.linalg`` directly, interleaved, and the faster median counts.  ``floor_ms``
    is the sum over the cycle divided by its steps; ``floor_ratio`` divides it by the
    torch-Adam-on-factors time of the same rank and ``k`` in ``main`` (same run).  No
    step of the method can be faster than its floor plus an optimizer step on the
    factors, so where ``floor_ratio`` alone is near or above 2 the target is out of reach
    at that ``k`` on this machine.

    Low-rank Adam also takes four ``m x r x r`` products per layer in *every* step (the
    tangent projections of the gradient, ``grad_K - U grad_S`` and ``grad_L - V grad_S^H``,
    and of the step, ``U^H d_U`` and ``d_V^H V``; :class:`lowrank_core.training.Adam`):
    ``products_ms_per_step`` is their time (float32 ``torch.matmul``, median), and its
    moment updates and direction on the ``(m + n) r + r^2`` tangent coordinates per layer:
    ``moments_ms_per_step`` is the time of the library's one-pass update
    (``lowrank_core.training._inplace.adam_directions``, ``torch._fused_adam_`` on CPU)
    on those shapes.  ``step_floor_ratio`` adds both to the decompositions: each part
    timed alone, with its operands in cache, so a lower bound on low-rank Adam's step.
    """
    from lowrank_core import _linalg
    from lowrank_core.training import _inplace

    widths = [784, 1024, 1024, 10]
    xp = array_api_compat.array_namespace(torch.empty(1))
    cache: dict[tuple[str, tuple[int, int]], float] = {}

    def best(op: str, shape: tuple[int, int]) -> float:
        if (op, shape) not in cache:
            x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
            seam = (lambda: _linalg.thin_qr(x, xp)) if op == "qr" else (lambda: _linalg.thin_svd(x, xp))
            lapack = (lambda: torch.linalg.qr(x)) if op == "qr" else (lambda: torch.linalg.svd(x, full_matrices=False))
            times: dict[str, list[float]] = {"seam": [], "lapack": []}
            seam(), lapack()
            for _ in range(repeat):
                for name, f in (("seam", seam), ("lapack", lapack)):
                    t0 = time.perf_counter()
                    f()
                    times[name].append(time.perf_counter() - t0)
            cache[op, shape] = 1e3 * min(statistics.median(v) for v in times.values())
        return cache[op, shape]

    def layer_shapes() -> list[tuple[int, int]]:
        """``(out, in)`` of the hidden (low-rank) layers of ``widths``."""
        return [(n_out, n_in) for n_in, n_out in zip(widths[:-2], widths[1:-1], strict=True)]

    def products(r: int) -> float:
        """Adam's per-step tangent projections over the low-rank layers of ``widths`` (ms)."""
        if ("adam-products", (r, r)) not in cache:
            gen = torch.Generator().manual_seed(1)
            pairs = []
            for n_out, n_in in layer_shapes():
                for d in (n_out, n_in):  # U (out, r) and V (in, r)
                    pairs.append((torch.randn(d, r, generator=gen), torch.randn(r, r, generator=gen)))
                    pairs.append((torch.randn(r, d, generator=gen), torch.randn(d, r, generator=gen)))
            times = []
            for _ in range(repeat + 1):
                t0 = time.perf_counter()
                for a, b in pairs:
                    torch.matmul(a, b)
                times.append(time.perf_counter() - t0)
            cache["adam-products", (r, r)] = 1e3 * statistics.median(times[1:])
        return cache["adam-products", (r, r)]

    def moments(r: int) -> float:
        """Adam's per-step moment updates and direction over the low-rank layers (ms)."""
        if ("adam-moments", (r, r)) not in cache:
            gen = torch.Generator().manual_seed(2)
            layers = []
            for n_out, n_in in layer_shapes():
                shapes = [(r, r), (n_out, r), (n_in, r)]  # (S, U, V) coordinates
                layers.append([[torch.randn(*sh, generator=gen) for sh in shapes] for _ in range(2)])
                layers[-1].append([torch.rand(*sh, generator=gen) for sh in shapes])  # v >= 0
            times = []
            for t in range(1, repeat + 2):
                t0 = time.perf_counter()
                for gs, ms, vs in layers:
                    _inplace.adam_directions(ms, vs, gs, (0.9, 0.999), t, t, 1e-8, xp)
                times.append(time.perf_counter() - t0)
            cache["adam-moments", (r, r)] = 1e3 * statistics.median(times[1:])
        return cache["adam-moments", (r, r)]

    rows = []
    for r in ranks:
        for k in ks:
            base = next(
                row["ms_per_step"]
                for row in main
                if row["rank"] == r and row["round_k"] == k and row["contender"] == "factor-adam"
            )
            for n in METHODS:
                c = Contender(n, widths, r, k)
                c.window()  # first cycle: initial state
                before = copy.deepcopy(c.opt.counters)
                c.window()
                after = c.opt.counters
                shapes = {
                    "qr": after.qr_shapes - before.qr_shapes,
                    "svd": after.svd_shapes - before.svd_shapes,
                }
                floor = sum(
                    cnt * best(op, tuple(sh)) for op, sh_counts in shapes.items() for sh, cnt in sh_counts.items()
                )
                row = {
                    "condition": "idle" if load == 0 else f"load{load}",
                    "load": load,
                    "rank": r,
                    "basis_update_every": k,
                    "method": n,
                    "cycle_steps": c.steps,
                    "qr_per_cycle": {f"{a}x{b}": v for (a, b), v in sorted(shapes["qr"].items())},
                    "svd_per_cycle": {f"{a}x{b}": v for (a, b), v in sorted(shapes["svd"].items())},
                    "floor_ms_per_step": floor / c.steps,
                    "factor_adam_ms_per_step": base,
                    "floor_ratio_to_factor_adam": floor / c.steps / base,
                }
                prod, mom = (products(r), moments(r)) if n == "adam" else (0.0, 0.0)
                row["products_ms_per_step"] = prod
                row["moments_ms_per_step"] = mom
                row["step_floor_ratio_to_factor_adam"] = (floor / c.steps + prod + mom) / base
                rows.append(row)
                print(
                    f"  floor r {r:>4} k {k:>3} {n:<13} {row['floor_ms_per_step']:8.2f} ms/step of decompositions "
                    f"(x{row['floor_ratio_to_factor_adam']:5.2f} of factor Adam; with per-step products and moments "
                    f"x{row['step_floor_ratio_to_factor_adam']:5.2f})  QR {row['qr_per_cycle']}  "
                    f"SVD {row['svd_per_cycle']}",
                    flush=True,
                )
    return rows


class AdamArithmetic:
    """Low-rank Adam's step between basis updates as bare arithmetic on a model's own layers.

    :class:`lowrank_core.training.Adam`'s step (``_tangent`` and ``_update_``) written
    out: per layer ``g_U = grad_K - U grad_S`` and ``g_V = grad_L - V grad_S^T``
    (``torch.addmm`` into preallocated arrays), the moments and direction ``d`` of
    ``(grad_S, g_U, g_V)`` in one ``torch._fused_adam_`` call, then ``S -= h d_S``,
    ``S += h U^T d_U``, ``S += h d_V^T V``, ``dK -= h d_U``, ``dL -= h d_V`` on the
    layer's factor blocks.  No library code, no allocation, no dense-parameter step: the
    method's arithmetic, back to back.  :meth:`products` runs its four products per layer
    alone (into scratch arrays).  Timed right after a backward pass, like the step, both
    see the caches the training loop leaves.
    """

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        self.layers = [m for m in model if isinstance(m, LowRankLinear)]
        self.lr, self.t = lr, 0
        self.buf = []
        for m in self.layers:
            S, dK, dL = (m._active(n) for n in ("S", "dK", "dL"))
            shapes = (S.shape, dK.shape, dL.shape)
            self.buf.append(
                {
                    "g": [torch.empty(sh) for sh in shapes],
                    "d": [torch.empty(sh) for sh in shapes],
                    "m": [torch.zeros(sh) for sh in shapes],
                    "v": [torch.zeros(sh) for sh in shapes],
                    "SS": torch.empty(S.shape),
                }
            )

    def _blocks(self, m: LowRankLinear) -> tuple[torch.Tensor, ...]:
        return (
            *(m._active(n) for n in ("U", "V", "S", "dK", "dL")),
            *(m._active(n, grad=True) for n in ("S", "dK", "dL")),
        )

    @torch.no_grad()
    def products(self) -> None:
        for m, b in zip(self.layers, self.buf, strict=True):
            U, V, _S, _dK, _dL, gS, gK, gL = self._blocks(m)
            torch.addmm(gK, U, gS, alpha=-1, out=b["g"][1])
            torch.addmm(gL, V, gS.mT, alpha=-1, out=b["g"][2])
            torch.mm(U.mT, b["g"][1], out=b["SS"])
            b["SS"].addmm_(b["g"][2].mT, V)

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        h, count = self.lr, torch.tensor(float(self.t))
        for m, b in zip(self.layers, self.buf, strict=True):
            U, V, S, dK, dL, gS, gK, gL = self._blocks(m)
            g, d = b["g"], b["d"]
            g[0].copy_(gS)
            torch.addmm(gK, U, gS, alpha=-1, out=g[1])
            torch.addmm(gL, V, gS.mT, alpha=-1, out=g[2])
            torch._foreach_zero_(d)
            torch._fused_adam_(
                d, g, b["m"], b["v"], [], [count] * 3, lr=-1.0, beta1=0.9, beta2=0.999, weight_decay=0.0,
                eps=1e-8, amsgrad=False, maximize=False,
            )  # fmt: skip
            S.add_(d[0], alpha=-h).addmm_(U.mT, d[1], alpha=h).addmm_(d[2].mT, V, alpha=h)
            dK.add_(d[1], alpha=-h)
            dL.add_(d[2], alpha=-h)


def insitu_rows(ranks: list[int], repeat: int, warmup: int, load: int, floors: list[dict]) -> list[dict]:
    """Low-rank Adam's step between basis updates against its own arithmetic, after a backward pass.

    Per rank, interleaved round by round (one window of ``WINDOW`` steps each, every step
    after its own forward/backward; a sample is the window's mean time per step): torch
    Adam on naive factors (``factor-adam``); the
    library's step between basis updates (``step``: :class:`LowRankOptimizer` with
    ``basis_update_every`` larger than the run, so no basis update is timed); the same
    arithmetic bare (``arithmetic``: :class:`AdamArithmetic`.step); its four products per
    layer alone (``products``).  Ratios are medians of per-round ratios to
    ``factor-adam``.  ``bound_ratio_k<k>`` adds to the bare arithmetic the
    decompositions per step of the ``floor`` section at that ``k`` (timed alone, in
    cache: ``floor_ms_per_step``), divided by this section's ``factor-adam``: what no
    implementation of this step can undercut on this machine, short of cheaper
    products or moment arithmetic than torch's.
    """
    widths = [784, 1024, 1024, 10]
    rows = []
    for r in ranks:
        base = Contender("factor-adam", widths, r, 1)
        lib = Contender("adam", widths, r, 10**9)
        bare = Contender("adam", widths, r, 10**9)
        arith = AdamArithmetic(bare.model, LR["adam"])
        prod = Contender("adam", widths, r, 10**9)
        prod_arith = AdamArithmetic(prod.model, LR["adam"])
        for c in (lib, bare, prod):
            c._backward()
            c.opt.step()  # the layers' first step: the optimizer's state exists
        runs = {
            "factor-adam": (base, base.opt.step),
            "step": (lib, lib.opt.step),
            "arithmetic": (bare, arith.step),
            "products": (prod, prod_arith.products),
        }
        samples: dict[str, list[float]] = {n: [] for n in runs}
        for rnd in range(warmup + repeat):
            for n, (c, f) in runs.items():
                times = []
                for _ in range(WINDOW):
                    c._backward()
                    t0 = time.perf_counter()
                    f()
                    times.append(time.perf_counter() - t0)
                if rnd >= warmup:
                    samples[n].append(statistics.fmean(times))
        b = samples["factor-adam"]
        row: dict[str, Any] = {"condition": "idle" if load == 0 else f"load{load}", "load": load, "rank": r}
        for n, s in samples.items():
            key = n.replace("-", "_")
            row[key + "_ms_per_step"] = 1e3 * statistics.median(s)
            if n != "factor-adam":
                row[key + "_ratio_to_factor_adam"] = statistics.median(x / y for x, y in zip(s, b, strict=True))
        for f in floors:
            if f["method"] == "adam" and f["rank"] == r and f["load"] == load:
                k = f["basis_update_every"]
                decomps = f["floor_ms_per_step"] / row["factor_adam_ms_per_step"]
                row[f"bound_ratio_k{k}"] = row["arithmetic_ratio_to_factor_adam"] + decomps
        rows.append(row)
        bounds = ", ".join(f"{k[len('bound_ratio_') :]} x{v:.2f}" for k, v in row.items() if k.startswith("bound_"))
        print(
            f"  in situ r {r:>4}: factor Adam {row['factor_adam_ms_per_step']:.2f} ms, low-rank Adam step "
            f"{row['step_ms_per_step']:.2f} ms (x{row['step_ratio_to_factor_adam']:.2f}), its arithmetic "
            f"{row['arithmetic_ms_per_step']:.2f} ms (x{row['arithmetic_ratio_to_factor_adam']:.2f}), products "
            f"{row['products_ms_per_step']:.2f} ms (x{row['products_ratio_to_factor_adam']:.2f}); bound {bounds}",
            flush=True,
        )
    return rows


def stacking_rows(rank: int, k: int, repeat: int, warmup: int, load: int) -> list[dict]:
    widths = [784, 1024, 1024, 1024, 1024, 10]
    rows = []
    for n in METHODS:
        stacked = Contender(n, widths, rank, k, batch_layers=True)
        single = Contender(n, widths, rank, k, batch_layers=False)
        single.name = n + ":unstacked"
        res = interleaved([stacked, single], repeat, warmup, n + ":unstacked")
        row = {
            "condition": "idle" if load == 0 else f"load{load}",
            "load": load,
            "model": "784-1024x4-10",
            "rank": rank,
            "basis_update_every": k,
            "method": n,
            "stacked_ms_per_step": res[n]["ms_per_step"],
            "unstacked_ms_per_step": res[single.name]["ms_per_step"],
            "ratio_stacked_to_unstacked": res[n]["ratio_to_" + single.name.replace("-", "_")],
            "stacked_cpu_ms_per_step": res[n]["cpu_ms_per_step"],
            "unstacked_cpu_ms_per_step": res[single.name]["cpu_ms_per_step"],
            "cpu_ratio_stacked_to_unstacked": res[n]["cpu_ratio_to_" + single.name.replace("-", "_")],
        }
        rows.append(row)
        print(
            f"  stacking r {rank} k {k} {n:<13} stacked {row['stacked_ms_per_step']:8.2f}  unstacked "
            f"{row['unstacked_ms_per_step']:8.2f} ms/step  ratio {row['ratio_stacked_to_unstacked']:.2f} "
            f"(CPU ratio {row['cpu_ratio_stacked_to_unstacked']:.2f})",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 10, 50], help="basis_update_every values")
    parser.add_argument("--repeat", type=int, default=20, help="timed windows (cycles) per contender")
    parser.add_argument("--warmup", type=int, default=3, help="untimed windows per contender")
    parser.add_argument("--load", type=int, nargs="+", default=[0], help="background CPU-bound processes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--profile-windows", type=int, default=10)
    parser.add_argument("--no-stacking", action="store_true")
    parser.add_argument(
        "--only",
        choices=("stacking", "insitu"),
        help="rerun this section only; the other sections of --out are kept (insitu reads their floor)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "training_step.json"))
    args = parser.parse_args()
    if args.repeat < 1 or args.warmup < 0 or any(x < 0 for x in args.load) or any(k < 1 for k in args.k):
        parser.error("--repeat >= 1, --warmup >= 0, --load >= 0 and --k >= 1 are required")
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    slow = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    if slow:
        print(
            f"warning: {', '.join(slow)} set; run as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python "
            "bench/training_step.py`",
            file=sys.stderr,
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows, stacking, profiles, floors, insitu = [], [], [], [], []
    if args.only:
        out = Path(args.out)
        results = json.loads(out.read_text())
        results[args.only] = []
        for load in args.load:
            with background_load(load, settle=2.0):
                if args.only == "stacking":
                    section = stacking_rows(max(args.ranks), min(args.k), args.repeat, args.warmup, load)
                else:
                    section = insitu_rows(args.ranks, args.repeat, args.warmup, load, results.get("floor", []))
                results[args.only] += section
        results["meta"][f"{args.only}_command"] = command()
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        results["meta"][f"{args.only}_date"] = now
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")
        return
    for load in args.load:
        print(f"load {load}", flush=True)
        with background_load(load, settle=2.0):
            main, slowest = main_rows(args.ranks, args.k, args.repeat, args.warmup, load)
            rows += main
            floor = floor_rows(args.ranks, args.k, args.repeat, load, main)
            floors += floor
            insitu += insitu_rows(args.ranks, args.repeat, args.warmup, load, floor)
            if not args.no_stacking:
                stacking += stacking_rows(max(args.ranks), min(args.k), args.repeat, args.warmup, load)
            c = Contender(slowest["method"], [784, 1024, 1024, 10], slowest["rank"], slowest["basis_update_every"])
            for _ in range(args.warmup):
                c.window()
            prof = {"condition": "idle" if load == 0 else f"load{load}", **slowest, **profile(c, args.profile_windows)}
            profiles.append(prof)
            print(f"  profile of {prof['method']} (rank {prof['rank']}, k {prof['basis_update_every']}):", flush=True)
            for e in prof["top"][:10]:
                print(
                    f"    {e['own_ms_per_step']:8.2f} ms own  {e['cumulative_ms_per_step']:8.2f} cum  "
                    f"{e['calls_per_step']:6.1f} calls  {e['function']}",
                    flush=True,
                )
    import numba
    import numpy as np

    meta = {
        "benchmark": "training_step",
        "command": command(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loads": args.load,
        "lowrank_core": lc.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch_threads": torch.get_num_threads(),
        "numba_threads": numba.get_num_threads(),
        "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "batch": BATCH,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "lr": {m: LR.get(m, 1e-3) for m in METHODS},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"meta": meta, "rows": rows, "floor": floors, "insitu": insitu, "stacking": stacking, "profile": profiles},
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
