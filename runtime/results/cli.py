"""Argument parsing for the results task; each subcommand calls one plain function and prints a JSON summary.

Exit status: 0 done, 1 the command could not do its job (the message says why), 2 bad arguments. When the
export goes to stdout (``--out -``) the summary goes to stderr so the data stays clean.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common import logs
from runtime.common.settings import Settings, get_settings

log = logging.getLogger("runtime.results")


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds, or ISO 8601 (a time without an offset is UTC)."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch milliseconds nor ISO 8601 (e.g. 2026-11-30T10:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime.results", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    exp = sub.add_parser("export", help="jobs as CSV or JSON Lines, to S3 reports/<name>/ and optionally locally")
    exp.add_argument("--batch", help="batch id to export")
    exp.add_argument("--since", type=parse_time_ms, help="start of a time range (updated_at), ISO 8601 or epoch ms")
    exp.add_argument("--until", type=parse_time_ms, help="end of the time range (default: now)")
    exp.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    exp.add_argument("--out", help="also write to this path, or '-' for stdout")
    exp.add_argument("--classes", default="", help="comma-separated class columns to add to those from the model cards")

    rep = sub.add_parser("report", help="an HTML report for a batch, to S3 reports/<batch>/report.html")
    rep.add_argument("--batch", required=True)
    rep.add_argument("--out", type=Path, help="also write the HTML here")
    rep.add_argument("--max-gallery", type=_positive, default=200, help="overlay thumbnails to embed (default 200)")

    rec = sub.add_parser("reconcile", help="re-drive stuck jobs or fail them after max attempts")
    rec.add_argument("--max-jobs", type=_positive, default=1000, help="most jobs to act on in this pass")
    rec.add_argument("--max-scan", type=_positive, help="most jobs to read in this pass (default 10 x max-jobs)")

    note = sub.add_parser("notify", help="a completed batch's export, report, Batch Completed event and webhook")
    note.add_argument("--batch", help="this batch (what the bus's rule runs); default: every batch that is due")
    ing = sub.add_parser("ingest", help="list S3 sources into jobs (docs/ingestion.md): one batch, or all that are due")
    ing.add_argument("--batch", help="this batch (the bus's rule); default: the drop folder, then every due batch")
    return parser


def _ingest(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from runtime.results.ingest.due import ingest_everything_due
    from runtime.results.ingest.run import ingest_batch

    if args.batch is not None:
        return ingest_batch(settings, args.batch).to_dict()
    return ingest_everything_due(settings)


def _export(args: argparse.Namespace, settings: Settings) -> tuple[dict[str, Any], IO[str]]:
    from runtime.results.export import export_jobs

    if args.batch is None and args.since is None and args.until is None:
        raise ValueError("export needs --batch ID or --since/--until")
    if args.batch is not None and (args.since is not None or args.until is not None):
        raise ValueError("use --batch or --since/--until, not both")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    with ExitStack() as stack:
        out: IO[str] | None = None
        if args.out == "-":
            out = sys.stdout
        elif args.out:
            out = stack.enter_context(open(args.out, "w", encoding="utf-8", newline=""))
        summary = export_jobs(
            settings,
            batch_id=args.batch,
            since_ms=args.since,
            until_ms=args.until,
            fmt=args.format,
            out=out,
            classes=classes,
        )
    return summary.to_dict(), sys.stderr if args.out == "-" else sys.stdout


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
        logs.configure(settings.log_level)
        if args.command == "export":
            result, stream = _export(args, settings)
        elif args.command == "report":
            from runtime.results.report import build_report

            result = build_report(settings, args.batch, out_path=args.out, max_gallery=args.max_gallery).to_dict()
            stream = sys.stdout
        elif args.command == "ingest":
            result, stream = _ingest(args, settings), sys.stdout
        elif args.command == "notify":
            from runtime.results.notify import notify_batch, notify_due

            if args.batch is not None:
                result = notify_batch(settings, args.batch).to_dict()
            else:
                result = {"batches": [o.to_dict() for o in notify_due(settings)]}
            stream = sys.stdout
        else:
            from runtime.results.reconcile import reconcile_once

            # Its metrics (live workers, exact job counts) go to stderr as EMF: CloudWatch reads either stream.
            result = reconcile_once(
                settings, max_jobs=args.max_jobs, max_scan=args.max_scan, metrics_stream=sys.stderr
            ).to_dict()
            stream = sys.stdout
    except (ValueError, LookupError, OSError, BotoCoreError, ClientError) as exc:
        log.error("%s: %s", args.command, exc)
        return 1
    print(json.dumps(result, sort_keys=True), file=stream)
    return 0
