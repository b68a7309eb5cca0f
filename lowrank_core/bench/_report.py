"""Tables, result files and run metadata shared by ``lowrank-core bench`` and ``demo``.

Rows are plain dicts.  A table is described by a list of :class:`Column` (header, row
key, format); result files are one JSON document (``{"meta": ..., "rows": ...}``, every
value kept) and one CSV file (one line per row, scalar values and ``{key: count}``
dicts only).
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EQUAL_ACCURACY_COLUMNS",
    "KERNEL_COLUMNS",
    "TRAINING_COST_COLUMNS",
    "QR_SAVINGS_COLUMNS",
    "Column",
    "PROBLEMS_COLUMNS",
    "format_shapes",
    "format_table",
    "metadata",
    "prepare_out_dir",
    "write_results",
]


@dataclass(frozen=True)
class Column:
    """One table column: ``header``, the row ``key`` and a formatter of the value."""

    header: str
    key: str
    fmt: Callable[[Any], str] = str
    align: str = ">"


def format_shapes(shapes: dict[str, int], limit: int | None = None) -> str:
    """``{"100x16": 10}`` -> ``"10×(100x16)"`` (``"-"`` when empty).

    With ``limit``, only the ``limit`` most frequent shapes are listed, then ``+N more``.
    """
    if not shapes:
        return "-"
    items = list(shapes.items())
    if limit is not None and len(items) > limit:
        top = sorted(items, key=lambda kv: -kv[1])[:limit]
        items = [kv for kv in items if kv in top]
        more = f", +{len(shapes) - limit} more"
    else:
        more = ""
    return ", ".join(f"{count}×({shape})" for shape, count in items) + more


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f}"


def _mflop(flops: float) -> str:
    return f"{flops / 1e6:.3g}"


#: Columns that several tables show, defined once.
_PROBLEM = Column("problem", "problem", align="<")
_METHOD = Column("method", "method", align="<")
_DT = Column("dt", "dt", "{:.3g}".format)
_ERROR = Column("error", "error", "{:.2e}".format)
_RANK = Column("rank", "rank")
_QR = Column("QR", "qr")
_SVD = Column("SVD", "svd")
_F = Column("F", "rhs_evals")
_QR_MFLOP = Column("QR Mflop", "qr_flops", _mflop)
_SVD_MFLOP = Column("SVD Mflop", "svd_flops", _mflop)
_MS = Column("ms", "wall_time", _ms)

#: Columns of the QR-savings table (``bench qr-savings`` and ``demo``).
QR_SAVINGS_COLUMNS = [
    _PROBLEM,
    _METHOD,
    _DT,
    _ERROR,
    Column("best@rank", "best_error", "{:.2e}".format),
    _RANK,
    _QR,
    _SVD,
    _F,
    _QR_MFLOP,
    _SVD_MFLOP,
    _MS,
    Column("QR shapes", "qr_shapes", lambda v: format_shapes(v, limit=3), align="<"),
    Column("SVD shapes", "svd_shapes", lambda v: format_shapes(v, limit=3), align="<"),
]

#: Columns of the equal-accuracy table (``bench qr-savings``): each method at its
#: cheapest step size reaching the problem's target error.
EQUAL_ACCURACY_COLUMNS = [
    _PROBLEM,
    _METHOD,
    Column("target", "target", "{:.2e}".format),
    _DT,
    _ERROR,
    _RANK,
    _QR,
    _SVD,
    Column("QR+SVD", "decompositions"),
    _QR_MFLOP,
    _SVD_MFLOP,
    _F,
    _MS,
]

#: Columns of the training-cost table (``bench training-cost``).
TRAINING_COST_COLUMNS = [
    Column("layer", "layer", align="<"),
    _RANK,
    Column("optimizer", "optimizer", align="<"),
    Column("steps", "steps"),
    _QR,
    _SVD,
    Column("ms cycle", "cycle_ms", "{:.2f}".format),
    Column("ms QR", "qr_ms", "{:.2f}".format),
    Column("ms SVD", "svd_ms", "{:.2f}".format),
    Column("ms products", "products_ms", "{:.2f}".format),
    Column("QR shapes", "qr_shapes", format_shapes, align="<"),
    Column("SVD shapes", "svd_shapes", format_shapes, align="<"),
]

#: Columns of the problems table (``bench problems``); ``drifts`` is
#: :func:`~lowrank_core.bench._problems.drift_summary` of the row.
PROBLEMS_COLUMNS = [
    _PROBLEM,
    _METHOD,
    _DT,
    Column("steps", "steps"),
    Column("rank", "final_rank"),
    Column("max rank", "max_rank"),
    Column("rate", "rate", "{:.4f}".format),
    Column("linear", "linear_rate", "{:.4f}".format),
    Column("ms", "wall_time", lambda v: f"{1e3 * v:.0f}"),
    Column("largest drift", "drifts", align="<"),
]

#: Columns of the kernel table (``bench kernels``).
KERNEL_COLUMNS = [
    Column("op", "op", align="<"),
    Column("B", "B"),
    Column("m", "m"),
    Column("k", "k"),
    Column("dtype", "dtype", align="<"),
    Column("algorithm", "algorithm", align="<"),
    Column("ms kernel", "ms_kernel", "{:.3g}".format),
    Column("ms numpy", "ms_numpy", "{:.3g}".format),
    Column("ms scipy-loop", "ms_scipy_loop", "{:.3g}".format),
    Column("× numpy", "speedup_numpy", "{:.2f}".format),
    Column("× scipy-loop", "speedup_scipy_loop", "{:.2f}".format),
    Column("orth err", "max_orth_error", "{:.1e}".format),
    Column("recon err", "max_recon_error", "{:.1e}".format),
]


def _cell(col: Column, row: dict[str, Any]) -> str:
    value = row.get(col.key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return col.fmt(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Render ``rows`` as a fixed-width text table with a header and a rule."""
    cells = [[_cell(c, r) for c in columns] for r in rows]
    widths = [max([len(c.header)] + [len(line[j]) for line in cells]) for j, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(f"{v:{c.align}{w}}" for v, c, w in zip(values, columns, widths, strict=True)).rstrip()

    header = line([c.header for c in columns])
    return "\n".join([header, "-" * len(header), *(line(v) for v in cells)])


def prepare_out_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder ``path`` if needed and check that files can be written there.

    Raises
    ------
    ValueError
        If ``path`` is an existing file, cannot be created, or is not writable (the
        message says which).
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        msg = f"--out {str(path)!r} is an existing file, not a folder; choose a folder for the results."
        raise ValueError(msg)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        msg = f"cannot write results to --out {str(path)!r}: {reason}; choose a writable folder."
        raise ValueError(msg) from None
    return out


def metadata(benchmark: str, *, command: str | None = None, load: int = 0, **extra: Any) -> dict[str, Any]:
    """The ``"meta"`` of a results file: the benchmark, its command, date, versions, machine and load.

    Every results file of the project (``lowrank-core bench ...`` and the scripts in
    ``bench/``) starts with this envelope, followed by the benchmark's own settings.

    Parameters
    ----------
    benchmark : str
        The benchmark's name (the stem of its results file, with ``-`` for ``_``).
    command : str, optional
        The command that reproduces the run (default: ``python`` and this process's ``sys.argv``).
    load : int
        Background CPU-bound processes running during the measurement (``--load N``; 0: idle).
    **extra
        The benchmark's settings and summaries, added after the common keys.

    Returns
    -------
    dict
        ``benchmark``, ``command``, ``date`` (UTC, ISO 8601), ``load``, ``lowrank_core``,
        ``python``, ``numpy``, ``machine``, ``processor``, ``system``, ``cpu_count``, then ``extra``.
    """
    import numpy as np

    from .. import __version__

    if not isinstance(benchmark, str) or not benchmark:
        msg = f"`benchmark` must be a non-empty str; got {benchmark!r}."
        raise TypeError(msg)
    if isinstance(load, bool) or not isinstance(load, int) or load < 0:
        msg = f"`load` must be a non-negative int (background processes); got {load!r}."
        raise ValueError(msg)
    return {
        "benchmark": benchmark,
        "command": command if command is not None else " ".join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load": load,
        "lowrank_core": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "system": platform.platform(),
        "cpu_count": os.cpu_count(),
        **extra,
    }


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in value.items())
    return value


def write_results(
    rows: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike[str],
    stem: str,
    meta: dict[str, Any],
    *,
    csv_file: bool = True,
    **sections: Any,
) -> list[Path]:
    """Write ``{"meta": meta, "rows": rows, **sections}`` to ``out_dir/stem.json`` and the rows to ``stem.csv``.

    The JSON file holds one row per line (rows may hold per-step lists), so that it
    stays small and diffable; the CSV file holds the rows' scalar columns (lists left
    out, dicts as ``key:value`` pairs).

    Parameters
    ----------
    rows : sequence of dict
        The measured cases, one dict each.
    out_dir : str or os.PathLike
        An existing folder.
    stem : str
        File name without extension.
    meta : dict
        From :func:`metadata`.
    csv_file : bool
        Also write ``stem.csv``.
    **sections
        Further top-level entries of the JSON file (for example a benchmark's background
        measurements), JSON-serialisable.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    out = Path(out_dir)
    json_path = out / f"{stem}.json"
    with json_path.open("w", encoding="utf-8") as fh:
        head = json.dumps({"meta": meta}, indent=1, default=str)[:-2]
        body = ",\n".join("  " + json.dumps(row, default=str) for row in rows)
        tail = "".join(f",\n {json.dumps(k)}: {json.dumps(v, default=str)}" for k, v in sections.items())
        fh.write(f'{head},\n "rows": [\n{body}\n ]{tail}\n}}\n')
    if not csv_file:
        return [json_path]
    csv_path = out / f"{stem}.csv"
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and not isinstance(v, (list, tuple))]
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in keys})
    return [json_path, csv_path]
