"""RFC 9457 problem responses: every error the API gives is ``application/problem+json`` with a stable ``type``.

Clients (the CLI, scripts) branch on ``type`` and ``status``; ``detail`` is for people. Routes list the problems
they can answer with ``responses=problem_responses(...)`` so ``/docs`` documents every error.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:segscale:problem:"
log = logging.getLogger("segscale.api")


class FileProblem(BaseModel):
    """What is wrong with one file of a multi-file request."""

    index: int = Field(description="position of the file in the request, from 0")
    file_name: str
    type: str
    status: int
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="stable identifier, e.g. urn:segscale:problem:unsupported_media_type")
    title: str
    status: int
    detail: str
    instance: str | None = Field(default=None, description="the request path")
    request_id: str | None = None
    errors: list[FileProblem] | None = Field(default=None, description="per-file problems, when files were refused")


class ApiProblem(Exception):
    """Raised anywhere in request handling; becomes a problem response."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        title: str | None = None,
        errors: list[FileProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.title = title or TITLES.get(status, "Error")
        self.errors = errors
        self.headers = headers


TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}

DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed: not multipart where multipart is expected, a bad boundary, a broken part, "
    "or a JSON body that is not UTF-8.",
    401: "Missing, wrong or revoked `X-Api-Key` (checked before any of the body is read).",
    403: "Only the deployment's admin key (the bootstrap key) may do this; or the `source` of a batch lies outside "
    "this deployment's allowed sources (the problem names them), or the API may not read it.",
    404: "No such job or batch (or the job has no such result yet). Another client's job or batch is answered the "
    "same way, so a key cannot tell whether an id is in use.",
    408: "The request body stopped arriving for longer than `request_body_timeout_s`; the connection is closed.",
    409: "The `Idempotency-Key` was used before with a different request body; the batch cannot be submitted; or "
    "the batch is sealed (it takes no more images) or has another `notify_url`.",
    413: "A file, or the request, is over the size limit (a body that is not a multipart upload: 64 KiB); too many "
    "files; or an image has too many pixels.",
    415: "A file is not a supported image (sniffed from its bytes, not its name): JPEG, PNG, WebP, BMP, TIFF, GIF.",
    422: "Invalid input: no file, empty file, corrupt/truncated image, unknown model, bad `mm_per_pixel`, bad "
    "field, or a `notify_url` that may not receive webhooks.",
    500: "Unexpected server error (a bug): logged with the request id, nothing was accepted.",
    503: "Storage (S3 or DynamoDB) or the API key is unavailable; nothing was accepted, retry after `Retry-After` "
    "seconds (with the same Idempotency-Key).",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the problems a route can answer (500 is always possible; the codes that
    every ``/v1`` route can answer before it runs are added by ``runtime.api.openapi``)."""
    return {code: problem_response_doc(code) for code in (*codes, 500)}


def problem_response_doc(code: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "description": DESCRIPTIONS[code],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if code == 503:
        doc["headers"] = {
            "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}
        }
    return doc


def problem_response(
    request: Request,
    status: int,
    kind: str,
    detail: str,
    *,
    title: str | None = None,
    errors: list[FileProblem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=TYPE_PREFIX + kind,
        title=title or TITLES.get(status, "Error"),
        status=status,
        detail=detail,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def from_exception(request: Request, exc: ApiProblem) -> JSONResponse:
    return problem_response(
        request, exc.status, exc.kind, exc.detail, title=exc.title, errors=exc.errors, headers=exc.headers
    )


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path, for a 405's ``Allow``."""
    allowed = [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


def install(app: FastAPI) -> None:
    """Route every error through the problem format, including FastAPI's own and unexpected ones."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return from_exception(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(request, 422, "invalid_request", _validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":  # FastAPI's, for non-UTF-8
            kind, detail = "malformed_body", "the body is not UTF-8 JSON"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the methods of one route; a path may have several
            headers["Allow"] = allowed_methods(request)
        return problem_response(request, exc.status_code, kind, detail, headers=headers)

    @app.exception_handler(BotoCoreError)
    @app.exception_handler(ClientError)
    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "storage unavailable", extra={"event": "storage_error", "error": f"{type(exc).__name__}: {exc}"[:500]}
        )
        return problem_response(
            request, 503, "storage_unavailable", "storage is unavailable; retry later", headers={"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"event": "unexpected_error"})
        return problem_response(request, 500, "internal_error", "unexpected server error; it has been logged")
