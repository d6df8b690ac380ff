"""GET routes: job status and results, batch pages, models, health, OpenAPI."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from runtime.api.links import content_type_for
from runtime.api.main import create_app
from runtime.common import keys
from runtime.common.aws import client
from runtime.common.cards import ClassSpec
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.worker.render import mask_png, overlay_jpeg
from tests.api.helpers import image_bytes, post_images


def _upload(api: TestClient, n: int = 1) -> dict:
    r = post_images(api, *[image_bytes(seed=i) for i in range(n)], mm_per_pixel="0.25")
    assert r.status_code == 202, r.text
    return r.json()


def test_job_lifecycle_shows_result_and_redirects_to_mask(
    api: TestClient, api_settings: Settings, store: JobStore
) -> None:
    accepted = _upload(api)
    job_id, batch_id = accepted["jobs"][0]["job_id"], accepted["batch_id"]
    view = api.get(f"/v1/jobs/{job_id}").json()
    assert view["status"] == "QUEUED" and view["attempts"] == 0 and view["width"] == 48 and view["height"] == 32
    assert view["mask_url"] is None and view["result"] is None and view["created_at"] > 1_700_000_000_000
    assert api.get(f"/v1/jobs/{job_id}/mask").status_code == 404

    # What the worker writes, stored without a content type: the API's redirect names the right one anyway.
    labels = np.zeros((32, 48), dtype=np.uint8)
    labels[8:24, 12:36] = 1
    person = (ClassSpec(id=1, name="person", color=(255, 0, 0)),)
    photo = np.full((32, 48, 3), 90, dtype=np.uint8)
    mask, overlay = keys.mask_key(batch_id, job_id), keys.overlay_key(batch_id, job_id)
    s3 = client("s3", api_settings)
    s3.put_object(Bucket=api_settings.bucket, Key=mask, Body=mask_png(labels, person))
    s3.put_object(Bucket=api_settings.bucket, Key=overlay, Body=overlay_jpeg(photo, labels, person))
    assert store.claim(job_id, "w1") is not None
    result = {"model": "person", "classes": {"person": {"pixels": 10, "fraction": 0.5}}}
    assert store.complete(job_id, "w1", result=result, mask_key=mask, overlay_key=overlay)

    view = api.get(f"/v1/jobs/{job_id}").json()
    assert view["status"] == "SUCCEEDED" and view["attempts"] == 1 and view["result"] == result
    assert view["mask_url"] == f"/v1/jobs/{job_id}/mask" and view["finished_at"] >= view["started_at"]
    served = {}
    for kind, media_type, fmt in (("mask", "image/png", "PNG"), ("overlay", "image/jpeg", "JPEG")):
        r = api.get(f"/v1/jobs/{job_id}/{kind}", follow_redirects=False)
        assert r.status_code == 307
        got = httpx.get(r.headers["location"])
        assert got.headers["content-type"] == media_type
        with Image.open(io.BytesIO(got.content)) as img:
            assert img.format == fmt
            served[kind] = np.asarray(img.convert("RGB") if fmt == "JPEG" else img)
    assert np.array_equal(served["mask"], labels)  # class ids, exactly
    assert (content_type_for(mask), content_type_for(overlay)) == (keys.MASK_CONTENT_TYPE, keys.OVERLAY_CONTENT_TYPE)
    assert served["overlay"][16, 24, 0] > served["overlay"][2, 2, 0] + 40  # the person is tinted red
    assert api.get(f"/v1/jobs/{job_id}/other").status_code == 422


def test_an_overlay_written_as_png_is_still_served_as_png(
    api: TestClient, api_settings: Settings, store: JobStore
) -> None:
    """Jobs finished before overlays became JPEGs keep their overlay.png key."""
    accepted = _upload(api)
    job_id, batch_id = accepted["jobs"][0]["job_id"], accepted["batch_id"]
    old_key = keys.result_prefix(batch_id, job_id) + "overlay.png"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(buf, format="PNG")
    client("s3", api_settings).put_object(Bucket=api_settings.bucket, Key=old_key, Body=buf.getvalue())
    assert store.claim(job_id, "w1") is not None
    assert store.complete(job_id, "w1", result={}, mask_key=keys.mask_key(batch_id, job_id), overlay_key=old_key)
    r = api.get(f"/v1/jobs/{job_id}/overlay", follow_redirects=False)
    got = httpx.get(r.headers["location"])
    assert got.headers["content-type"] == "image/png" and got.content == buf.getvalue()


def test_failed_job_shows_reason(api: TestClient, store: JobStore) -> None:
    job_id = _upload(api)["jobs"][0]["job_id"]
    store.claim(job_id, "w1")
    store.fail_running(job_id, "w1", "image is corrupt", error_class="corrupt_image")
    view = api.get(f"/v1/jobs/{job_id}").json()
    assert view["status"] == "FAILED" and view["error"] == "image is corrupt" and view["error_class"] == "corrupt_image"


@pytest.mark.parametrize("job_id", ["0" * 32, "ABC", "x" * 500])
def test_unknown_job_is_404(api: TestClient, job_id: str) -> None:
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/mask"):
        r = api.get(path)
        assert r.status_code == 404 and r.json()["type"].endswith("job_not_found"), r.text


def test_batch_counts_and_pages(api: TestClient, store: JobStore) -> None:
    accepted = _upload(api, 5)
    batch_id = accepted["batch_id"]
    first = accepted["jobs"][0]["job_id"]
    store.claim(first, "w1")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = api.get(f"/v1/batches/{batch_id}", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == 5 and page["counts"]["RUNNING"] == 1 and page["counts"]["QUEUED"] == 4
        assert len(page["jobs"]) <= 2
        seen += [j["job_id"] for j in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(j["job_id"] for j in accepted["jobs"]) and pages >= 3


@pytest.mark.parametrize(
    ("query", "status"),
    [("cursor=notbase64!!", 422), ("cursor=e30", 422), ("limit=0", 422), ("limit=5000", 422), ("limit=x", 422)],
)
def test_bad_batch_queries(api: TestClient, query: str, status: int) -> None:
    batch_id = _upload(api)["batch_id"]
    r = api.get(f"/v1/batches/{batch_id}?{query}")
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text


def test_a_cursor_is_a_position_in_the_batch_it_is_used_on(api: TestClient) -> None:
    """Any string the schema admits is a valid position: it can only page through the batch in the path."""
    a, b = _upload(api, 3)["batch_id"], _upload(api, 2)["batch_id"]
    cursor = api.get(f"/v1/batches/{a}?limit=1").json()["next_cursor"]
    assert cursor
    for position in (cursor, "0-" + "f" * 32):  # one from another batch, one made up: both before b's jobs
        r = api.get(f"/v1/batches/{b}?cursor={position}")
        assert r.status_code == 200, r.text
        assert [j["batch_id"] for j in r.json()["jobs"]] == [b, b]
    late = api.get(f"/v1/batches/{b}?cursor=999999999999999-{'0' * 32}")
    assert late.status_code == 200 and late.json()["jobs"] == [] and late.json()["total"] == 2


@pytest.mark.parametrize("batch_id", ["0" * 32, "nope"])
def test_unknown_batch_is_404(api: TestClient, batch_id: str) -> None:
    r = api.get(f"/v1/batches/{batch_id}")
    assert r.status_code == 404 and r.json()["type"].endswith("batch_not_found")


def test_models_lists_the_cards(api: TestClient) -> None:
    body = api.get("/v1/models").json()
    assert body["default"] == "person"
    assert [m["name"] for m in body["models"]] == ["person", "text"]
    assert "file" not in body["models"][0] and body["models"][0]["license"] == "Apache-2.0"


def test_broken_models_folder_is_503(api_settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from runtime.api.main import create_app

    (tmp_path / "person").mkdir()
    (tmp_path / "person" / "card.json").write_text("{not json")
    with TestClient(
        create_app(api_settings.model_copy(update={"models_dir": tmp_path})), headers={"X-Api-Key": "test-key"}
    ) as c:
        r = c.get("/v1/models")
        assert r.status_code == 503 and "card.json" in r.json()["detail"]
        assert post_images(c, image_bytes()).status_code == 503


def test_healthz_and_openapi_document_every_error(api: TestClient) -> None:
    assert api.get("/healthz", headers={"X-Api-Key": ""}).json() == {"status": "ok"}
    assert api.get("/docs").status_code == 200
    spec = api.get("/openapi.json").json()
    assert "Problem" in spec["components"]["schemas"]
    expected = {
        ("/v1/images", "post"): {"401", "409", "413", "415", "422", "503"},
        ("/v1/uploads", "post"): {"401", "413", "422", "503"},
        ("/v1/batches/{batch_id}/submit", "post"): {"401", "404", "409", "413", "415", "422", "503"},
        ("/v1/jobs/{job_id}", "get"): {"401", "404", "422", "503"},
        ("/v1/jobs/{job_id}/{kind}", "get"): {"401", "404", "422", "503"},
        ("/healthz", "get"): set(),
        ("/v1/batches/{batch_id}", "get"): {"401", "404", "422", "503"},
        ("/v1/models", "get"): {"401", "503"},
    }
    for (path, method), codes in expected.items():
        responses = spec["paths"][path][method]["responses"]
        assert codes | {"500"} <= set(responses), (path, set(responses))
        for code in codes | {"500"}:
            assert "application/problem+json" in responses[code]["content"], (path, code)
    assert "multipart/form-data" in spec["paths"]["/v1/images"]["post"]["requestBody"]["content"]


def test_docs_routes_can_be_switched_off(api_settings: Settings) -> None:
    """Prod deployments switch the unauthenticated docs off (SEGSCALE_API_DOCS_ENABLED=false): they answer 404."""
    with TestClient(create_app(api_settings.model_copy(update={"api_docs_enabled": False}))) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            r = c.get(path)
            assert r.status_code == 404, path
            assert r.headers["content-type"] == "application/problem+json"
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/models").status_code == 401  # the API itself is unchanged
