"""How torch Adam's step and the geometric optimizers' steps behave on a busy machine, per thread setting.

Command (idle, then with two background CPU-bound processes)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/loaded_baseline.py --load 0 2

The baseline of ``bench/training_step.py`` -- ``torch.optim.Adam`` on naive factors of the
MLP 784 -> 1024 -> 1024 -> 10 (rank 128, float32, batch 128; ``Contender("factor-adam")``
of that script) -- and its geometric optimizers (``--methods``, default all six,
``basis_update_every = 50``), timed in a
fresh interpreter per variant:

* ``torch``: as a PyTorch user runs it (torch's default threads, OpenMP's default wait
  policy, under which a thread waiting at the end of a parallel region spins);
* ``torch + numba pool``: the same after one parallel region of the library's Numba
  kernels (``lowrank_kernels.batched_qr`` of a ``(64, 200, 16)`` stack, which the size
  rule runs on Numba's thread pool), so the pool's threads live in the process;
* ``torch, OMP_WAIT_POLICY=PASSIVE``: default threads, waiting threads sleep at once;
* ``torch, 1 thread``: ``torch.set_num_threads(1)``.

Each variant times ``--batches`` batches; in each, torch Adam takes ``--steps`` steps
and each method one whole cycle (so basis updates weigh as in training), each timed as
its mean ms per step; only ``optimizer.step()`` is timed, after its forward/backward.
Both are means over stretches far longer than the scheduler's time slice, so both pay
their share of the time the background processes take: a median over torch Adam's
single steps would drop the steps that were preempted and understate it.  A process
that switches between speeds shows it as a spread between batches;
``ratio_to_factor_adam`` is the median over batches of a method's time over torch
Adam's in the same batch.  Writes ``bench/results/loaded_baseline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from _common import background_load, exit_on_sigterm, save  # noqa: E402

VARIANTS = ("torch", "torch + numba pool", "torch, OMP_WAIT_POLICY=PASSIVE", "torch, 1 thread")
ENV = {"torch, OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"}}  # read when OpenMP starts: set for the child
METHODS = ("abc-psi", "bc-psi", "ra-bug", "parallel-bug", "heavy-ball", "adam")
K = 50


def child(variant: str, batches: int, steps: int, methods: list[str]) -> dict[str, list[float]]:
    """In this (fresh) process: per batch, torch Adam's median and each method's mean ms per step."""
    import torch
    from training_step import Contender

    if variant == "torch, 1 thread":
        torch.set_num_threads(1)
    if variant == "torch + numba pool":
        import numpy as np

        import lowrank_kernels

        lowrank_kernels.batched_qr(np.random.default_rng(0).standard_normal((64, 200, 16)))
    base = Contender("factor-adam", [784, 1024, 1024, 10], 128, 1, window=steps)
    others = [Contender(n, [784, 1024, 1024, 10], 128, K) for n in methods]
    for c in (base, *others):  # warm-up
        c.window()
    out: dict[str, list[float]] = {"factor-adam": [], **{n: [] for n in methods}}
    for _ in range(batches):
        out["factor-adam"].append(1e3 * base.window()[0])
        for c in others:
            out[c.name].append(1e3 * c.window()[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, nargs="+", default=[0, 2], help="background CPU-bound processes")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200, help="torch Adam's steps per batch (their mean counts)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), help="geometric optimizers (k = 50)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.batches < 1 or args.steps < 1:
        parser.error("--batches and --steps must be >= 1")
    if args.child:
        print(json.dumps(child(args.child, args.batches, args.steps, args.methods)))
        return
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    rows = []
    for load in args.load:
        with background_load(load, settle=2.0) as info:
            for variant in VARIANTS:
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", variant, "--batches", str(args.batches),
                     "--steps", str(args.steps), "--methods", *args.methods],
                    check=True, capture_output=True, text=True, env={**os.environ, **ENV.get(variant, {})},
                )  # fmt: skip
                ms = json.loads(proc.stdout.strip().splitlines()[-1])
                seconds = round(time.perf_counter() - t0, 1)
                for name, times in ms.items():
                    row = {
                        "condition": "idle" if load == 0 else f"load{load}",
                        "load": load,
                        "variant": variant,
                        "contender": name,
                        "basis_update_every": None if name == "factor-adam" else K,
                        "batch_ms_per_step": [round(x, 3) for x in times],
                        "ms_min": min(times),
                        "ms_median": statistics.median(times),
                        "ms_max": max(times),
                        "seconds": seconds,
                    }
                    if name != "factor-adam":
                        row["ratio_to_factor_adam"] = statistics.median(
                            a / b for a, b in zip(times, ms["factor-adam"], strict=True)
                        )
                    rows.append(row)
                    print(
                        f"load {load} {variant:<32} {name:<12} batches {row['batch_ms_per_step']} ms/step"
                        + (f"  ratio {row['ratio_to_factor_adam']:.2f}" if "ratio_to_factor_adam" in row else ""),
                        flush=True,
                    )
        rows[-1]["background"] = {k: v for k, v in info.items() if k != "pids"}
    path = save("loaded_baseline", rows, out=args.out, load=args.load, batches=args.batches, steps=args.steps)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
