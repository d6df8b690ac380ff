"""The worker's side of notifications: job events on the bus, the batch completed by its last job, and never a
webhook call from the worker (a slow or dead receiver cannot hold it up; the results task delivers)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from local.events import create_notifications
from local.webhooks import Reply, WebhookReceiver
from runtime.common.aws import client
from runtime.common.batches import BatchState, BatchStore, Work
from runtime.common.events import publisher_for
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.results.notify import Notifier
from runtime.worker.batch import run_batch
from runtime.worker.models import ModelRegistry
from tests.queues import drain_bodies
from tests.worker.helpers import encode, red_square, submit


@pytest.fixture(scope="module")
def registry(models_dir: Path) -> ModelRegistry:
    return ModelRegistry(models_dir, threads=1)


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    return [json.loads(body) for body in drain_bodies(sqs, queue_url)]


def test_the_worker_sends_job_events_completes_the_batch_and_never_calls_the_webhook(
    worker_settings: Settings, moto_endpoint: str, s3: Any, registry: ModelRegistry
) -> None:
    bus = create_notifications(moto_endpoint, prefix=f"t{uuid.uuid4().hex[:12]}")
    settings = bus.settings(worker_settings, webhook_timeout_s=0.5, export_on_completion=False)
    store = JobStore.from_settings(settings)  # the worker's own store: counts and sends events
    batches = BatchStore.from_settings(settings)
    with WebhookReceiver(respond=lambda n: Reply(200, delay_s=5)) as receiver:  # answers far too late
        batch_id = batches.create(uuid.uuid4().hex, notify_url=receiver.url).batch_id
        batches.reserve(batch_id, 3)
        good = [
            submit(store, s3, settings, encode(red_square(64)), model="red", batch_id=batch_id, owner="lab-a")
            for _ in range(2)
        ]
        bad = submit(store, s3, settings, b"\xff\xd8\xff\xe0 not really a jpeg", model="red", batch_id=batch_id)
        batches.seal(batch_id, settle_after_ms=600_000)

        report = run_batch(settings, [*good, bad], registry=registry, metrics_stream=io.StringIO())

        assert sorted(report.succeeded) == sorted(good) and report.failed == [bad]
        assert receiver.deliveries == []  # the worker never contacts a webhook
        record = batches.get(batch_id)
        assert record is not None and record.state == BatchState.COMPLETED and record.work == Work.NOTIFY
        assert (record.total, record.succeeded, record.failed) == (3, 2, 1)
        assert record.webhook is None  # left to the results task

        publisher = publisher_for(settings)
        assert publisher is not None and publisher.flush(10)
        sqs = client("sqs", settings)
        events = drain(sqs, bus.tap_queue_url)
        by_job = {e["detail"]["job_id"]: e for e in events}
        assert sorted(by_job) == sorted([*good, bad]) and len(events) == 3
        assert {by_job[j]["detail-type"] for j in good} == {"Job Succeeded"}
        failed = by_job[bad]["detail"]
        assert by_job[bad]["detail-type"] == "Job Failed"
        assert failed["error_class"] == store.get(bad)["error_class"] and failed["error"]  # type: ignore[index]
        assert by_job[good[0]]["detail"]["mask_key"].endswith("mask.png")
        assert by_job[good[0]]["detail"]["owner"] == "lab-a" and failed["owner"] is None  # whose job it is
        due = drain(sqs, bus.notify_queue_url)
        assert [e["detail"]["batch_id"] for e in due] == [batch_id]

        outcome = Notifier.from_settings(settings).run(batch_id)  # what the rule then starts
        assert outcome.event_sent and outcome.webhook == "pending"  # the slow receiver timed out: retried later
        assert len(receiver.deliveries) == 1
    (completed,) = drain(sqs, bus.tap_queue_url)
    assert completed["detail-type"] == "Batch Completed" and completed["detail"]["counts"] == {
        "SUCCEEDED": 2,
        "FAILED": 1,
    }
