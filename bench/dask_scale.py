"""Dask scaling benchmark: abc-PSI on row-chunked tall factors, idle and under load (issue 17).

The problem (``lowrank_core.bench._scale``, also behind ``lowrank-core bench scale``):
1D advection-diffusion in ``x`` times a small diffusion in ``v``,

    Y' = A Y + Y B^T,   A = -a d/dx + nu d^2/dx^2 (periodic, m points),
                        B = nu_v d^2/dv^2 (periodic, n = 64 points),

with ``A`` and ``B`` as :class:`lowrank_core.dask.StencilOperator` (3-point stencils:
a product exchanges one halo row per chunk edge, never gathers the factor).  ``U (m,
16)`` is a Dask array in row chunks of ``--chunk`` rows (default 250 000: 32 MB per
chunk of the ``m x 2r`` augmented basis), ``V (64, 16)`` and ``S`` one chunk each.  The
initial value: orthonormal random ``U`` (a TSQR of Gaussian chunks built on the
workers), ``S = diag(1, 1/2, ..., 1/16)``.  Method: ``abc-psi`` (fixed rank 16, Euler
substeps: one right-hand-side point per step), ``dt = 1e-9``.

For each load, size and worker count: a fresh ``LocalCluster(n_workers=workers,
threads_per_worker=1, processes=True, memory_limit=--memory-limit)``; the state built on
the workers (``build_s``), one warm-up step (``first_step_s``: Numba loads, first persist
of the QRs), then ``--steps`` timed steps (``ms_per_step``: their mean); the peak resident
memory of every worker process since it started (``ru_maxrss``), the bytes the workers
wrote to disk by spilling (``spilled_bytes_per_worker``, cumulative over the case) and
the synchronisations and persists per step.  Where it fits (``m <= --numpy-max``), the
same solve on NumPy factors in a fresh process (``backend = "numpy"``: time per step and
peak RSS of that process).

``--load N [N ...]`` (default ``0``): for each ``N``, ``N`` CPU-bound busy-loop processes
(``background_load`` of ``bench/_common.py``) run from ``--settle`` seconds before the
first case of that load until its last case ends, and are always stopped; every row
carries its ``load`` and ``condition`` (``idle``, ``load2``, ...), and ``background``
records the load processes' CPU share per condition.  ``load_ratio`` in a loaded row is
its ``ms_per_step`` over the idle row of the same case, where one exists.

``--tsqr``: the two TSQRs (``lowrank_core.dask.tsqr(x, "kernels")``, leaves by
``lowrank_kernels.batched_qr``; ``"dask"``, :func:`dask.array.linalg.tsqr`) on an
``m x 32`` array in the same chunks, 2 workers, mean of 3 after a warm-up (section
``tsqr`` of the results; each row with its ``load`` too).

Results: ``--out`` (default ``bench/results/dask_scale.json``) in the common envelope of
``bench/_common.py``; a run *merges* its rows into the file (a row replaces the row of
the same backend, m, workers, memory limit and load; rows of other cases and loads
stay), so idle and loaded runs, and the separate spilling run, sit side by side.  The
plot (``dask_scale.png`` beside the JSON; ``--plot`` only redraws it) shows time per step
and peak memory per process against ``m``, idle solid and loaded dashed.  The table in
``docs/dask.md`` is generated from the file by ``bench/tables.py`` (table ``dask_scale``).

Run::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/dask_scale.py --sizes 1e6 1e7 --workers 1 2 --load 0 2
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/dask_scale.py --sizes 4e7 --workers 2 \\
        --memory-limit 4GB --steps 1 --numpy-max 0
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/dask_scale.py --tsqr --sizes 1e6 --load 0 2

A quick check of the script itself (seconds): ``--sizes 1e5 --workers 1 --steps 1 --chunk
50000 --out /tmp/dask_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    RESULTS,
    background_load,
    check_environment,
    command,
    condition_name,
    environment,
    exit_on_sigterm,
    save,
)

from lowrank_core.bench import _scale  # the problem and the timed case, shared with `lowrank-core bench scale`

DEFAULT_OUT = RESULTS / "dask_scale.json"
#: The keys that identify a case: a new row replaces an old row with the same values.
IDENTITY = ("backend", "m", "workers", "memory_limit", "load", "tsqr")


def _worker_stats(dask_worker: Any) -> tuple[int, int]:
    """(peak RSS in bytes, bytes written to disk by spilling so far) of this worker process
    (``client.run`` passes the worker as ``dask_worker``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    metrics = getattr(dask_worker.data, "cumulative_metrics", {})  # a SpillBuffer when memory_limit is set
    written = sum(v for (label, unit), v in metrics.items() if label == "disk-write" and unit == "bytes")
    return peak, int(written)


def run_dask(m: int, workers: int, steps: int, chunk: int, memory_limit: str) -> dict[str, Any]:
    """One case on a fresh LocalCluster of ``workers`` worker processes."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=":0",
        silence_logs=40,
    )
    client = Client(cluster)
    try:
        row = _scale.run_case(client, m, steps, chunk)  # one definition of the timed case
        stats = client.run(_worker_stats)
        row["memory_limit"] = memory_limit
        row["spilled_bytes_per_worker"] = [v[1] for v in stats.values()]
        return row
    finally:
        client.close()
        cluster.close()


def run_numpy(m: int, steps: int) -> dict[str, Any]:
    """The NumPy case in a fresh process (its peak RSS is the case's alone)."""
    out = subprocess.run(
        [sys.executable, __file__, "--numpy-case", str(m), "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode == 0:
        return json.loads(out.stdout.strip().splitlines()[-1])
    return {"backend": "numpy", "m": m, "workers": 1, "error": out.stderr.strip().splitlines()[-1:]}


def run_tsqr(m: int, chunk: int, repeat: int = 3) -> list[dict[str, Any]]:
    """Both TSQRs of an ``m x 32`` array on 2 workers: mean of ``repeat`` after a warm-up."""
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    from lowrank_core import dask as lcd

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40)
    client = Client(cluster)
    rows = []
    try:
        X = da.random.default_rng(0).standard_normal((m, 2 * _scale.RANK), chunks=(min(chunk, m), 2 * _scale.RANK))
        (X,) = client.persist([X])
        wait([X])
        for kind in lcd.TSQR_IMPLEMENTATIONS:
            times = []
            for i in range(repeat + 1):
                Xi = X * (1.0 + i * 2.0**-40)  # new keys: no result reused from the previous repeat
                (Xi,) = client.persist([Xi])
                wait([Xi])
                t0 = time.perf_counter()
                q, r = client.persist(list(lcd.tsqr(Xi, kind)))
                wait([q, r])
                if i:
                    times.append(time.perf_counter() - t0)
                del q, r, Xi
            rows.append(
                {
                    "backend": "dask",
                    "tsqr": kind,
                    "m": m,
                    "k": 2 * _scale.RANK,
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


# ----------------------------------------------------------------------------- results file
def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in IDENTITY)


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` without the rows that ``new`` replaces (same :data:`IDENTITY`), then ``new``.

    Rows without a ``load`` (written before ``--load`` existed, on a machine of unknown
    load, condition ``uncontrolled``) are kept until a controlled row of the same case
    (backend, rows, workers, memory limit) replaces them: the 4e7-row spilling run is
    such a row, and it shows that the case runs, not how fast.
    """
    replaced = {_key(r) for r in new}
    controlled = {_key({**r, "load": None}) for r in new}
    return [
        r
        for r in old
        if (isinstance(r.get("load"), int) and _key(r) not in replaced)
        or (r.get("load") is None and _key(r) not in controlled)
    ] + list(new)


def load_ratios(rows: list[dict[str, Any]]) -> None:
    """``load_ratio`` (loaded ``ms_per_step`` over the idle one of the same case), in place."""
    idle = {_key({**r, "load": 0}): r["ms_per_step"] for r in rows if r.get("load") == 0 and "ms_per_step" in r}
    for r in rows:
        base = idle.get(_key({**r, "load": 0}))
        if r.get("load") and base and "ms_per_step" in r:
            r["load_ratio"] = round(r["ms_per_step"] / base, 3)
        else:
            r.pop("load_ratio", None)


def write(out: Path, rows: list[dict[str, Any]], tsqr: list[dict[str, Any]], background: dict[str, Any]) -> Path:
    """Merge ``rows`` and ``tsqr`` into ``out`` and write it in the common envelope."""
    old: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    all_rows = merge(old.get("rows", []), rows)
    load_ratios(all_rows)
    all_tsqr = merge(old.get("tsqr", []), tsqr)
    all_background = {**old.get("background", {}), **background}
    loads = sorted({r["load"] for r in all_rows + all_tsqr if r.get("load") is not None})
    meta = old.get("meta", {})
    commands = list(meta.get("commands", []))
    if command() not in commands:
        commands.append(command())
    return save(
        "dask-scale",
        all_rows,
        out=out,
        load=loads,
        sections={"tsqr": all_tsqr, "background": all_background},
        commands=commands,
        environment=environment(),
    )


# ----------------------------------------------------------------------------- plot
def plot(out: Path) -> Path:
    """Seconds per step and peak memory per process against ``m`` (``out`` with ``.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in json.loads(out.read_text())["rows"] if "ms_per_step" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    spill = {r.get("memory_limit") for r in rows if r["backend"] == "dask" and r.get("memory_limit") != "8GB"}

    def dask_rows(workers: int | None, spilling: bool) -> Any:
        return lambda r: (
            r["backend"] == "dask"
            and (workers is None or r["workers"] == workers)
            and (r.get("memory_limit") in spill) == spilling
        )

    # the spilling case (a smaller memory limit per worker) is its own point, not a continuation
    series = {
        "Dask, 1 worker": dask_rows(1, False),
        "Dask, 2 workers": dask_rows(2, False),
        "NumPy (in memory)": lambda r: r["backend"] == "numpy",
        f"Dask, 2 workers, {'/'.join(sorted(spill))} each (spilling)": dask_rows(None, True),
    }
    colors = dict(zip(series, ("C0", "C1", "C2", "C3"), strict=True))
    for load in sorted({r["load"] for r in rows}, key=lambda v: (v is None, v or 0)):
        style = "o-" if load == 0 else "s--"
        for label, sel in series.items():
            pts = sorted(
                (r["m"], r["ms_per_step"], r.get("peak_rss_bytes") or max(r["peak_rss_per_worker_bytes"]),
                 r.get("memory_limit"))
                for r in rows
                if r["load"] == load and sel(r)
            )  # fmt: skip
            if not pts:
                continue
            name = f"{label}, {next(r['condition'] for r in rows if r['load'] == load)}"
            ax1.loglog([p[0] for p in pts], [p[1] / 1e3 for p in pts], style, color=colors[label], label=name)
            ax2.loglog([p[0] for p in pts], [p[2] / 2**30 for p in pts], style, color=colors[label], label=name)
    ax1.set_xlabel("rows m")
    ax1.set_ylabel("seconds per abc-PSI step (r = 16)")
    ax2.set_xlabel("rows m")
    ax2.set_ylabel("peak RSS per process (GiB)")
    for ax in (ax1, ax2):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out.with_suffix(".png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- command line
def _size(text: str) -> int:
    value = float(text)
    if not (math.isfinite(value) and value >= 2 * _scale.RANK and value == int(value)):
        msg = f"sizes must be integers >= {2 * _scale.RANK} (e.g. 1e6); got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        msg = f"must be >= 0; got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"must be >= 1; got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", type=_size, default=[10**6], help="rows m (default 1e6)")
    p.add_argument("--workers", nargs="+", type=_positive, default=[1, 2], help="worker processes (default 1 2)")
    p.add_argument("--steps", type=_positive, default=2, help="timed steps after the warm-up step (default 2)")
    p.add_argument("--chunk", type=_positive, default=250_000, help="rows per chunk (default 250000)")
    p.add_argument("--memory-limit", default="8GB", help="memory limit per worker, e.g. 4GB (default 8GB)")
    p.add_argument("--numpy-max", type=float, default=1e7, help="largest m of the NumPy case (0: none)")
    p.add_argument("--load", nargs="+", type=_non_negative, default=[0], help="background processes (default 0)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds the load runs before measuring (default 3)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (merged into)")
    p.add_argument("--tsqr", action="store_true", help="compare the two TSQRs instead")
    p.add_argument("--plot", action="store_true", help="only redraw the plot from --out")
    p.add_argument("--numpy-case", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.numpy_case:
        print(json.dumps(_scale.run_numpy(int(args.numpy_case), args.steps)))
        return 0
    if args.plot:
        print(f"wrote {plot(args.out)}")
        return 0
    check_environment()
    signal.signal(signal.SIGTERM, exit_on_sigterm)  # unwind through background_load's cleanup
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    tsqr: list[dict[str, Any]] = []
    background: dict[str, Any] = {}
    for load in dict.fromkeys(args.load):
        cond = condition_name(load)
        with background_load(load, args.settle if load else 0.0) as info:
            background[cond] = info
            for m in args.sizes:
                cases = [("tsqr", None)] if args.tsqr else [("dask", w) for w in dict.fromkeys(args.workers)]
                if not args.tsqr and m <= args.numpy_max:
                    cases.append(("numpy", None))
                for kind, w in cases:
                    print(f"{cond} m={m:.0e} {kind} {w or ''}...", file=sys.stderr, flush=True)
                    if kind == "tsqr":
                        new = run_tsqr(m, args.chunk)
                    elif kind == "dask":
                        new = [run_dask(m, w, args.steps, args.chunk, args.memory_limit)]
                    else:
                        new = [run_numpy(m, args.steps)]
                    for r in new:
                        r.update(load=load, condition=cond)
                        print(json.dumps(r), flush=True)
                    (tsqr if kind == "tsqr" else rows).extend(new)
        background[cond] = {k: v for k, v in info.items() if k != "pids"}
        write(args.out, rows, tsqr, background)  # after each load: an interrupted run keeps what it measured
    print(f"wrote {args.out} and {plot(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
