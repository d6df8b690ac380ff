"""Worker fixtures: a models folder with the tiny redness model under several cards, built once per module."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from local.resources import create_resources
from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.worker.helpers import write_card


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_card(root, "red")  # fixed 64x64 stretch
    write_card(
        root,
        "red-aspect",
        input={"short_side": 48, "multiple_of": 16, "max_side": 256, "resize": "keep_aspect", "color_order": "RGB"},
    )
    write_card(
        root,
        "blobs",
        runtime="opencv",
        processor="otsu",
        file=None,
        input=None,
        output=None,
        classes=[{"id": 1, "name": "object", "color": [0, 255, 0]}],
    )
    write_card(root, "red-tampered", sha256="0" * 64)  # the file does not match its card
    (root / "broken").mkdir()
    (root / "broken" / "card.json").write_text('{"name": "broken", "version": "1"}')  # invalid card
    return root


@pytest.fixture()
def worker_settings(settings: Settings, models_dir: Path) -> Settings:
    return settings.model_copy(update={"models_dir": models_dir, "worker_io_threads": 4, "max_pixels": 4_000_000})


@pytest.fixture()
def s3(worker_settings: Settings) -> Any:
    return client("s3", worker_settings)


class _SerialApp:
    """Handles one request at a time. moto's threaded server does not make a conditional write atomic: two
    concurrent ``claim`` calls on one item both succeeded in 17 of 200 tries here, which real DynamoDB never
    allows. Serialising requests restores the atomicity that duplicate-delivery tests depend on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            return list(self.inner(environ, start_response))


@pytest.fixture(scope="module")
def serial_moto_endpoint() -> Iterator[str]:
    app = _SerialApp(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture()
def serial_settings(serial_moto_endpoint: str, models_dir: Path) -> Settings:
    """Fresh resources on a moto server with atomic conditional writes, for races between workers."""
    res = create_resources(serial_moto_endpoint, prefix=f"t{uuid.uuid4().hex[:12]}")
    return Settings(
        endpoint_url=res.endpoint_url,
        region=res.region,
        bucket=res.bucket,
        table=res.table,
        queue_url=res.queue_url,
        models_dir=models_dir,
        worker_io_threads=4,
    )
