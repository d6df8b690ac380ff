"""Lambda mode: the same app through Mangum, fed real Function URL / API Gateway HTTP API (payload 2.0) events."""

from __future__ import annotations

import base64
import json
import time
from types import SimpleNamespace
from typing import Any

import pytest

from runtime.api.lambda_handler import lambda_settings, make_handler
from runtime.common.settings import Settings
from tests.api.helpers import API_KEY, files, image_bytes, stored


def _event(shape: str, method: str, path: str, headers: dict[str, str], body: bytes | None) -> dict[str, Any]:
    now = int(time.time() * 1000)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default" if shape == "function-url" else f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc123.lambda-url.us-east-1.on.aws", "user-agent": "curl/8.5.0", **headers},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "6f0e7c4b-1b0a-4a39-9d7a-0c1f2d3e4f50",
            "routeKey": "$default",
            "stage": "$default",
            "time": "30/Nov/2026:10:00:00 +0000",
            "timeEpoch": now,
        },
        "isBase64Encoded": body is not None,
    }
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
    return event


def _context() -> SimpleNamespace:
    return SimpleNamespace(
        aws_request_id="lambda-req-42",
        function_name="segscale-api",
        memory_limit_in_mb=1024,
        get_remaining_time_in_millis=lambda: 29_000,
    )


@pytest.mark.parametrize("shape", ["function-url", "http-api"])
def test_binary_multipart_upload_through_mangum(api_settings: Settings, shape: str) -> None:
    settings = api_settings.model_copy(update={"batch_window_s": 5.0})  # Lambda mode must override this to 0
    handler = make_handler(settings)
    jpeg = image_bytes("JPEG", (40, 30))
    h, body = files(jpeg, mm_per_pixel="0.3")
    headers = {"content-type": h["Content-Type"], "x-api-key": API_KEY, "content-length": str(len(body))}
    out = handler(_event(shape, "POST", "/v1/images", headers, body), _context())
    assert out["statusCode"] == 202, out
    accepted = json.loads(out["body"])
    assert out["headers"]["x-request-id"] == "lambda-req-42"
    s = stored(api_settings)  # sent before the response returned: nothing may wait in a frozen Lambda
    assert [m["job_ids"] for m in s["messages"]] == [[accepted["jobs"][0]["job_id"]]]
    job = s["jobs"][accepted["jobs"][0]["job_id"]]
    assert job["width"]["N"] == "40" and job["height"]["N"] == "30" and job["status"]["S"] == "QUEUED"

    status = handler(_event(shape, "GET", accepted["jobs"][0]["status_url"], {"x-api-key": API_KEY}, None), _context())
    assert status["statusCode"] == 200 and json.loads(status["body"])["status"] == "QUEUED"


def test_bad_input_through_mangum_is_a_problem(api_settings: Settings) -> None:
    handler = make_handler(api_settings)
    h, body = files(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    out = handler(
        _event("function-url", "POST", "/v1/images", {"content-type": h["Content-Type"], "x-api-key": API_KEY}, body),
        _context(),
    )
    assert out["statusCode"] == 415 and out["headers"]["content-type"] == "application/problem+json"
    assert json.loads(out["body"])["request_id"] == "lambda-req-42"
    assert stored(api_settings)["items"] == []
    no_key = handler(_event("function-url", "GET", "/v1/models", {}, None), _context())
    assert no_key["statusCode"] == 401


def test_lambda_settings_force_window_zero(api_settings: Settings) -> None:
    assert lambda_settings(api_settings.model_copy(update={"batch_window_s": 2.0})).batch_window_s == 0.0


def test_the_gate_through_mangum(api_settings: Settings) -> None:
    """Authentication before the body and the replayed JSON body work without a socket (no connection header)."""
    handler = make_handler(api_settings)
    json_type = {"content-type": "application/json"}
    refused = handler(_event("function-url", "POST", "/v1/uploads", json_type, b"{not json"), _context())
    assert refused["statusCode"] == 401 and json.loads(refused["body"])["type"].endswith("missing_api_key")
    assert "connection" not in refused["headers"]
    body = json.dumps({"files": [{"file_name": "a.jpg"}], "mm_per_pixel": 0.5}).encode()
    out = handler(_event("function-url", "POST", "/v1/uploads", {**json_type, "x-api-key": API_KEY}, body), _context())
    assert out["statusCode"] == 201, out
    assert len(json.loads(out["body"])["jobs"]) == 1
