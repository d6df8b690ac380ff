"""What the web console reads besides jobs: limits, result links as JSON, a batch's CSV and its report link."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from runtime.api.lambda_handler import make_handler
from runtime.api.limits import LAMBDA_MAX_BODY_BYTES
from runtime.api.routers.exports import CHUNK_CHARS, _csv_chunks
from runtime.common import keys
from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.results.report import build_report
from runtime.results.rows import RowFormat, card_classes
from tests.api.helpers import API_KEY, image_bytes, multipart
from tests.api.test_lambda import _context, _event

JSON = {"Accept": "application/json"}


def _upload(api: TestClient, names: list[str], **fields: str) -> dict:
    parts = [("file", name, image_bytes(seed=i)) for i, name in enumerate(names)]
    h, body = multipart(parts + [(k, None, v.encode()) for k, v in fields.items()])
    r = api.post("/v1/images", content=body, headers=h)
    assert r.status_code == 202, r.text
    return r.json()


def _succeed(store: JobStore, settings: Settings, batch_id: str, job_id: str, fraction: float) -> None:
    s3 = client("s3", settings)
    mask, overlay = keys.mask_key(batch_id, job_id), keys.overlay_key(batch_id, job_id)
    s3.put_object(Bucket=settings.bucket, Key=mask, Body=b"mask-bytes")
    s3.put_object(Bucket=settings.bucket, Key=overlay, Body=image_bytes("JPEG"))
    assert store.claim(job_id, "w1") is not None
    classes = {"person": {"pixels": 600, "fraction": fraction, "components": 1, "area_mm2": 37.5}}
    result = {"model": "person", "model_version": "1", "classes": classes, "timings_ms": {"total": 12.5}}
    assert store.complete(job_id, "w1", result=result, mask_key=mask, overlay_key=overlay)


def test_limits_are_the_settings_and_lambda_adds_its_payload_cap(api: TestClient, api_settings: Settings) -> None:
    limits = api.get("/v1/limits").json()
    assert limits["max_upload_bytes"] == api_settings.max_upload_bytes
    assert limits["max_files_per_request"] == api_settings.max_files_per_request
    assert limits["max_pixels"] == api_settings.max_pixels
    assert limits["presign_expiry_s"] == api_settings.presign_expiry_s
    assert limits["max_request_body_bytes"] is None  # uvicorn (Fargate): no cap beyond the per-file limits
    assert "image/jpeg" in limits["content_types"] and "image/svg+xml" not in limits["content_types"]
    assert api.get("/v1/limits", headers={"X-Api-Key": "wrong"}).status_code == 401

    out = make_handler(api_settings)(
        _event("function-url", "GET", "/v1/limits", {"x-api-key": API_KEY}, None), _context()
    )
    assert out["statusCode"] == 200, out
    lambda_limits = json.loads(out["body"])
    assert lambda_limits["max_request_body_bytes"] == LAMBDA_MAX_BODY_BYTES
    # Base64 makes 4 bytes of payload of every 3 body bytes: the cap must fit Lambda's 6 MB with room for headers.
    assert LAMBDA_MAX_BODY_BYTES * 4 / 3 < 6 * 1024 * 1024 - 32 * 1024


def test_result_links_as_json_or_redirect(api: TestClient, api_settings: Settings, store: JobStore) -> None:
    accepted = _upload(api, ["a.jpg"])
    batch_id, job_id = accepted["batch_id"], accepted["jobs"][0]["job_id"]
    assert api.get(f"/v1/jobs/{job_id}/overlay", headers=JSON).json()["type"].endswith("no_overlay")
    _succeed(store, api_settings, batch_id, job_id, 0.25)

    link = api.get(f"/v1/jobs/{job_id}/overlay", headers=JSON)
    assert link.status_code == 200 and link.headers["content-type"] == "application/json"
    body = link.json()
    assert body["expires_in_s"] == 300 and body["content_type"] == keys.OVERLAY_CONTENT_TYPE == "image/jpeg"
    assert httpx.get(body["url"]).content == image_bytes("JPEG")
    # Without the explicit Accept (curl, <img>, a followed link) it is still the redirect.
    for accept in ("*/*", "image/avif,image/webp,*/*", "text/html"):
        r = api.get(f"/v1/jobs/{job_id}/mask", headers={"Accept": accept}, follow_redirects=False)
        assert r.status_code == 307 and httpx.get(r.headers["location"]).content == b"mask-bytes"


def test_batch_csv_has_the_export_columns_and_one_row_per_job(
    api: TestClient, api_settings: Settings, store: JobStore
) -> None:
    hostile = 'a "quoted", <img src=x onerror=alert(1)>.jpg'
    accepted = _upload(api, ["first.jpg", hostile, "third.png"], mm_per_pixel="0.25")
    batch_id = accepted["batch_id"]
    first = accepted["jobs"][0]["job_id"]
    _succeed(store, api_settings, batch_id, first, 0.5)

    r = api.get(f"/v1/batches/{batch_id}/jobs.csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == f'attachment; filename="segscale-{batch_id}.csv"'
    rows = list(csv.DictReader(io.StringIO(r.text)))
    columns = RowFormat(card_classes(api_settings.models_dir)).columns
    assert tuple(rows[0].keys()) == columns  # the results task's export columns, in its order
    # One row per job. Jobs of one request share their created_at millisecond, and the batch index does not order
    # equal sort keys, so rows are matched by id, not by position.
    assert sorted(row["job_id"] for row in rows) == sorted(j["job_id"] for j in accepted["jobs"])
    by_id = {row["job_id"]: row for row in rows}
    done, second = by_id[first], by_id[accepted["jobs"][1]["job_id"]]
    assert done["status"] == "SUCCEEDED" and float(done["person_fraction"]) == 0.5
    assert float(done["person_area_mm2"]) == 37.5 and done["total_ms"] == "12.5"
    assert second["file_name"] == hostile and second["status"] == "QUEUED"


@pytest.mark.parametrize("batch_id", ["0" * 32, "not-an-id", "A" * 32])
def test_batch_csv_and_report_of_unknown_batch_are_404(api: TestClient, batch_id: str) -> None:
    for path in (f"/v1/batches/{batch_id}/jobs.csv", f"/v1/batches/{batch_id}/report"):
        r = api.get(path, headers=JSON)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("batch_not_found") or r.json()["type"].endswith("no_report")


def test_batch_csv_needs_the_key(api: TestClient) -> None:
    batch_id = _upload(api, ["a.jpg"])["batch_id"]
    r = api.get(f"/v1/batches/{batch_id}/jobs.csv", headers={"X-Api-Key": ""})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def test_csv_comes_in_chunks_that_join_into_one_document() -> None:
    row_format = RowFormat(["person"])
    jobs = [
        {"job_id": f"{i:032x}", "batch_id": "b" * 32, "status": "QUEUED", "file_name": "x" * 200} for i in range(900)
    ]
    chunks = list(_csv_chunks(iter(jobs), row_format))
    assert len(chunks) > 1 and all(len(c) < CHUNK_CHARS + 1000 for c in chunks)
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert [r["job_id"] for r in rows] == [j["job_id"] for j in jobs]


def test_report_link_once_the_results_task_wrote_it(api: TestClient, api_settings: Settings, store: JobStore) -> None:
    accepted = _upload(api, ["a.jpg"])
    batch_id, job_id = accepted["batch_id"], accepted["jobs"][0]["job_id"]
    missing = api.get(f"/v1/batches/{batch_id}/report", headers=JSON)
    assert missing.status_code == 404 and missing.json()["type"].endswith("no_report")
    assert f"report --batch {batch_id}" in missing.json()["detail"]

    _succeed(store, api_settings, batch_id, job_id, 0.3)
    build_report(api_settings, batch_id)  # what the results task's `report --batch` does
    link = api.get(f"/v1/batches/{batch_id}/report", headers=JSON).json()
    assert link["content_type"] == "text/html"
    page = httpx.get(link["url"])
    assert page.status_code == 200 and "a.jpg" in page.text and "<html" in page.text
    redirect = api.get(f"/v1/batches/{batch_id}/report", follow_redirects=False)
    assert redirect.status_code == 307 and httpx.get(redirect.headers["location"]).text == page.text


def test_openapi_documents_both_answers_of_the_link_routes(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs/{job_id}/{kind}", "/v1/batches/{batch_id}/report"):
        responses = paths[path]["get"]["responses"]
        assert "content" not in responses["307"] or not responses["307"]["content"]
        schema = responses["200"]["content"]["application/json"]["schema"]
        assert {"url", "expires_in_s", "content_type"} <= set(schema["properties"])
    csv_answers = paths["/v1/batches/{batch_id}/jobs.csv"]["get"]["responses"]
    assert "text/csv" in csv_answers["200"]["content"]
    assert set(csv_answers["404"]["content"]) == {"application/problem+json"}
