#!/usr/bin/env python
"""Run every ```python example of the documentation pages.

Usage::

    python docs/check_examples.py            # all pages
    python docs/check_examples.py -v         # also show the examples' output
    python docs/check_examples.py methods.md # selected pages

Each page's ```python blocks are executed in order in one namespace per page (so a
block may use names defined by an earlier block of the same page), with the
repository root as the working directory.  A block whose first line is

    # requires: torch, cupy

is skipped (and reported as skipped) when one of the named modules cannot be
imported; every other block must run.  The script exits with status 1 if any
block raises, printing the page, the block number and the line in the page where the
block starts, and 0 otherwise.  Pages that take longer than ``--budget`` seconds are
reported (not failed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import sys
import time
import traceback
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

#: Pages in reading order (other *.md files under docs/ are checked after these).
PAGES = [
    "index.md",
    "getting-started.md",
    "methods.md",
    "choosing.md",
    "problems.md",
    "backends.md",
    "benchmarks.md",
    "api.md",
]

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^\s`]*)")
_REQUIRES = re.compile(r"^#\s*requires:\s*(.+)$")


def extract_blocks(text: str) -> list[tuple[int, str]]:
    """Return ``(line_number, source)`` for every fenced block tagged ``python``."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = match.groups()
        start = i + 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[len(indent):] if line.startswith(indent) else line)
            i += 1
        i += 1  # closing fence
        if info.strip("{}") == "python":
            blocks.append((start + 1, "\n".join(body) + "\n"))
    return blocks


def missing_requirements(source: str) -> list[str]:
    """Modules named in a ``# requires:`` first line that cannot be imported."""
    first = source.lstrip().splitlines()[0] if source.strip() else ""
    match = _REQUIRES.match(first.strip())
    if not match:
        return []
    names = [n.strip() for n in match.group(1).split(",") if n.strip()]
    return [n for n in names if importlib.util.find_spec(n) is None]


def run_page(path: Path, *, verbose: bool) -> tuple[int, int, int, float]:
    """Execute the blocks of one page; return (passed, failed, skipped, seconds)."""
    blocks = extract_blocks(path.read_text(encoding="utf-8"))
    namespace: dict = {"__name__": "__main__"}
    passed = failed = skipped = 0
    start = time.perf_counter()
    for k, (line, source) in enumerate(blocks, 1):
        label = f"{path.name} block {k} (line {line})"
        missing = missing_requirements(source)
        if missing:
            skipped += 1
            print(f"SKIP {label}: requires {', '.join(missing)}")
            continue
        out = io.StringIO()
        try:
            code = compile(source, f"{path.name}:block{k}:line{line}", "exec")
            with contextlib.redirect_stdout(out):
                exec(code, namespace)
        except BaseException:  # noqa: BLE001 - report everything, including SystemExit
            failed += 1
            print(f"FAIL {label}")
            print("---- source ----")
            for j, src_line in enumerate(source.splitlines(), line):
                print(f"{j:5d}  {src_line}")
            print("---- output ----")
            print(out.getvalue(), end="")
            print("---- error -----")
            traceback.print_exc(file=sys.stdout)
            print("----------------")
            continue
        passed += 1
        if verbose:
            print(f"ok   {label}")
            text = out.getvalue()
            if text:
                print("\n".join("     | " + s for s in text.rstrip("\n").splitlines()))
    return passed, failed, skipped, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the ```python examples of the docs.")
    parser.add_argument("pages", nargs="*", help="page file names under docs/ (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each block's output")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds per page before a note is printed")
    args = parser.parse_args(argv)

    if args.pages:
        paths = [DOCS / Path(p).name for p in args.pages]
    else:
        extra = sorted(p.name for p in DOCS.glob("*.md") if p.name not in PAGES)
        paths = [DOCS / p for p in [*PAGES, *extra] if (DOCS / p).exists()]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print("no such page: " + ", ".join(str(p) for p in missing))
        return 2

    # The examples import lowrank_core and open files relative to the repository root.
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("MPLBACKEND", "Agg")

    total_failed = 0
    for path in paths:
        passed, failed, skipped, seconds = run_page(path, verbose=args.verbose)
        total_failed += failed
        note = f"  (over the {args.budget:g} s budget)" if seconds > args.budget else ""
        print(f"{path.name}: {passed} passed, {failed} failed, {skipped} skipped, {seconds:.2f} s{note}")
    if total_failed:
        print(f"{total_failed} example block(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
