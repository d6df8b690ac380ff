"""Batch lifecycle through the HTTP API: create with a webhook (SSRF refused), fill, seal, complete, attempts shown."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from local.webhooks import Reply, WebhookReceiver
from runtime.api.main import create_app
from runtime.api.multipart import MAX_FIELD_BYTES
from runtime.common.aws import client
from runtime.common.batches import BatchStore, Work
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.common.webhooks import MAX_URL_CHARS
from runtime.results.notify import Notifier
from tests.api.helpers import AUTH, assert_nothing_stored, image_bytes, post_images, stored


@pytest.fixture()
def local_api(api_settings: Settings) -> Iterator[TestClient]:
    """The API as the local stack runs it: webhooks to http://127.0.0.1 allowed."""
    settings = api_settings.model_copy(update={"webhook_local_http": True})
    with TestClient(create_app(settings), headers=AUTH) as c:
        yield c


def finish_all(settings: Settings, batch_id: str) -> None:
    """What a worker does to every job of the batch (with the same counting hook the worker's store has)."""
    store = JobStore.from_settings(settings)
    for job in store.iter_batch(batch_id):
        assert store.claim(job["job_id"], "w") is not None
        assert store.complete(job["job_id"], "w", result={}, mask_key=None, overlay_key=None)


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::ffff:172.16.0.1]/hook",
        "http://93.184.216.34/hook",
        "https://user:secret@93.184.216.34/hook",
    ],
)
def test_a_notify_url_inside_a_network_is_a_422_and_creates_nothing(
    api: TestClient, api_settings: Settings, url: str
) -> None:
    batch_id = uuid.uuid4().hex
    r = api.post("/v1/batches", json={"batch_id": batch_id, "notify_url": url})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "urn:segscale:problem:invalid_notify_url"
    r = post_images(api, image_bytes(), notify_url=url)
    assert r.status_code == 422 and r.json()["type"].endswith("invalid_notify_url")
    assert stored(api_settings)["items"] == []


# Refused from their text alone (no DNS lookup): what a fuzzer sends most.
NOT_URLS = [
    "",
    "hooks",
    "https://",
    "https://a b.com/",
    "https://hooks.example.com/é",
    "https://hooks/x",
    "https://hooks.example.com/%zz",
    "https://" + "a" * MAX_URL_CHARS,
]


def test_batch_fields_out_of_bounds_are_422_and_store_nothing(api: TestClient, api_settings: Settings) -> None:
    for url in NOT_URLS:
        for r in (
            api.post("/v1/batches", json={"notify_url": url}),
            api.post("/v1/uploads", json={"files": [{"file_name": "a.jpg"}], "notify_url": url}),
            post_images(api, image_bytes(), notify_url=url),
        ):
            assert r.status_code in (413, 422), (url[:40], r.text)  # 413: over a form field's 1 KiB
            assert r.json()["type"].endswith(("invalid_notify_url", "invalid_request", "field_too_large")), r.text
    for body in ({"notify_url": 5}, {"batch_id": "A" * 32}, {"batch_id": "a" * 31}, {"other": 1}):
        r = api.post("/v1/batches", json=body)
        assert r.status_code == 422 and r.json()["type"].endswith("invalid_request"), (body, r.text)
    for value in ("1", "yes", "", "TRUE"):  # a boolean is spelled true or false, as the document says
        r = post_images(api, image_bytes(), seal=value)
        assert r.status_code == 422 and r.json()["type"].endswith("invalid_field"), (value, r.text)
        r = api.post(f"/v1/batches/{uuid.uuid4().hex}/submit", params={"seal": value})
        assert r.status_code == 422 and "seal" in r.json()["detail"], (value, r.text)
    r = api.post("/v1/batches", content=b'{"notify_url": "\xff"}', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["type"].endswith("malformed_body"), r.text
    assert_nothing_stored(api_settings)


def test_openapi_states_the_batch_fields(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    url = {"type": "string", "format": "uri", "maxLength": MAX_URL_CHARS}
    assert schemas["CreateBatch"]["properties"]["notify_url"]["anyOf"][0] == url
    assert schemas["CreateBatch"]["properties"]["batch_id"]["anyOf"][0]["pattern"] == "^[0-9a-f]{32}$"
    assert schemas["UploadRequest"]["properties"]["notify_url"]["anyOf"][0] == url
    form = paths["/v1/images"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {k: form["notify_url"][k] for k in url} == {**url, "maxLength": MAX_FIELD_BYTES}
    assert form["seal"]["type"] == "boolean"
    submit = {p["name"]: p["schema"] for p in paths["/v1/batches/{batch_id}/submit"]["post"]["parameters"]}
    assert submit["seal"]["type"] == "boolean"
    seal = {p["name"]: p["schema"] for p in paths["/v1/batches/{batch_id}/seal"]["post"]["parameters"]}
    assert seal["batch_id"]["pattern"] == "^[0-9a-f]{32}$"
    statuses = {
        ("post", "/v1/batches"): {"201", "202", "400", "401", "403", "404", "408", "409", "413", "422", "500", "503"},
        ("post", "/v1/batches/{batch_id}/seal"): {"200", "401", "404", "408", "413", "422", "500", "503"},
        ("post", "/v1/uploads"): {"201", "400", "401", "404", "408", "409", "413", "422", "500", "503"},
    }
    for (method, path), codes in statuses.items():
        assert set(paths[path][method]["responses"]) == codes, (method, path)


def test_create_fill_seal_and_refuse_more(local_api: TestClient, api_settings: Settings) -> None:
    url = "http://127.0.0.1:9/hook"
    r = local_api.post("/v1/batches", json={"notify_url": url})
    assert r.status_code == 201, r.text
    created = r.json()
    batch_id = created["batch_id"]
    assert created["state"] == "OPEN" and created["notify_url"] == url and created["total"] == 0
    again = local_api.post("/v1/batches", json={"batch_id": batch_id, "notify_url": url})
    assert again.status_code == 201 and again.json()["opened_at"] == created["opened_at"]  # a retry
    other = local_api.post("/v1/batches", json={"batch_id": batch_id, "notify_url": "http://127.0.0.1:10/x"})
    assert other.status_code == 409 and other.json()["type"].endswith("batch_conflict")

    assert post_images(local_api, image_bytes(seed=1), image_bytes(seed=2), batch_id=batch_id).status_code == 202
    view = local_api.get(f"/v1/batches/{batch_id}").json()
    assert view["progress"] == {"total": 2, "done": 0, "succeeded": 0, "failed": 0}
    assert view["total"] == 2 and not view["sealed"]

    sealed = local_api.post(f"/v1/batches/{batch_id}/seal")
    assert sealed.status_code == 200 and sealed.json()["state"] == "SEALED" and sealed.json()["sealed_at"]
    assert local_api.post(f"/v1/batches/{batch_id}/seal").json()["sealed_at"] == sealed.json()["sealed_at"]
    objects = stored(api_settings)["objects"]
    late = post_images(local_api, image_bytes(seed=3), batch_id=batch_id)
    assert late.status_code == 409 and late.json()["type"].endswith("batch_sealed")
    assert stored(api_settings)["objects"] == objects  # nothing of the refused request was stored
    assert local_api.get(f"/v1/batches/{batch_id}").json()["progress"]["total"] == 2


def test_sealing_after_the_last_job_completes_the_batch(api: TestClient, api_settings: Settings) -> None:
    batch_id = post_images(api, image_bytes(seed=1), image_bytes(seed=2)).json()["batch_id"]
    finish_all(api_settings, batch_id)
    assert api.get(f"/v1/batches/{batch_id}").json()["state"] == "OPEN"
    view = api.post(f"/v1/batches/{batch_id}/seal").json()
    assert view["state"] == "COMPLETED" and view["completed"] and view["completed_at"] >= view["sealed_at"]
    assert view["progress"] == {"total": 2, "done": 2, "succeeded": 2, "failed": 0}
    assert view["event_id"]
    record = BatchStore.from_settings(api_settings).get(batch_id)
    assert record is not None and record.work == Work.NOTIFY  # the next reconcile pass sends its notifications


def test_one_request_can_create_and_seal_its_batch(api: TestClient, api_settings: Settings) -> None:
    r = post_images(api, image_bytes(seed=1), seal="true")
    assert r.status_code == 202 and r.json()["sealed"] is True
    batch_id = r.json()["batch_id"]
    assert api.get(f"/v1/batches/{batch_id}").json()["state"] == "SEALED"
    finish_all(api_settings, batch_id)  # the worker's store completes it with the last job
    assert api.get(f"/v1/batches/{batch_id}").json()["state"] == "COMPLETED"
    bad = post_images(api, image_bytes(seed=2), seal="maybe")
    assert bad.status_code == 422 and bad.json()["type"].endswith("invalid_field")


def test_sealing_an_unknown_batch_is_a_404(api: TestClient) -> None:
    assert api.post(f"/v1/batches/{uuid.uuid4().hex}/seal").json()["type"].endswith("batch_not_found")
    assert api.post("/v1/batches/not-an-id/seal").status_code == 404


def test_presigned_uploads_take_a_notify_url_and_submit_can_seal(local_api: TestClient, api_settings: Settings) -> None:
    r = local_api.post("/v1/uploads", json={"files": [{"file_name": "a.jpg"}], "notify_url": "http://127.0.0.1:9/hook"})
    assert r.status_code == 201, r.text
    batch_id, (job,) = r.json()["batch_id"], r.json()["jobs"]
    client("s3", api_settings).put_object(
        Bucket=api_settings.bucket, Key=f"uploads/{batch_id}/{job['job_id']}.bin", Body=image_bytes()
    )
    submitted = local_api.post(f"/v1/batches/{batch_id}/submit", params={"seal": "true"})
    assert submitted.status_code == 202 and submitted.json()["sealed"] is True
    view = local_api.get(f"/v1/batches/{batch_id}").json()
    assert view["state"] == "SEALED" and view["notify_url"] == "http://127.0.0.1:9/hook"
    assert view["progress"]["total"] == 1


def test_every_webhook_attempt_is_shown(local_api: TestClient, api_settings: Settings) -> None:
    with WebhookReceiver(respond=lambda n: Reply(500) if n == 1 else Reply(204)) as receiver:
        batch_id = local_api.post("/v1/batches", json={"notify_url": receiver.url}).json()["batch_id"]
        post_images(local_api, image_bytes(), batch_id=batch_id, seal="true")
        finish_all(api_settings, batch_id)
        settings = api_settings.model_copy(update={"webhook_local_http": True, "export_on_completion": False})
        secret = client("secretsmanager", settings).create_secret(Name=uuid.uuid4().hex, SecretString="s")["ARN"]
        settings = settings.model_copy(update={"webhook_secret_arn": secret})
        notifier = Notifier.from_settings(settings)
        notifier.run(batch_id)
        pending = local_api.get(f"/v1/batches/{batch_id}").json()["webhook"]
        assert pending["state"] == "pending" and pending["next_attempt_at"] > pending["last_attempt_at"]
        notifier.clock = lambda: pending["next_attempt_at"] + 1
        notifier.run(batch_id)
    webhook = local_api.get(f"/v1/batches/{batch_id}").json()["webhook"]
    assert webhook["state"] == "delivered" and webhook["attempt_count"] == 2
    assert [(a["ok"], a["status"]) for a in webhook["attempts"]] == [(False, 500), (True, 204)]
    assert webhook["attempts"][0]["error"] == "HTTP 500"
