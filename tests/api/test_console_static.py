"""The web console as files over HTTP: what is served, with which headers, in both API modes.

What only a browser can show (the page working, the policy enforced) is in tests/browser.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from runtime.api.console import ASSETS, STATIC_DIR
from runtime.api.lambda_handler import make_handler
from runtime.common.settings import Settings
from tests.api.test_lambda import _context, _event

NO_KEY = {"X-Api-Key": ""}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data.strip()


def test_page_needs_no_key_and_carries_a_strict_policy(api: TestClient, api_settings: Settings) -> None:
    r = api.get("/", headers=NO_KEY)
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    storage = urlsplit(api_settings.endpoint_url or "")
    policy = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
    assert policy == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": f"'self' {storage.scheme}://{storage.netloc}",  # presigned result images: moto here, S3 on AWS
        "connect-src": f"'self' {storage.scheme}://{storage.netloc}",  # presigned uploads
        "form-action": "'none'",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "require-trusted-types-for": "'script'",
        "trusted-types": "'none'",
    }
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"


def test_page_has_no_inline_code_and_no_other_origin() -> None:
    parser = _Tags()
    parser.feed((STATIC_DIR / "index.html").read_text())
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts == [{"src": "console/app.js", "defer": None}] and parser.script_text == ""
    for tag, attrs in parser.tags:
        assert not [a for a in attrs if a.startswith("on") or a == "style"], (tag, attrs)
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert "//" not in value and not value.startswith(("javascript:", "data:")), (tag, attrs)
    inputs = [attrs for tag, attrs in parser.tags if tag in ("input", "select")]
    labelled = {attrs["for"] for tag, attrs in parser.tags if tag == "label" and attrs.get("for")}
    assert all(a["id"] in labelled for a in inputs if a.get("type") != "radio"), "every field has a label"
    assert "name" not in next(a for a in inputs if a["id"] == "api-key"), "a named key field could reach a URL"


def test_script_builds_no_html_from_strings() -> None:
    source = re.sub(r"^\s*//.*$", "", (STATIC_DIR / "app.js").read_text(), flags=re.MULTILINE)  # code, not comments
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink
    assert "localStorage" not in source and "sessionStorage" in source  # the key lives in this tab only
    assert re.findall(r"https?://", source) == []


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_assets_are_served_with_their_type_and_revalidate(api: TestClient, name: str) -> None:
    r = api.get(f"/console/{name}", headers=NO_KEY)
    assert r.status_code == 200 and r.content == (STATIC_DIR / name).read_bytes()
    assert r.headers["content-type"].split(";")[0] in {"text/javascript", "text/css", "image/svg+xml"}
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-cache"
    again = api.get(f"/console/{name}", headers={**NO_KEY, "If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", ["/console/index.html", "/console/nope.js", "/console/..%2Fmain.py", "/console/"])
def test_only_the_console_files_are_served(api: TestClient, path: str) -> None:
    r = api.get(path, headers=NO_KEY)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_console_routes_stay_out_of_the_openapi_document(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not [p for p in paths if p.startswith("/console")]
    assert {"/v1/limits", "/v1/batches/{batch_id}/jobs.csv", "/v1/batches/{batch_id}/report"} <= set(paths)


def test_console_through_lambda(api_settings: Settings) -> None:
    handler = make_handler(api_settings)
    page = handler(_event("function-url", "GET", "/", {}, None), _context())
    assert page["statusCode"] == 200 and not page["isBase64Encoded"]
    assert "<h1>segscale</h1>" in page["body"] and "script-src 'self'" in page["headers"]["content-security-policy"]
    script = handler(_event("function-url", "GET", "/console/app.js", {}, None), _context())
    assert script["statusCode"] == 200 and not script["isBase64Encoded"]
    assert script["body"] == (STATIC_DIR / "app.js").read_text()
    missing = handler(_event("function-url", "GET", "/console/x.js", {}, None), _context())
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["type"].endswith("not_found")
