"""``lowrank-core bench scale`` (:func:`lowrank_core.bench.scale`): abc-PSI on row-chunked Dask factors (issue 17).

The problem (also that of ``bench/dask_scale.py``, which imports this module): 1D
advection-diffusion in ``x`` (``m`` rows) times a diffusion in ``v`` (``n = 64``),
``Y' = A Y + Y B^T`` with both operators as
:class:`lowrank_core.dask.StencilOperator` (halo exchange between row chunks, no
gather), rank ``r = 16`` fixed, Euler substeps (one right-hand-side point per step),
``dt = 1e-9``.  ``U (m, 16)`` is built on the workers (a TSQR of Gaussian chunks).

Each case starts a fresh ``LocalCluster(n_workers=N, threads_per_worker=1,
processes=True)`` (or uses the cluster at ``--address`` through ``Client(address)``),
takes one warm-up step, then times ``--steps`` steps; it records the mean time per
step, the peak resident memory of every worker process (``ru_maxrss``) and the
synchronisations and persists per step (``sol.stats``).
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np

__all__ = ["RANK", "N_V", "DT", "problem", "run", "run_case", "run_numpy", "small_factors"]

RANK = 16
N_V = 64
DT = 1e-9


def problem(m: int) -> Any:
    """The advection-diffusion problem on ``m x 64`` points (stencil operators)."""
    import lowrank_core as lc
    from lowrank_core import dask as lcd

    A = lcd.advection_diffusion(m, speed=1.0, nu=1e-3)
    B = lcd.StencilOperator([-1, 0, 1], [1e-2, -2e-2, 1e-2], size=N_V)
    return lc.LinearMatrixODE(A, B)


def small_factors() -> tuple[np.ndarray, np.ndarray]:
    """``V (64, 16)`` orthonormal and ``S = diag(1, 1/2, ..., 1/16)``."""
    rng = np.random.default_rng(1)
    V, _ = np.linalg.qr(rng.standard_normal((N_V, RANK)))
    return V, np.diag(1.0 / np.arange(1, RANK + 1))


def _worker_peak() -> int:
    """Peak resident memory (bytes) of the process this runs in (a worker)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_case(client: Any, m: int, steps: int, chunk: int) -> dict[str, Any]:
    """Build the state on ``client``'s cluster, one warm-up step, ``steps`` timed steps."""
    import dask.array as da
    from distributed import wait

    import lowrank_core as lc
    from lowrank_core import dask as lcd

    t0 = time.perf_counter()
    X = da.random.default_rng(0).standard_normal((m, RANK), chunks=(min(chunk, m), RANK))
    (U,) = client.persist([lcd.tsqr(X)[0]])
    V, S = small_factors()
    Y = lc.LowRank(U, da.from_array(S), da.from_array(V), check=False)
    wait([U])
    build_s = time.perf_counter() - t0
    prob = problem(m)
    t0 = time.perf_counter()
    warm = lc.solve(prob, Y, (0.0, DT), DT, method="abc-psi", substep="euler")
    wait([warm.Y.U])
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = lc.solve(prob, warm.Y, (0.0, steps * DT), DT, method="abc-psi", substep="euler")
    wait([sol.Y.U])
    per_step = (time.perf_counter() - t0) / steps
    peaks = client.run(_worker_peak)
    return {
        "backend": "dask",
        "m": m,
        "workers": len(peaks),
        "rank": RANK,
        "n": N_V,
        "chunk_rows": chunk,
        "steps": steps,
        "build_s": build_s,
        "first_step_s": first_s,
        "ms_per_step": 1e3 * per_step,
        "peak_rss_per_worker_bytes": list(peaks.values()),
        "dask_syncs_per_step": sol.stats["dask_syncs"] / steps,
        "dask_persists_per_step": sol.stats["dask_persists"] / steps,
        "factor_bytes": m * RANK * 8,
    }


def run_numpy(m: int, steps: int) -> dict[str, Any]:
    """The same solve on NumPy factors in this process (time per step, peak RSS)."""
    import lowrank_core as lc

    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((m, RANK)))
    V, S = small_factors()
    prob = problem(m)
    Y = lc.solve(prob, lc.LowRank(U, S, V, check=False), (0.0, DT), DT, method="abc-psi", substep="euler").Y
    t0 = time.perf_counter()
    lc.solve(prob, Y, (0.0, steps * DT), DT, method="abc-psi", substep="euler")
    per_step = (time.perf_counter() - t0) / steps
    return {
        "backend": "numpy",
        "m": m,
        "workers": 1,
        "rank": RANK,
        "n": N_V,
        "steps": steps,
        "ms_per_step": 1e3 * per_step,
        "peak_rss_bytes": _worker_peak(),
        "factor_bytes": m * RANK * 8,
    }


def run(
    *, rows: Any, workers: int, steps: int, chunk: int, memory_limit: str = "auto", address: str | None = None
) -> list[dict[str, Any]]:
    """Run ``bench scale`` (:func:`lowrank_core.bench.scale`): one row per size in ``rows``."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        msg = 'bench scale needs Dask: python -m pip install "lowrank-core[dask]"'
        raise ImportError(msg)
    from distributed import Client, LocalCluster

    if workers < 1:
        msg = f"--workers must be >= 1; got {workers}."
        raise ValueError(msg)
    out = []
    for m in (int(v) for v in rows):
        if address:
            client, cluster = Client(address), None
        else:
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
            out.append(run_case(client, m, steps, chunk))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    return out
