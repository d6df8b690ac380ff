"""A client-chosen ``batch_id``: many requests (one upload session) fill one batch, on the moto server over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runtime.api.main import create_app
from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.api.helpers import AUTH, assert_nothing_stored, image_bytes, post_images, presigned_post, stored
from tests.api.test_faults import TwinArrives, _app, _assert_no_orphans


def _batch_id() -> str:
    return uuid.uuid4().hex


def test_two_requests_with_one_batch_id_make_one_batch(api: TestClient, api_settings: Settings) -> None:
    batch = _batch_id()
    r1 = post_images(api, image_bytes(seed=1), batch_id=batch)
    r2 = post_images(api, image_bytes(seed=2), image_bytes(seed=3), batch_id=batch, model="text")
    assert r1.status_code == r2.status_code == 202, (r1.text, r2.text)
    assert r1.json()["batch_id"] == r2.json()["batch_id"] == batch
    job_ids = {j["job_id"] for r in (r1, r2) for j in r.json()["jobs"]}
    assert len(job_ids) == 3

    view = api.get(f"/v1/batches/{batch}").json()
    assert view["total"] == 3 and view["counts"]["QUEUED"] == 3
    assert {j["job_id"] for j in view["jobs"]} == job_ids
    s = stored(api_settings)
    assert all(k.startswith(f"uploads/{batch}/") for k in s["objects"]) and len(s["objects"]) == 3
    assert sorted(jid for m in s["messages"] for jid in m["job_ids"]) == sorted(job_ids)

    # Without a batch_id nothing changes: a new batch per request.
    alone = post_images(api, image_bytes(seed=4))
    assert alone.status_code == 202 and alone.json()["batch_id"] != batch
    assert api.get(f"/v1/batches/{batch}").json()["total"] == 3


@pytest.mark.parametrize("bad", ["", "A" * 32, "a" * 31, "a" * 33, "../" + "a" * 29, "g" * 32])
def test_malformed_batch_id_is_422_and_stores_nothing(api: TestClient, api_settings: Settings, bad: str) -> None:
    r = post_images(api, image_bytes(), batch_id=bad)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("invalid_batch_id") and "batch_id" in r.json()["detail"]
    r = api.post("/v1/uploads", json={"files": [{"file_name": "a.png"}], "batch_id": bad})
    assert r.status_code == 422 and "batch_id" in r.json()["detail"]
    assert_nothing_stored(api_settings)


def test_idempotent_retry_with_a_batch_id(api: TestClient, api_settings: Settings) -> None:
    batch, data = _batch_id(), image_bytes(seed=5)
    first = post_images(api, data, headers={"Idempotency-Key": "session-1"}, batch_id=batch)
    again = post_images(api, data, headers={"Idempotency-Key": "session-1"}, batch_id=batch)
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    assert api.get(f"/v1/batches/{batch}").json()["total"] == 1

    other = _batch_id()
    moved = post_images(api, data, headers={"Idempotency-Key": "session-1"}, batch_id=other)
    assert moved.status_code == 409 and moved.json()["type"].endswith("idempotency_key_reused")
    dropped = post_images(api, data, headers={"Idempotency-Key": "session-1"})  # no batch_id: also different
    assert dropped.status_code == 409
    assert api.get(f"/v1/batches/{other}").status_code == 404
    s = stored(api_settings)
    assert len(s["jobs"]) == 1 and len(s["objects"]) == 1


def test_presigned_uploads_join_a_batch(api: TestClient, api_settings: Settings) -> None:
    batch = _batch_id()
    direct = post_images(api, image_bytes(seed=6), batch_id=batch)
    assert direct.status_code == 202
    presigned = []
    for n in (1, 2):
        r = api.post("/v1/uploads", json={"files": [{"file_name": f"big{i}.png"} for i in range(n)], "batch_id": batch})
        assert r.status_code == 201, r.text
        assert r.json()["batch_id"] == batch and r.json()["submit_url"] == f"/v1/batches/{batch}/submit"
        presigned.extend(r.json()["jobs"])
    assert api.get(f"/v1/batches/{batch}").json()["counts"]["AWAITING_UPLOAD"] == 3

    for i, job in enumerate(presigned):
        assert presigned_post(job, image_bytes("PNG", (20, 10), seed=i)).status_code == 204
    r = api.post(f"/v1/batches/{batch}/submit")  # one submit queues the files of both presign requests
    assert r.status_code == 202, r.text
    assert {j["status"] for j in r.json()["jobs"]} == {"QUEUED"} and len(r.json()["jobs"]) == 4
    view = api.get(f"/v1/batches/{batch}").json()
    assert view["total"] == 4 and view["counts"]["QUEUED"] == 4 and view["counts"]["AWAITING_UPLOAD"] == 0
    queued = sorted(jid for m in stored(api_settings)["messages"] for jid in m["job_ids"])
    assert queued == sorted([direct.json()["jobs"][0]["job_id"], *(j["job_id"] for j in presigned)])


def test_a_failed_request_leaves_no_failed_jobs_in_the_clients_batch(api_settings: Settings) -> None:
    """A 503 part way must not leave FAILED leftovers that would count against the client's batch."""
    batch = _batch_id()
    log: list[str] = []
    with _app(api_settings, log, dynamodb=("put_item", 2)) as c:
        r = post_images(c, image_bytes(seed=1), image_bytes(seed=2), image_bytes(seed=3), batch_id=batch)
        assert r.status_code == 503
        assert c.get(f"/v1/batches/{batch}").status_code == 404
    s = _assert_no_orphans(api_settings)
    assert s["jobs"] == {} and s["objects"] == [] and s["messages"] == []


def test_concurrent_twin_in_a_client_batch_leaves_one_job(api_settings: Settings) -> None:
    batch, data = _batch_id(), image_bytes(seed=8)
    twin_answer: dict[str, Any] = {}

    def twin() -> None:
        twin_client = TestClient(app, headers=AUTH)
        twin_answer["r"] = post_images(twin_client, data, headers={"Idempotency-Key": "twin"}, batch_id=batch)

    ddb = TwinArrives(client("dynamodb", api_settings), twin)
    app = create_app(api_settings, dynamodb=ddb)
    with TestClient(app, headers=AUTH) as c:
        first = post_images(c, data, headers={"Idempotency-Key": "twin"}, batch_id=batch)
        view = c.get(f"/v1/batches/{batch}").json()
    assert ddb.fired and first.status_code == 202 and first.json() == twin_answer["r"].json()
    assert view["total"] == 1 and view["counts"]["QUEUED"] == 1
    s = _assert_no_orphans(api_settings)
    assert list(s["jobs"]) == [first.json()["jobs"][0]["job_id"]] and len(s["objects"]) == 1
    assert [m["job_ids"] for m in s["messages"]] == [[first.json()["jobs"][0]["job_id"]]]
