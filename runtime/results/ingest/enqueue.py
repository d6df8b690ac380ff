"""The ingester's one way to put jobs on the jobs queue. Everything the ingester enqueues goes through ``send_jobs``,
so the enqueue path can change (a wake queue, a sender thread) in this one place.

Messages carry job ids only (D2); ten messages go in one ``SendMessageBatch``. An entry SQS refuses is retried;
one still refused after that raises, so the ingester does not checkpoint the page and a resumed run sends it again
(the jobs are written as enqueued, and a message lost anyway is re-driven by reconcile, D1).
"""

from __future__ import annotations

import time
from typing import Any

from runtime.common import messages

SEND_BATCH_MAX = 10  # SQS's limit per SendMessageBatch


class EnqueueError(RuntimeError):
    """SQS kept refusing some messages."""


def send_jobs(sqs: Any, queue_url: str, job_ids: list[str], *, max_jobs: int, tries: int = 5) -> int:
    """Send ``job_ids`` in messages of at most ``max_jobs``; returns the number of messages sent."""
    bodies = [m.to_body() for m in messages.chunk(job_ids, max_jobs)]
    for i in range(0, len(bodies), SEND_BATCH_MAX):
        pending = {str(n): body for n, body in enumerate(bodies[i : i + SEND_BATCH_MAX])}
        for attempt in range(tries):
            out = sqs.send_message_batch(
                QueueUrl=queue_url, Entries=[{"Id": k, "MessageBody": v} for k, v in pending.items()]
            )
            pending = {f["Id"]: pending[f["Id"]] for f in out.get("Failed", [])}
            if not pending:
                break
            time.sleep(min(0.1 * 2**attempt, 2.0))
        if pending:
            raise EnqueueError(f"SQS refused {len(pending)} message(s) after {tries} tries")
    return len(bodies)
