"""One webhook delivery attempt: a signed POST to a checked address, bounded in time, never following redirects.

The connection goes to the address ``check_url`` approved (the name is not resolved again), while TLS still
verifies the certificate for the URL's host name. Standard library only: the results image has no HTTP client.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from runtime.common.webhooks import WebhookTarget

MAX_ERROR_CHARS = 300
READ_LIMIT = 4096  # of the receiver's answer: enough to say why it failed, and no more


@dataclass(frozen=True)
class AttemptOutcome:
    ok: bool
    status: int | None  # the HTTP status, None when no answer came
    error: str | None  # why it failed, for the attempt record
    ms: int


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: WebhookTarget, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self.address = target.address
        self.tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def _interrupt(conn: http.client.HTTPConnection) -> None:
    """Called when the whole attempt overran: a receiver that trickles bytes is cut off, not waited for."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def post(target: WebhookTarget, body: bytes, headers: dict[str, str], *, timeout_s: float) -> AttemptOutcome:
    """POST ``body`` once. Success is a 2xx answer within ``timeout_s`` (connect, send and answer together)."""
    started = time.monotonic()
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = _PinnedHTTPS(target, timeout_s, ssl.create_default_context())
    else:
        conn = _PinnedHTTP(target, timeout_s)
    timer = threading.Timer(timeout_s, _interrupt, args=(conn,))
    timer.daemon = True
    timer.start()
    status: int | None = None
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        status = response.status
        answer = response.read(READ_LIMIT)
        location = response.getheader("Location")
    except TimeoutError:
        return _outcome(started, status, f"timed out after {timeout_s:g} s")
    except (OSError, http.client.HTTPException) as exc:
        if time.monotonic() - started >= timeout_s:
            return _outcome(started, status, f"timed out after {timeout_s:g} s")
        return _outcome(started, status, f"{type(exc).__name__}: {exc}")
    finally:
        timer.cancel()
        conn.close()
    if 200 <= status < 300:
        return _outcome(started, status, None)
    if 300 <= status < 400:
        return _outcome(started, status, f"HTTP {status} redirect to {location!r}: redirects are not followed")
    text = answer.decode("utf-8", "replace").strip()
    return _outcome(started, status, f"HTTP {status}" + (f": {text}" if text else ""))


def _outcome(started: float, status: int | None, error: str | None) -> AttemptOutcome:
    ms = int((time.monotonic() - started) * 1000)
    return AttemptOutcome(ok=error is None, status=status, error=error[:MAX_ERROR_CHARS] if error else None, ms=ms)
