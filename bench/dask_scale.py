"""Dask scaling benchmark: abc-PSI on row-chunked tall factors (issue 17).

The problem: 1D advection-diffusion in ``x`` times a small diffusion in ``v``,

    Y' = A Y + Y B^T,   A = -a d/dx + nu d^2/dx^2 (periodic, m points),
                        B = nu_v d^2/dv^2 (periodic, n = 64 points),

with ``A`` and ``B`` as :class:`lowrank_core.dask.StencilOperator` (3-point stencils:
a product exchanges one halo row per chunk edge, never gathers the factor).  ``U (m,
16)`` is a Dask array in row chunks of ``--chunk`` rows (default 250 000: 32 MB per
chunk of the ``m x 2r`` augmented basis), ``V (64, 16)`` and ``S`` one chunk each.  The
initial value: orthonormal random ``U`` (a TSQR of Gaussian chunks built on the
workers), ``S = diag(1, 1/2, ..., 1/16)``.  Method: ``abc-psi`` (fixed rank 16, Euler
substeps: one right-hand-side point per step), ``dt = 1e-9``.

For each (m, workers): a fresh ``LocalCluster(n_workers=workers, threads_per_worker=1,
processes=True, memory_limit=...)``; one warm-up step (Numba loads, first persist of
the QRs), then ``--steps`` timed steps (``ms_per_step``: the mean); the peak resident
memory of every worker process since it started (``ru_maxrss``) and the bytes spilled to
disk.  Where it fits (``m <= --numpy-max``), the same solve on NumPy factors in a fresh
process (its time per step and peak RSS).

``--tsqr``: the two TSQRs (``lowrank_core.dask.tsqr(x, "kernels")``, leaves by
``lowrank_kernels.batched_qr``; ``"dask"``, :func:`dask.array.linalg.tsqr`) on an
``m x 32`` array in the same chunks, 2 workers, mean of 3 after a warm-up.

Run (the machine's figures in docs/dask.md came from these)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/dask_scale.py --tsqr
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/dask_scale.py --sizes 1e6 1e7 --workers 1 2
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/dask_scale.py --sizes 4e7 --workers 2 \
        --memory-limit 4GB --steps 1

Results are merged into ``bench/results/dask_scale.json`` (one row per case) and
plotted to ``bench/results/dask_scale.png`` (shown in docs/dask.md)
(``--plot`` redraws from the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from lowrank_core.bench import _scale as _bench_scale  # the problem, shared with `lowrank-core bench scale`

RESULTS = Path(__file__).resolve().parent / "results"
RANK, N_V, DT = _bench_scale.RANK, _bench_scale.N_V, _bench_scale.DT


def _worker_stats():
    """(peak RSS in bytes, spilled bytes) of the worker process this runs in."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    spilled = 0
    try:
        from distributed import get_worker

        data = get_worker().data
        slow = getattr(data, "slow", None)  # zict's disk buffer of a spilling worker
        spilled = int(getattr(data, "spilled_total", 0) or 0) or int(getattr(slow, "total_weight", 0) or 0)
    except Exception:
        pass
    return peak, spilled


def run_dask(m: int, workers: int, steps: int, chunk: int, memory_limit: str) -> dict:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=None,
        silence_logs=40,
    )
    client = Client(cluster)
    try:
        row = _bench_scale.run_case(client, m, steps, chunk)  # one definition of the timed case
        stats = client.run(_worker_stats)
        row["memory_limit"] = memory_limit
        row["spilled_bytes_per_worker"] = [v[1] for v in stats.values()]
        return row
    finally:
        client.close()
        cluster.close()


def run_numpy(m: int, steps: int) -> dict:
    return _bench_scale.run_numpy(m, steps)


def run_tsqr(m: int, chunk: int, repeat: int = 3) -> list[dict]:
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    from lowrank_core import dask as lcd

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    rows = []
    try:
        X = da.random.default_rng(0).standard_normal((m, 2 * RANK), chunks=(min(chunk, m), 2 * RANK))
        (X,) = client.persist([X])
        wait([X])
        for kind in lcd.TSQR_IMPLEMENTATIONS:
            times = []
            for i in range(repeat + 1):
                Xi = X * (1.0 + i * 2.0**-40)  # new keys: no result reused from the previous repeat
                (Xi,) = client.persist([Xi])
                wait([Xi])
                t0 = time.perf_counter()
                q, r = lcd.tsqr(Xi, kind)
                q, r = client.persist([q, r])
                wait([q, r])
                if i:
                    times.append(time.perf_counter() - t0)
                del q, r, Xi
            rows.append(
                {
                    "tsqr": kind,
                    "m": m,
                    "k": 2 * RANK,
                    "chunk_rows": chunk,
                    "workers": 2,
                    "ms": 1e3 * float(np.mean(times)),
                    "samples_ms": [1e3 * t for t in times],
                }
            )
    finally:
        client.close()
        cluster.close()
    return rows


def _merge(rows: list[dict], key: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "dask_scale.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    old = data.get(key, [])
    ident = ("backend", "m", "workers", "memory_limit", "tsqr")
    new_ids = {tuple(r.get(k) for k in ident) for r in rows}
    data[key] = [r for r in old if tuple(r.get(k) for k in ident) not in new_ids] + rows
    data.setdefault("meta", {}).update(
        {
            "command": "python bench/dask_scale.py " + " ".join(sys.argv[1:]),
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "note": "2-core machine shared with other developers' jobs while measured (see load_average_at_end)",
        }
    )
    path.write_text(json.dumps(data, indent=1))


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((RESULTS / "dask_scale.json").read_text())
    rows = data.get("runs", [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, sel in (
        ("Dask, 1 worker", lambda r: r["backend"] == "dask" and r["workers"] == 1),
        ("Dask, 2 workers", lambda r: r["backend"] == "dask" and r["workers"] == 2),
        ("NumPy (in memory)", lambda r: r["backend"] == "numpy"),
    ):
        pts = sorted(
            (r["m"], r["ms_per_step"], r.get("peak_rss_bytes") or max(r["peak_rss_per_worker_bytes"]))
            for r in rows
            if sel(r)
        )
        if not pts:
            continue
        ms = [p[0] for p in pts]
        ax1.loglog(ms, [p[1] / 1e3 for p in pts], "o-", label=label)
        ax2.loglog(ms, [p[2] / 2**30 for p in pts], "o-", label=label)
    ax1.set_xlabel("rows m")
    ax1.set_ylabel("seconds per abc-PSI step (r = 16)")
    ax2.set_xlabel("rows m")
    ax2.set_ylabel("peak RSS per process (GiB)")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "dask_scale.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="*", type=float, default=[1e6])
    p.add_argument("--workers", nargs="*", type=int, default=[1, 2])
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--chunk", type=int, default=250_000)
    p.add_argument("--memory-limit", default="8GB")
    p.add_argument("--numpy-max", type=float, default=1e7)
    p.add_argument("--tsqr", action="store_true", help="compare the two TSQRs instead")
    p.add_argument("--plot", action="store_true", help="only redraw the plot")
    p.add_argument("--numpy-case", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.numpy_case:
        print(json.dumps(run_numpy(int(args.numpy_case), args.steps)))
        return 0
    if args.plot:
        plot()
        return 0
    if args.tsqr:
        rows = []
        for m in args.sizes:
            rows += run_tsqr(int(m), args.chunk)
            print(json.dumps(rows[-2:]), flush=True)
        _merge(rows, "tsqr")
        return 0
    for m in (int(s) for s in args.sizes):
        rows = []
        for w in args.workers:
            row = run_dask(m, w, args.steps, args.chunk, args.memory_limit)
            print(json.dumps(row), flush=True)
            rows.append(row)
            _merge([row], "runs")
        if m <= args.numpy_max:
            out = subprocess.run(
                [sys.executable, __file__, "--numpy-case", str(m), "--steps", str(args.steps)],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode == 0:
                row = json.loads(out.stdout.strip().splitlines()[-1])
            else:
                row = {"backend": "numpy", "m": m, "workers": 1, "error": out.stderr.strip().splitlines()[-1:]}
            print(json.dumps(row), flush=True)
            _merge([row], "runs")
    plot()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
