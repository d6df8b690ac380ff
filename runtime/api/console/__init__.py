"""The web console: a page the API serves itself at ``/``, for people who will not use curl.

Static files only (``static/``: one HTML page, plain JavaScript, CSS; no build step, no third-party code), so the
API image carries it as it is, on Fargate and on Lambda alike. The page talks to the same API with the key the
user types (kept in the tab's ``sessionStorage``, sent only in ``X-Api-Key``). Serving the page needs no key:
it holds no data.

The page is locked down by its response headers: a Content-Security-Policy that allows scripts and styles from
this origin only (no inline script), images and uploads from this origin and the deployment's own S3 endpoint
only (presigned URLs), no forms, no framing, and Trusted Types, so any HTML built from a string (a hostile file
name in a problem body, say) throws instead of rendering.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runtime.api.problems import ApiProblem
from runtime.common import keys

STATIC_DIR = Path(__file__).resolve().parent / "static"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # presigned URLs and batch ids stay out of other sites' logs
    "Cache-Control": "no-cache",  # revalidate (ETag): a new deployment's page is seen at once
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def read(cls, path: Path) -> StaticFile:
        body = path.read_bytes()
        return cls(body, MEDIA_TYPES[path.suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


# Read once: the files are part of the image. A fixed table, so no request path ever reaches the file system.
INDEX_PATH = STATIC_DIR / "index.html"
INDEX = StaticFile.read(INDEX_PATH)
ASSETS = {
    p.name: StaticFile.read(p) for p in sorted(STATIC_DIR.iterdir()) if p != INDEX_PATH and p.suffix in MEDIA_TYPES
}

router = APIRouter(include_in_schema=False)


def storage_origin(request: Request) -> str:
    """The origin of this deployment's presigned S3 URLs (moto locally, the bucket's S3 endpoint on AWS).

    Taken from a URL the API's own presigner makes, so it is exactly what the page will be sent to; signing is
    local (no AWS call). Cached per app: the bucket and the endpoint do not change while the process runs.
    """
    cached: str | None = getattr(request.app.state, "console_storage_origin", None)
    if cached is None:
        services = request.app.state.services
        url = services.presigner.generate_presigned_url(
            "put_object", Params={"Bucket": services.settings.bucket, "Key": keys.UPLOADS_PREFIX}, ExpiresIn=60
        )
        parts = urlsplit(url)
        cached = f"{parts.scheme}://{parts.netloc}"
        request.app.state.console_storage_origin = cached
    return cached


def content_security_policy(storage: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src 'self' {storage}",
            f"connect-src 'self' {storage}",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        ]
    )


def _respond(request: Request, file: StaticFile, headers: dict[str, str]) -> Response:
    headers = {**COMMON_HEADERS, "ETag": file.etag, **headers}
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else file.body
    return Response(body, media_type=file.media_type, headers=headers)


@router.api_route("/", methods=["GET", "HEAD"])
def console_page(request: Request) -> Response:
    headers = {
        "Content-Security-Policy": content_security_policy(storage_origin(request)),
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    return _respond(request, INDEX, headers)


@router.api_route("/console/{name}", methods=["GET", "HEAD"])
def console_asset(request: Request, name: str) -> Response:
    file = ASSETS.get(name)
    if file is None:
        raise ApiProblem(404, "not_found", "no such console file")
    return _respond(request, file, {})
