"""A completed batch's notifications: its export and report, the ``Batch Completed`` event, its webhook
(docs/architecture.md D9, docs/notifications.md).

The batch record is the outbox: completion marks it ``work = notify`` and every step below is recorded on it, so
a step is done once and a crash in between only delays the rest. ``notify --batch`` (started by the bus's rule
as soon as the batch completes) and every reconcile pass run this for the batches that are due; a lease on the
record keeps two runs from delivering at once.

1. export (CSV) and HTML report to ``reports/<batch>/``, when ``export_on_completion`` is on; a failure is
   retried twice a minute apart, then the event goes out without them (``export_error`` says why);
2. ``Batch Completed`` on the bus (``events_sent_at`` once EventBridge accepted it);
3. the webhook, when the batch has a ``notify_url``: a signed POST; a failure (no answer, a time-out, a
   redirect, any non-2xx, an address that now resolves inside a network) is recorded and retried after
   30 s x 2^n (at most an hour apart) until it succeeds or ``webhook_retry_s`` after completion, when it is
   given up. Each attempt is recorded on the batch (``GET /v1/batches/{id}`` shows them).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from runtime.common.aws import client
from runtime.common.batches import Batch, BatchState, BatchStore, WebhookState, Work
from runtime.common.events import BATCH_COMPLETED, SOURCE, Event, batch_completed_detail, put_events
from runtime.common.jobs import JobStore, now_ms
from runtime.common.settings import Settings
from runtime.common.webhooks import Resolver, UnsafeUrl, check_url, resolve, signed_headers
from runtime.results.delivery import AttemptOutcome, post

log = logging.getLogger(__name__)

LEASE_MS = 15 * 60 * 1000  # longer than the export and report of a large batch
EXPORT_TRIES = 3
EXPORT_RETRY_MS = 60 * 1000
FIRST_RETRY_MS = 30 * 1000
MAX_RETRY_GAP_MS = 3600 * 1000
KEPT_ATTEMPTS = 50  # attempts listed on the record (``attempt_count`` counts them all)

Poster = Callable[..., AttemptOutcome]


def retry_delay_ms(failures: int) -> int:
    """Wait after the ``failures``-th failed attempt: 30 s, 1 min, 2 min, ... at most an hour."""
    return int(min(FIRST_RETRY_MS * 2 ** (failures - 1), MAX_RETRY_GAP_MS))


def webhook_body(batch: Batch, detail: dict[str, Any]) -> bytes:
    """What a webhook receives: the event id and type, and the same ``detail`` as the Batch Completed event."""
    when = datetime.fromtimestamp((batch.completed_at or 0) / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    doc = {"v": detail["v"], "id": batch.event_id, "type": BATCH_COMPLETED, "source": SOURCE, "time": when}
    doc["detail"] = detail
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class NotifyOutcome:
    """What one run did for one batch (printed by ``python -m runtime.results notify``)."""

    batch_id: str
    claimed: bool = False
    exported: bool = False
    export_error: str | None = None
    event_sent: bool = False
    webhook: str | None = None  # the webhook's state after this run
    attempt: dict[str, Any] | None = None
    finished: bool = False  # nothing left to do for this batch
    next_due_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Notifier:
    """Runs the notifications of completed batches. Clients and the clock are injectable for tests."""

    settings: Settings
    batches: BatchStore
    s3: Any = None
    events: Any = None
    secrets: Any = None
    jobs: JobStore | None = None
    clock: Callable[[], int] = now_ms
    poster: Poster = post
    resolver: Resolver = resolve
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    _secret: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Notifier:
        ddb = client("dynamodb", settings)
        return cls(
            settings=settings,
            batches=kwargs.pop("batches", None) or BatchStore(ddb, settings.table),
            s3=kwargs.pop("s3", None) or client("s3", settings),
            events=kwargs.pop("events", None) or (client("events", settings) if settings.event_bus else None),
            secrets=kwargs.pop("secrets", None)
            or (client("secretsmanager", settings) if settings.webhook_secret_arn else None),
            jobs=kwargs.pop("jobs", None) or JobStore.from_settings(settings, ddb),
            **kwargs,
        )

    # --- entry points ---------------------------------------------------------------------------------------
    def run_due(self, *, limit: int = 100) -> list[NotifyOutcome]:
        """Every batch whose notifications are due now (at most ``limit``)."""
        due = list(self.batches.due(Work.NOTIFY, now=self.clock(), limit=limit))
        return [self.run(batch_id) for batch_id in due]

    def run(self, batch_id: str) -> NotifyOutcome:
        outcome = NotifyOutcome(batch_id)
        batch = self.batches.claim_notify(batch_id, self.holder, lease_ms=LEASE_MS)
        if batch is None:
            return outcome  # nothing due, not completed, or another run holds it
        outcome.claimed = True
        try:
            batch = self._steps(batch, outcome)
        except Exception:
            log.exception("batch %s: notifications failed; retried at the next pass", batch_id)
            self.batches.release_notify(batch_id, self.holder, next_due_at=self.clock() + EXPORT_RETRY_MS)
            outcome.next_due_at = self.clock() + EXPORT_RETRY_MS
            return outcome
        return outcome

    # --- the steps ------------------------------------------------------------------------------------------
    def _steps(self, batch: Batch, outcome: NotifyOutcome) -> Batch:
        if batch.state != BatchState.COMPLETED:  # cannot happen through try_complete; never notify early
            self._release(batch, outcome, None)
            return batch
        wants_export = self.settings.export_on_completion and batch.total > 0  # an empty batch has nothing to show
        if wants_export and batch.export_key is None and batch.export_error is None:
            exported = self._export(batch, outcome)
            if exported is None:  # failed, to be tried again shortly
                self._release(batch, outcome, self.clock() + EXPORT_RETRY_MS)
                return batch
            batch = exported
        detail = batch_completed_detail(batch, bucket=self.settings.bucket)
        if self.settings.event_bus and batch.events_sent_at is None:
            put_events(self.events, self.settings.event_bus, [Event(SOURCE, BATCH_COMPLETED, detail)])
            batch = self._record(batch, {"events_sent_at": self.clock()})
            outcome.event_sent = True
        next_due: int | None = None
        if batch.notify_url:
            batch, next_due = self._webhook(batch, detail, outcome)
        self._release(batch, outcome, next_due)
        return batch

    def _record(self, batch: Batch, values: dict[str, Any]) -> Batch:
        updated = self.batches.update_notify(batch.batch_id, self.holder, values)
        if updated is None:
            raise RuntimeError(f"batch {batch.batch_id}: the notify lease was lost")
        return updated

    def _release(self, batch: Batch, outcome: NotifyOutcome, next_due: int | None) -> None:
        self.batches.release_notify(batch.batch_id, self.holder, next_due_at=next_due)
        outcome.finished = next_due is None
        outcome.next_due_at = next_due

    def _export(self, batch: Batch, outcome: NotifyOutcome) -> Batch | None:
        """The export and report; the updated record, or None when they failed and will be tried again."""
        from runtime.results.export import export_jobs
        from runtime.results.report import build_report

        prefix = f"s3://{self.settings.bucket}/"
        try:
            exported = export_jobs(self.settings, batch_id=batch.batch_id, store=self.jobs, s3=self.s3)
            report = build_report(self.settings, batch.batch_id, store=self.jobs, s3=self.s3)
        except Exception as exc:
            tries = batch.export_tries + 1
            log.warning("batch %s: export on completion failed (try %d): %s", batch.batch_id, tries, exc)
            if tries < EXPORT_TRIES:
                self._record(batch, {"export_tries": tries})
                return None
            outcome.export_error = f"the export failed {tries} times ({type(exc).__name__})"
            return self._record(batch, {"export_tries": tries, "export_error": outcome.export_error})
        outcome.exported = True
        return self._record(
            batch,
            {
                "export_tries": batch.export_tries + 1,
                "export_key": exported.s3_uri.removeprefix(prefix),
                "report_key": report.s3_uri.removeprefix(prefix),
            },
        )

    def _webhook(self, batch: Batch, detail: dict[str, Any], outcome: NotifyOutcome) -> tuple[Batch, int | None]:
        state = dict(batch.webhook or {"state": str(WebhookState.PENDING), "attempts": [], "attempt_count": 0})
        outcome.webhook = state["state"]
        if state["state"] != WebhookState.PENDING:
            return batch, None
        now = self.clock()
        due = int(state.get("next_attempt_at") or 0)
        if due > now:
            return batch, due
        assert batch.notify_url is not None and batch.event_id is not None
        result = self._attempt(batch.notify_url, webhook_body(batch, detail), batch.event_id)
        count = int(state.get("attempt_count", 0)) + 1
        record = {"n": count, "at": now, "ok": result.ok, "status": result.status, "error": result.error}
        record["ms"] = result.ms
        state["attempts"] = [*state.get("attempts", []), record][-KEPT_ATTEMPTS:]
        state["attempt_count"] = count
        state["last_attempt_at"] = now
        if result.ok:
            state["state"] = str(WebhookState.DELIVERED)
            state["delivered_at"] = now
            state.pop("next_attempt_at", None)
            next_due = None
        else:
            deadline = int(batch.completed_at or now) + self.settings.webhook_retry_s * 1000
            next_attempt = now + retry_delay_ms(count)  # every attempt so far failed
            if now >= deadline:
                state["state"] = str(WebhookState.GAVE_UP)
                state.pop("next_attempt_at", None)
                next_due = None
                log.warning("batch %s: webhook given up after %d attempts", batch.batch_id, count)
            else:
                state["next_attempt_at"] = min(next_attempt, deadline)
                next_due = state["next_attempt_at"]
        outcome.webhook = state["state"]
        outcome.attempt = record
        return self._record(batch, {"webhook": state}), next_due

    def _attempt(self, url: str, body: bytes, event_id: str) -> AttemptOutcome:
        try:
            target = check_url(url, local_http=self.settings.webhook_local_http, resolver=self.resolver)
        except UnsafeUrl as exc:
            return AttemptOutcome(ok=False, status=None, error=f"refused: {exc}", ms=0)
        secret = self._signing_secret()
        if secret is None:
            return AttemptOutcome(ok=False, status=None, error="no webhook signing secret is configured", ms=0)
        timestamp = self.clock() // 1000
        headers = signed_headers(secret, timestamp, body, event_id)
        return self.poster(target, body, headers, timeout_s=self.settings.webhook_timeout_s)

    def _signing_secret(self) -> str | None:
        if self._secret is None and self.settings.webhook_secret_arn and self.secrets is not None:
            value = self.secrets.get_secret_value(SecretId=self.settings.webhook_secret_arn)
            self._secret = str(value["SecretString"])
        return self._secret


def notify_batch(settings: Settings, batch_id: str, **kwargs: Any) -> NotifyOutcome:
    """``python -m runtime.results notify --batch <id>``: what the bus's rule runs when a batch completes."""
    return Notifier.from_settings(settings, **kwargs).run(batch_id)


def notify_due(settings: Settings, *, limit: int = 100, **kwargs: Any) -> list[NotifyOutcome]:
    """Every batch whose notifications (or a retry) are due: run by each reconcile pass."""
    return Notifier.from_settings(settings, **kwargs).run_due(limit=limit)
