"""One repetition of one benchmark module, in its own process: ``python -m bench.child MODULE OUT.json [--quick]``.

A separate process per repetition gives every repetition a cold start (imports, model load) like a real task,
keeps one benchmark's leftovers (servers, threads, caches) away from the next, and lets the harness stop a
benchmark that overruns its time budget by killing its process group.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from bench.figures import Figure


def run_module(module: str, *, quick: bool) -> list[Figure]:
    mod = importlib.import_module(module)
    run = getattr(mod, "run", None)
    if not callable(run):
        raise TypeError(f"{module} has no run(*, quick: bool = False) function")
    figures = run(quick=quick)
    if not isinstance(figures, list) or not all(isinstance(f, Figure) for f in figures):
        raise TypeError(f"{module}.run() must return list[Figure], got {type(figures).__name__}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("module", help="dotted module name, e.g. bench.api_load")
    parser.add_argument("out", type=Path, help="where to write the figures as JSON")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    figures = run_module(args.module, quick=args.quick)
    args.out.write_text(json.dumps([f.to_dict() for f in figures]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
