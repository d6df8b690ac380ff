"""Which failures end a job (permanent) and which hand it back to the queue (transient), and what the job says.

A permanent error is a property of the input or the model (a corrupt file will be corrupt next time too), so
retrying only burns attempts. A transient error is a property of the moment (S3 throttling, a network blip),
so the job is released and counts an attempt.

The ``reason`` is stored on the job and shown by the API to every key holder, so it is built from our own
words, AWS error codes and exception class names only; the library's raw message (which can name the account,
a role or an endpoint) is logged by the caller next to the job id (runtime/common/errortext.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.errortext import aws_error_summary
from runtime.common.imageinfo import ImageError
from runtime.worker.models import ModelError, ModelSourceUnavailable
from runtime.worker.tensors import TensorError

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


@dataclass(frozen=True)
class Failure:
    permanent: bool
    error_class: str  # short and stable: a metric dimension and the API's problem type
    reason: str  # for the user: what went wrong and, where possible, what to do


class InputMissing(Exception):
    """The job's image is not in S3 (deleted, or never uploaded)."""


class InputTooLarge(Exception):
    """The job's object is bigger than ``max_upload_bytes``: refused before its body is read."""


# S3's answer to a read whose IfMatch (the ETag pinned at submit) no longer holds: the object was replaced.
_REPLACED_CODES = frozenset({"PreconditionFailed", "412"})


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, ImageError):
        return Failure(True, exc.kind, str(exc))
    if isinstance(exc, ModelError):
        return Failure(True, exc.kind, str(exc))
    if isinstance(exc, TensorError):
        return Failure(True, "model_output", f"the model's output does not match its card: {exc}")
    if isinstance(exc, InputMissing):
        return Failure(True, "input_missing", str(exc))
    if isinstance(exc, InputTooLarge):
        return Failure(True, "input_too_large", str(exc))
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            return Failure(True, "input_missing", "the uploaded image is no longer in storage")
        if code in _REPLACED_CODES:
            return Failure(
                True,
                "input_replaced",
                "the uploaded image was replaced after it was submitted; upload it again in a new batch",
            )
        return Failure(False, "aws_error", f"temporary storage error ({aws_error_summary(exc)})")
    if isinstance(exc, ModelSourceUnavailable):  # our text, built from error codes (runtime/worker/models_s3.py)
        return Failure(False, "aws_error", f"temporary storage error: {exc}")
    if isinstance(exc, BotoCoreError | ConnectionError | TimeoutError):
        return Failure(False, "aws_error", f"temporary storage error ({aws_error_summary(exc)})")
    if isinstance(exc, MemoryError):
        return Failure(True, "out_of_memory", "the image needs more memory than the worker has; send a smaller one")
    return Failure(True, "processing_error", f"processing failed ({type(exc).__name__}); the worker's log has details")
