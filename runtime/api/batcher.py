"""The micro-batcher (D3): many single-image requests share one SQS message, so one worker task start
serves many jobs.

Job ids wait in a buffer until ``max_jobs`` are there (size flush) or ``window_s`` has passed since the first one
arrived (window flush); ``close()`` flushes what is left (FastAPI lifespan shutdown). ``window_s == 0`` sends in
the caller's thread before ``add`` returns: Lambda freezes the process after the response, so nothing may wait.

A failed send is logged and dropped from the buffer: those jobs stay QUEUED without ``enqueued_at`` in DynamoDB,
and the reconciler re-drives them. The 202 already promised them, and DynamoDB keeps that promise, not this buffer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common import messages

log = logging.getLogger("segscale.api.batcher")


class MicroBatcher:
    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        *,
        max_jobs: int,
        window_s: float,
        mark_enqueued: Callable[[str], bool],
    ) -> None:
        self._sqs = sqs_client
        self._queue_url = queue_url
        self.max_jobs = max(1, min(max_jobs, messages.max_job_ids_per_message()))
        self.window_s = window_s
        self._mark_enqueued = mark_enqueued
        self._buffer: list[str] = []
        self._first_at: float | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._send_lock = threading.Lock()  # one flush at a time keeps message order = arrival order
        self.sent_messages = 0
        self.failed_messages = 0

    # --- public ----------------------------------------------------------------------------------------
    def add(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self._cond:
            if self._closed:
                ready = list(job_ids)  # after shutdown began: send directly rather than lose the promise
            else:
                self._buffer.extend(job_ids)
                if self._first_at is None:
                    self._first_at = time.monotonic()
                ready = self._take_full() if self.window_s > 0 else self._take_all()
                if self._buffer and self.window_s > 0:
                    self._ensure_thread()
                    self._cond.notify_all()
        if ready:
            self._send(ready)

    def flush(self) -> None:
        """Send everything buffered now (tests, shutdown)."""
        with self._cond:
            ready = self._take_all()
        self._send(ready)

    def close(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.flush()

    def pending(self) -> int:
        with self._cond:
            return len(self._buffer)

    # --- internals (call with self._cond held) --------------------------------------------------------------
    def _take_full(self) -> list[str]:
        n = len(self._buffer) - len(self._buffer) % self.max_jobs
        ready, self._buffer = self._buffer[:n], self._buffer[n:]
        if not self._buffer:
            self._first_at = None
        return ready

    def _take_all(self) -> list[str]:
        ready, self._buffer = self._buffer, []
        self._first_at = None
        return ready

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._first_at is None or self._due_in() > 0):
                    self._cond.wait(timeout=None if self._first_at is None else self._due_in())
                if self._closed:
                    return  # close() flushes the rest in its own thread
                ready = self._take_all()
            self._send(ready)

    def _due_in(self) -> float:
        assert self._first_at is not None
        return self._first_at + self.window_s - time.monotonic()

    # --- sending -------------------------------------------------------------------------------------------
    def _send(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self._send_lock:
            for message in messages.chunk(job_ids, self.max_jobs):
                try:
                    self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=message.to_body())
                except (BotoCoreError, ClientError) as exc:
                    self.failed_messages += 1
                    log.error(
                        "enqueue failed; the reconciler will re-drive these jobs",
                        extra={"event": "enqueue_failed", "job_ids": list(message.job_ids), "error": str(exc)[:300]},
                    )
                    continue
                self.sent_messages += 1
                for job_id in message.job_ids:
                    try:
                        self._mark_enqueued(job_id)
                    except (BotoCoreError, ClientError) as exc:
                        # The message is out; the worker will claim the job. Without enqueued_at the reconciler
                        # may send it once more, and the conditional claim makes that harmless.
                        log.warning(
                            "mark_enqueued failed",
                            extra={"event": "mark_enqueued_failed", "job_ids": [job_id], "error": str(exc)[:300]},
                        )
                log.info(
                    "enqueued",
                    extra={"event": "enqueued", "message_id": message.message_id, "job_ids": list(message.job_ids)},
                )
