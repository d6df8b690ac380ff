"""A small HTTP client for the segscale API with the retry rules an uploader needs.

Connection errors, timeouts and 429/502/503/504 are retried with backoff; a POST is retried only with an
``Idempotency-Key``, so the API answers a repeated request with the first answer instead of new jobs.
Everything else (a 4xx) is the caller's problem and is raised with the API's problem ``detail``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

# 408: the API gave up on a body that stopped arriving; the same request (same Idempotency-Key) may go through now.
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})


class ApiError(RuntimeError):
    """The API refused a request (or kept failing); ``status`` is the last HTTP status, 0 for no answer."""

    def __init__(self, message: str, status: int = 0, file_errors: dict[int, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        # For a refused multi-file upload: the index of each refused file in the request, with its reason.
        self.file_errors = file_errors or {}


def _file_errors(response: httpx.Response) -> dict[int, str]:
    """The per-file ``errors`` of a problem body (the API refuses a whole request for one bad file)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return {}
    return {
        int(
            e["index"]
        ): f"HTTP {e.get('status', response.status_code)}: {e.get('detail') or e.get('type') or 'refused'}"
        for e in errors
        if isinstance(e, dict) and isinstance(e.get("index"), int)
    }


def _problem(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)[:200]


class ApiClient:
    def __init__(
        self,
        endpoint: str,
        api_key: str | None,
        *,
        retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"X-Api-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=endpoint, headers=headers, timeout=timeout_s)
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, idempotency_key: str | None = None, **kwargs: Any) -> Any:
        """Send with retries; returns the decoded JSON body of a 2xx answer."""
        retryable = method in ("GET", "HEAD") or idempotency_key is not None
        headers = dict(kwargs.pop("headers", {}) or {})
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        attempts = 1 + (self.retries if retryable else 0)
        last = "no attempt made"
        status = 0
        for attempt in range(attempts):
            if attempt:
                self.sleep(min(self.backoff_s * 2 ** (attempt - 1), 8.0))
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                last, status = f"{type(exc).__name__}: {exc}", 0
                continue
            if response.status_code in RETRY_STATUSES:
                last, status = f"HTTP {response.status_code}: {_problem(response)}", response.status_code
                continue
            if response.is_success:
                return response.json()
            raise ApiError(
                f"HTTP {response.status_code}: {_problem(response)}", response.status_code, _file_errors(response)
            )
        raise ApiError(f"{method} {path} failed after {attempts} attempt(s): {last}", status)

    # --- the endpoints the CLI uses ---------------------------------------------------------------------
    def upload(
        self,
        files: list[tuple[str, bytes]],
        *,
        idempotency_key: str,
        model: str | None = None,
        mm_per_pixel: float | None = None,
        batch_id: str | None = None,
    ) -> dict[str, Any]:
        data: dict[str, str] = {}
        if batch_id:
            data["batch_id"] = batch_id
        if model:
            data["model"] = model
        if mm_per_pixel is not None:
            data["mm_per_pixel"] = repr(mm_per_pixel)
        parts = [("file", (name, content, "application/octet-stream")) for name, content in files]
        return dict(self.request("POST", "/v1/images", idempotency_key=idempotency_key, files=parts, data=data))

    def create_batch(self, batch_id: str, *, notify_url: str | None = None) -> dict[str, Any]:
        """Idempotent (the same id and URL give the same answer), so it is retried like an upload."""
        body: dict[str, Any] = {"batch_id": batch_id}
        if notify_url:
            body["notify_url"] = notify_url
        return dict(self.request("POST", "/v1/batches", idempotency_key=uuid.uuid4().hex, json=body))

    def seal(self, batch_id: str) -> dict[str, Any]:
        """Idempotent: sealing a sealed batch answers the same."""
        return dict(self.request("POST", f"/v1/batches/{batch_id}/seal", idempotency_key=uuid.uuid4().hex))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/jobs/{job_id}"))

    def batch_page(self, batch_id: str, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return dict(self.request("GET", f"/v1/batches/{batch_id}", params=params))
