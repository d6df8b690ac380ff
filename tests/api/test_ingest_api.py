"""``POST /v1/batches`` with an S3 source: every bad input is a 4xx problem that creates nothing; a good one is a
202 INGESTING batch that the ingester turns into jobs and the batch view follows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from runtime.api.main import create_app
from runtime.common.aws import client
from runtime.common.batches import BatchStore
from runtime.common.settings import Settings
from runtime.results.ingest.run import Ingester
from tests.api.helpers import AUTH, image_bytes, post_images


@pytest.fixture()
def source_bucket(api_settings: Settings) -> str:
    name = f"src-{uuid.uuid4().hex[:16]}"
    client("s3", api_settings).create_bucket(Bucket=name)
    return name


@pytest.fixture()
def ingest_settings(api_settings: Settings, source_bucket: str) -> Settings:
    return api_settings.model_copy(
        update={
            "ingest_sources": f"s3://{source_bucket}/photos/,s3://{source_bucket}/lists/",
            "ingest_manifest_max_bytes": 1000,
        }
    )


@pytest.fixture()
def ingest_api(ingest_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(ingest_settings), headers=AUTH) as c:
        yield c


def put(settings: Settings, bucket: str, key: str, body: bytes) -> None:
    client("s3", settings).put_object(Bucket=bucket, Key=key, Body=body)


def assert_problem(r, status: int, kind: str) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"urn:segscale:problem:{kind}", body
    return body


def assert_no_batch(settings: Settings, batch_id: str) -> None:
    assert BatchStore.from_settings(settings).get(batch_id) is None


def test_a_source_outside_the_allow_list_is_a_403_naming_the_allowed_ones(
    ingest_api: TestClient, ingest_settings: Settings, source_bucket: str
) -> None:
    batch_id = uuid.uuid4().hex
    for source in (f"s3://{source_bucket}/private/", f"s3://{source_bucket}/", "s3://another-bucket/photos/"):
        r = ingest_api.post("/v1/batches", json={"batch_id": batch_id, "source": source})
        body = assert_problem(r, 403, "source_not_allowed")
        assert f"s3://{source_bucket}/photos/, s3://{source_bucket}/lists/" in body["detail"]
    assert_no_batch(ingest_settings, batch_id)


def test_without_an_allow_list_no_source_is_allowed(api: TestClient) -> None:
    r = api.post("/v1/batches", json={"source": "s3://some-bucket/photos/"})
    assert "none (this deployment reads no outside sources)" in assert_problem(r, 403, "source_not_allowed")["detail"]


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"source": "https://bucket/photos/"}, "invalid_source"),
        ({"source": "s3://Bad_Bucket/photos/"}, "invalid_source"),
        ({"source": "s3://b/lists/", "manifest": True}, "invalid_source"),
        ({"source": "s3://bucket-x/lists/m.xlsx", "manifest": True}, "invalid_source"),
        ({"model": "person"}, "invalid_field"),
        ({"source": "s3://b/p/", "suffixes": ["jpg"]}, "invalid_request"),
        ({"source": "s3://b/p/", "max_bytes": 0}, "invalid_request"),
    ],
)
def test_a_malformed_source_request_is_a_422(ingest_api: TestClient, body: dict, kind: str) -> None:
    assert_problem(ingest_api.post("/v1/batches", json=body), 422, kind)


def test_a_max_bytes_over_the_upload_limit_and_an_unknown_model_are_422s(
    ingest_api: TestClient, source_bucket: str
) -> None:
    source = f"s3://{source_bucket}/photos/"
    assert_problem(
        ingest_api.post("/v1/batches", json={"source": source, "max_bytes": 10**12}), 422, "invalid_max_bytes"
    )
    assert_problem(ingest_api.post("/v1/batches", json={"source": source, "model": "nope"}), 422, "unknown_model")


def test_bad_manifests_are_refused_before_anything_is_created(
    ingest_api: TestClient, ingest_settings: Settings, source_bucket: str
) -> None:
    uri = f"s3://{source_bucket}/lists/"
    assert_problem(
        ingest_api.post("/v1/batches", json={"source": uri + "missing.txt", "manifest": True}), 422, "source_not_found"
    )
    put(ingest_settings, source_bucket, "lists/huge.txt", b"photos/a.jpg\n" * 100)
    assert_problem(
        ingest_api.post("/v1/batches", json={"source": uri + "huge.txt", "manifest": True}), 422, "manifest_too_large"
    )
    put(ingest_settings, source_bucket, "lists/bad.jsonl", b'{"k": 1}\nnot json\n\n')
    body = assert_problem(
        ingest_api.post("/v1/batches", json={"source": uri + "bad.jsonl", "manifest": True}), 422, "invalid_manifest"
    )
    assert "manifest line 1:" in body["detail"] and "manifest line 2:" in body["detail"]
    put(ingest_settings, source_bucket, "lists/nokey.csv", b"id,name\n1,a.jpg\n")
    body = assert_problem(
        ingest_api.post("/v1/batches", json={"source": uri + "nokey.csv", "manifest": True}), 422, "invalid_manifest"
    )
    assert "'key' column" in body["detail"]


def test_a_prefix_batch_is_202_ingesting_then_sealed_with_its_jobs(
    ingest_api: TestClient, ingest_settings: Settings, source_bucket: str
) -> None:
    for i in range(3):
        put(ingest_settings, source_bucket, f"photos/set/{i}.jpg", b"\xff\xd8\xff" + bytes(100))
    put(ingest_settings, source_bucket, "photos/set/index.html", b"<html>")
    r = ingest_api.post(
        "/v1/batches", json={"source": f"s3://{source_bucket}/photos/set", "model": "text", "mm_per_pixel": 0.5}
    )
    assert r.status_code == 202, r.text
    view = r.json()
    assert view["state"] == "INGESTING"
    assert view["ingest"] == {
        "source": f"s3://{source_bucket}/photos/set/", "kind": "prefix", "listed": 0, "skipped": 0,
        "note": None, "inbox_name": None,
    }  # fmt: skip
    again = ingest_api.post(
        "/v1/batches",
        json={"batch_id": view["batch_id"], "source": f"s3://{source_bucket}/photos/set/", "model": "text"},
    )
    assert again.status_code == 202  # a retry of the same source is answered the same way
    other = ingest_api.post(
        "/v1/batches", json={"batch_id": view["batch_id"], "source": f"s3://{source_bucket}/photos/"}
    )
    assert_problem(other, 409, "batch_conflict")
    # uploads into an ingesting batch are refused
    up = post_images(ingest_api, image_bytes(), batch_id=view["batch_id"])
    assert "is ingesting: it takes no more images" in assert_problem(up, 409, "batch_sealed")["detail"]

    Ingester(ingest_settings).run(view["batch_id"])

    done = ingest_api.get(f"/v1/batches/{view['batch_id']}").json()
    assert done["state"] == "SEALED" and done["total"] == 3 and done["progress"]["total"] == 3
    assert done["ingest"]["listed"] == 4 and done["ingest"]["skipped"] == 1
    assert {j["model"] for j in done["jobs"]} == {"text"}
