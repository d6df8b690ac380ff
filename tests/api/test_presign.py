"""Presigned uploads: POST /v1/uploads, a presigned POST to S3 (the moto server), POST /v1/batches/{id}/submit."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from runtime.api.main import create_app
from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.api.helpers import AUTH, image_bytes, presigned_post, stored


def _put(job: dict, data: bytes) -> None:
    r = presigned_post(job, data)
    assert r.status_code == 204, r.text


def policy(job: dict) -> dict:
    return json.loads(base64.b64decode(job["fields"]["policy"]))


def _presign(api: TestClient, n: int = 2, **extra: object) -> dict:
    r = api.post("/v1/uploads", json={"files": [{"file_name": f"big{i}.png"} for i in range(n)], **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_presign_post_submit_queues_jobs(api: TestClient, api_settings: Settings) -> None:
    batch = _presign(api, 2, model="text", mm_per_pixel=0.1)
    assert batch["submit_url"] == f"/v1/batches/{batch['batch_id']}/submit" and batch["expires_in_s"] == 900
    assert all(j["method"] == "POST" for j in batch["jobs"])
    for job in batch["jobs"]:
        assert job["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"  # SigV4
        conditions = policy(job)["conditions"]
        # S3 itself refuses a file over the limit (moto does not check: submit does, below).
        assert ["content-length-range", 1, api_settings.max_upload_bytes] in conditions
        assert {"Content-Type": "application/octet-stream"} in conditions
        assert {"key": stored_key(api_settings, job["job_id"])} in conditions
    statuses = {j["status"]["S"] for j in stored(api_settings)["jobs"].values()}
    assert statuses == {"AWAITING_UPLOAD"}
    _put(batch["jobs"][0], image_bytes("PNG", (30, 20)))
    _put(batch["jobs"][1], image_bytes("JPEG", (16, 16)))
    r = api.post(batch["submit_url"])
    assert r.status_code == 202, r.text
    assert [j["status"] for j in r.json()["jobs"]] == ["QUEUED", "QUEUED"]
    s = stored(api_settings)
    assert len(s["messages"]) == 1 and sorted(s["messages"][0]["job_ids"]) == sorted(s["jobs"])
    first = s["jobs"][batch["jobs"][0]["job_id"]]
    assert first["image_format"]["S"] == "PNG" and first["width"]["N"] == "30" and first["model"]["S"] == "text"
    assert "enqueued_at" in first
    # Submitting again changes nothing and sends nothing.
    again = api.post(batch["submit_url"])
    assert again.status_code == 202 and stored(api_settings)["messages"] == []


def test_submit_with_a_missing_object_queues_nothing_then_succeeds(api: TestClient, api_settings: Settings) -> None:
    batch = _presign(api, 2)
    _put(batch["jobs"][0], image_bytes())
    r = api.post(batch["submit_url"])
    assert r.status_code == 409 and r.json()["errors"][0]["type"] == "not_uploaded"
    assert r.json()["errors"][0]["index"] == 1
    s = stored(api_settings)
    assert s["messages"] == [] and {j["status"]["S"] for j in s["jobs"].values()} == {"AWAITING_UPLOAD"}
    _put(batch["jobs"][1], image_bytes())
    assert api.post(batch["submit_url"]).status_code == 202


@pytest.mark.parametrize(
    ("data", "status", "kind"),
    [
        (b"%PDF-1.4 not an image" * 10, 415, "unsupported_media_type"),
        (b"", 422, "empty_file"),  # S3 refuses it (content-length-range starts at 1); moto stores it
        (image_bytes("PNG", (64, 64))[:20], 422, "corrupt_image"),
    ],
    ids=["pdf", "empty", "cut-header"],
)
def test_submit_refuses_bad_objects(
    api: TestClient, api_settings: Settings, data: bytes, status: int, kind: str
) -> None:
    batch = _presign(api, 1)
    job = batch["jobs"][0]
    _put(job, data)
    r = api.post(batch["submit_url"])
    assert r.status_code == status, r.text
    assert r.json()["errors"][0]["type"] == kind
    s = stored(api_settings)
    assert s["messages"] == [] and s["jobs"][job["job_id"]]["status"]["S"] == "AWAITING_UPLOAD"


def test_submit_refuses_object_over_the_limit_and_pixel_bombs(api_settings: Settings) -> None:
    settings = api_settings.model_copy(update={"max_upload_bytes": 10_000, "max_pixels": 10_000})
    with TestClient(create_app(settings), headers=AUTH) as c:
        batch = _presign(c, 2)
        _put(batch["jobs"][0], image_bytes("BMP", (64, 64)))  # 12 KB
        _put(batch["jobs"][1], image_bytes("JPEG", (200, 100)))  # 20,000 pixels in 6.5 KB
        r = c.post(batch["submit_url"])
    assert r.status_code == 413
    assert [e["type"] for e in r.json()["errors"]] == ["file_too_large", "too_many_pixels"]
    assert stored(api_settings)["messages"] == []


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        ({"files": []}, 422, "invalid_request"),
        ({"files": [{"file_name": "a.jpg"}], "model": "nope"}, 422, "unknown_model"),
        ({"files": [{"file_name": "a.jpg"}], "mm_per_pixel": -2}, 422, "invalid_request"),
        ({"files": [{"file_name": "a.jpg"}], "mm_per_pixel": 0}, 422, "invalid_request"),
        ({"files": [{"file_name": "a.jpg", "size_bytes": 60 * 1024 * 1024}]}, 413, "file_too_large"),
        ({"files": [{"file_name": f"{i}.jpg"} for i in range(51)]}, 413, "too_many_files"),
        ({"files": [{"file_name": "a.jpg"}], "extra": 1}, 422, "invalid_request"),
    ],
    ids=["no-files", "unknown-model", "negative-mm", "zero-mm", "too-big", "too-many", "unknown-field"],
)
def test_bad_upload_requests(api: TestClient, api_settings: Settings, body: dict, status: int, kind: str) -> None:
    r = api.post("/v1/uploads", json=body)
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"urn:segscale:problem:{kind}"
    assert stored(api_settings)["items"] == []


def test_nan_mm_per_pixel_in_json_is_422(api: TestClient, api_settings: Settings) -> None:
    r = api.post(
        "/v1/uploads",
        content=b'{"files": [{"file_name": "a.jpg"}], "mm_per_pixel": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert stored(api_settings)["items"] == []


@pytest.mark.parametrize("batch_id", ["0" * 32, "not-an-id", "../" * 5])
def test_submit_unknown_batch_is_404(api: TestClient, batch_id: str) -> None:
    r = api.post(f"/v1/batches/{batch_id}/submit")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def stored_key(settings: Settings, job_id: str) -> str:
    return stored(settings)["jobs"][job_id]["input_key"]["S"]


def test_submit_pins_each_object_it_checked(api: TestClient, api_settings: Settings) -> None:
    """The job records the ETag submit checked; the worker reads that object only (tests/worker/test_inputs.py)."""
    batch = _presign(api, 1)
    job = batch["jobs"][0]
    _put(job, image_bytes("PNG", (30, 20)))
    assert api.post(batch["submit_url"]).status_code == 202
    s3 = client("s3", api_settings)
    item = stored(api_settings)["jobs"][job["job_id"]]
    head = s3.head_object(Bucket=api_settings.bucket, Key=item["input_key"]["S"])
    assert item["input_etag"]["S"] == head["ETag"]
