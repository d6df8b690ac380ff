"""The SQS message that carries a batch of job ids from the API (or the reconciler) to a worker task.

The EventBridge Pipe hands the body to the worker as the ``JOB_BATCH`` container-override variable, and
RunTask caps all overrides at 8,192 characters (D2). So a message holds job ids only, never job data:
the worker reads everything else from DynamoDB.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

FORMAT_VERSION = 1
# RunTask limit on the whole containerOverrides JSON. We keep a generous margin for the container name,
# the variable name and whatever else the pipe adds around the body.
RUNTASK_OVERRIDE_LIMIT_CHARS = 8192
MESSAGE_BODY_LIMIT_CHARS = 7000
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class BadMessage(ValueError):
    """The batch message is not one we wrote; the worker logs it and exits 0 (nothing to retry)."""


@dataclass(frozen=True)
class BatchMessage:
    job_ids: tuple[str, ...]
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    sent_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def to_body(self) -> str:
        body = json.dumps(
            {"v": FORMAT_VERSION, "id": self.message_id, "sent_at": self.sent_at_ms, "job_ids": list(self.job_ids)},
            separators=(",", ":"),
        )
        if len(body) > MESSAGE_BODY_LIMIT_CHARS:
            raise ValueError(f"message body has {len(body)} characters; limit {MESSAGE_BODY_LIMIT_CHARS}")
        return body


def decode(body: str) -> BatchMessage:
    """Parse and validate a message body (also accepts the body JSON-encoded a second time, as a string)."""
    try:
        data = json.loads(body)
        if isinstance(data, str):  # a pipe template may wrap the body in quotes
            data = json.loads(data)
    except (TypeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"JOB_BATCH is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
        raise BadMessage(f"JOB_BATCH is not a version {FORMAT_VERSION} batch message")
    ids = data.get("job_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and _JOB_ID.fullmatch(i) for i in ids):
        raise BadMessage("JOB_BATCH.job_ids must be a non-empty list of 32-hex job ids")
    return BatchMessage(
        job_ids=tuple(dict.fromkeys(ids)),  # de-duplicate, keep order
        message_id=str(data.get("id", "")),
        sent_at_ms=int(data.get("sent_at", 0)),
    )


def max_job_ids_per_message() -> int:
    """How many ids fit under the body limit (each id is 32 chars + quotes + comma)."""
    overhead = len(BatchMessage(job_ids=()).to_body())
    return (MESSAGE_BODY_LIMIT_CHARS - overhead) // 35


def chunk(job_ids: list[str], max_jobs: int) -> list[BatchMessage]:
    """Split ids into messages of at most ``max_jobs`` (capped by what fits in a body)."""
    size = max(1, min(max_jobs, max_job_ids_per_message()))
    return [BatchMessage(job_ids=tuple(job_ids[i : i + size])) for i in range(0, len(job_ids), size)]
