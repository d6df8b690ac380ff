"""``segscale upload | seal | wait | results | status``: send images, follow them, and collect the measurements.
(``segscale admin keys ...`` manages client keys: segscale_cli/admin.py.)

``upload`` sends every file of one command into one batch (an id it chooses, or ``--batch``), seals it when every
file was sent (unless ``--no-seal``), and prints that batch id on stdout, one id per line (progress and errors go to
stderr), so the commands compose: ``segscale wait $(segscale upload photos/)``. ``wait`` returns as soon as a sealed
batch is COMPLETED (docs/notifications.md).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from segscale_cli import admin, ingest
from segscale_cli.client import ApiClient, ApiError
from segscale_cli.config import ConfigError, resolve
from segscale_cli.table import write_csv

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
TERMINAL = ("SUCCEEDED", "FAILED")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
BATCH_ID = re.compile(r"^[0-9a-f]{32}$")  # the API's id shape; it refuses anything else with a 422


def collect_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, and image files (by suffix, not hidden) found under folders, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and p.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found))


def _err(message: str) -> None:
    print(f"segscale: {message}", file=sys.stderr)


def cmd_upload(api: ApiClient, args: argparse.Namespace) -> int:
    try:
        files = collect_files(args.paths)
    except FileNotFoundError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if not files:
        _err("no image files found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
        return EXIT_USAGE
    groups = [files[i : i + args.files_per_request] for i in range(0, len(files), args.files_per_request)]
    batch_id = args.batch or uuid.uuid4().hex  # one batch for the whole command, however many requests
    if args.notify_url:  # a webhook is set when the batch is created, before any image
        api.create_batch(batch_id, notify_url=args.notify_url)

    def send(group: list[Path]) -> tuple[dict[str, Any] | None, list[str]]:
        """Upload a group; files the API refuses by name are dropped and the rest sent again.

        The API stores nothing when one file of a request is bad, so one corrupt photo would otherwise cost the
        whole group. Returns the answer for the files that were accepted (None if none were) and the refusals.
        """
        refused: list[str] = []
        while group:
            # One key per request, kept across its retries: a retry after a lost answer never makes new jobs.
            key = uuid.uuid4().hex
            try:
                answer = api.upload(
                    [(p.name, p.read_bytes()) for p in group],
                    idempotency_key=key,
                    model=args.model,
                    mm_per_pixel=args.mm_per_pixel,
                    batch_id=batch_id,
                )
            except ApiError as exc:
                bad = {i: reason for i, reason in exc.file_errors.items() if 0 <= i < len(group)}
                if not bad or len(group) == 1:
                    raise
                refused.extend(f"{group[i]}: {reason}" for i, reason in sorted(bad.items()))
                group = [p for i, p in enumerate(group) if i not in bad]
                continue
            return answer, refused
        return None, refused

    batch_ids: dict[int, str] = {}
    failures: list[str] = []
    with (
        tqdm(total=len(files), unit="img", desc="upload", disable=args.no_progress or None, file=sys.stderr) as bar,
        ThreadPoolExecutor(max_workers=args.concurrency) as pool,
    ):
        futures = {pool.submit(send, group): (i, group) for i, group in enumerate(groups)}
        for future in as_completed(futures):
            i, group = futures[future]
            try:
                answer, refused = future.result()
            except (ApiError, OSError) as exc:
                failures.extend(f"{p}: {exc}" for p in group)
            else:
                failures.extend(refused)
                if answer is not None:
                    batch_ids[i] = answer["batch_id"]
            bar.update(len(group))
    for answered in dict.fromkeys(batch_ids[i] for i in sorted(batch_ids)):  # one id, unless the API chose others
        print(answered, flush=True)
    for line in failures:
        _err(f"not uploaded: {line}")
    uploaded = len(files) - len(failures)
    where = ", ".join(dict.fromkeys(batch_ids.values())) or "no batch"
    print(f"uploaded {uploaded} of {len(files)} file(s) in {len(groups)} request(s) to batch {where}", file=sys.stderr)
    if failures:
        if batch_ids and not args.no_seal:
            _err(f"batch {batch_id} left open: add the missing files with --batch {batch_id}, then `segscale seal`")
        return EXIT_FAILED
    if batch_ids and not args.no_seal:
        api.seal(batch_id)
        print(f"sealed batch {batch_id}: it completes when its last image is done", file=sys.stderr)
    return EXIT_OK


def cmd_seal(api: ApiClient, args: argparse.Namespace) -> int:
    for batch_id in args.batch_ids:
        view = api.seal(batch_id)
        print(f"batch {batch_id}: {view.get('state')}", file=sys.stderr)
    return EXIT_OK


def batch_counts(api: ApiClient, batch_id: str) -> tuple[int, dict[str, int], str | None]:
    """Jobs of the batch, their counts by status, and the batch's state (None: a batch without a lifecycle)."""
    page = api.batch_page(batch_id, limit=1)
    return int(page["total"]), {k: int(v) for k, v in page.get("counts", {}).items()}, page.get("state")


def is_done(total: int, counts: dict[str, int], state: str | None) -> bool:
    """A sealed batch is done when it is COMPLETED (exactly when its last job finished); one that is still open
    (more images may come) or has no lifecycle, when every job it holds now has finished. A batch still ingesting
    from S3 is not done: more jobs are on their way."""
    if state in ("INGESTING", "SEALED", "COMPLETED"):
        return state == "COMPLETED"
    return total == sum(counts.get(s, 0) for s in TERMINAL)


def cmd_wait(api: ApiClient, args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    counts: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    states: dict[str, str | None] = {}
    with tqdm(total=0, unit="img", desc="wait", disable=args.no_progress or None, file=sys.stderr) as bar:
        while True:
            for batch_id in args.batch_ids:
                if batch_id in counts and is_done(totals[batch_id], counts[batch_id], states[batch_id]):
                    continue  # this batch is done: stop asking about it
                try:
                    totals[batch_id], counts[batch_id], states[batch_id] = batch_counts(api, batch_id)
                except ApiError as exc:
                    if exc.status == 404:
                        _err(f"batch {batch_id}: not found")
                        return EXIT_USAGE
                    if time.monotonic() > deadline:
                        _err(f"batch {batch_id}: {exc}")
                        return EXIT_TIMEOUT
                    continue  # the API may be restarting: keep waiting until the deadline
            total = sum(totals.values())
            done = sum(c.get(s, 0) for c in counts.values() for s in TERMINAL)
            bar.total = total
            bar.n = done
            bar.refresh()
            if len(counts) == len(args.batch_ids) and all(
                is_done(totals[b], counts[b], states[b]) for b in args.batch_ids
            ):
                break
            if time.monotonic() > deadline:
                _err(f"timed out after {args.timeout:.0f} s: {done} of {total} job(s) finished")
                return EXIT_TIMEOUT
            time.sleep(args.interval)
    failed = sum(c.get("FAILED", 0) for c in counts.values())
    succeeded = sum(c.get("SUCCEEDED", 0) for c in counts.values())
    print(f"{succeeded} succeeded, {failed} failed", file=sys.stderr)
    if failed:
        _err(f"{failed} job(s) failed: see `segscale results` for the reasons")
        return EXIT_FAILED
    return EXIT_OK


def batch_jobs(api: ApiClient, batch_id: str, *, page_size: int = 100) -> list[dict[str, Any]]:
    """Every job of a batch, with its measurements (fetched one by one when a page does not include them)."""
    jobs: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = api.batch_page(batch_id, limit=page_size, cursor=cursor)
        for job in page.get("jobs", []):
            if job.get("status") in TERMINAL and "result" not in job and "error" not in job:
                job = api.job(job["job_id"])
            jobs.append({"batch_id": batch_id, **job})
        cursor = page.get("next_cursor")
        if not cursor:
            return jobs


def cmd_results(api: ApiClient, args: argparse.Namespace) -> int:
    jobs: list[dict[str, Any]] = []
    for batch_id in args.batch_ids:
        jobs.extend(batch_jobs(api, batch_id))
    if args.out == "-":
        write_csv(jobs, sys.stdout)
    else:
        with open(args.out, "w", newline="", encoding="utf-8") as out:
            write_csv(jobs, out)
        print(f"wrote {len(jobs)} row(s) to {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_status(api: ApiClient, args: argparse.Namespace, out: IO[str] | None = None) -> int:
    import json

    job = api.job(args.job_id)
    print(json.dumps(job, indent=2, sort_keys=True), file=out or sys.stdout)
    return EXIT_FAILED if job.get("status") == "FAILED" else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", default=argparse.SUPPRESS, help="API URL (or SEGSCALE_ENDPOINT)")
    common.add_argument("--api-key", default=argparse.SUPPRESS, help="API key (or SEGSCALE_API_KEY)")
    common.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help="no progress bar")

    parser = argparse.ArgumentParser(prog="segscale", description=__doc__.splitlines()[0], parents=[common])
    parser.set_defaults(endpoint=None, api_key=None, no_progress=False)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upload", parents=[common], help="upload image files or folders; prints batch ids")
    up.add_argument("paths", nargs="+", type=Path)
    up.add_argument("--concurrency", type=int, default=4)
    up.add_argument("--files-per-request", type=int, default=1, help="images per HTTP request")
    up.add_argument(
        "--batch", default=None, metavar="BATCH", help="add to this existing batch (default: a new batch per command)"
    )
    up.add_argument("--model", default=None)
    up.add_argument("--mm-per-pixel", type=float, default=None)
    up.add_argument("--retries", type=int, default=5)
    up.add_argument("--notify-url", default=None, help="webhook called, signed, when the batch completes (new batch)")
    up.add_argument("--no-seal", action="store_true", help="leave the batch open for more images (default: seal it)")

    seal = sub.add_parser("seal", parents=[common], help="seal batches: no more images; they complete when done")
    seal.add_argument("batch_ids", nargs="+", metavar="BATCH")

    wait = sub.add_parser(
        "wait", parents=[common], help="wait until the batches are COMPLETED (or, if not sealed, all their jobs done)"
    )
    wait.add_argument("batch_ids", nargs="+", metavar="BATCH")
    wait.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS")
    wait.add_argument("--interval", type=float, default=1.0, metavar="SECONDS")

    res = sub.add_parser("results", parents=[common], help="write the batches' measurements as CSV")
    res.add_argument("batch_ids", nargs="+", metavar="BATCH")
    res.add_argument("--out", default="-", help="CSV file (default: stdout)")

    st = sub.add_parser("status", parents=[common], help="print one job as JSON")
    st.add_argument("job_id", metavar="JOB")
    ingest.add_commands(sub, common)

    admin.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "upload" and (args.concurrency < 1 or args.files_per_request < 1 or args.retries < 0):
        _err("--concurrency and --files-per-request must be at least 1, --retries at least 0")
        return EXIT_USAGE
    if args.command == "upload" and args.notify_url and args.batch is not None:
        _err("--notify-url makes a new batch; it cannot be given with --batch (a batch keeps the URL it was made with)")
        return EXIT_USAGE
    if args.command == "upload" and args.batch is not None and not BATCH_ID.fullmatch(args.batch):
        _err(f"--batch must be a batch id (32 lowercase hex characters), got {args.batch!r}")
        return EXIT_USAGE
    if getattr(args, "grace", 0) < 0:
        _err("--grace must be 0 or more seconds")
        return EXIT_USAGE
    try:
        target = resolve(args.endpoint, args.api_key)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    commands = {
        "upload": cmd_upload,
        "seal": cmd_seal,
        "wait": cmd_wait,
        "results": cmd_results,
        "status": cmd_status,
        "submit": ingest.cmd_submit,
        "watch": ingest.cmd_watch,
    }
    command = getattr(args, "func", None) or commands[args.command]
    with ApiClient(target.endpoint, target.api_key, retries=getattr(args, "retries", 5)) as api:
        try:
            return int(command(api, args))
        except ApiError as exc:
            _err(f"{exc} (endpoint {target.endpoint} from {target.source})")
            return EXIT_FAILED
