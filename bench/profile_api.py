"""Where an upload's time goes inside the API: ``python -m bench.profile_api [--uploads N]``.

``api_load`` measures uploads/s against two floors (``GET /healthz``, and the bare handler: the same S3 PUT and
DynamoDB put with no API); this splits the handler itself. It parses the multipart bodies ``api_load`` sends
(``multipart.parse``) and runs ``intake.accept`` on them against a moto server, one upload at a time, timing
the stages: multipart parsing, the image check (``check_image``), the S3 PUT, the DynamoDB put, and the rest of
``accept`` (fingerprint, the answer). What an upload costs beyond these is HTTP and the framework: uvicorn,
Starlette, the middleware (API key, request log). Not a benchmark module (the harness does not run it); it
writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

CHUNK_BYTES = 64 * 1024  # what uvicorn hands the app per receive, roughly


def multipart_body(photo: bytes, boundary: str = "segscalebench") -> tuple[str, bytes]:
    """(content type, body) of a one-file upload, as an HTTP client sends it."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return f"multipart/form-data; boundary={boundary}", head + photo + f"\r\n--{boundary}--\r\n".encode()


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), CHUNK_BYTES):
        yield body[i : i + CHUNK_BYTES]


def _timed(stages: dict[str, list[float]], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` that adds its wall time to ``stages[name]`` (the stage of the upload in progress)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[name][-1] += (time.perf_counter() - started) * 1000

    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_api", description=__doc__)
    parser.add_argument("--uploads", type=int, default=60)
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from moto.server import ThreadedMotoServer

    from bench.api_load import make_photos
    from local.procs import free_port
    from local.resources import create_resources
    from runtime.api import intake, multipart
    from runtime.api.callers import ADMIN
    from runtime.api.services import build_services

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    photos = make_photos()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stages: dict[str, list[float]] = defaultdict(list)
    names = ("multipart parse", "image check", "S3 PUT", "DynamoDB put", "rest of accept", "total")
    try:
        resources = create_resources(f"http://127.0.0.1:{port}", prefix=f"prof{uuid.uuid4().hex[:8]}")
        services = build_services(resources.settings())
        services.s3.put_object = _timed(stages, "S3 PUT", services.s3.put_object)
        services.store.create = _timed(stages, "DynamoDB put", services.store.create)
        intake.check_image = _timed(stages, "image check", intake.check_image)
        limits = multipart.Limits(max_file_bytes=services.settings.max_upload_bytes, max_files=1)
        for i in range(args.uploads + 1):
            content_type, body = multipart_body(photos[i % len(photos)])
            for name in names:
                stages[name].append(0.0)
            started = time.perf_counter()
            form = asyncio.run(multipart.parse(content_type, str(len(body)), _chunks(body), limits))
            parsed = time.perf_counter()
            intake.accept(services, form, idempotency_key=None, caller=ADMIN)
            form.close()
            done = time.perf_counter()
            stages["multipart parse"][-1] = (parsed - started) * 1000
            inner = sum(stages[n][-1] for n in ("image check", "S3 PUT", "DynamoDB put"))
            stages["rest of accept"][-1] = (done - parsed) * 1000 - inner
            stages["total"][-1] = (done - started) * 1000
    finally:
        server.stop()
    total = statistics.median(stages["total"][1:])  # the first upload warms clients and caches
    print(f"{args.uploads} uploads of {len(photos[0]) // 1024} KB JPEGs, one at a time: median ms by stage")
    for name in names:
        med = statistics.median(stages[name][1:])
        print(f"  {name:16s} {med:7.2f} ms  {100 * med / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
