"""LowRankConv2d's forward: two convolutions against unfold + matmul (and the dense conv).

Command (idle and with two background CPU-bound processes)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/conv_forward.py --load 0 2

For the layers of a small CNN (3->32 channels on 32x32 images and 32->64 on 16x16,
3x3 kernels, padding 1, batch 64; ranks 8 and 16 with the default capacity 2 r), each
contender runs forward + backward of one layer (the gradients the optimizer reads):

* ``two_conv`` -- LowRankConv2d's forward: a ``(cu + cv)``-channel conv with the kernels
  ``[V, dL]``, then a 1x1 conv with ``[U S + dK, U]``;
* ``unfold`` -- ``F.unfold`` to ``(batch, in kh kw, H W)`` patches, then the factor
  products of LowRankLinear on the patch matrix, folded back to ``(batch, out, H, W)``;
* ``dense`` -- ``F.conv2d`` with the dense kernel (what the low-rank layer replaces).

Both low-rank contenders are checked to agree with the dense conv with the kernel
``U S V^T`` before timing.  Writes ``bench/results/conv_forward.json``: per load, layer
and rank the median ms of each contender (interleaved rounds) and
the per-round ratios ``two_conv / other``.  Options: ``--load N ...`` (runs with N
CPU-bound busy-loop processes in the background, default ``0``), ``--repeat`` (rounds,
default 15), ``--threads`` (torch threads, default 1), ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

import lowrank_core
from lowrank_core.training.torch import LowRankConv2d

ROOT = Path(__file__).resolve().parent.parent

from _common import background_load, exit_on_sigterm  # noqa: E402  (bench/, the script's folder)


def compare(fns: dict[str, Callable[[], Any]], repeat: int, base: str) -> dict[str, float]:
    """Median ms per contender and median per-round ratio ``base / other`` (interleaved rounds,
    one warm-up call each, each sample repeated to last about 50 ms)."""
    for f in fns.values():
        f()
    t0 = time.perf_counter()
    fns[base]()
    inner = max(1, int(0.05 / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {n: [] for n in fns}
    for _ in range(repeat):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[name].append((time.perf_counter() - t0) / inner)
    out = {f"ms_{n}": 1e3 * statistics.median(v) for n, v in times.items()}
    for n in fns:
        if n != base:
            out[f"{base}_over_{n}"] = statistics.median(b / c for b, c in zip(times[base], times[n], strict=True))
    return out


LAYERS = [  # name, in, out, image side
    ("3->32 @32x32", 3, 32, 32),
    ("32->64 @16x16", 32, 64, 16),
]
RANKS = (8, 16)
BATCH = 64


def _unfold_forward(layer: LowRankConv2d, x: torch.Tensor) -> torch.Tensor:
    kh, kw = layer.kernel_size
    cols = F.unfold(x, (kh, kw), dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    p = cols.mT  # (batch, H W, in kh kw)
    pv = p @ layer.V
    y = (pv @ layer.S.mT + p @ layer.dL) @ layer.U.mT + pv @ layer.dK.mT + layer.bias
    side = (x.shape[-2] + 2 * layer.padding[0] - layer.dilation[0] * (kh - 1) - 1) // layer.stride[0] + 1
    return y.mT.reshape(x.shape[0], layer.out_channels, side, -1)


def _step(fn, layer: LowRankConv2d, x: torch.Tensor):  # noqa: ANN001, ANN202
    def run() -> None:
        for p in layer.parameters():
            p.grad = None
        fn(x).square().mean().backward()

    return run


def measure(repeat: int) -> list[dict]:
    rows = []
    for name, cin, cout, side in LAYERS:
        for rank in RANKS:
            torch.manual_seed(0)
            layer = LowRankConv2d(cin, cout, 3, rank, padding=1)
            x = torch.randn(BATCH, cin, side, side)
            with torch.no_grad():
                ref = F.conv2d(x, layer.weight, layer.bias, padding=1)
                for f in (layer, lambda t, m=layer: _unfold_forward(m, t)):
                    torch.testing.assert_close(f(x), ref, rtol=1e-4, atol=1e-4)
            weight = layer.weight.detach().clone().requires_grad_(True)
            bias = layer.bias.detach().clone().requires_grad_(True)

            def dense(t: torch.Tensor, w: torch.Tensor = weight, b: torch.Tensor = bias) -> torch.Tensor:
                return F.conv2d(t, w, b, padding=1)

            def dense_step(t: torch.Tensor = x, w: torch.Tensor = weight, b: torch.Tensor = bias) -> None:
                w.grad = b.grad = None
                dense(t).square().mean().backward()

            fns = {
                "two_conv": _step(layer, layer, x),
                "unfold": _step(lambda t, m=layer: _unfold_forward(m, t), layer, x),
                "dense": dense_step,
            }
            res = compare(fns, repeat, base="two_conv")
            rows.append({"layer": name, "rank": rank, "capacity": layer.capacity[0], "batch": BATCH, **res})
            print(
                f"{name:>14}  r={rank:>2}  two_conv {res['ms_two_conv']:7.2f} ms  unfold {res['ms_unfold']:7.2f} ms  "
                f"dense {res['ms_dense']:7.2f} ms  (unfold/two_conv {1 / res['two_conv_over_unfold']:.2f})"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", nargs="+", type=int, default=[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "conv_forward.json"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    slow = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    if slow:
        print(
            f"warning: {', '.join(slow)} set; run under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`", file=sys.stderr
        )
    torch.set_num_threads(args.threads)
    rows = []
    for load in args.load:
        print(f"load {load}")
        with background_load(load, settle=2.0):
            rows += [
                {"condition": "idle" if load == 0 else f"load{load}", "load": load, **r} for r in measure(args.repeat)
            ]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        commit = None
    meta = {
        "benchmark": "conv-forward",
        "command": "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/conv_forward.py "
        + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loads": args.load,
        "repeat": args.repeat,
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "lowrank_core": lowrank_core.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "git_commit": commit or None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
