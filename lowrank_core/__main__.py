"""Command line: ``python -m lowrank_core`` / ``lowrank-core``.

Subcommands
-----------
demo
    Solve the reference problems (methods.md §6.1 and §6.4) with every integrator and
    print errors and QR/SVD counts (the default when no subcommand is given).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lowrank-core",
        description="Dynamical low-rank integrators: demos and QR-savings measurements.",
    )
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="solve the reference problems with every method (default)")
    demo.add_argument("--methods", nargs="+", metavar="NAME", help="methods to run (default: all)")
    demo.add_argument("--problems", nargs="+", metavar="NAME", help="problems to run: path, heat (default: both)")
    demo.add_argument("--quick", action="store_true", help="one step size per problem")
    demo.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.command or "demo"
    if command == "demo":
        from ._demo import run_demo

        try:
            run_demo(
                getattr(args, "methods", None),
                getattr(args, "problems", None),
                quick=getattr(args, "quick", False),
                json_path=getattr(args, "json", None),
            )
        except ValueError as exc:
            print(f"lowrank-core: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
