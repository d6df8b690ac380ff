"""Lambda entry point: the same app behind a Function URL or API Gateway HTTP API, via Mangum.

Lambda freezes the process between invocations, so nothing may wait in the micro-batcher's buffer: the window is
forced to 0 and each request's jobs are sent to SQS before its response returns. Requests are capped at 6 MB by
Lambda, so large files go through presigned uploads (``POST /v1/uploads``).
"""

from __future__ import annotations

from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES

from runtime.api.main import create_app
from runtime.api.problems import PROBLEM_MEDIA_TYPE
from runtime.common.settings import Settings, get_settings


def lambda_settings(settings: Settings | None = None) -> Settings:
    return (settings or get_settings()).model_copy(update={"batch_window_s": 0.0})


def make_handler(settings: Settings | None = None) -> Mangum:
    # Without problem+json in the text types, Mangum would base64-encode every error body.
    return Mangum(
        create_app(lambda_settings(settings)),
        lifespan="off",
        text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, PROBLEM_MEDIA_TYPE],
    )


handler = make_handler()
