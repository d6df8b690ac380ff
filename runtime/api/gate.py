"""Authenticate every ``/v1`` request, and bound its body, before any of the body is read (a pure ASGI middleware).

A FastAPI dependency runs only after FastAPI has read and parsed the JSON body, so an unauthenticated client
could make the API hold a body of any size (and get a 422 for malformed JSON instead of a 401). Here the key is
checked from the headers alone; then a request that is not the streamed multipart upload (``POST /v1/images``,
which counts its own bytes as they arrive) has its body read here, at most ``SMALL_BODY_MAX_BYTES``, before the
route sees it. A ``Content-Length`` over that is refused without reading a byte. The answers are the API's usual
problem bodies; the guard (``runtime/api/guard.py``) makes sure they reach the client.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from runtime.api import problems
from runtime.api.callers import ADMIN, Caller, client_caller
from runtime.api.problems import ApiProblem
from runtime.api.services import Services

API_KEY_HEADER = "X-Api-Key"
PROTECTED_PREFIX = "/v1/"
SMALL_BODY_MAX_BYTES = 64 * 1024
STREAMED_UPLOADS = {("POST", "/v1/images")}


def authenticate(services: Services, key: str | None) -> Caller:
    """The caller a key belongs to: a stored client key (runtime/common/clients.py), else the bootstrap key (the
    admin), compared in constant time. With auth enabled and no bootstrap key configured or readable, every request
    that is not a client's is refused."""
    if not services.settings.auth_enabled:
        return ADMIN
    if key is not None and (caller := client_caller(services.client_keys, key)) is not None:
        return caller
    check = services.api_keys
    if not check.configured:
        raise ApiProblem(503, "auth_not_configured", "the server has no API key configured; ask the operator")
    check.ensure_available()  # the key in Secrets Manager (Lambda mode) cannot be read: 503, not 401
    if key is None:
        raise ApiProblem(401, "missing_api_key", f"send the API key in the {API_KEY_HEADER} header")
    if not check.matches(key):
        raise ApiProblem(401, "wrong_api_key", "the API key is not valid")
    return ADMIN


async def read_small_body(request: Request, receive: Any, limit: int) -> list[dict[str, Any]]:
    """The body as the messages to replay: one ``http.request`` (or the disconnect that cut it short)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiProblem(413, "request_too_large", f"the body is {int(declared):,} bytes; the limit here is {limit:,}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return [message]
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiProblem(413, "request_too_large", f"the body is over the limit of {limit:,} bytes here")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]


def replaying(messages: list[dict[str, Any]], receive: Any) -> Any:
    pending = list(messages)

    async def replay() -> dict[str, Any]:
        return pending.pop(0) if pending else await receive()

    return replay


class RequestGate:
    def __init__(self, app: Any, *, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            caller = await run_in_threadpool(authenticate, self.services, request.headers.get(API_KEY_HEADER))
            request.state.caller = caller  # deps.require_api_key need not check again; the request log names it
            if (scope["method"], scope["path"]) not in STREAMED_UPLOADS:
                receive = replaying(await read_small_body(request, receive, SMALL_BODY_MAX_BYTES), receive)
        except ApiProblem as exc:
            await problems.from_exception(request, exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)
