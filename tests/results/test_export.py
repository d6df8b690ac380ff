"""Export against a real moto server: exact rows for a mixed batch, the S3 copy, time ranges, bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.results import rows
from runtime.results.export import export_jobs
from runtime.results.rows import RowFormat, card_classes
from tests.results.conftest import Clock, new_job, person_result

T0 = 1_700_000_000_000


def mixed_batch(store: JobStore, clock: Clock) -> tuple[str, str, str, str]:
    """One succeeded (with a class no card knows), one failed, one running job, at known times."""
    batch = uuid.uuid4().hex
    clock.now = T0
    ok = new_job(store, batch, file_name='ok, "quoted".jpg', mm_per_pixel=0.5)
    clock.now = T0 + 1000
    bad = new_job(store, batch, file_name="bad.png", size_bytes=7)
    clock.now = T0 + 2000
    running = new_job(store, batch, file_name="slow.jpg", model="text")
    clock.now = T0 + 3000
    store.claim(ok, "w1")
    clock.now = T0 + 5000
    result = person_result(100, mm_per_pixel=0.5)
    result["classes"]["cat"] = {"pixels": 30, "fraction": 0.01, "components": 2}
    store.complete(ok, "w1", result=result, mask_key="m.png", overlay_key="o.png")
    clock.now = T0 + 6000
    store.fail_queued(bad, "the image data is truncated", error_class="corrupt_image")
    clock.now = T0 + 7000
    store.claim(running, "w2")
    return batch, ok, bad, running


def expected_csv_rows(batch: str, ok: str, bad: str, running: str) -> list[dict[str, str]]:
    empty_classes = {
        f"{c}_{f}": "" for c in ("person", "text") for f in ("pixels", "fraction", "components", "area_mm2")
    }
    no_timings = {f"{t}_ms": "" for t in rows.TIMING_FIELDS}
    common = {"batch_id": batch, "image_format": "JPEG", "width": "64", "height": "48", "mm_per_pixel": ""}
    return [
        {
            **common,
            **empty_classes,
            "job_id": ok,
            "file_name": 'ok, "quoted".jpg',
            "status": "SUCCEEDED",
            "size_bytes": "1000",
            "model": "person",
            "model_version": "1.0",
            "mm_per_pixel": "0.5",
            "attempts": "1",
            "created_at": str(T0),
            "started_at": str(T0 + 3000),
            "finished_at": str(T0 + 5000),
            "updated_at": str(T0 + 5000),
            "wait_ms": "3000",
            "turnaround_ms": "5000",
            "person_pixels": "100",
            "person_fraction": repr(100 / 3072),
            "person_components": "1",
            "person_area_mm2": "25",  # DynamoDB numbers: 25.0 comes back as 25
            "download_ms": "1.5",
            "decode_ms": "2",
            "preprocess_ms": "3",
            "inference_ms": "40",
            "postprocess_ms": "4",
            "upload_ms": "6",
            "total_ms": "60",
            "source_uri": "",
            "error_class": "",
            "error": "",
            "extra": '{"classes":{"cat":{"components":2,"fraction":0.01,"pixels":30}}}',
        },
        {
            **common,
            **empty_classes,
            **no_timings,
            "job_id": bad,
            "file_name": "bad.png",
            "status": "FAILED",
            "size_bytes": "7",
            "model": "person",
            "model_version": "",
            "attempts": "0",
            "created_at": str(T0 + 1000),
            "started_at": "",
            "finished_at": str(T0 + 6000),
            "updated_at": str(T0 + 6000),
            "wait_ms": "",
            "turnaround_ms": "5000",
            "source_uri": "",
            "error_class": "corrupt_image",
            "error": "the image data is truncated",
            "extra": "",
        },
        {
            **common,
            **empty_classes,
            **no_timings,
            "job_id": running,
            "file_name": "slow.jpg",
            "status": "RUNNING",
            "size_bytes": "1000",
            "model": "text",
            "model_version": "",
            "attempts": "1",
            "created_at": str(T0 + 2000),
            "started_at": str(T0 + 7000),
            "finished_at": "",
            "updated_at": str(T0 + 7000),
            "wait_ms": "5000",
            "turnaround_ms": "",
            "source_uri": "",
            "error_class": "",
            "error": "",
            "extra": "",
        },
    ]


def s3_text(settings: Settings, key: str) -> tuple[str, str]:
    obj = client("s3", settings).get_object(Bucket=settings.bucket, Key=key)
    return obj["Body"].read().decode("utf-8"), obj["ContentType"]


def test_csv_export_of_a_mixed_batch_has_exact_rows(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    batch, ok, bad, running = mixed_batch(store, clock)
    local = io.StringIO()
    summary = export_jobs(rsettings, batch_id=batch, fmt="csv", out=local, store=store, page_size=2)
    rows = list(csv.DictReader(io.StringIO(local.getvalue())))
    assert rows == expected_csv_rows(batch, ok, bad, running)
    assert list(rows[0]) == list(RowFormat(["person", "text"]).columns)
    text, content_type = s3_text(rsettings, f"reports/{batch}/jobs.csv")
    assert text == local.getvalue() and content_type.startswith("text/csv")
    assert summary.rows == 3 and summary.counts == {"FAILED": 1, "RUNNING": 1, "SUCCEEDED": 1}
    assert summary.s3_uri == f"s3://{rsettings.bucket}/reports/{batch}/jobs.csv"


def test_jsonl_export_has_the_same_rows_typed(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    batch, ok, bad, running = mixed_batch(store, clock)
    export_jobs(rsettings, batch_id=batch, fmt="jsonl", store=store)
    text, content_type = s3_text(rsettings, f"reports/{batch}/jobs.jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["job_id"] for r in rows] == [ok, bad, running] and content_type.startswith("application/x-ndjson")
    first = rows[0]
    assert first["person_area_mm2"] == 25 and first["person_fraction"] == 100 / 3072 and first["text_pixels"] is None
    assert first["extra"] == {"classes": {"cat": {"pixels": 30, "fraction": 0.01, "components": 2}}}
    assert rows[1]["error"] == "the image data is truncated" and rows[1]["total_ms"] is None


def test_time_range_export_uses_updated_at(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    batch, ok, bad, _running = mixed_batch(store, clock)
    summary = export_jobs(rsettings, since_ms=T0 + 4000, until_ms=T0 + 6500, fmt="jsonl", store=store)
    text, _ = s3_text(rsettings, f"reports/range-{T0 + 4000}-{T0 + 6500}/jobs.jsonl")
    assert sorted(json.loads(line)["job_id"] for line in text.splitlines()) == sorted([ok, bad])
    assert summary.rows == 2 and batch in text


def test_columns_come_from_the_cards_then_the_callers_classes(rsettings: Settings) -> None:
    assert card_classes(rsettings.models_dir) == ["person", "text"]
    assert card_classes(rsettings.models_dir / "absent") == []
    cols = RowFormat([*card_classes(rsettings.models_dir), "cat", "person"]).columns
    assert [c for c in cols if c.endswith("_pixels")] == ["person_pixels", "text_pixels", "cat_pixels"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either a batch id or a time range"),
        ({"batch_id": "b", "since_ms": 1}, "either a batch id or a time range"),
        ({"batch_id": "../etc"}, "not a batch id"),
        ({"since_ms": 10, "until_ms": 5}, "after --until"),
        ({"batch_id": "b" * 32, "fmt": "xml"}, "unknown format"),
    ],
)
def test_bad_requests_are_refused_before_writing(
    rsettings: Settings, store: JobStore, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        export_jobs(rsettings, store=store, **kwargs)
    listed = client("s3", rsettings).list_objects_v2(Bucket=rsettings.bucket, Prefix="reports/")
    assert listed.get("KeyCount", 0) == 0


def test_cli_export_to_stdout(rsettings: Settings, store: JobStore, clock: Clock, resources: Any) -> None:
    batch, ok, bad, running = mixed_batch(store, clock)
    env = {**os.environ, **resources.env(), "SEGSCALE_MODELS_DIR": str(rsettings.models_dir)}
    cmd = [sys.executable, "-m", "runtime.results", "export", "--batch", batch, "--out", "-", "--classes", "cat"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["job_id"] for r in rows] == [ok, bad, running]
    assert rows[0]["cat_pixels"] == "30" and rows[0]["extra"] == ""
    assert json.loads(out.stderr.strip().splitlines()[-1])["rows"] == 3
    bad_time = subprocess.run(
        [sys.executable, "-m", "runtime.results", "export", "--since", "yesterday"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_time.returncode == 2 and "ISO 8601" in bad_time.stderr


FORMULAS = ['=HYPERLINK("http://evil.example","x").jpg', "+1+1.png", "-2.jpg", "@SUM(A1).gif", "\tx.jpg", "\rx.jpg"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_formula_prefixed_names_are_neutralised(rsettings: Settings, store: JobStore, fmt: str) -> None:
    """OWASP CSV injection: a leading =, +, -, @, tab or CR gets a ' so a spreadsheet shows text, not a formula."""
    batch = uuid.uuid4().hex
    for name in [*FORMULAS, "plain-name.jpg"]:
        new_job(store, batch, file_name=name, size_bytes=5)
    out = io.StringIO()
    export_jobs(rsettings, batch_id=batch, fmt=fmt, out=out, store=store)  # type: ignore[arg-type]
    if fmt == "csv":
        written = list(csv.DictReader(io.StringIO(out.getvalue())))
    else:
        written = [json.loads(line) for line in out.getvalue().splitlines()]
    names = sorted(r["file_name"] for r in written)
    assert names == sorted(["'" + n for n in FORMULAS] + ["plain-name.jpg"])
    assert {str(r["size_bytes"]) for r in written} == {"5"}  # numbers are not touched
