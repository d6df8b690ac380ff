"""Raw HTTP calls to a moto server (SigV4-shaped, unsigned: moto reads the scope only), so the equivalence tests
compare exactly what a client receives and the benchmark spends next to nothing on the client side."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


def _auth(service: str) -> str:
    # moto reads the credential scope (and never checks the signature)
    scope = f"testing/20250101/us-east-1/{service}/aws4_request"
    return f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def call(
    url: str, method: str, path: str, service: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> Reply:
    request = urllib.request.Request(
        url + path, method=method, data=body or None, headers={"Authorization": _auth(service), **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read())


def dynamodb(url: str, operation: str, payload: dict[str, Any]) -> Reply:
    headers = {"X-Amz-Target": f"DynamoDB_20120810.{operation}", "Content-Type": "application/x-amz-json-1.0"}
    return call(url, "POST", "/", "dynamodb", headers, json.dumps(payload).encode())
