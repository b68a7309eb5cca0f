"""How steady torch Adam's own step is on a busy machine, with and without Numba's threads.

Command (idle, then with two background CPU-bound processes)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/loaded_baseline.py --load 0 2

The baseline of ``bench/training_step.py`` -- ``torch.optim.Adam`` on naive factors of the
MLP 784 -> 1024 -> 1024 -> 10 (rank 128, float32, batch 128; ``Contender("factor-adam")``
of that script) -- timed alone, in a fresh interpreter per variant:

* ``torch``: as a PyTorch user runs it (torch's default threads);
* ``torch + numba pool``: the same after one parallel region of the library's Numba
  kernels (``lowrank_kernels.batched_qr`` of a ``(64, 200, 16)`` stack, which the size
  rule runs on Numba's thread pool), so the pool's threads live in the process;
* ``torch, 1 thread``: ``torch.set_num_threads(1)``.

Each variant times ``--batches`` batches of ``--steps`` steps (``optimizer.step()`` only,
after its forward/backward) and records each batch's median ms per step, so a process
that switches between speeds shows it as a spread between batches.  Writes
``bench/results/loaded_baseline.json``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from _common import background_load, exit_on_sigterm, save  # noqa: E402

VARIANTS = ("torch", "torch + numba pool", "torch, 1 thread")


def child(variant: str, batches: int, steps: int) -> list[float]:
    """In this (fresh) process: the batch medians of torch Adam's step on the factors, ms."""
    import torch
    from training_step import Contender

    if variant == "torch, 1 thread":
        torch.set_num_threads(1)
    if variant == "torch + numba pool":
        import numpy as np

        import lowrank_kernels

        lowrank_kernels.batched_qr(np.random.default_rng(0).standard_normal((64, 200, 16)))
    c = Contender("factor-adam", [784, 1024, 1024, 10], 128, 1)
    for _ in range(steps):  # warm-up
        c.window()
    out = []
    for _ in range(batches):
        out.append(1e3 * statistics.median(c.window()[0] for _ in range(steps)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", type=int, nargs="+", default=[0, 2], help="background CPU-bound processes")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200, help="steps per batch")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.batches < 1 or args.steps < 1:
        parser.error("--batches and --steps must be >= 1")
    if args.child:
        print(json.dumps(child(args.child, args.batches, args.steps)))
        return
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    rows = []
    for load in args.load:
        with background_load(load, settle=2.0) as info:
            for variant in VARIANTS:
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", variant, "--batches", str(args.batches),
                     "--steps", str(args.steps)],
                    check=True, capture_output=True, text=True,
                )  # fmt: skip
                ms = json.loads(proc.stdout.strip().splitlines()[-1])
                row = {
                    "condition": "idle" if load == 0 else f"load{load}",
                    "load": load,
                    "variant": variant,
                    "batch_ms_per_step": [round(x, 3) for x in ms],
                    "ms_min": min(ms),
                    "ms_median": statistics.median(ms),
                    "ms_max": max(ms),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                rows.append(row)
                print(
                    f"load {load} {variant:<20} batch medians {row['batch_ms_per_step']} ms/step",
                    flush=True,
                )
        rows[-1]["background"] = {k: v for k, v in info.items() if k != "pids"}
    path = save("loaded_baseline", rows, out=args.out, load=args.load, batches=args.batches, steps=args.steps)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
