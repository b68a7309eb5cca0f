"""What the scripts in ``bench/`` share: background load, environment, results files.

Every script runs as ``python bench/<script>.py`` (so this folder is on ``sys.path``
and ``from _common import ...`` works without path manipulation) and writes one
results file in :data:`RESULTS` through :func:`save`, in the envelope of
:func:`lowrank_core.bench.metadata` / :func:`lowrank_core.bench.write_results`::

    {"meta": {"benchmark", "command", "date", "load", versions, machine, "environment",
              "git_commit", settings...},
     "rows": [...],
     <the benchmark's own sections>}

* :func:`background_load` -- ``--load N``: ``N`` CPU-bound processes started before a
  measurement and always stopped after it, with their CPU share recorded.
* :func:`environment` -- the threads, BLAS and kernels behind the timings;
  :func:`check_environment` warns when ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` are
  set (they slow current OpenBLAS; run benchmarks under
  ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``).
* :func:`save` -- write a results file in the common envelope.
* :func:`compare` -- interleaved timing of contenders with per-round ratios.
* :func:`stacked_problems` -- stacks of independent small problems (kernels, stacked solves).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import lowrank_core as lc
import lowrank_core.bench as lcb

__all__ = [
    "RESULTS",
    "ROOT",
    "background_load",
    "check_environment",
    "compare",
    "condition_name",
    "environment",
    "exit_on_sigterm",
    "git_commit",
    "save",
    "stacked_problems",
]

#: The repository's root folder.
ROOT = Path(__file__).resolve().parent.parent
#: The one results folder of the project's benchmarks.
RESULTS = ROOT / "bench" / "results"

#: Environment variables the workplace sets that slow current OpenBLAS.
SLOW_OPENBLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# A background load process: one core's worth of pure-Python spinning (no imports that
# start threads).  It reports once it runs and stops by itself when its parent is gone.
_BUSY_LOOP = (
    "import os, sys\n"
    "parent = os.getppid()\n"
    "sys.stdout.write('ready\\n')\n"
    "sys.stdout.flush()\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(200000):\n"
    "        pass\n"
)


def condition_name(load: int) -> str:
    """``"idle"`` for ``load == 0``, else ``"load<N>"`` (the key of a loaded measurement)."""
    return "idle" if load == 0 else f"load{load}"


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _shares(procs: list[subprocess.Popen], cpu0: list[float | None], wall: float) -> list[float | None]:
    out: list[float | None] = []
    for p, c0 in zip(procs, cpu0, strict=True):
        c1 = _cpu_seconds(p.pid)
        out.append(None if c0 is None or c1 is None or wall <= 0 else round((c1 - c0) / wall, 3))
    return out


@contextlib.contextmanager
def background_load(count: int, settle: float) -> Iterator[dict[str, Any]]:
    """Run ``count`` CPU-bound processes for the duration of the block (``--load N``).

    Yields a dict that receives ``processes``, ``pids``, ``settle_cpu_share`` (CPU share of each
    process while settling for ``settle`` seconds) and, at exit, ``cpu_share`` and
    ``seconds`` of the block.  The processes are always stopped (terminate, then kill
    after 5 s), also when the block raises; install :func:`exit_on_sigterm` so that a
    SIGTERM unwinds through here too.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        msg = f"`count` (--load) must be a non-negative int; got {count!r}."
        raise ValueError(msg)
    info: dict[str, Any] = {"processes": count}
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-S", "-c", _BUSY_LOOP], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
                )
            )
        info["pids"] = [p.pid for p in procs]
        for p in procs:
            if p.stdout is None or p.stdout.readline().strip() != b"ready":
                msg = f"background load process {p.pid} did not start (exit status {p.poll()})."
                raise RuntimeError(msg)
        if procs:
            cpu0 = [_cpu_seconds(p.pid) for p in procs]
            t0 = time.perf_counter()
            time.sleep(settle)
            info["settle_cpu_share"] = _shares(procs, cpu0, time.perf_counter() - t0)
            low = [s for s in info["settle_cpu_share"] if s is not None and s < 0.5]
            if low:
                print(f"warning: background load got only {low} of a core while settling", file=sys.stderr)
        cpu0 = [_cpu_seconds(p.pid) for p in procs]
        t0 = time.perf_counter()
        yield info
        info["seconds"] = round(time.perf_counter() - t0, 3)
        info["cpu_share"] = _shares(procs, cpu0, time.perf_counter() - t0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()


def exit_on_sigterm(signum: int, frame: Any) -> None:
    """``signal.signal(signal.SIGTERM, exit_on_sigterm)``: unwind (and stop the load) on SIGTERM."""
    raise SystemExit(128 + signum)


def check_environment() -> list[str]:
    """Warn on stderr about the variables in :data:`SLOW_OPENBLAS`; return those set."""
    bad = [k for k in SLOW_OPENBLAS if k in os.environ]
    if bad:
        print(
            f"warning: {', '.join(bad)} set; they slow current OpenBLAS. Run benchmarks as "
            "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/<script>.py`.",
            file=sys.stderr,
        )
    return bad


def environment() -> dict[str, Any]:
    """Threads, threading layer, BLAS and kernel versions behind the figures.

    Call after the kernels ran (the Numba threading layer is known only then).
    """
    import numba
    import numpy as np

    env = dict(lcb.kernel_environment())
    env["numba_threading_layer_requested"] = numba.config.THREADING_LAYER
    try:
        env["numba_threading_layer"] = numba.threading_layer()
    except ValueError:  # no parallel region has run
        env["numba_threading_layer"] = None
    env["affinity_cpus"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env["thread_env"] = {
        k: os.environ.get(k)
        for k in (
            "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "NUMBA_NUM_THREADS",
            "NUMBA_THREADING_LAYER",
            *SLOW_OPENBLAS,
        )
    }
    try:
        import threadpoolctl

        env["threadpools"] = [
            {k: p.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for p in threadpoolctl.threadpool_info()
        ]
    except ImportError:
        env["threadpools"] = None
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        env["numpy_blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
    except (TypeError, KeyError):
        env["numpy_blas"] = None
    return env


def git_commit() -> str | None:
    """The checkout's commit (``None`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def command() -> str:
    """This script's command line as recorded in ``meta.command``, with the ``env -u`` prefix."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return " ".join(["env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python", str(script), *sys.argv[1:]])


def save(
    benchmark: str,
    rows: Sequence[dict[str, Any]],
    *,
    out: str | os.PathLike[str] | None = None,
    load: int | Sequence[int] = 0,
    csv_file: bool = False,
    sections: dict[str, Any] | None = None,
    **settings: Any,
) -> Path:
    """Write ``rows`` to ``out`` (default ``bench/results/<benchmark>.json``) in the common envelope.

    Parameters
    ----------
    benchmark : str
        The benchmark's name; the default file name is ``<benchmark>.json`` with ``-`` as ``_``.
    rows : sequence of dict
        One dict per measured case (a loaded case carries its ``load``/``condition``).
    out : path, optional
        The JSON file to write (its folder is created).
    load : int or sequence of int
        The background loads measured (``--load``), recorded in ``meta.load``.
    csv_file : bool
        Also write the rows' scalar columns beside it as ``.csv``.
    sections : dict, optional
        The benchmark's further top-level entries (for example ``background``).
    **settings
        Recorded in ``meta`` after the common keys.

    Returns
    -------
    pathlib.Path
        The JSON file written.
    """
    path = Path(out) if out is not None else RESULTS / f"{benchmark.replace('-', '_')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    loads = [load] if isinstance(load, int) else list(load)
    meta = lcb.metadata(
        benchmark, command=command(), load=max(loads, default=0), loads=loads, git_commit=git_commit(), **settings
    )
    lcb.write_results(rows, path.parent, path.stem, meta, csv_file=csv_file, **(sections or {}))
    return path


def compare(fns: dict[str, Callable[[], Any]], repeat: int, base: str) -> dict[str, float]:
    """Median ms per contender and median per-round ratio ``base / contender``.

    Like :func:`lowrank_core.bench.time_rounds` (one warm-up call each, then rounds in
    which every contender runs once), with each sample repeated until it lasts about
    50 ms, so that sub-millisecond calls are timed above the clock's resolution.
    """
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {n: [] for n in fns}
    inner = 1
    t0 = time.perf_counter()
    fns[base]()
    once = time.perf_counter() - t0
    inner = max(1, int(0.05 / max(once, 1e-6)))  # at least ~50 ms per sample
    for _ in range(repeat):
        for name, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[name].append((time.perf_counter() - t0) / inner)
    out: dict[str, float] = {f"ms_{n}": 1e3 * statistics.median(v) for n, v in times.items()}
    for n in fns:
        if n != base:
            out[f"{base}_over_{n}"] = statistics.median(b / c for b, c in zip(times[base], times[n], strict=True))
    return out


def stacked_problems(batch: int, kind: str, m: int, r: int) -> tuple[Any, Callable[[int | None], Any]]:
    """``batch`` independent 64 x 64 problems: a dense gradient flow ``dY/dt = T - Y``
    (``F`` formed densely at every evaluation) or a structured linear ODE
    ``dY/dt = A Y + Y B^T`` (products from the factors, no ``m x m`` matrix formed).

    Returns the stacked initial value and ``make(i)``: member ``i``'s problem, or the
    stacked problem for ``i = None``."""
    rng = np.random.default_rng(0)
    Y0 = lc.LowRank.from_dense(rng.standard_normal((batch, m, m)), rank=r)
    if kind == "dense":
        target = rng.standard_normal((batch, m, 8)) @ rng.standard_normal((batch, 8, m))
        return Y0, (lambda i: lc.MatrixODE(lambda t, Y: (target if i is None else target[i]) - Y))
    G = rng.standard_normal((batch, m, m)) / np.sqrt(m)
    A = G - np.swapaxes(G, -1, -2) - np.eye(m)  # skew part plus damping
    return Y0, (lambda i: lc.LinearMatrixODE(A if i is None else A[i], A if i is None else A[i]))
