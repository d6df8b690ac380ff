"""The API on a real uvicorn socket: oversized uploads are refused without reading them; one JSON log line per
request with its id and job ids, never image bytes."""

from __future__ import annotations

import json
import logging
import select
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from local.resources import create_resources
from runtime.api.main import create_app
from runtime.common.logs import JsonLines as JsonFormatter
from runtime.common.settings import Settings
from tests.api.helpers import API_KEY, AUTH, ThreadedUvicorn, image_bytes, post_images

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def server_settings(moto_endpoint: str, models_dir) -> Settings:  # type: ignore[no-untyped-def]
    r = create_resources(moto_endpoint, prefix=f"h{uuid.uuid4().hex[:12]}")
    return r.settings(
        api_key=API_KEY,
        models_dir=models_dir,
        max_upload_bytes=LIMIT,
        max_files_per_request=2,
        batch_window_s=0.2,
    )


@pytest.fixture(scope="module")
def server(server_settings: Settings) -> Iterator[ThreadedUvicorn]:
    with ThreadedUvicorn(create_app(server_settings)) as s:
        yield s


def _send_until_answered(port: int, head: bytes, chunk: bytes, max_total: int) -> tuple[bytes, int]:
    """Send ``head`` then ``chunk`` repeatedly until the server answers; returns (response, body bytes sent)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        try:
            while sent < max_total:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        response = b""
        try:
            while b"\r\n\r\n" not in response:
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        except ConnectionResetError:
            pass
    return response, sent


def test_declared_oversized_body_is_refused_before_reading(server: ThreadedUvicorn) -> None:
    head = (
        b"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + API_KEY.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000000\r\n\r\n"
    )
    response, _ = _send_until_answered(server.port, head, b"", 0)  # nothing of the 10 GB body is sent
    assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_streamed_oversized_file_is_cut_off_at_the_limit(server: ThreadedUvicorn) -> None:
    """Chunked upload, no Content-Length: the server must count while streaming and stop early."""
    head = (
        b"POST /v1/images HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + API_KEY.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="huge.jpg"\r\n\r\n\xff\xd8\xff'
    head += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    payload = b"\x00" * 65536
    chunk = f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
    total = 200 * 1024 * 1024
    response, sent = _send_until_answered(server.port, head, chunk, total)
    assert response.startswith(b"HTTP/1.1 413"), response[:300]
    assert b"file_too_large" in response or b"problem+json" in response
    assert sent < 16 * LIMIT, f"sent {sent:,} bytes before the server answered"  # socket buffers, not the body


def test_upload_over_a_real_socket_and_window_flush(server: ThreadedUvicorn, server_settings: Settings) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH) as c:
        r = c.post("/v1/images", files=[("file", ("a.jpg", image_bytes(), "image/jpeg"))], data={"model": "text"})
        assert r.status_code == 202, r.text
        job_id = r.json()["jobs"][0]["job_id"]
        deadline = time.monotonic() + 5
        while "enqueued_at" not in _job_item(server_settings, job_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "enqueued_at" in _job_item(server_settings, job_id)
        assert c.get("/healthz").json() == {"status": "ok"}


def _job_item(settings: Settings, job_id: str) -> dict:
    from runtime.common.aws import client
    from runtime.common.jobs import JobStore

    item = JobStore.from_settings(settings, client("dynamodb", settings)).get(job_id)
    assert item is not None
    return item


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_one_json_log_line_per_request_without_image_bytes(api) -> None:  # type: ignore[no-untyped-def]
    handler = _Lines()
    logger = logging.getLogger("segscale.api.request")
    logger.addHandler(handler)
    try:
        data = image_bytes("PNG", (64, 64))
        ok = post_images(api, data, headers={"X-Request-Id": "req-abc.1"})
        bad = post_images(api, b"<html>not an image</html>")
    finally:
        logger.removeHandler(handler)
    assert ok.headers["x-request-id"] == "req-abc.1"
    docs = [json.loads(line) for line in handler.lines]
    assert len(docs) == 2
    first, second = docs
    assert first["request_id"] == "req-abc.1" and first["method"] == "POST" and first["path"] == "/v1/images"
    assert first["status"] == 202 and first["ms"] > 0
    assert first["job_ids"] == [j["job_id"] for j in ok.json()["jobs"]] and first["batch_id"] == ok.json()["batch_id"]
    assert second["status"] == 415 and "job_ids" not in second and second["request_id"] == bad.headers["x-request-id"]
    assert all(len(line) < 1000 for line in handler.lines)
    assert "not an image" not in "".join(handler.lines)
