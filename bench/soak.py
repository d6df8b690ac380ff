"""``make soak``: a load test of the whole local stack, as a user with a busy uploader would run it.

``--count`` single-image uploads (default 10,000) at ``--concurrency`` (default 32) go to ``POST /v1/images``
with no retries, so every error is seen; then it waits for every accepted job to end. It reports errors by
status, the upload rate, upload latency p50/p99/max (client side), the end-to-end rate (first upload to last
result), how many accepted jobs were waiting to be enqueued at worst (from each job's ``created_at`` and
``enqueued_at``), the worker processes started, and lost (accepted, never finished) or failed
jobs. Not part of ``make test``: it takes many minutes. ``--out`` writes the report as JSON.

The uploader shares the machine's cores with the stack it measures, so it spends as little CPU as it can: each
thread keeps one HTTP/1.1 keep-alive connection (``http.client``) and sends a multipart body joined from bytes
prepared once. A pooled httpx client, which the first soaks used, took 10 to 20% of a core at 40 uploads/s on the
two-core development machine, CPU the stack then lacked; a real uploader runs on its own machine.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from bench.e2e_local import make_images
from bench.machine import cpu_shares, cpu_times, machine_info
from local.dev import LocalStack, StackConfig
from runtime.common.aws import client
from runtime.common.jobs import TERMINAL, JobStore

SIDE = 200  # small photos: the soak is about the pipeline, not the model
DISTINCT_IMAGES = 200


def small_photos(count: int) -> list[bytes]:
    out = []
    for _, data in make_images(count):
        img = Image.open(io.BytesIO(data))
        img.thumbnail((SIDE, SIDE))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


class Uploads:
    """Every upload's outcome: status (or exception name), client-side seconds, and the job id when accepted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.seconds: list[float] = []
        self.accepted: list[str] = []

    def record(self, outcome: str, seconds: float, job_id: str | None) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            self.seconds.append(seconds)
            if job_id is not None:
                self.accepted.append(job_id)


BOUNDARY = "segscale-soak-boundary"


def multipart_file(name: str, data: bytes) -> bytes:
    """A ``multipart/form-data`` body with one ``file`` part, as curl -F or httpx would send it."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


class Uploader:
    """One keep-alive HTTP/1.1 connection per thread; a broken one is reopened for the next upload."""

    def __init__(self, api_url: str, api_key: str, timeout_s: float = 120.0) -> None:
        url = urlsplit(api_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.headers = {"X-Api-Key": api_key, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        self.timeout_s = timeout_s
        self.local = threading.local()

    def post_image(self, name: str, data: bytes) -> tuple[int, bytes]:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout_s
            )
        try:
            connection.request("POST", "/v1/images", body=multipart_file(name, data), headers=self.headers)
            answer = connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self.local.connection = None
            raise
        if answer.will_close:
            connection.close()
            self.local.connection = None
        return answer.status, body


def upload_all(stack: LocalStack, photos: list[bytes], count: int, concurrency: int) -> tuple[Uploads, float]:
    results = Uploads()
    uploader = Uploader(stack.api_url, stack.api_key)

    def one(i: int) -> None:
        started = time.monotonic()
        try:
            status, body = uploader.post_image(f"soak{i:05d}.jpg", photos[i % len(photos)])
        except (OSError, http.client.HTTPException) as exc:
            results.record(type(exc).__name__, time.monotonic() - started, None)
            return
        job_id = json.loads(body)["jobs"][0]["job_id"] if status == 202 else None
        results.record(str(status), time.monotonic() - started, job_id)

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    return results, time.monotonic() - started


def wait_all(store: JobStore, job_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Jobs as they end; polls at most 1,000 unfinished jobs every few seconds (the local DynamoDB is shared)."""
    done: dict[str, dict[str, Any]] = {}
    pending = list(job_ids)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        found = store.get_many(pending[:1000])
        for job_id, job in found.items():
            if job["status"] in TERMINAL:
                done[job_id] = job
        pending = [j for j in pending if j not in done]
        if pending:
            time.sleep(3.0)
    return done


def most_waiting_to_enqueue(jobs: list[dict[str, Any]]) -> int:
    """The most jobs that were accepted and not yet enqueued at one moment (a job re-driven by reconcile counts
    until its last enqueue, so this is an upper bound)."""
    events = sorted(
        [(j["created_at"], 1) for j in jobs if "enqueued_at" in j]
        + [(j["enqueued_at"], -1) for j in jobs if "enqueued_at" in j]
    )
    waiting = peak = 0
    for _, delta in events:
        waiting += delta
        peak = max(peak, waiting)
    return peak


def run(count: int, concurrency: int, workers: int, timeout_s: float) -> dict[str, Any]:
    photos = small_photos(DISTINCT_IMAGES)
    with tempfile.TemporaryDirectory(prefix="segscale-soak-") as tmp:
        events = (Path(tmp) / "events.jsonl").open("w")
        config = StackConfig(prefix="soak", max_workers=workers, log_dir=Path(tmp), log=events)
        with LocalStack(config) as stack:
            store = JobStore.from_settings(stack.settings, client("dynamodb", stack.settings))
            started_ms = time.time() * 1000
            cpu_before = cpu_times()
            uploads, upload_s = upload_all(stack, photos, count, concurrency)
            cpu_during_uploads = cpu_shares(cpu_before, cpu_times())
            print(f"uploads done in {upload_s:.0f} s: {dict(uploads.outcomes)}; waiting for results", file=sys.stderr)
            jobs = wait_all(store, uploads.accepted, timeout_s)
            launches = len(stack.pipe.launches) if stack.pipe else 0
            most_alive = stack.pipe.most_alive_at_once() if stack.pipe else 0
        events.close()
    finished = list(jobs.values())
    seconds = np.array(uploads.seconds)
    last_ms = max((j["finished_at"] for j in finished), default=started_ms)
    return {
        "uploads": count,
        "concurrency": concurrency,
        "max_workers": workers,
        "errors_by_status": {k: v for k, v in sorted(uploads.outcomes.items()) if k != "202"},
        "accepted": len(uploads.accepted),
        "upload_seconds": round(upload_s, 1),
        "upload_rate_per_s": round(len(uploads.accepted) / upload_s, 1),
        "upload_p50_s": round(float(np.percentile(seconds, 50)), 3),
        "upload_p99_s": round(float(np.percentile(seconds, 99)), 3),
        "upload_max_s": round(float(seconds.max()), 3),
        "uploads_over_10_s": int((seconds > 10).sum()),
        "end_to_end_rate_per_s": round(len(finished) / ((last_ms - started_ms) / 1000), 2),
        "end_to_end_seconds": round((last_ms - started_ms) / 1000, 1),
        "most_waiting_to_enqueue": most_waiting_to_enqueue(finished),
        "succeeded": sum(j["status"] == "SUCCEEDED" for j in finished),
        "failed": sum(j["status"] == "FAILED" for j in finished),
        "lost": len(uploads.accepted) - len(finished),
        "worker_launches": launches,
        "workers_alive_at_most": most_alive,
        "cpu_during_uploads": cpu_during_uploads,
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="max_workers of the local stack")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="how long to wait for the results")
    parser.add_argument("--out", type=Path, help="also write the report here as JSON")
    args = parser.parse_args(argv)
    report = run(args.count, args.concurrency, args.workers, args.timeout_s)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    clean = not report["errors_by_status"] and report["lost"] == 0 and report["failed"] == 0
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
