"""Helpers for the API tests: images, hand-built multipart bodies, and what a test's resources hold.

Multipart bodies are built by hand (not by httpx) so tests control every byte: NUL in file names, duplicate fields,
parts without a file name.
"""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient
from PIL import Image

from runtime.common.aws import client
from runtime.common.settings import Settings

API_KEY = "test-key"
AUTH = {"X-Api-Key": API_KEY}


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (48, 32), seed: int = 0) -> bytes:
    img = Image.new("RGB", size)
    img.putdata(
        [((x * 5 + seed) % 256, (y * 7) % 256, (x * y + seed) % 256) for y in range(size[1]) for x in range(size[0])]
    )
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[dict[str, str], bytes]:
    """``(name, filename or None, data)`` parts -> (headers, body)."""
    boundary = uuid.uuid4().hex
    out = bytearray()
    for name, filename, data in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, bytes(out)


def files(*data: bytes, **fields: str) -> tuple[dict[str, str], bytes]:
    parts: list[tuple[str, str | None, bytes]] = [("file", f"img{i}.jpg", d) for i, d in enumerate(data)]
    parts += [(k, None, v.encode()) for k, v in fields.items()]
    return multipart(parts)


def post_images(api: TestClient, *data: bytes, headers: dict[str, str] | None = None, **fields: str) -> Any:
    h, body = files(*data, **fields)
    return api.post("/v1/images", content=body, headers={**h, **(headers or {})})


def stored(settings: Settings) -> dict[str, Any]:
    """Everything in this test's bucket, table and queue (the queue is drained)."""
    s3 = client("s3", settings)
    ddb = client("dynamodb", settings)
    sqs = client("sqs", settings)
    objects = [o["Key"] for o in s3.list_objects_v2(Bucket=settings.bucket).get("Contents", [])]
    items = ddb.scan(TableName=settings.table)["Items"]
    jobs = {i["job_id"]["S"]: i for i in items if i["pk"]["S"].startswith("job#")}
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        msgs = got.get("Messages", [])
        if not msgs:
            break
        for m in msgs:
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=settings.queue_url, ReceiptHandle=m["ReceiptHandle"])
    return {"objects": objects, "jobs": jobs, "messages": bodies, "items": items}


def assert_nothing_stored(settings: Settings) -> None:
    s = stored(settings)
    assert s["objects"] == [] and s["items"] == [] and s["messages"] == [], s


class ThreadedUvicorn:
    """The app on a real socket (uvicorn in a thread), for what TestClient cannot show: TestClient reads the
    whole request body before the app runs, so only a real server proves an oversized upload is cut short."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from local.procs import free_port

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)

    def __enter__(self) -> ThreadedUvicorn:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class ApiProcess:
    """The API as ``make dev`` runs it (``uvicorn runtime.api.main:app`` in its own process) on a test's resources,
    for what needs a real server process: its memory, or a client that is not Python (the schemathesis CLI)."""

    def __init__(self, resources: Any, log_dir: Any, **settings: str) -> None:
        from local.dev import settings_env
        from local.procs import free_port

        self.port = free_port()
        self.env = {**resources.env(), **settings_env({"api_key": API_KEY, **settings})}
        self.log_dir = log_dir
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        """The process's resident memory now (VmRSS), in KiB."""
        from pathlib import Path

        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))

    def __enter__(self) -> ApiProcess:
        from local.dev import start_api

        self.proc = start_api(self.port, self.env, log_dir=self.log_dir, timeout_s=60)
        return self

    def __exit__(self, *exc: object) -> None:
        from local.procs import stop

        stop(self.proc)


def presigned_post(job: dict[str, Any], data: bytes) -> httpx.Response:
    """What a client does with one job of ``POST /v1/uploads``: a form POST of its fields, then the file."""
    return httpx.post(
        job["upload_url"], data=job["fields"], files={"file": ("upload", data, "application/octet-stream")}
    )
