"""POST /v1/images against a moto server: the happy path, every bad input, file names, idempotency, auth."""

from __future__ import annotations

import re
import struct
import zlib

import pytest
from fastapi.testclient import TestClient

from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.api.helpers import assert_nothing_stored, files, image_bytes, multipart, post_images, stored

KEY_RE = re.compile(r"^uploads/[0-9a-f]{32}/[0-9a-f]{32}\.(jpg|png)$")


def test_upload_two_images_stores_objects_jobs_and_one_message(api: TestClient, api_settings: Settings) -> None:
    jpeg, png = image_bytes("JPEG"), image_bytes("PNG", (20, 10))
    r = post_images(api, jpeg, png, model="text", mm_per_pixel="0.5")
    assert r.status_code == 202, r.text
    body = r.json()
    assert [j["file_name"] for j in body["jobs"]] == ["img0.jpg", "img1.jpg"]
    assert all(j["status"] == "QUEUED" and j["status_url"] == f"/v1/jobs/{j['job_id']}" for j in body["jobs"])
    s = stored(api_settings)
    ids = [j["job_id"] for j in body["jobs"]]
    assert s["messages"] == [
        {"v": 1, "id": s["messages"][0]["id"], "sent_at": s["messages"][0]["sent_at"], "job_ids": ids}
    ]
    s3 = client("s3", api_settings)
    for job_id, data, fmt in zip(ids, (jpeg, png), ("JPEG", "PNG"), strict=True):
        job = s["jobs"][job_id]
        assert job["status"]["S"] == "QUEUED" and job["batch_id"]["S"] == body["batch_id"]
        assert job["model"]["S"] == "text" and float(job["mm_per_pixel"]["N"]) == 0.5
        assert job["image_format"]["S"] == fmt and "enqueued_at" in job
        key = job["input_key"]["S"]
        assert KEY_RE.fullmatch(key) and key.startswith(f"uploads/{body['batch_id']}/{job_id}.")
        assert s3.get_object(Bucket=api_settings.bucket, Key=key)["Body"].read() == data
    assert r.headers["x-request-id"]


def test_default_model_is_used_when_none_is_given(api: TestClient, api_settings: Settings) -> None:
    r = post_images(api, image_bytes())
    assert r.status_code == 202
    job = api.get(r.json()["jobs"][0]["status_url"]).json()
    assert job["model"] == "person" and job["mm_per_pixel"] is None and job["status"] == "QUEUED"


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (a decompression bomb's header) with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(idat) - 4)
        + idat
        + struct.pack(">I", zlib.crc32(idat))
    )


def _corrupt_png() -> bytes:
    data = bytearray(image_bytes("PNG", (40, 40)))
    idat = data.index(b"IDAT")
    for i in range(idat + 10, idat + 40):
        data[i] ^= 0x5A
    return bytes(data)


def _cut_off() -> tuple[dict[str, str], bytes]:
    """A body that stops before its closing boundary (a client that went away): the image in it is complete."""
    headers, body = files(image_bytes())
    return headers, body[: body.rindex(b"\r\n--")]


NOT_IMAGES = {
    "text": b"hello, this is not a picture\n" * 10,
    "pdf": b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n",
    "html": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>',
}


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
def test_non_image_named_jpg_is_415(api: TestClient, api_settings: Settings, kind: str) -> None:
    r = post_images(api, NOT_IMAGES[kind])
    assert r.status_code == 415, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["type"].endswith("unsupported_media_type") and problem["errors"][0]["file_name"] == "img0.jpg"
    assert_nothing_stored(api_settings)


@pytest.mark.parametrize(
    ("data", "status", "kind"),
    [
        (b"", 422, "empty_file"),
        (image_bytes("JPEG", (64, 64))[:300], 422, "corrupt_image"),
        (image_bytes("PNG", (64, 64))[:-40], 422, "corrupt_image"),
        (_corrupt_png(), 422, "corrupt_image"),
        (_png_with_size(100_000, 100_000), 413, "too_many_pixels"),
    ],
    ids=["empty", "truncated-jpeg", "truncated-png", "corrupt-png", "bomb"],
)
def test_bad_image_refuses_whole_request(
    api: TestClient, api_settings: Settings, data: bytes, status: int, kind: str
) -> None:
    r = post_images(api, image_bytes(), data)  # one good file first: nothing of it may be stored either
    assert r.status_code == status, r.text
    problem = r.json()
    assert problem["status"] == status and problem["type"] == f"urn:segscale:problem:{kind}"
    assert [e["index"] for e in problem["errors"]] == [1]
    assert_nothing_stored(api_settings)


def test_pixel_limit_from_settings(api_settings: Settings) -> None:
    with TestClient(create_app_with(api_settings, max_pixels=1000)) as c:
        r = post_images(c, image_bytes("JPEG", (40, 40)), headers={"X-Api-Key": "test-key"})
    assert r.status_code == 413 and r.json()["errors"][0]["type"] == "too_many_pixels"
    assert_nothing_stored(api_settings)


def create_app_with(settings: Settings, **update: object):  # type: ignore[no-untyped-def]
    from runtime.api.main import create_app

    return create_app(settings.model_copy(update=update))


def test_file_over_size_limit_is_413(api_settings: Settings) -> None:
    with TestClient(create_app_with(api_settings, max_upload_bytes=2000), headers={"X-Api-Key": "test-key"}) as c:
        r = post_images(c, image_bytes("BMP", (64, 64)))  # 12 KB
    assert r.status_code == 413 and r.json()["type"].endswith("file_too_large")
    assert_nothing_stored(api_settings)


def test_too_many_files_is_413(api_settings: Settings) -> None:
    with TestClient(create_app_with(api_settings, max_files_per_request=2), headers={"X-Api-Key": "test-key"}) as c:
        r = post_images(c, image_bytes(), image_bytes(), image_bytes())
    assert r.status_code == 413 and r.json()["type"].endswith("too_many_files")
    assert_nothing_stored(api_settings)


@pytest.mark.parametrize(
    ("headers", "body", "status", "kind"),
    [
        ({"Content-Type": "application/json"}, b"{}", 415, "not_multipart"),
        ({"Content-Type": "multipart/form-data"}, b"x", 400, "malformed_multipart"),
        (*files(model="person"), 422, "no_file"),
        (*files(image_bytes(), model="nope"), 422, "unknown_model"),
        (*files(image_bytes(), colour="red"), 422, "invalid_field"),
        (
            *multipart([("file", "a.jpg", image_bytes()), ("model", None, b"person"), ("model", None, b"text")]),
            422,
            "invalid_field",
        ),
        (
            *multipart([("file", "a.jpg", b"\xff\xd8\xff" + b"\x00" * 20)])[:1],
            b"--nope\r\ngarbage",
            400,
            "malformed_multipart",
        ),
        (*_cut_off(), 400, "malformed_multipart"),
    ],
    ids=["json", "no-boundary", "no-file", "unknown-model", "unknown-field", "duplicate-field", "garbage", "cut-off"],
)
def test_malformed_requests(
    api: TestClient, api_settings: Settings, headers: dict[str, str], body: bytes, status: int, kind: str
) -> None:
    r = api.post("/v1/images", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["type"] == f"urn:segscale:problem:{kind}"
    assert_nothing_stored(api_settings)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "NaN", "inf", "-inf", "abc", "1e999"])
def test_bad_mm_per_pixel_is_422(api: TestClient, api_settings: Settings, value: str) -> None:
    r = post_images(api, image_bytes(), mm_per_pixel=value)
    assert r.status_code == 422 and r.json()["type"].endswith("invalid_mm_per_pixel"), r.text
    assert_nothing_stored(api_settings)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("..", "upload"),
        ("a/b\\\\c.jpg", "c.jpg"),
        ("x\x00y\x07.jpg", "xy.jpg"),
        ("n" * 300 + ".jpg", "n" * 255),
        ("", "upload"),
    ],
    ids=["traversal", "dotdot", "separators", "nul", "300-chars", "empty"],
)
def test_file_names_never_reach_keys(api: TestClient, api_settings: Settings, raw: str, shown: str) -> None:
    h, body = multipart([("file", raw, image_bytes())])
    r = api.post("/v1/images", content=body, headers=h)
    assert r.status_code == 202, r.text
    job = r.json()["jobs"][0]
    assert job["file_name"] == shown
    s = stored(api_settings)
    assert len(s["objects"]) == 1 and KEY_RE.fullmatch(s["objects"][0])
    assert s["jobs"][job["job_id"]]["file_name"]["S"] == shown


def test_idempotent_retry_returns_first_answer(api: TestClient, api_settings: Settings) -> None:
    data = image_bytes()
    first = post_images(api, data, headers={"Idempotency-Key": "abc-1"}, mm_per_pixel="0.2")
    again = post_images(api, data, headers={"Idempotency-Key": "abc-1"}, mm_per_pixel="0.2")  # new boundary
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    s = stored(api_settings)
    assert len(s["objects"]) == 1 and len(s["jobs"]) == 1 and len(s["messages"]) == 1
    other = post_images(api, data, headers={"Idempotency-Key": "abc-2"}, mm_per_pixel="0.2")
    assert other.status_code == 202 and other.json()["batch_id"] != first.json()["batch_id"]


def test_idempotency_key_reused_with_different_body_is_409(api: TestClient, api_settings: Settings) -> None:
    assert post_images(api, image_bytes(seed=1), headers={"Idempotency-Key": "k"}).status_code == 202
    before = stored(api_settings)
    r = post_images(api, image_bytes(seed=2), headers={"Idempotency-Key": "k"})
    assert r.status_code == 409 and r.json()["type"].endswith("idempotency_key_reused")
    r = post_images(api, image_bytes(seed=1), headers={"Idempotency-Key": "k"}, model="text")
    assert r.status_code == 409
    after = stored(api_settings)
    assert len(after["objects"]) == len(before["objects"]) == 1 and after["jobs"].keys() == before["jobs"].keys()


def test_bad_idempotency_key_is_422(api: TestClient, api_settings: Settings) -> None:
    r = post_images(api, image_bytes(), headers={"Idempotency-Key": "has space"})
    assert r.status_code == 422 and r.json()["type"].endswith("invalid_idempotency_key")
    assert_nothing_stored(api_settings)


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong"}, {"X-Api-Key": ""}], ids=["missing", "wrong", "empty"])
def test_api_key_is_required(api_settings: Settings, headers: dict[str, str]) -> None:
    from runtime.api.main import create_app

    with TestClient(create_app(api_settings), headers=headers) as c:
        h, body = files(image_bytes())
        r = c.post("/v1/images", content=body, headers=h)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        for path in ("/v1/models", "/v1/jobs/" + "0" * 32, "/v1/batches/" + "0" * 32):
            assert c.get(path).status_code == 401
        assert c.post("/v1/uploads", json={"files": [{"file_name": "a.jpg"}]}).status_code == 401
        assert c.get("/healthz").status_code == 200
    assert_nothing_stored(api_settings)


def test_auth_can_be_disabled_and_fails_closed_without_a_key(api_settings: Settings) -> None:
    from runtime.api.main import create_app

    open_settings = api_settings.model_copy(update={"auth_enabled": False, "api_key": None})
    with TestClient(create_app(open_settings)) as c:
        assert c.get("/v1/models").status_code == 200
    closed = api_settings.model_copy(update={"api_key": None})
    with TestClient(create_app(closed), headers={"X-Api-Key": "anything"}) as c:
        r = c.get("/v1/models")
        assert r.status_code == 503 and r.json()["type"].endswith("auth_not_configured")
