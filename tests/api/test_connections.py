"""Connections after errors, stalled bodies, and authentication before the body, on a real socket.

Faults are injected at the AWS boundary (a botocore event hook on a real boto3 client talking to the moto server),
never by replacing our own code.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.resources import LocalResources, create_resources
from runtime.api.main import create_app
from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.api.helpers import API_KEY, AUTH, ApiProcess, ThreadedUvicorn, image_bytes, stored

MIB = 1024 * 1024


class Fault:
    """A botocore ``before-call`` hook: while armed, the named operation raises before anything is sent, as an
    unexpected error from the AWS layer would (not a ``ClientError``: that is a 503, this must be a 500)."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.armed = threading.Event()
        self.fired = 0

    def __call__(self, **_: Any) -> None:
        if self.armed.is_set():
            self.fired += 1
            raise RuntimeError(f"injected fault in {self.operation}")

    def attach(self, boto_client: Any) -> Any:
        service = boto_client.meta.service_model.service_name
        boto_client.meta.events.register(f"before-call.{service}.{self.operation}", self)
        return boto_client


@pytest.fixture(scope="module")
def resources(moto_endpoint: str) -> LocalResources:
    return create_resources(moto_endpoint, prefix=f"c{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def settings(resources: LocalResources, models_dir: Path) -> Settings:
    return resources.settings(
        api_key=API_KEY, models_dir=models_dir, max_upload_bytes=MIB, batch_window_s=0.0, request_body_timeout_s=1.0
    )


@pytest.fixture(scope="module")
def put_item_fault() -> Fault:
    return Fault("PutItem")


@pytest.fixture(scope="module")
def server(settings: Settings, put_item_fault: Fault) -> Iterator[ThreadedUvicorn]:
    dynamodb = put_item_fault.attach(client("dynamodb", settings))
    with ThreadedUvicorn(create_app(settings, dynamodb=dynamodb)) as s:
        yield s


def _big_multipart(size: int) -> tuple[dict[str, str], bytes]:
    boundary = "b" * 16
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n'.encode()
    body = head + b"\xff\xd8\xff" + b"\x00" * size + f"\r\n--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


def test_one_pooled_client_gets_every_real_answer(
    server: ThreadedUvicorn, settings: Settings, put_item_fault: Fault
) -> None:
    """Early refusals of 20 MB bodies, then a 500, then an upload, all on one keep-alive pool like the CLI's; and
    the failed requests leave nothing in S3."""
    headers, big = _big_multipart(20 * MIB)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", limits=limits, timeout=60) as c:
        unauthenticated = c.post("/v1/images", content=big, headers=headers)
        too_large = c.post("/v1/images", content=big, headers={**headers, **AUTH})
        put_item_fault.armed.set()
        try:
            broken = c.post("/v1/images", files={"file": ("a.jpg", image_bytes())}, headers=AUTH)
        finally:
            put_item_fault.armed.clear()
        ok = c.post("/v1/images", files={"file": ("b.jpg", image_bytes(seed=1))}, headers=AUTH)
        again = c.get(f"/v1/jobs/{ok.json()['jobs'][0]['job_id']}", headers=AUTH)

    assert unauthenticated.status_code == 401 and unauthenticated.json()["type"].endswith("missing_api_key")
    assert too_large.status_code == 413 and too_large.json()["type"].endswith("file_too_large")
    for early in (unauthenticated, too_large):  # the body was discarded, then the connection closed cleanly
        assert early.headers["connection"] == "close" and early.headers["content-type"] == "application/problem+json"
    assert broken.status_code == 500 and broken.json()["type"].endswith("internal_error"), broken.text
    assert put_item_fault.fired == 1
    assert ok.status_code == 202, ok.text
    assert again.status_code == 200 and again.json()["status"] == "QUEUED"
    # No orphans: the 500 had put its image in S3 before DynamoDB failed; it was removed.
    s = stored(settings)
    assert s["objects"] == [j["input_key"]["S"] for j in s["jobs"].values()] and len(s["jobs"]) == 1


def _raw_request(port: int, head: bytes, body: bytes) -> tuple[bytes, float, bool]:
    """Send ``head`` and part of a body, then wait; returns (answer, seconds until answered, closed by server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(head + body)
        started = time.monotonic()
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return answer, time.monotonic() - started, True
            answer += data


@pytest.mark.parametrize(
    ("path", "content_type", "declared"),
    [("/v1/images", "multipart/form-data; boundary=b", 100_000), ("/v1/uploads", "application/json", 50_000)],
    ids=["multipart", "json"],
)
def test_a_stalled_body_gets_408_and_the_connection_is_closed(
    server: ThreadedUvicorn, path: str, content_type: str, declared: int
) -> None:
    """Declared length, 6 KB sent, then nothing: the answer comes after ``request_body_timeout_s`` (1 s here)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: {API_KEY}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    answer, waited, closed = _raw_request(server.port, head, (part + b"\x00" * 6000)[:6000])
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", answer[:300]
    assert b"connection: close" in rest.lower() and b"urn:segscale:problem:request_timeout" in rest
    assert closed and 0.9 < waited < 10


def test_malformed_json_without_a_key_is_401_not_422(server: ThreadedUvicorn) -> None:
    r = httpx.post(f"http://127.0.0.1:{server.port}/v1/uploads", content=b"{not json", timeout=10)
    assert r.status_code == 401 and r.json()["type"].endswith("missing_api_key"), r.text


def test_non_multipart_bodies_are_capped_at_64_kib(server: ThreadedUvicorn) -> None:
    names = [{"file_name": "n" * 1000} for _ in range(70)]  # about 70 KB of JSON
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", headers=AUTH, timeout=10) as c:
        r = c.post("/v1/uploads", json={"files": names})
        assert r.status_code == 413 and r.json()["type"].endswith("request_too_large"), r.text
        chunked = c.post("/v1/uploads", content=iter([b'{"files": [', b" " * 70_000, b"]}"]))
        assert chunked.status_code == 413 and chunked.json()["type"].endswith("request_too_large"), chunked.text
        small = c.post("/v1/uploads", json={"files": names[:5]})
        assert small.status_code == 201, small.text


@pytest.fixture(scope="module")
def api_process(resources: LocalResources, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with ApiProcess(resources, tmp_path_factory.mktemp("api-logs")) as api:
        yield api


@pytest.mark.parametrize("kind", ["json", "multipart"])
def test_an_unauthenticated_50_mb_body_is_401_with_bounded_memory(api_process: ApiProcess, kind: str) -> None:
    """Measured on the server process (uvicorn, as ``make dev`` runs it): its peak RSS may not grow by the body."""
    size = 50 * MIB
    chunk = b"[" + b"1," * (MIB // 2 - 1) if kind == "json" else b"\x00" * MIB
    content_type = "application/json" if kind == "json" else "multipart/form-data; boundary=b"
    path = "/v1/uploads" if kind == "json" else "/v1/images"
    before = api_process.rss_kib()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # the highest resident size while the request runs, every 10 ms
        while not done.wait(0.01):
            peak[0] = max(peak[0], api_process.rss_kib())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        r = httpx.post(
            api_process.url + path,
            content=iter([chunk] * (size // len(chunk))),
            headers={"Content-Type": content_type, "Content-Length": str(size // len(chunk) * len(chunk))},
            timeout=60,
        )
    finally:
        done.set()
        sampler.join()
    grown_mib = (max(peak[0], api_process.rss_kib()) - before) / 1024
    print(f"{kind}: peak RSS grew by {grown_mib:.1f} MiB (from {before / 1024:.0f} MiB)")
    assert r.status_code == 401 and r.json()["type"].endswith("missing_api_key"), r.text
    assert grown_mib < 20, f"the server's peak memory grew by {grown_mib:.0f} MiB for a refused 50 MB body"
