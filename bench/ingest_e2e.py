"""S3 ingestion end to end on the local stack: a prefix of real photos becomes a completed batch.

``--photos`` distinct JPEGs (crops of the photos that ship in packages, ``bench.e2e_local.make_images``, long side
``--side`` pixels) are put under ``s3://<source>/photos/`` of the local stack's moto server; then one
``POST /v1/batches`` with that prefix as its ``source``, and the batch record is read until it is COMPLETED
(the counts then come from the API). Reported: how long the ingester took to list the prefix and
create every job, the time from the request to the completed batch, images per second end to end, and the
batch's counts (every photo must be SUCCEEDED; the run fails otherwise). Not part of ``make test`` (minutes).
Usage: ``python -m bench.ingest_e2e --photos 2000`` (writes bench/results/ingest-e2e.json and .md).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from bench.e2e_local import make_images
from local.dev import LocalStack, StackConfig
from runtime.common.aws import client
from runtime.common.batches import BatchState, BatchStore
from segscale_cli.client import ApiClient

RESULTS = Path(__file__).resolve().parent / "results"
SOURCE_BUCKET = "bench-camera-roll"


def photos(count: int, side: int) -> list[tuple[str, bytes]]:
    """``count`` distinct real-photo JPEGs with the long side ``side`` (make_images cuts them at its own size)."""
    out = []
    for name, data in make_images(count):
        img = Image.open(io.BytesIO(data))
        if max(img.size) != side:
            scale = side / max(img.size)
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=88)
        out.append((name, buf.getvalue()))
    return out


def follow(batches: BatchStore, batch_id: str, timeout_s: float) -> float | None:
    """Read the batch record (one GetItem a second: a cheap read that does not slow what is measured) until it is
    COMPLETED; returns when its ingestion finished (every job created), if seen."""
    deadline = time.monotonic() + timeout_s
    started, ingested_at = time.monotonic(), None
    while True:
        record = batches.get(batch_id)
        state = record.state if record is not None else None
        if ingested_at is None and state not in (None, BatchState.INGESTING):
            ingested_at = time.monotonic() - started
        if state == BatchState.COMPLETED:
            return ingested_at
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} not completed after {timeout_s:.0f} s: {record}")
        time.sleep(1.0)


def run(count: int, side: int, workers: int, timeout_s: float) -> dict[str, Any]:
    images = photos(count, side)
    with (
        tempfile.TemporaryDirectory() as logs,
        LocalStack(
            StackConfig(
                max_workers=workers,
                log_dir=Path(logs),
                settings={"ingest_sources": f"s3://{SOURCE_BUCKET}/photos/"},
            )
        ) as stack,
    ):
        s3 = client("s3", stack.settings)
        s3.create_bucket(Bucket=SOURCE_BUCKET)
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda p: s3.put_object(Bucket=SOURCE_BUCKET, Key=f"photos/{p[0]}", Body=p[1]), images))
        put_s = time.monotonic() - t0
        with ApiClient(stack.api_url, stack.api_key) as api:
            started = time.monotonic()
            created = api.request(
                "POST", "/v1/batches", json={"source": f"s3://{SOURCE_BUCKET}/photos/", "model": "person"}
            )
            ingested_s = follow(BatchStore.from_settings(stack.settings), created["batch_id"], timeout_s)
            total_s = time.monotonic() - started
            done = api.request("GET", f"/v1/batches/{created['batch_id']}", params={"limit": 1})
        launches = len(stack.pipe.launches) if stack.pipe else 0
    counts = done["counts"]
    report = {
        "photos": count,
        "long_side_px": side,
        "bytes": sum(len(d) for _, d in images),
        "max_workers": workers,
        "put_seconds": round(put_s, 1),
        "state": done["state"],
        "total": done["total"],
        "counts": counts,
        "ingest_seconds": None if ingested_s is None else round(ingested_s, 1),
        "request_to_completed_seconds": round(total_s, 1),
        "images_per_second": round(count / total_s, 2),
        "worker_launches": launches,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if done["total"] != count or counts.get("SUCCEEDED") != count:
        raise AssertionError(f"not every photo succeeded: {report}")
    return report


def markdown(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            "# S3 ingestion, end to end (`python -m bench.ingest_e2e`)",
            "",
            f"- Finished {r['finished_at']}, commit `{r['commit']}`, {r['machine']}, load average at the end "
            f"{r['load_average_at_end']}, `max_workers` {r['max_workers']}",
            f"- {r['photos']:,} distinct real photos (JPEG, long side {r['long_side_px']} px, "
            f"{r['bytes'] / 2**20:.1f} MiB) put under one prefix in {r['put_seconds']} s, then one "
            "`POST /v1/batches` with that prefix as its source",
            "",
            "| Figure | Value |",
            "|---|---:|",
            f"| batch state | {r['state']} |",
            f"| jobs / succeeded / failed | {r['total']:,} / {r['counts'].get('SUCCEEDED', 0):,} / "
            f"{r['counts'].get('FAILED', 0):,} |",
            f"| listing and job creation done after | {r['ingest_seconds']} s |",
            f"| request to completed batch | {r['request_to_completed_seconds']} s |",
            f"| images per second, end to end | {r['images_per_second']} |",
            f"| worker launches | {r['worker_launches']} |",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--side", type=int, default=480, help="long side of each photo in pixels")
    parser.add_argument("--workers", type=int, default=2, help="max_workers of the local stack")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest-e2e")
    args = parser.parse_args(argv)
    report = run(args.photos, args.side, args.workers, args.timeout_s)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
