"""The micro-batcher (D3): many single-image requests share one SQS message, enqueued off the request path.

An upload's 202 never waits for a flush: ``add`` only puts the job ids in a buffer. A sender thread sends them
when ``max_jobs`` are there (size flush) or ``window_s`` has passed since the first one arrived (window flush):
up to ten messages per ``SendMessageBatch`` call, then a check that some worker is live to take them, waking one
when none is (docs/architecture.md D8; at most one check a second while workers are live). A sent job needs no
write of its own: the API wrote it promised to the queue (``enqueued_at``, ``enqueue_count`` 1) in the write that
made it QUEUED (``JobStore.create(enqueued=True)``, ``submit_uploaded``). One sender thread keeps messages in
arrival order and keeps up with far more than one API task's uploads per second.

``window_s == 0`` sends in the caller's thread before ``add`` returns: Lambda freezes the process after the
response, so nothing may wait. ``close()`` sends what is left (FastAPI lifespan shutdown).

A failed send is logged and its jobs' promise taken back (``mark_unsent``, in parallel: DynamoDB has no
conditional batch update): they are QUEUED without ``enqueued_at`` again, and the reconciler re-drives them
``stuck_after_s`` after they were accepted, whatever the queue's backlog. Jobs in the buffer of an API task that
is killed keep their promise: the reconciler re-drives them as enqueued and never claimed, once the queue is
empty or after ``backlog_grace_s`` (docs/results.md). The 202 already promised them, and DynamoDB keeps that
promise, not this buffer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common import messages
from runtime.common.workers import Waker

log = logging.getLogger("segscale.api.batcher")

SQS_BATCH_ENTRIES = 10  # SendMessageBatch limit
UNMARK_THREADS = 16  # parallel mark_unsent writes after a failed send
# While a worker is live, look again at most this often. It must stay below the worker's last poll on its way
# out (runtime/worker/loop.py FINAL_POLL_S), so work sent just before a worker leaves is always seen by someone.
WAKE_CHECK_INTERVAL_S = 1.0
WAKE_RETRY_FOR_S = 60.0
AWS_ERRORS = (BotoCoreError, ClientError)


class MicroBatcher:
    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        *,
        max_jobs: int,
        window_s: float,
        mark_unsent: Callable[[str], bool],
        waker: Waker | None = None,
    ) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self.max_jobs = max(1, min(max_jobs, messages.max_job_ids_per_message()))
        self.window_s = window_s
        self._mark_unsent = mark_unsent
        self._waker = waker
        self._buffer: list[str] = []
        self._first_at: float | None = None
        self._in_flight = 0  # taken from the buffer, not yet sent (or its failed send not yet taken back)
        self._flush_now = False
        self._wake_check_at = 0.0  # monotonic time before which no wake check is needed
        self._wake_retry_at: float | None = None  # no worker and no free slot: look again then
        self._wake_retry_until: float | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._send_lock = threading.Lock()  # one flush at a time keeps message order = arrival order
        self._pool: ThreadPoolExecutor | None = None
        self.sent_messages = 0
        self.failed_messages = 0

    # --- public ----------------------------------------------------------------------------------------
    def add(self, job_ids: list[str]) -> None:
        """Buffer the ids and return at once (window 0, or after ``close``: send them now, in this thread)."""
        if not job_ids:
            return
        with self._cond:
            inline = self._closed or self.window_s <= 0
            if inline:
                self._in_flight += len(job_ids)
            else:
                self._buffer.extend(job_ids)
                if self._first_at is None:
                    self._first_at = time.monotonic()
                self._ensure_thread()
                self._cond.notify_all()
        if inline:
            self._send(list(job_ids))

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Send everything buffered now and wait until it is sent; False on timeout."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                ready = self._take_all()
            else:
                ready = []
                self._flush_now = True
                self._cond.notify_all()
        if ready:
            self._send(ready)
            return True
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._buffer or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._cond:
            ready = self._take_all()
        self._send(ready)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def pending(self) -> int:
        """Jobs accepted but not yet enqueued (buffered, or being sent right now)."""
        with self._cond:
            return len(self._buffer) + self._in_flight

    # --- internals (call with self._cond held) --------------------------------------------------------------
    def _take_full(self) -> list[str]:
        n = len(self._buffer) - len(self._buffer) % self.max_jobs
        ready, self._buffer = self._buffer[:n], self._buffer[n:]
        if not self._buffer:
            self._first_at = None
        self._in_flight += len(ready)
        return ready

    def _take_all(self) -> list[str]:
        ready, self._buffer = self._buffer, []
        self._first_at = None
        self._in_flight += len(ready)
        return ready

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
            self._thread.start()

    def _next_due(self) -> float | None:
        """Seconds until the sender has something to do (0: now), or None to wait for an ``add``."""
        if self._closed or self._flush_now or len(self._buffer) >= self.max_jobs:
            return 0.0
        due = []
        if self._first_at is not None:
            due.append(self._first_at + self.window_s - time.monotonic())
        if self._wake_retry_at is not None:
            due.append(self._wake_retry_at - time.monotonic())
        return max(0.0, min(due)) if due else None

    def _run(self) -> None:
        while True:
            with self._cond:
                while (due := self._next_due()) is None or due > 0:
                    self._cond.wait(timeout=due)
                if self._closed:
                    return  # close() sends the rest in its own thread
                window_over = self._first_at is not None and self._first_at + self.window_s <= time.monotonic()
                ready = self._take_all() if (window_over or self._flush_now) else self._take_full()
                self._flush_now = False
                retry_wake = self._wake_retry_at is not None and self._wake_retry_at <= time.monotonic()
            if ready:
                self._send(ready)
            elif retry_wake:
                self._check_workers()

    # --- sending -------------------------------------------------------------------------------------------
    def _send(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        sent: list[str] = []
        try:
            with self._send_lock:
                batch = messages.chunk(job_ids, self.max_jobs)
                for i in range(0, len(batch), SQS_BATCH_ENTRIES):
                    sent += self._send_group(batch[i : i + SQS_BATCH_ENTRIES])
                if len(sent) < len(job_ids):
                    went = set(sent)
                    self._take_back([j for j in job_ids if j not in went])
            if sent:
                self._check_workers()
        finally:
            with self._cond:
                self._in_flight -= len(job_ids)
                self._cond.notify_all()

    def _send_group(self, group: list[messages.BatchMessage]) -> list[str]:
        """Send up to ten messages in one call (one message: one plain send); returns the ids that went out."""
        try:
            if len(group) == 1:
                self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=group[0].to_body())
                failed: set[int] = set()
            else:
                entries = [{"Id": str(n), "MessageBody": m.to_body()} for n, m in enumerate(group)]
                out = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
                failed = {int(f["Id"]) for f in out.get("Failed", [])}
        except AWS_ERRORS as exc:
            failed, error = set(range(len(group))), str(exc)[:300]
        else:
            error = "refused by SQS"
        sent: list[str] = []
        for n, message in enumerate(group):
            if n in failed:
                self.failed_messages += 1
                log.error(
                    "enqueue failed; the reconciler will re-drive these jobs",
                    extra={"event": "enqueue_failed", "job_ids": list(message.job_ids), "error": error},
                )
                continue
            self.sent_messages += 1
            sent += message.job_ids
            log.info(
                "enqueued",
                extra={"event": "enqueued", "message_id": message.message_id, "job_ids": list(message.job_ids)},
            )
        return sent

    def _take_back(self, job_ids: list[str]) -> None:
        """Take back the promise of every job whose send failed, in parallel (a failed send is rare; a sent job
        costs nothing here)."""
        if len(job_ids) == 1:
            self._unmark_one(job_ids[0])
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(UNMARK_THREADS, thread_name_prefix="mark-unsent")
        list(self._pool.map(self._unmark_one, job_ids))

    def _unmark_one(self, job_id: str) -> None:
        try:
            self._mark_unsent(job_id)
        except AWS_ERRORS as exc:
            # The job keeps its promise: the reconciler still re-drives it, as enqueued and never claimed, once
            # the queue is empty or after backlog_grace_s.
            log.warning(
                "mark_unsent failed",
                extra={"event": "mark_unsent_failed", "job_ids": [job_id], "error": str(exc)[:300]},
            )

    def _check_workers(self) -> None:
        """After work went out: wake a worker if none is live or starting (docs/architecture.md D8). When no slot
        is free (workers on their way out) or the wake fails, look again every second for a minute; after that
        the reconciler's safety net takes over."""
        if self._waker is None or not self._waker.enabled:
            return
        now = time.monotonic()
        with self._cond:
            if now < self._wake_check_at:  # a worker was live a moment ago
                self._wake_retry_at = None
                return
        try:
            live, woken = self._waker.ensure_worker()
        except AWS_ERRORS as exc:
            log.warning("worker check failed", extra={"event": "wake_check_failed", "error": str(exc)[:300]})
            live, woken = 0, None
        with self._cond:
            if live or woken is not None:
                self._wake_check_at = time.monotonic() + WAKE_CHECK_INTERVAL_S
                self._wake_retry_at = self._wake_retry_until = None
                return
            if self._wake_retry_until is None:
                self._wake_retry_until = now + WAKE_RETRY_FOR_S
            if now >= self._wake_retry_until:
                log.error("no worker could be woken; the reconciler will", extra={"event": "wake_gave_up"})
                self._wake_retry_at = self._wake_retry_until = None
                return
            self._wake_retry_at = now + WAKE_CHECK_INTERVAL_S
            if self.window_s > 0:
                self._ensure_thread()
            self._cond.notify_all()
