"""A completed batch's notifications against moto and a real HTTP receiver on loopback: the Batch Completed event
once, the signed webhook retried through every kind of failure until it is delivered exactly once, or given up."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.events import LocalNotifications, create_notifications
from local.procs import free_port
from local.webhooks import Reply, WebhookReceiver
from runtime.common.aws import client
from runtime.common.batches import BatchState, BatchStore, WebhookState
from runtime.common.jobs import JobStore, NewJob
from runtime.common.progress import BatchProgress
from runtime.common.settings import Settings
from runtime.results.notify import Notifier, retry_delay_ms
from tests.test_batches import drain

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
SETTLE_MS = 600_000


@pytest.fixture()
def bus(moto_endpoint: str) -> LocalNotifications:
    return create_notifications(moto_endpoint, prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture()
def notify_settings(settings: Settings, bus: LocalNotifications) -> Settings:
    return bus.settings(settings, webhook_timeout_s=0.5, export_on_completion=False)


@pytest.fixture()
def secret(notify_settings: Settings) -> str:
    sm = client("secretsmanager", notify_settings)
    return str(sm.get_secret_value(SecretId=notify_settings.webhook_secret_arn)["SecretString"])


class Clock:
    """The notifier's clock: real time plus an offset the test moves forward past each backoff."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def after(self, due_ms: int) -> None:
        self.offset_ms += max(0, due_ms - self()) + 1


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def notifier(settings: Settings, clock: Clock) -> Notifier:
    return Notifier.from_settings(settings, clock=clock)


def completed_batch(settings: Settings, notify_url: str | None, *, jobs: int = 0, owner: str | None = None) -> str:
    """A batch with ``jobs`` finished jobs (one failed), sealed and completed as a worker would leave it."""
    store = JobStore.from_settings(settings)
    batches = BatchStore.from_settings(settings)
    batch_id = uuid.uuid4().hex
    batches.create(batch_id, notify_url=notify_url, owner=owner)
    batches.reserve(batch_id, jobs, owner=owner)
    for i in range(jobs):
        job_id = uuid.uuid4().hex
        store.create(NewJob(job_id, batch_id, f"uploads/{batch_id}/{job_id}.png", f"p{i}.png", "person"))
        assert store.fail_queued(job_id, "not an image", error_class="not_an_image")
    batches.seal(batch_id, settle_after_ms=SETTLE_MS)
    assert BatchProgress(batches).complete(batch_id)
    return batch_id


def webhook(settings: Settings, batch_id: str) -> dict[str, Any]:
    batch = BatchStore.from_settings(settings).get(batch_id)
    assert batch is not None and batch.webhook is not None
    return batch.webhook


def completed_events(settings: Settings, bus: LocalNotifications, batch_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in drain(settings, bus.tap_queue_url)
        if e["detail-type"] == "Batch Completed" and e["detail"]["batch_id"] == batch_id
    ]


def documented_verifier() -> Any:
    """The verification function exactly as docs/notifications.md gives it to users."""
    text = DOCS.read_text()
    block = re.search(r"<!-- verify-recipe -->\s*```python\n(.*?)```", text, re.S)
    assert block, "docs/notifications.md has no verification recipe"
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)
    return namespace["verify_segscale_webhook"]


def test_a_delivery_is_signed_and_verifies_with_the_documented_recipe(
    notify_settings: Settings, bus: LocalNotifications, secret: str, clock: Clock
) -> None:
    with WebhookReceiver(secret=secret) as receiver:
        batch_id = completed_batch(notify_settings, receiver.url, owner="lab-a")
        outcome = notifier(notify_settings, clock).run(batch_id)
        assert outcome.event_sent and outcome.webhook == WebhookState.DELIVERED and outcome.finished
        (delivery,) = receiver.deliveries
    verify = documented_verifier()
    headers = {"Segscale-Timestamp": delivery.headers["segscale-timestamp"]}
    headers["Segscale-Signature"] = delivery.headers["segscale-signature"]
    assert verify(secret, headers, delivery.body)
    assert not verify(secret, headers, delivery.body.replace(b'"total":0', b'"total":9'))  # tampered
    assert not verify("not-the-secret", headers, delivery.body)
    assert delivery.verified is True  # the receiver's own check (runtime.common.webhooks.verify) agrees
    body = delivery.json()
    (event,) = completed_events(notify_settings, bus, batch_id)
    assert body["id"] == delivery.headers["segscale-event-id"] == event["detail"]["event_id"]
    assert body["type"] == "Batch Completed" and body["detail"] == event["detail"]
    assert event["source"] == "segscale" and event["detail"]["v"] == 1
    assert event["detail"]["owner"] == "lab-a"  # whose batch: a shared bus routes on it (and the webhook says it)


def _slow(n: int) -> Reply:
    return Reply(200, delay_s=3.0)


FAILURES = {
    "unreachable": None,  # nothing listens on the port
    "slow": _slow,  # answers after the 0.5 s time-out
    "redirect": lambda n: Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
    "error_500": lambda n: Reply(500, body=b"boom"),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failing_webhook_is_recorded_retried_later_and_then_delivered_once(
    failure: str, notify_settings: Settings, bus: LocalNotifications, clock: Clock
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    batch_id = completed_batch(notify_settings, url)
    run = notifier(notify_settings, clock)
    receiver = WebhookReceiver(respond=FAILURES[failure], port=port).start() if FAILURES[failure] else None
    try:
        started = time.monotonic()
        first = run.run(batch_id)
        assert time.monotonic() - started < 2.5  # a slow receiver is cut off at the time-out, not waited for
    finally:
        if receiver is not None:
            receiver.stop()
    assert first.event_sent and not first.finished
    state = webhook(notify_settings, batch_id)
    assert state["state"] == WebhookState.PENDING and state["attempt_count"] == 1
    (attempt,) = state["attempts"]
    assert attempt["ok"] is False and attempt["error"]
    expected = {
        "unreachable": "Connection",
        "slow": "timed out",
        "redirect": "redirects are not followed",
        "error_500": "HTTP 500: boom",
    }[failure]
    assert expected in attempt["error"]
    assert state["next_attempt_at"] == attempt["at"] + retry_delay_ms(1)
    assert run.run(batch_id).claimed and webhook(notify_settings, batch_id)["attempt_count"] == 1  # not due yet

    clock.after(state["next_attempt_at"])
    with WebhookReceiver(port=port) as healthy:
        second = run.run_due()
        assert [o.batch_id for o in second if o.claimed] == [batch_id]
        assert len(healthy.deliveries) == 1
    state = webhook(notify_settings, batch_id)
    assert state["state"] == WebhookState.DELIVERED
    assert [a["ok"] for a in state["attempts"]] == [False, True]
    assert len(completed_events(notify_settings, bus, batch_id)) == 1  # the event went out once, at the start
    record = BatchStore.from_settings(notify_settings).get(batch_id)
    assert record is not None and record.work is None  # nothing left to do


def test_a_webhook_answering_after_three_failures_gets_exactly_one_recorded_success(
    notify_settings: Settings, clock: Clock
) -> None:
    with WebhookReceiver(respond=lambda n: Reply(503) if n <= 3 else Reply(200)) as receiver:
        batch_id = completed_batch(notify_settings, receiver.url)
        run = notifier(notify_settings, clock)
        gaps = []
        for _ in range(10):  # more passes than needed: a delivered webhook is never sent again
            run.run_due()
            state = webhook(notify_settings, batch_id)
            if state.get("next_attempt_at"):
                gaps.append(state["next_attempt_at"] - state["last_attempt_at"])
                clock.after(state["next_attempt_at"])
        assert len(receiver.deliveries) == 4
    state = webhook(notify_settings, batch_id)
    assert [a["ok"] for a in state["attempts"]] == [False, False, False, True]
    assert state["state"] == WebhookState.DELIVERED and state["attempt_count"] == 4
    assert gaps == [30_000, 60_000, 120_000]  # exponential backoff
    assert len({d.headers["segscale-event-id"] for d in receiver.deliveries}) == 1  # one event id for all tries


def test_a_webhook_that_never_answers_is_given_up_after_the_retry_window(
    notify_settings: Settings, bus: LocalNotifications, clock: Clock
) -> None:
    settings = notify_settings.model_copy(update={"webhook_retry_s": 600})
    batch_id = completed_batch(settings, f"http://127.0.0.1:{free_port()}/hook")
    run = notifier(settings, clock)
    for _ in range(12):
        run.run_due()
        state = webhook(settings, batch_id)
        if state["state"] != WebhookState.PENDING:
            break
        clock.after(state["next_attempt_at"])
    assert state["state"] == WebhookState.GAVE_UP
    assert 4 <= state["attempt_count"] <= 6 and not any(a["ok"] for a in state["attempts"])
    record = BatchStore.from_settings(settings).get(batch_id)
    assert record is not None and record.work is None and record.events_sent_at is not None
    assert len(completed_events(settings, bus, batch_id)) == 1  # the event on the bus is never lost


@pytest.mark.parametrize("address", ["10.0.0.7", "169.254.169.254"])
def test_delivery_checks_the_address_again(notify_settings: Settings, clock: Clock, address: str) -> None:
    """The name pointed somewhere public when the batch was created; now it points inside (DNS rebinding)."""
    batch_id = completed_batch(notify_settings, "https://hooks.example.com/in")
    posted: list[Any] = []
    run = notifier(notify_settings, clock)
    run.resolver = lambda host, port: [address]
    run.poster = lambda *a, **k: posted.append(a)  # type: ignore[assignment,return-value]
    run.run(batch_id)
    (attempt,) = webhook(notify_settings, batch_id)["attempts"]
    assert attempt["error"].startswith("refused: notify_url may not point inside a network")
    assert posted == []  # no connection was made


def test_two_runs_at_once_deliver_once(notify_settings: Settings, clock: Clock) -> None:
    with WebhookReceiver(respond=lambda n: Reply(200, delay_s=0.3)) as receiver:
        batch_id = completed_batch(notify_settings, receiver.url)
        start = threading.Barrier(2)
        outcomes = []

        def run() -> None:
            n = notifier(notify_settings, clock)
            start.wait()
            outcomes.append(n.run(batch_id))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(receiver.deliveries) == 1
    assert sorted(o.claimed for o in outcomes) == [False, True]


def test_export_and_report_are_written_and_named_in_the_event(
    notify_settings: Settings, bus: LocalNotifications, clock: Clock
) -> None:
    settings = notify_settings.model_copy(update={"export_on_completion": True})
    batch_id = completed_batch(settings, None, jobs=2)
    outcome = notifier(settings, clock).run(batch_id)
    assert outcome.exported and outcome.event_sent and outcome.finished
    (event,) = completed_events(settings, bus, batch_id)
    detail = event["detail"]
    assert detail["counts"] == {"SUCCEEDED": 0, "FAILED": 2} and detail["total"] == 2
    s3 = client("s3", settings)
    csv_text = s3.get_object(Bucket=settings.bucket, Key=detail["export"]["key"])["Body"].read().decode()
    assert csv_text.count("\n") == 3 and "not_an_image" in csv_text
    html = s3.get_object(Bucket=settings.bucket, Key=detail["report"]["key"])["Body"].read().decode()
    assert batch_id in html
    assert detail["export"]["uri"] == f"s3://{settings.bucket}/{detail['export']['key']}"


def test_nothing_is_sent_for_a_batch_that_is_not_completed(notify_settings: Settings, clock: Clock) -> None:
    batches = BatchStore.from_settings(notify_settings)
    batch_id = uuid.uuid4().hex
    batches.reserve(batch_id, 1)
    batches.seal(batch_id, settle_after_ms=SETTLE_MS)
    assert not notifier(notify_settings, clock).run(batch_id).claimed
    record = batches.get(batch_id)
    assert record is not None and record.state == BatchState.SEALED and record.events_sent_at is None


def test_events_detail_is_json_serialisable(notify_settings: Settings, clock: Clock) -> None:
    batch_id = completed_batch(notify_settings, None)
    outcome = notifier(notify_settings, clock).run(batch_id)
    assert json.loads(json.dumps(outcome.to_dict()))["batch_id"] == batch_id


def test_reconcile_completes_a_stalled_batch_and_sends_what_is_due(
    notify_settings: Settings, bus: LocalNotifications
) -> None:
    """A count lost to a killed worker, and a batch the API completed (it sends no events): one reconcile pass
    recounts and completes the first and sends Batch Completed for both."""
    from runtime.results.reconcile import reconcile_once

    store = JobStore.from_settings(notify_settings, on_terminal=lambda job: None)  # the count is lost
    batches = BatchStore.from_settings(notify_settings)
    stalled = uuid.uuid4().hex
    batches.reserve(stalled, 1)
    job_id = uuid.uuid4().hex
    store.create(NewJob(job_id, stalled, f"uploads/{stalled}/{job_id}.png", "a.png", "person"))
    assert store.fail_queued(job_id, "corrupt", error_class="corrupt_image")
    batches.seal(stalled, settle_after_ms=notify_settings.stuck_after_s * 1000)
    by_api = completed_batch(notify_settings, None)  # completed without a Batch Notify Due
    report = reconcile_once(notify_settings, now_ms=batches.clock() + notify_settings.stuck_after_s * 1000 + 1)
    assert report.batches["recounted"] == [stalled] and report.batches["completed"] == [stalled]
    assert sorted(o["batch_id"] for o in report.batches["notified"]) == sorted([stalled, by_api])
    sent = [e["detail"]["batch_id"] for e in drain(notify_settings, bus.tap_queue_url)]
    assert sorted(b for b in sent if b in (stalled, by_api)) == sorted([stalled, by_api])
    again = reconcile_once(notify_settings)
    assert again.batches == {
        "ingested": {"batches": [], "inbox": None},
        "recounted": [],
        "completed": [],
        "notified": [],
    }


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    left = {t.name for t in threading.enumerate()} - before
    assert not {n for n in left if n.startswith("webhook-receiver")}, left
