"""Which failures end a job (permanent) and which hand it back to the queue (transient).

A permanent error is a property of the input or the model (a corrupt file will be corrupt next time too), so
retrying only burns attempts. A transient error is a property of the moment (S3 throttling, a network blip),
so the job is released and counts an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.imageinfo import ImageError
from runtime.worker.models import ModelError
from runtime.worker.tensors import TensorError

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class Failure:
    permanent: bool
    error_class: str  # short and stable: a metric dimension and the API's problem type
    reason: str  # for the user: what went wrong and, where possible, what to do


class InputMissing(Exception):
    """The job's image is not in S3 (deleted, or never uploaded)."""


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, ImageError):
        return Failure(True, exc.kind, str(exc))
    if isinstance(exc, ModelError):
        return Failure(True, exc.kind, str(exc))
    if isinstance(exc, TensorError):
        return Failure(True, "model_output", f"the model's output does not match its card: {exc}")
    if isinstance(exc, InputMissing):
        return Failure(True, "input_missing", str(exc))
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            return Failure(True, "input_missing", "the uploaded image is no longer in storage")
        return Failure(False, "aws_error", f"temporary storage error ({code or 'unknown'}): {exc}")
    if isinstance(exc, BotoCoreError | ConnectionError | TimeoutError):
        return Failure(False, "aws_error", f"temporary storage error: {exc}")
    if isinstance(exc, MemoryError):
        return Failure(True, "out_of_memory", "the image needs more memory than the worker has; send a smaller one")
    return Failure(True, "processing_error", f"processing failed: {type(exc).__name__}: {exc}")
