"""The limits a client must respect, as one answer (``GET /v1/limits``), so clients read them instead of copying them.

The web console uses it to choose, per file, between a multipart upload and the presigned flow, and to refuse a
file the API would refuse before sending a byte. The numbers are the settings the API enforces; the one fact that
is not a setting is the host's cap on a request: Lambda takes at most 6 MB of payload, and a binary body reaches
the function base64-encoded, so a multipart body must stay under about three quarters of that.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from runtime.common import imageinfo
from runtime.common.settings import Settings

LAMBDA_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
# Headers, the multipart framing and the rest of the event share the payload with the base64 body.
LAMBDA_EVENT_OVERHEAD_BYTES = 64 * 1024
LAMBDA_MAX_BODY_BYTES = LAMBDA_PAYLOAD_LIMIT_BYTES * 3 // 4 - LAMBDA_EVENT_OVERHEAD_BYTES


class Limits(BaseModel):
    max_upload_bytes: int = Field(description="per file, for multipart and presigned uploads alike (413 above)")
    max_files_per_request: int = Field(description="files per POST /v1/images or POST /v1/uploads (413 above)")
    max_pixels: int = Field(description="width x height of one image (413 above)")
    max_request_body_bytes: int | None = Field(
        description="the largest request body the API's host accepts (Lambda mode: what fits in its 6 MB payload "
        "once base64-encoded); null: no cap beyond the per-file limits. Send larger files with POST /v1/uploads."
    )
    presign_expiry_s: int = Field(description="how long the upload URLs of POST /v1/uploads are valid")
    content_types: list[str] = Field(description="accepted image formats (sniffed from the bytes, not the name)")


def limits(settings: Settings, *, lambda_mode: bool) -> Limits:
    return Limits(
        max_upload_bytes=settings.max_upload_bytes,
        max_files_per_request=settings.max_files_per_request,
        max_pixels=settings.max_pixels,
        max_request_body_bytes=LAMBDA_MAX_BODY_BYTES if lambda_mode else None,
        presign_expiry_s=settings.presign_expiry_s,
        content_types=sorted(set(imageinfo.CONTENT_TYPES.values())),
    )
