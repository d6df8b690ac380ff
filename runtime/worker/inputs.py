"""Reading a job's uploaded image: bounded in size, and only the object the API checked.

The API checks size and format before a job is QUEUED, but an object can still be bigger than the worker can
afford: a presigned URL used again after submit, or a deployment whose limit was lowered. One multi-GB read would
kill the worker and, with it, cost every job of its batch an attempt; so the size is read from the GET's headers
before the body, and an oversized object fails its own job, permanently, with the reason. Presigned uploads also
carry the ETag pinned at submit (``input_etag``): the GET asks for that object only (``IfMatch``), and S3 answers
412 for anything else (``classify`` makes that ``input_replaced``).
"""

from __future__ import annotations

from typing import Any

from runtime.common.settings import Settings
from runtime.worker.errors import InputTooLarge


def read_input(s3: Any, settings: Settings, job: dict[str, Any]) -> bytes:
    """The job's image bytes; raises ``InputTooLarge`` without reading a body over ``max_upload_bytes``."""
    # An ingested image is read where it lies (docs/ingestion.md): its own bucket, else ours.
    request: dict[str, Any] = {"Bucket": job.get("input_bucket") or settings.bucket, "Key": job["input_key"]}
    if job.get("input_etag"):
        request["IfMatch"] = job["input_etag"]
    response = s3.get_object(**request)
    limit = settings.max_upload_bytes
    size = int(response.get("ContentLength", 0))
    if size > limit:
        response["Body"].close()
        raise InputTooLarge(_too_large(size, limit))
    body = bytes(response["Body"].read(limit + 1))  # never more than the limit, whatever the header said
    if len(body) > limit:
        raise InputTooLarge(_too_large(len(body), limit))
    return body


def _too_large(size: int, limit: int) -> str:
    return f"the uploaded image is {size:,} bytes, over the limit of {limit:,} bytes; send a smaller image"
