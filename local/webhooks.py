"""A webhook receiver on loopback for the local stack and the tests: it records each delivery, checks its
signature with the deployment's secret, and answers as told (``respond``: tests script failures and slowness).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from local.procs import log_event
from runtime.common.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Reply:
    status: int = 200
    delay_s: float = 0.0  # wait this long before answering (a slow receiver)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Delivery:
    number: int  # 1 for the first request this receiver got
    received_at: float
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    verified: bool | None  # None: no secret to check with
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(
        self,
        *,
        secret: str | None = None,
        respond: Callable[[int], Reply] | None = None,
        path: Path | None = None,
        log: IO[str] | None = None,
        port: int = 0,
    ) -> None:
        self.secret = secret
        self.respond = respond or (lambda _n: Reply())
        self.path = path
        self.log = log
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: deliveries are logged as events
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self._count += 1
            number = self._count
        length = min(int(request.headers.get("Content-Length") or 0), MAX_BODY)
        body = request.rfile.read(length)
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = None
        if self.secret is not None:
            verified = verify(
                self.secret,
                headers.get(TIMESTAMP_HEADER.lower(), ""),
                headers.get(SIGNATURE_HEADER.lower(), ""),
                body,
                now_s=int(time.time()),
            )
        reply = self.respond(number)
        delivery = Delivery(number, time.time(), request.path, headers, body, verified, reply.status)
        with self._lock:
            self.deliveries.append(delivery)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        try:
            request.send_response(reply.status)
            for name, value in reply.headers.items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(reply.body)))
            request.end_headers()
            request.wfile.write(reply.body)
        except OSError:  # the sender gave up waiting (a time-out test)
            pass
        self._record(delivery)

    def _record(self, delivery: Delivery) -> None:
        fields = {"number": delivery.number, "verified": delivery.verified, "answered": delivery.status}
        try:
            doc = delivery.json()
            fields.update(event_id=doc.get("id"), type=doc.get("type"), batch_id=doc.get("detail", {}).get("batch_id"))
        except ValueError:
            fields["body_bytes"] = len(delivery.body)
        log_event(self.log, "webhook_received", **fields)
        if self.path is not None:
            with self.path.open("a") as out:
                out.write(json.dumps({**fields, "body": delivery.body.decode("utf-8", "replace")}) + "\n")
