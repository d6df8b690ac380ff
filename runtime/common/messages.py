"""The two SQS messages: batches of job ids on the jobs queue, and wake messages that start worker tasks.

A batch message carries job ids from the API (or the reconciler, or a worker handing work back) to whichever
worker receives it from the jobs queue (docs/architecture.md D2, D8). It holds job ids only, never job data:
the worker reads everything else from DynamoDB. Its body is kept under 7,000 characters, so it still fits a
RunTask container override (8,192 characters in all; ``python -m runtime.worker`` with ``JOB_BATCH`` runs one
such batch) and one message stays a unit of work that one worker finishes in seconds to minutes.

A wake message is what the EventBridge Pipe turns into one worker task (``WAKE_MESSAGE`` override): it names
the worker slot its sender reserved, so the task can adopt it (runtime/common/workers.py).
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
    """A message we did not write; the worker logs it and drops it (there is nothing to retry)."""


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
    sent_at = data.get("sent_at", 0)
    return BatchMessage(
        job_ids=tuple(dict.fromkeys(ids)),  # de-duplicate, keep order
        message_id=str(data.get("id", ""))[:64],
        sent_at_ms=sent_at if isinstance(sent_at, int) and not isinstance(sent_at, bool) else 0,
    )


def max_job_ids_per_message() -> int:
    """How many ids fit under the body limit (each id is 32 chars + quotes + comma)."""
    overhead = len(BatchMessage(job_ids=()).to_body())
    return (MESSAGE_BODY_LIMIT_CHARS - overhead) // 35


def chunk(job_ids: list[str], max_jobs: int) -> list[BatchMessage]:
    """Split ids into messages of at most ``max_jobs`` (capped by what fits in a body)."""
    size = max(1, min(max_jobs, max_job_ids_per_message()))
    return [BatchMessage(job_ids=tuple(job_ids[i : i + size])) for i in range(0, len(job_ids), size)]


WAKE_KIND = "wake"
_WAKE_ID = re.compile(r"^[0-9a-f]{32}$")
WAKERS = ("api", "worker", "reconciler", "ingester", "manual")


@dataclass(frozen=True)
class WakeMessage:
    """Start one worker for slot ``slot``; sent only by whoever reserved that slot (``wake_id`` holds it)."""

    slot: int
    wake_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    by: str = "manual"
    sent_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def to_body(self) -> str:
        return json.dumps(
            {
                "v": FORMAT_VERSION,
                "kind": WAKE_KIND,
                "id": self.wake_id,
                "slot": self.slot,
                "by": self.by,
                "sent_at": self.sent_at_ms,
            },
            separators=(",", ":"),
        )


def decode_wake(body: str) -> WakeMessage:
    """Parse and validate a wake message body (the pipe may hand it over JSON-encoded a second time)."""
    try:
        data = json.loads(body)
        if isinstance(data, str):
            data = json.loads(data)
    except (TypeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"wake message is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION or data.get("kind") != WAKE_KIND:
        raise BadMessage(f"not a version {FORMAT_VERSION} wake message")
    slot, wake_id, by = data.get("slot"), data.get("id"), data.get("by")
    if not isinstance(slot, int) or isinstance(slot, bool) or slot < 0:
        raise BadMessage("wake message slot must be a non-negative integer")
    if not isinstance(wake_id, str) or not _WAKE_ID.fullmatch(wake_id):
        raise BadMessage("wake message id must be 32 hex characters")
    if by not in WAKERS:
        raise BadMessage(f"wake message 'by' must be one of {list(WAKERS)}")
    sent_at = data.get("sent_at", 0)
    return WakeMessage(slot=slot, wake_id=wake_id, by=by, sent_at_ms=sent_at if isinstance(sent_at, int) else 0)
