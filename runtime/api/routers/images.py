"""``POST /v1/images``: direct multipart uploads (up to ``max_upload_bytes`` per file)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from runtime.api import intake, multipart
from runtime.api.deps import CallerDep, ServicesDep, add_job_ids
from runtime.api.problems import problem_responses
from runtime.api.schemas import MAX_MODEL_NAME_CHARS, NOTIFY_URL_RULES, NOTIFY_URL_SCHEMA, Accepted
from runtime.api.validation import (
    ID_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    MM_PER_PIXEL_MAX,
    MM_PER_PIXEL_MIN,
    check_idempotency_key,
)
from runtime.common import imageinfo

router = APIRouter(tags=["images"])

_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "encoding": {"file": {"contentType": ", ".join(imageinfo.CONTENT_TYPES.values())}},
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                            "description": "one part per image (at most `max_upload_bytes` each); the format is "
                            "sniffed from the bytes: JPEG, PNG, WebP, BMP, TIFF or GIF",
                        },
                        "model": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_MODEL_NAME_CHARS,
                            "description": "model name (GET /v1/models); default from config",
                        },
                        "mm_per_pixel": {
                            "type": "number",
                            "minimum": MM_PER_PIXEL_MIN,
                            "maximum": MM_PER_PIXEL_MAX,
                            "description": "calibration: millimetres per pixel, for areas in mm²",
                        },
                        "batch_id": {
                            "type": "string",
                            "pattern": ID_PATTERN,
                            "description": "add the jobs to this batch (chosen by the client, e.g. uuid4().hex, and "
                            "sent with every request of an upload session); default: a new batch per request",
                        },
                        "notify_url": {
                            "type": "string",
                            **NOTIFY_URL_SCHEMA,
                            "maxLength": multipart.MAX_FIELD_BYTES,  # any longer form field is a 413
                            "description": f"webhook of the batch this request creates: {NOTIFY_URL_RULES}; a "
                            "batch keeps the URL it was created with (409 otherwise)",
                        },
                        "seal": {
                            "type": "boolean",
                            "description": "`true` or `false` (default): seal the batch once this request's images "
                            "are accepted: no more images, and it completes when they are done",
                        },
                    },
                },
            }
        },
    }
}


@router.post(
    "/v1/images",
    status_code=202,
    response_model=Accepted,
    summary="Upload images for segmentation",
    description="Each image is stored in S3 and recorded as a QUEUED job before the 202 is sent. "
    "All or nothing: one bad file refuses the whole request. With `Idempotency-Key`, a retry returns the "
    "first answer. With `batch_id`, the jobs join that batch, so many requests can fill one batch; a `batch_id` "
    "another client uses is a 404.",
    openapi_extra=_MULTIPART_BODY,
    responses=problem_responses(400, 401, 404, 409, 413, 415, 422, 503),
)
async def upload_images(
    request: Request,
    services: ServicesDep,
    caller: CallerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="a retry with the same key returns the first answer (kept for `idempotency_ttl_s`)",
            json_schema_extra={"pattern": IDEMPOTENCY_KEY_PATTERN},
        ),
    ] = None,
) -> dict:
    key = check_idempotency_key(idempotency_key)
    limits = multipart.Limits(
        max_file_bytes=services.settings.max_upload_bytes, max_files=services.settings.max_files_per_request
    )
    form = await multipart.parse(
        request.headers.get("content-type"), request.headers.get("content-length"), request.stream(), limits
    )
    try:
        body = await run_in_threadpool(intake.accept, services, form, idempotency_key=key, caller=caller)
    finally:
        form.close()
    add_job_ids(request, [j["job_id"] for j in body["jobs"]], body["batch_id"])
    return body
