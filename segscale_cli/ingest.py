"""``segscale submit`` (a batch from an S3 prefix or manifest) and ``segscale watch`` (a folder, uploaded as files
appear). docs/ingestion.md.

``watch`` makes one batch per run, created with its first file, and seals it when it stops. What it sent is
recorded in ``<DIR>/.segscale-sent.json`` (name, size and modification time), written after each accepted upload,
so a restarted watch skips it. Ctrl-C (SIGINT) or SIGTERM lets the upload in flight finish (each is one
all-or-nothing request with an Idempotency-Key) and records it before the batch is sealed: nothing is half-sent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from segscale_cli.client import ApiClient, ApiError

STATE_FILE = ".segscale-sent.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    sm = sub.add_parser(
        "submit", parents=[common], help="a batch from s3://bucket/prefix/ or a manifest; prints its id"
    )
    sm.add_argument("source", help="s3://bucket/prefix/, or with --manifest s3://bucket/list.txt|.jsonl|.csv")
    sm.add_argument("--manifest", action="store_true", help="SOURCE is a manifest of keys")
    sm.add_argument("--model", default=None)
    sm.add_argument("--mm-per-pixel", type=float, default=None)
    sm.add_argument("--suffix", action="append", dest="suffixes", help="object names to take (repeat; e.g. .jpg)")
    sm.add_argument("--max-bytes", type=int, default=None, help="larger objects become FAILED jobs")
    sm.add_argument("--notify-url", default=None)
    sm.add_argument("--batch", default=None, help="the batch id to use (default: a new one)")

    w = sub.add_parser("watch", parents=[common], help="upload image files as they appear in DIR (one batch a run)")
    w.add_argument("dir", type=Path)
    w.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="how often to look")
    w.add_argument("--model", default=None)
    w.add_argument("--no-seal", action="store_true", help="leave the batch open when stopping")


def cmd_submit(api: ApiClient, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"source": args.source, "manifest": args.manifest}
    for field in ("model", "mm_per_pixel", "suffixes", "max_bytes", "notify_url"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    body["batch_id"] = args.batch or uuid.uuid4().hex  # fixed before sending: a retried request is the same batch
    view = api.request("POST", "/v1/batches", idempotency_key=uuid.uuid4().hex, json=body)
    print(view["batch_id"], flush=True)
    print(f"batch {view['batch_id']} is {view['state']}: `segscale wait {view['batch_id']}`", file=sys.stderr)
    return 0


class SentLog:
    """What this folder's watch runs have sent: relative path -> [size, mtime_ns]. Rewritten whole, atomically."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / STATE_FILE
        try:
            self.sent: dict[str, list[int]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.sent = {}

    def seen(self, name: str, stat: os.stat_result) -> bool:
        return self.sent.get(name) == [stat.st_size, stat.st_mtime_ns]

    def add(self, name: str, stat: os.stat_result) -> None:
        self.sent[name] = [stat.st_size, stat.st_mtime_ns]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.sent, sort_keys=True))
        tmp.replace(self.path)


def _ready(folder: Path, log: SentLog, sizes: dict[str, int]) -> list[tuple[str, Path, os.stat_result]]:
    """New image files whose size did not change since the last look (so a file still being written waits)."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        name = path.relative_to(folder).as_posix()
        stat = path.stat()
        if log.seen(name, stat):
            continue
        if sizes.get(name) == stat.st_size and stat.st_size > 0:
            out.append((name, path, stat))
        sizes[name] = stat.st_size
    return out


def cmd_watch(api: ApiClient, args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    folder: Path = args.dir
    if not folder.is_dir():
        print(f"segscale: {folder} is not a folder", file=sys.stderr)
        return 2
    stop = stop or _stop_on_signals()
    print(f"watching {folder} (Ctrl-C stops, after the upload in flight)", file=sys.stderr, flush=True)
    log = SentLog(folder)
    sizes: dict[str, int] = {}
    batch_id: str | None = None
    sent = refused = 0
    while not stop.is_set():
        for name, path, stat in _ready(folder, log, sizes):
            if stop.is_set():
                break
            batch_id = batch_id or uuid.uuid4().hex
            try:
                api.upload([(path.name, path.read_bytes())], idempotency_key=uuid.uuid4().hex, model=args.model,
                           batch_id=batch_id)  # fmt: skip
            except ApiError as exc:
                if exc.status not in (413, 415, 422):
                    raise
                refused += 1
                print(f"segscale: not uploaded: {name}: {exc}", file=sys.stderr)
            else:
                sent += 1
            log.add(name, stat)  # accepted or refused for good: not sent again
        stop.wait(args.interval)
    if batch_id is not None and not args.no_seal:
        api.seal(batch_id)
    if batch_id is not None:
        print(batch_id, flush=True)
    print(f"watch stopped: {sent} file(s) sent, {refused} refused, batch {batch_id or 'none'}", file=sys.stderr)
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
