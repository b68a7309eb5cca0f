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
    "format_shapes", "format_table", "prepare_out_dir", "run_metadata", "write_rows"]


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


#: Columns of the QR-savings table (``bench qr-savings`` and ``demo``).
QR_SAVINGS_COLUMNS = [
    Column("problem", "problem", align="<"),
    Column("method", "method", align="<"),
    Column("dt", "dt", "{:.3g}".format),
    Column("error", "error", "{:.2e}".format),
    Column("best@rank", "best_error", "{:.2e}".format),
    Column("rank", "rank"),
    Column("QR", "qr"),
    Column("SVD", "svd"),
    Column("F", "rhs_evals"),
    Column("QR Mflop", "qr_flops", _mflop),
    Column("SVD Mflop", "svd_flops", _mflop),
    Column("ms", "wall_time", _ms),
    Column("QR shapes", "qr_shapes", lambda v: format_shapes(v, limit=3), align="<"),
    Column("SVD shapes", "svd_shapes", lambda v: format_shapes(v, limit=3), align="<"),
]

#: Columns of the equal-accuracy table (``bench qr-savings``): each method at its
#: cheapest step size reaching the problem's target error.
EQUAL_ACCURACY_COLUMNS = [
    Column("problem", "problem", align="<"),
    Column("method", "method", align="<"),
    Column("target", "target", "{:.2e}".format),
    Column("dt", "dt", "{:.3g}".format),
    Column("error", "error", "{:.2e}".format),
    Column("rank", "rank"),
    Column("QR", "qr"),
    Column("SVD", "svd"),
    Column("QR+SVD", "decompositions"),
    Column("QR Mflop", "qr_flops", _mflop),
    Column("SVD Mflop", "svd_flops", _mflop),
    Column("F", "rhs_evals"),
    Column("ms", "wall_time", _ms),
]

#: Columns of the training-cost table (``bench training-cost``).
TRAINING_COST_COLUMNS = [
    Column("layer", "layer", align="<"),
    Column("rank", "rank"),
    Column("optimizer", "optimizer", align="<"),
    Column("steps", "steps"),
    Column("QR", "qr"),
    Column("SVD", "svd"),
    Column("ms cycle", "cycle_ms", "{:.2f}".format),
    Column("ms QR", "qr_ms", "{:.2f}".format),
    Column("ms SVD", "svd_ms", "{:.2f}".format),
    Column("ms products", "products_ms", "{:.2f}".format),
    Column("QR shapes", "qr_shapes", format_shapes, align="<"),
    Column("SVD shapes", "svd_shapes", format_shapes, align="<"),
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


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Versions, machine and command line of this run, plus ``extra`` entries."""
    import numpy as np

    from .. import __version__

    return {
        "lowrank_core": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "system": platform.platform(),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["lowrank-core", *sys.argv[1:]]) if sys.argv else "lowrank-core",
        **extra,
    }


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict):
        return " ".join(f"{k}:{v}" for k, v in value.items())
    return value


def write_rows(rows: Sequence[dict[str, Any]], out_dir: Path, stem: str, meta: dict[str, Any]) -> list[Path]:
    """Write ``rows`` to ``out_dir/stem.json`` (everything) and ``out_dir/stem.csv`` (no lists).

    Returns
    -------
    list of pathlib.Path
        The two files written.
    """
    json_path = out_dir / f"{stem}.json"
    csv_path = out_dir / f"{stem}.csv"
    with json_path.open("w", encoding="utf-8") as fh:
        # One row per line keeps the file small (rows may hold per-step lists) and diffable.
        head = json.dumps({"meta": meta}, indent=1, default=str)[:-2]
        body = ",\n".join("  " + json.dumps(row, default=str) for row in rows)
        fh.write(f'{head},\n "rows": [\n{body}\n ]\n}}\n')
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and not isinstance(v, (list, tuple))]
    with csv_path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in keys})
    return [json_path, csv_path]
