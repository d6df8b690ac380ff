"""Connection hygiene for every request: a stalled body times out, an early answer reaches the client, and an
unexpected error is a 500 problem on a connection that stays sane (a pure ASGI middleware, so bodies stream).

Why each rule exists:
- A body that stops arriving would hold a request (and its spooled upload) forever: every read of the body waits
  at most ``request_body_timeout_s``, then the answer is 408 and the connection is closed.
- An answer sent before the body was read (a 401, a 413, a 415) must reach clients that write the whole body
  before they read anything (httpx, requests: the CLI's own pooled client). Closing a socket that still holds
  unread data makes the kernel reset the connection, and the reset destroys the answer in the client's buffers.
  So such an answer says ``Connection: close`` and its end waits until the rest of the body has been read and
  discarded, up to ``DRAIN_MAX_BYTES`` and ``DRAIN_MAX_S`` (a declared length beyond that is not drained: it
  would cost more than the client's answer is worth); then the connection closes cleanly.
- An unexpected exception reaching the server makes it close the connection without saying so, and a pooled
  client then sends its next request into a dead connection. Here it becomes a 500 problem like every other
  error, logged with the request id.

In Lambda mode (Mangum) there is no connection: the body arrives whole and only the 500 rule matters.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.types import Message

from runtime.api.problems import ApiProblem, problem_response

log = logging.getLogger("segscale.api")

DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_S = 30.0


class BodyTimeout(ApiProblem):
    """The client stopped sending its body."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            408, "request_timeout", f"the request body stopped arriving for {timeout_s:g} s; send it again"
        )


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


class _Exchange:
    """One request's body and answer, as the guard sees them."""

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any, timeout_s: float) -> None:
        self._receive = receive
        self._send = send
        self.timeout_s = timeout_s
        self.lambda_mode = "aws.event" in scope
        length = _header(scope, b"content-length")
        self.declared = int(length) if length is not None and length.isdigit() else None
        chunked = _header(scope, b"transfer-encoding") is not None
        self.body_done = not chunked and not self.declared  # no body at all: nothing to wait for
        self.expects_continue = (_header(scope, b"expect") or b"").lower() == b"100-continue"
        self.received = 0
        self.timed_out = False
        self.started = False
        self.drain_before_end = False

    # --- the body -----------------------------------------------------------------------------------------
    async def receive(self) -> dict[str, Any]:
        if self.body_done:
            return await self._receive()  # only a disconnect can come now: no deadline
        try:
            message: dict[str, Any] = await asyncio.wait_for(self._receive(), self.timeout_s)
        except TimeoutError:
            self.timed_out = True
            raise BodyTimeout(self.timeout_s) from None
        self._count(message)
        return message

    def _count(self, message: dict[str, Any]) -> int:
        if message["type"] == "http.request":
            size = len(message.get("body", b""))
            self.received += size
            if not message.get("more_body", False):
                self.body_done = True
            return size
        self.body_done = True  # http.disconnect
        return 0

    async def drain(self) -> None:
        """Read and discard the rest of the body, within the bounds; stop early on a stall or a disconnect."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_MAX_S
        drained = 0
        while not self.body_done and drained <= DRAIN_MAX_BYTES:
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(self._receive(), min(self.timeout_s, left))
            except TimeoutError:
                return
            drained += self._count(message)

    def _should_drain(self) -> bool:
        if self.body_done or self.timed_out or (self.expects_continue and self.received == 0):
            return False  # nothing left, or the client will not send it (it stalled, or waits for a 100)
        return self.declared is None or self.declared - self.received <= DRAIN_MAX_BYTES

    # --- the answer ---------------------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if not self.body_done and not self.lambda_mode:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
                self.drain_before_end = self._should_drain()
        elif message["type"] == "http.response.body" and self.drain_before_end and not message.get("more_body"):
            self.drain_before_end = False
            await self._send({**message, "more_body": True})  # the whole answer is out; only its end waits
            await self.drain()
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await self._send(message)


class ConnectionGuard:
    def __init__(self, app: Any, *, body_timeout_s: float) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send, self.body_timeout_s)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if exchange.started:
                raise  # half an answer is out: only closing the connection can tell the client
            log.exception("unexpected error", extra={"event": "unexpected_error"})
            response = problem_response(
                Request(scope), 500, "internal_error", "unexpected server error; it has been logged"
            )
            await response(scope, exchange.receive, exchange.send)
