"""An export streams: ten times the jobs, the same peak Python memory (one page and one part, never the rows).

What is proven does not depend on the number of rows but on the ratio of rows to the page and the part: the
export reads ``PAGE_SIZE`` items at a time and uploads ``PART_SIZE`` bytes at a time, so with small pages and
parts a 3,000-row export is 30 pages and over 30 parts, and any memory held per row shows up ten times over
against the 300-row export. An export that kept every job, or all of its text, was run against these assertions
and fails them: holding the jobs fails every one, holding the text fails the second.

The moto server here runs in its own process (not the session's in-process server) so that tracemalloc sees
only our side: the objects moto keeps for the table and the uploaded export would otherwise count against us.
It is started with a small minimum part size, so the export really goes up in many multipart parts.

Marked slow: moto 5.2's DynamoDB response serializer costs about 2-3 ms per item and every GSI page re-sorts the
whole table, so writing and reading 3,300 items takes about 15 s of moto time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tracemalloc
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from local.procs import free_port
from local.resources import create_resources
from runtime.common import schema
from runtime.common.aws import client
from runtime.common.jobs import JobStore, serialize
from runtime.common.settings import Settings
from runtime.results.export import ExportSummary, export_jobs

JOBS = 3_000
PAGE_SIZE = 100  # DynamoDB items per page: 30 pages for JOBS
PART_SIZE = 16 * 1024  # bytes per multipart part (moto's minimum is lowered to it): about 35 parts for JOBS
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def own_moto() -> Iterator[str]:
    port = free_port()
    moto_server = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": str(PART_SIZE)}
    proc = subprocess.Popen(
        [moto_server, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # a loaded machine: do not turn a passed test into an error
            proc.kill()
            proc.wait()


def _job_item(batch: str, i: int) -> dict[str, Any]:
    """A lean job item (moto serializes every attribute value slowly, so fewer values keep the test fast)."""
    job_id = f"{i:032x}"
    item: dict[str, Any] = {
        schema.TABLE_PARTITION_KEY: f"job#{job_id}",
        "job_id": job_id,
        "batch_id": batch,
        "created_at": T0 + i,
        "updated_at": T0 + i + 500,
        "file_name": f"image-{i:05d}.jpg",
        "model": "person",
    }
    if i % 10:
        pixels = i % 3000
        item["status"] = "SUCCEEDED"
        item["result"] = {
            "model_version": "1.0",
            "classes": {
                "person": {"pixels": pixels, "fraction": pixels / 3072, "components": 1, "area_mm2": pixels / 100}
            },
            "timings_ms": {"total": 50.5},
        }
    else:
        item["status"] = "FAILED"
        item["error"] = "the image data is truncated or corrupt"
    return item


def _write_jobs(settings: Settings, batch: str, count: int) -> None:
    """BatchWriteItem through the store's serializer: the same item shape as JobStore writes, but fast."""
    ddb = client("dynamodb", settings)

    def write(start: int) -> None:
        items = [_job_item(batch, i) for i in range(start, min(count, start + 25))]
        request = {settings.table: [{"PutRequest": {"Item": serialize(item)}} for item in items]}
        while request:
            request = ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(0, count, 25)))


def _export_peak(endpoint: str, models_dir: Path, out_dir: Path, count: int) -> tuple[int, ExportSummary]:
    """Write ``count`` jobs into a fresh table, export them, return the peak traced memory growth."""
    res = create_resources(endpoint, prefix=f"m{uuid.uuid4().hex[:8]}")
    settings = res.settings(models_dir=models_dir)
    batch = uuid.uuid4().hex
    _write_jobs(settings, batch, count)
    store = JobStore.from_settings(settings)
    s3 = client("s3", settings)
    out_path = out_dir / f"jobs-{count}.csv"
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        with out_path.open("w", encoding="utf-8", newline="") as out:
            summary = export_jobs(
                settings, batch_id=batch, out=out, store=store, s3=s3, part_size=PART_SIZE, page_size=PAGE_SIZE
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert summary.rows == count and summary.counts == {"FAILED": count // 10, "SUCCEEDED": count - count // 10}
    assert out_path.stat().st_size == summary.bytes
    head = s3.head_object(Bucket=settings.bucket, Key=f"reports/{batch}/jobs.csv")
    assert head["ContentLength"] == summary.bytes and head["ETag"].strip('"').endswith(f"-{summary.parts}")
    with out_path.open(encoding="utf-8") as f:
        assert sum(1 for _ in f) == count + 1
    return peak - base, summary


@pytest.mark.slow
def test_export_memory_does_not_grow_with_the_number_of_jobs(own_moto: str, tmp_path: Path, models_dir: Path) -> None:
    small, small_summary = _export_peak(own_moto, models_dir, tmp_path, JOBS // 10)
    large, large_summary = _export_peak(own_moto, models_dir, tmp_path, JOBS)
    print(
        f"export of {JOBS // 10} jobs: {small_summary.bytes / 2**10:.0f} KiB, peak growth {small / 2**10:.0f} KiB; "
        f"of {JOBS} jobs: {large_summary.bytes / 2**10:.0f} KiB in {large_summary.parts} parts "
        f"({JOBS // PAGE_SIZE} pages), peak growth {large / 2**10:.0f} KiB"
    )
    assert large_summary.parts >= 10  # really streamed up in parts
    # Ten times the jobs, (about) the same memory: one page and one part, not the rows or the text. The peak varies
    # by a few parts' worth with where a part upload meets a page (measured: up to ~80 KiB), never with the rows.
    assert large < 1.5 * small + 8 * PART_SIZE
    # An export that held its text would grow by more than the extra text itself (a str per row, plus headers).
    assert large - small < (large_summary.bytes - small_summary.bytes) / 2
    # About twice what one page of 100 jobs and one part measure (1.6 MiB); holding 3,000 jobs takes over 5 MiB.
    assert large < 3 * 2**20
