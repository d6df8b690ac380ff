"""Presigned S3 links for results and reports: a 307 redirect, or the link itself as JSON.

A redirect suits ``curl -L`` and a browser following a link, but a web page cannot use it: a script cannot read
a redirect's ``Location``, and letting ``fetch`` follow it would send the ``X-Api-Key`` header to S3. So a client
that asks for ``Accept: application/json`` gets ``{"url", "expires_in_s", "content_type"}`` and puts the URL in an
``<img>`` or a link itself (the web console does). Same signature, same expiry, either way.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from runtime.api.services import Services
from runtime.common import imageinfo

RESULT_URL_EXPIRY_S = 300
JSON_MEDIA_TYPE = "application/json"
# Extension -> content type for the images our own code writes (the key carries the format's extension).
_IMAGE_TYPES = {ext: imageinfo.CONTENT_TYPES[fmt] for fmt, ext in imageinfo.SUPPORTED_FORMATS.items()}


class PresignedLink(BaseModel):
    """The answer to ``Accept: application/json`` on a route that otherwise redirects to S3."""

    url: str = Field(description="presigned S3 GET URL; send no API key to it")
    expires_in_s: int
    content_type: str | None = Field(description="what the object is (from the key our code wrote), e.g. image/png")


def content_type_for(key: str) -> str | None:
    ext = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    return _IMAGE_TYPES.get(ext) or mimetypes.guess_type(key)[0]


def wants_json(request: Request) -> bool:
    """True when the client asked for JSON explicitly (``*/*``, what curl and ``<img>`` send, means the redirect)."""
    accept = request.headers.get("accept", "")
    return any(part.split(";", 1)[0].strip().lower() == JSON_MEDIA_TYPE for part in accept.split(","))


def presigned_get(
    request: Request, services: Services, key: str, *, expires_in_s: int = RESULT_URL_EXPIRY_S
) -> Response:
    content_type = content_type_for(key)
    params = {"Bucket": services.settings.bucket, "Key": key}
    if content_type:  # S3 then answers with it even for an object stored without a content type
        params["ResponseContentType"] = content_type
    url = services.presigner.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in_s)
    if wants_json(request):
        link = PresignedLink(url=url, expires_in_s=expires_in_s, content_type=content_type)
        return JSONResponse(link.model_dump())
    return RedirectResponse(url, status_code=307)


def link_responses(what: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the two answers of a presigned-link route."""
    return {
        200: {
            "description": f"With `Accept: application/json`: the presigned URL of the {what} as JSON.",
            "content": {JSON_MEDIA_TYPE: {"schema": PresignedLink.model_json_schema()}},
        },
        307: {"description": f"Redirect to a presigned S3 URL of the {what}, valid for a few minutes."},
    }
