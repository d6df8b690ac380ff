"""`python -m bench` (`make bench`): run every benchmark, write bench/results/latest.{json,md}, print the table.

``--quick``, ``--only`` and ``--against`` runs write ``bench/results/scratch.*`` (ignored by git) unless ``--out``
says otherwise, so a smoke run never replaces the committed results of a full run.

``--against REF`` runs each repetition twice, from the working tree and from REF (a temporary git worktree, the
same virtualenv), interleaved, and reports every figure with REF's value as its baseline: the ratio column is
then this tree over REF, measured side by side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from bench.harness import EXPECTED_MODULES, REPO_ROOT, RefError, module_exists, resolve_ref, run_against, run_all
from bench.machine import machine_info
from bench.report import build_doc, render_markdown, write_results

RESULTS_DIR = REPO_ROOT / "bench" / "results"
# Under 10 minutes in all, with room for start-up and writing the results.
DEFAULT_BUDGET_S = 540.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per benchmark (default 3; 1 if --quick)")
    parser.add_argument("--quick", action="store_true", help="each benchmark once on a tiny input (smoke path)")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this module (repeatable)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="time budget for all benchmarks")
    parser.add_argument("--out", type=Path, default=None, help="output path without suffix (.json and .md written)")
    parser.add_argument(
        "--against", metavar="REF", default=None, help="also run every repetition from this git ref; ratio = tree / REF"
    )
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.budget_s <= 0:
        parser.error("--budget-s must be positive")
    for name in args.only or []:
        if not module_exists(name):
            parser.error(f"--only {name}: no module bench/{name}.py (known: {', '.join(EXPECTED_MODULES)})")
    if args.against is not None:
        try:
            resolve_ref(args.against)
        except RefError as exc:
            parser.error(str(exc))
    if args.out is None:
        partial = args.quick or bool(args.only) or args.against is not None
        args.out = RESULTS_DIR / ("scratch" if partial else "latest")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = list(args.only) if args.only else list(EXPECTED_MODULES)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    machine = machine_info()
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[bench {time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    if args.against is None:
        outcomes = run_all(names, repeats=args.repeats, quick=args.quick, budget_s=args.budget_s, log=log)
    else:
        outcomes, _label = run_against(
            names, args.against, repeats=args.repeats, quick=args.quick, budget_s=args.budget_s, log=log
        )
    run = {
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 1),
        "quick": args.quick,
        "repeats": args.repeats,
        "budget_s": args.budget_s,
        "command": command.strip(),
    }
    doc = build_doc(
        machine=machine,
        run=run,
        modules=[o.record() for o in outcomes],
        figures=[f for o in outcomes for f in o.figures],
    )
    json_path, md_path = write_results(doc, args.out)
    print(render_markdown(doc), end="")
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    broken = [o for o in outcomes if o.status in ("failed", "timeout")]
    for o in broken:
        print(f"error: benchmark {o.name} {o.status}: {o.message}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
