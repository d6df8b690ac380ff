"""Per-client API keys: stored as hashes only, revoked at once, rotated with grace, and each client confined to its
own jobs and batches (another client's ids are a 404 word for word like unknown ids); the bootstrap key is the
admin and sees everything. Against the real app over the moto server."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runtime.api.lambda_handler import make_handler
from runtime.api.main import create_app
from runtime.common import keys
from runtime.common.aws import client
from runtime.common.batches import BatchStore
from runtime.common.jobs import JobStore, NewJob
from runtime.common.settings import Settings
from tests.api.helpers import API_KEY, AUTH, image_bytes, post_images
from tests.api.test_lambda import _context, _event


def new_key(api: TestClient, client_name: str) -> dict[str, Any]:
    r = api.post("/v1/admin/keys", json={"client": client_name})
    assert r.status_code == 201, r.text
    return dict(r.json())


def as_key(key: str) -> dict[str, str]:
    return {"X-Api-Key": key}


@pytest.fixture()
def two_clients(api: TestClient) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    yield as_key(new_key(api, "acme")["key"]), as_key(new_key(api, "globex")["key"])


def _items(settings: Settings) -> list[dict[str, Any]]:
    return list(client("dynamodb", settings).scan(TableName=settings.table)["Items"])


def test_a_key_is_shown_once_and_stored_only_as_its_hash(api: TestClient, api_settings: Settings) -> None:
    made = new_key(api, "acme")
    key, key_id = made["key"], made["key_id"]
    assert key.startswith(f"sgk_{key_id}_") and len(key) == len("sgk_") + 12 + 1 + 43
    assert made["client"] == "acme" and made["state"] == "active" and made["revoked_at"] is None
    stored = [i for i in _items(api_settings) if i["pk"]["S"].startswith("apikey#")]
    assert len(stored) == 1
    record = json.dumps(stored[0])
    assert stored[0]["key_hash"]["S"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in record and key.split("_", 2)[2] not in record  # neither the key nor its secret part
    listed = api.get("/v1/admin/keys").json()["keys"]
    assert [(k["key_id"], k["client"], k["state"]) for k in listed] == [(key_id, "acme", "active")]
    assert "key" not in listed[0] and "key_hash" not in json.dumps(listed)
    assert api.get("/v1/limits", headers=as_key(key)).status_code == 200
    # A second client, and a filter by client; bad names are 422 (and `admin` is the bootstrap key's).
    other = new_key(api, "globex")
    assert [k["key_id"] for k in api.get("/v1/admin/keys", params={"client": "globex"}).json()["keys"]] == [
        other["key_id"]
    ]
    for bad in ("admin", "Acme", "", "a" * 64, "no spaces"):
        r = api.post("/v1/admin/keys", json={"client": bad})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (bad, r.text)


def test_a_revoked_key_is_refused_at_once_with_a_problem(api: TestClient) -> None:
    made = new_key(api, "acme")
    key = as_key(made["key"])
    assert api.get("/v1/models", headers=key).status_code == 200
    revoked = api.post(f"/v1/admin/keys/{made['key_id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    r = api.get("/v1/models", headers=key)
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("revoked_api_key") and made["key_id"] in r.json()["detail"]
    # Before the body is read, as every refusal: a revoked key's upload stores nothing.
    assert post_images(api, image_bytes(), headers=key).status_code == 401
    again = api.post(f"/v1/admin/keys/{made['key_id']}/revoke")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert api.post(f"/v1/admin/keys/{'0' * 12}/revoke").json()["type"].endswith("key_not_found")
    assert api.post("/v1/admin/keys/zz/revoke").status_code == 404
    # A key of the right shape that was never issued, or a forged secret for a real id, is simply wrong.
    forged = made["key"][:-4] + ("AAAA" if not made["key"].endswith("AAAA") else "BBBB")
    for wrong in (f"sgk_{'0' * 12}_{'A' * 43}", forged):
        r = api.get("/v1/models", headers=as_key(wrong))
        assert r.status_code == 401 and r.json()["type"].endswith("wrong_api_key"), r.text


def test_rotation_keeps_the_old_key_for_its_grace(api: TestClient) -> None:
    old = new_key(api, "acme")
    r = api.post(f"/v1/admin/keys/{old['key_id']}/rotate", json={"grace_s": 600})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["client"] == "acme" and new["key"] != old["key"] and new["replaces"]["state"] == "expiring"
    assert new["replaces"]["replaced_by"] == new["key_id"]
    for key in (old["key"], new["key"]):
        assert api.get("/v1/limits", headers=as_key(key)).status_code == 200
    # Rotating the new one at once: it stops now, whatever grace the old one had, and the old one keeps its own.
    newest = api.post(f"/v1/admin/keys/{new['key_id']}/rotate", json={"grace_s": 0}).json()
    assert api.get("/v1/limits", headers=as_key(new["key"])).status_code == 401
    assert api.get("/v1/limits", headers=as_key(newest["key"])).status_code == 200
    assert api.get("/v1/limits", headers=as_key(old["key"])).status_code == 200
    assert api.post(f"/v1/admin/keys/{new['key_id']}/rotate").json()["type"].endswith("key_revoked")
    states = {k["key_id"]: k["state"] for k in api.get("/v1/admin/keys").json()["keys"]}
    assert states == {old["key_id"]: "expiring", new["key_id"]: "revoked", newest["key_id"]: "active"}


def test_only_the_admin_manages_keys(api: TestClient) -> None:
    key = as_key(new_key(api, "acme")["key"])
    for method, path in (
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys"),
        ("POST", f"/v1/admin/keys/{'0' * 12}/revoke"),
        ("POST", f"/v1/admin/keys/{'0' * 12}/rotate"),
    ):
        r = api.request(method, path, headers=key, json={"client": "evil"} if path.endswith("keys") else None)
        assert r.status_code == 403 and r.json()["type"].endswith("admin_only"), (method, path, r.text)
    assert [k["client"] for k in api.get("/v1/admin/keys").json()["keys"]] == ["acme"]


def _finish(settings: Settings, job_id: str) -> None:
    """What the worker does: the job SUCCEEDED with a mask and an overlay in S3."""
    store = JobStore.from_settings(settings, client("dynamodb", settings))
    s3 = client("s3", settings)
    job = store.get(job_id)
    assert job is not None
    mask, overlay = keys.mask_key(job["batch_id"], job_id), keys.overlay_key(job["batch_id"], job_id)
    for key in (mask, overlay):
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"x")
    store.claim(job_id, "w")
    store.complete(job_id, "w", result={}, mask_key=mask, overlay_key=overlay)


def _reads(batch_id: str, job_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every by-id route, as (method, path, JSON body)."""
    return [
        ("GET", f"/v1/jobs/{job_id}", None),
        ("GET", f"/v1/jobs/{job_id}/mask", None),
        ("GET", f"/v1/jobs/{job_id}/overlay", None),
        ("GET", f"/v1/batches/{batch_id}", None),
        ("GET", f"/v1/batches/{batch_id}/jobs.csv", None),
        ("GET", f"/v1/batches/{batch_id}/report", None),
        ("POST", f"/v1/batches/{batch_id}/seal", None),
        ("POST", f"/v1/batches/{batch_id}/submit", None),
        ("POST", "/v1/batches", {"batch_id": batch_id}),
        ("POST", "/v1/uploads", {"files": [{"file_name": "x.jpg"}], "batch_id": batch_id}),
    ]


def _answer(api: TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, str, str]:
    r = api.request(method, path, json=body, headers={**headers, "Accept": "application/json"})
    doc = r.json() if r.headers["content-type"].endswith("json") else {}
    return r.status_code, doc.get("type", ""), doc.get("detail", "")


def test_another_clients_ids_are_404_like_unknown_ids(
    api: TestClient, api_settings: Settings, two_clients: tuple[dict[str, str], dict[str, str]]
) -> None:
    acme, globex = two_clients
    batch_id = uuid.uuid4().hex
    accepted = post_images(api, image_bytes(), headers=acme, batch_id=batch_id)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["jobs"][0]["job_id"]
    _finish(api_settings, job_id)
    client("s3", api_settings).put_object(Bucket=api_settings.bucket, Key=keys.report_html_key(batch_id), Body=b"<p>")
    presigned = api.post("/v1/uploads", json={"files": [{"file_name": "big.jpg"}]}, headers=acme).json()

    # The owner reads every one of them (the seal and submit last: they change the batch).
    for method, path, body in _reads(batch_id, job_id)[:6]:
        status, kind, _ = _answer(api, method, path, body, acme)
        assert status == 200, (path, kind)
    unknown_batch, unknown_job = uuid.uuid4().hex, uuid.uuid4().hex
    renames = ((presigned["batch_id"], unknown_batch), (presigned["jobs"][0]["job_id"], unknown_job))
    for (method, path, body), (_, unknown_path, unknown_body) in zip(
        _reads(batch_id, job_id) + _reads(presigned["batch_id"], presigned["jobs"][0]["job_id"])[:3],
        _reads(unknown_batch, unknown_job) + _reads(unknown_batch, unknown_job)[:3],
        strict=True,
    ):
        if method == "POST" and unknown_body is not None:  # creating an unknown id would succeed: compare to GET
            unknown = _answer(api, "GET", f"/v1/batches/{unknown_batch}", None, globex)
        else:
            unknown = _answer(api, method, unknown_path, unknown_body, globex)
        theirs = _answer(api, method, path, body, globex)
        detail = theirs[2]
        for known, stand_in in ((batch_id, unknown_batch), (job_id, unknown_job), *renames):
            detail = detail.replace(known, stand_in)
        same = (theirs[0], theirs[1], detail)
        assert theirs[0] == 404 and same == unknown, (method, path, theirs, unknown)
    # Nor can it add images to the batch.
    r = post_images(api, image_bytes(seed=3), headers=globex, batch_id=batch_id)
    assert r.status_code == 404 and r.json()["type"].endswith("batch_not_found")
    # Nothing of globex's attempts was stored, and the batch is still acme's and still open.
    view = api.get(f"/v1/batches/{batch_id}", headers=acme).json()
    assert view["total"] == 1 and view["state"] == "OPEN" and view["owner"] == "acme"
    assert view["jobs"][0]["owner"] == "acme"
    # The admin sees all of it.
    for method, path, body in _reads(batch_id, job_id)[:6]:
        assert _answer(api, method, path, body, AUTH)[0] == 200, path
    assert api.post(f"/v1/batches/{batch_id}/seal", headers=acme).json()["state"] == "COMPLETED"  # its one job is done


def test_each_client_has_its_own_batches_and_idempotency_keys(
    api: TestClient, two_clients: tuple[dict[str, str], dict[str, str]]
) -> None:
    acme, globex = two_clients
    retry = {"Idempotency-Key": "same-key-both-clients"}
    first = post_images(api, image_bytes(), headers={**acme, **retry})
    second = post_images(api, image_bytes(), headers={**globex, **retry})
    assert first.status_code == second.status_code == 202
    assert first.json()["batch_id"] != second.json()["batch_id"]  # not acme's answer replayed to globex
    assert post_images(api, image_bytes(), headers={**acme, **retry}).json() == first.json()
    made = api.post("/v1/batches", json={}, headers=globex).json()
    assert made["owner"] == "globex"
    assert api.get(f"/v1/batches/{made['batch_id']}", headers=acme).status_code == 404
    # The admin's own batch is the admin's; it may not add to a client's batch (409 naming the owner).
    mine = api.post("/v1/batches", json={}).json()
    assert mine["owner"] == "admin" and api.get(f"/v1/batches/{mine['batch_id']}", headers=acme).status_code == 404
    r = post_images(api, image_bytes(), batch_id=made["batch_id"])
    assert r.status_code == 409 and "globex" in r.json()["detail"]


def test_records_from_before_clients_are_the_admins(
    api: TestClient, api_settings: Settings, two_clients: tuple[dict[str, str], dict[str, str]]
) -> None:
    """Jobs and batches without an owner (made with the single shared key) stay readable by the admin only; a
    client that names such a batch id cannot take it over."""
    acme, _ = two_clients
    ddb = client("dynamodb", api_settings)
    store = JobStore.from_settings(api_settings, ddb)
    older, recorded = uuid.uuid4().hex, uuid.uuid4().hex
    job_ids = []
    for batch_id in (older, recorded):
        job_id = uuid.uuid4().hex
        store.create(NewJob(job_id, batch_id, f"uploads/{batch_id}/{job_id}.jpg", "a.jpg", "person"))
        job_ids.append(job_id)
    BatchStore(ddb, api_settings.table).reserve(recorded, 1)  # a record without an owner
    for batch_id, job_id in zip((older, recorded), job_ids, strict=True):
        assert api.get(f"/v1/jobs/{job_id}", headers=acme).status_code == 404
        assert api.get(f"/v1/batches/{batch_id}", headers=acme).status_code == 404
        assert api.get(f"/v1/jobs/{job_id}").json()["owner"] is None
        assert api.get(f"/v1/batches/{batch_id}").json()["total"] == 1
        for attempt in (
            lambda b=batch_id: post_images(api, image_bytes(), headers=acme, batch_id=b),
            lambda b=batch_id: api.post("/v1/batches", json={"batch_id": b}, headers=acme),
            lambda b=batch_id: api.post(
                "/v1/uploads", json={"files": [{"file_name": "a"}], "batch_id": b}, headers=acme
            ),
        ):
            r = attempt()
            assert r.status_code == 404 and r.json()["type"].endswith("batch_not_found"), r.text
    assert BatchStore(ddb, api_settings.table).get(older) is None  # no record was left behind
    # The admin adds to both, and so adopts them.
    for batch_id in (older, recorded):
        assert post_images(api, image_bytes(), batch_id=batch_id).status_code == 202
        assert api.get(f"/v1/batches/{batch_id}").json()["owner"] == "admin"


def test_a_client_key_through_lambda_mode(api: TestClient, api_settings: Settings) -> None:
    made = new_key(api, "acme")
    handler = make_handler(api_settings)
    ok = handler(_event("function-url", "GET", "/v1/models", {"x-api-key": made["key"]}, None), _context())
    assert ok["statusCode"] == 200, ok
    api.post(f"/v1/admin/keys/{made['key_id']}/revoke")
    refused = handler(_event("function-url", "GET", "/v1/models", {"x-api-key": made["key"]}, None), _context())
    assert refused["statusCode"] == 401 and json.loads(refused["body"])["type"].endswith("revoked_api_key")
    bootstrap = handler(_event("function-url", "GET", "/v1/models", {"x-api-key": API_KEY}, None), _context())
    assert bootstrap["statusCode"] == 200


class FailingGets:
    """A DynamoDB client whose GetItem fails: the key store cannot be read."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def get_item(self, **kwargs: Any) -> Any:
        from tests.aws_errors import access_denied

        raise access_denied("GetItem", "dynamodb:GetItem")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_an_unreadable_key_store_is_503_not_401_and_the_admin_still_works(
    api: TestClient, api_settings: Settings
) -> None:
    made = new_key(api, "acme")
    broken = create_app(api_settings, dynamodb=FailingGets(client("dynamodb", api_settings)))
    with TestClient(broken) as c:
        r = c.get("/v1/limits", headers=as_key(made["key"]))
        assert r.status_code == 503 and r.json()["type"].endswith("api_key_unavailable") and r.headers["Retry-After"]
        assert "arn:aws" not in r.text
        assert c.get("/v1/limits", headers=AUTH).status_code == 200


def test_logs_name_the_key_id_never_the_key(api: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    made = new_key(api, "acme")
    with caplog.at_level("INFO"):
        api.get("/v1/limits", headers=as_key(made["key"]))
        api.post(f"/v1/admin/keys/{made['key_id']}/revoke")
        api.get("/v1/limits", headers=as_key(made["key"]))
    lines = [r for r in caplog.records if getattr(r, "event", "") in ("request", "key_revoked", "revoked_key")]
    assert any(getattr(r, "key_id", None) == made["key_id"] and getattr(r, "client", None) == "acme" for r in lines)
    assert {getattr(r, "event", "") for r in lines} >= {"request", "key_revoked", "revoked_key"}
    secret = made["key"].split("_", 2)[2]
    assert not any(secret in json.dumps(r.__dict__, default=str) for r in caplog.records)
