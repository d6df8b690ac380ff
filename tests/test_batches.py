"""The batch record against a real moto server: counters, seal, exactly one completion, the recount backstop."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local.events import LocalNotifications, create_notifications
from runtime.common.aws import client
from runtime.common.batches import BatchConflict, BatchNotOpen, BatchState, BatchStore, Reservation, Work
from runtime.common.events import EventPublisher
from runtime.common.jobs import JobStatus, JobStore, NewJob
from runtime.common.progress import BatchProgress
from runtime.common.settings import Settings
from runtime.results.notify import Notifier
from runtime.results.settle import settle_batches

SETTLE_MS = 600_000


@pytest.fixture()
def batches(store: JobStore) -> BatchStore:
    return BatchStore(store.client, store.table)


@pytest.fixture()
def bus(moto_endpoint: str) -> LocalNotifications:
    return create_notifications(moto_endpoint, prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture()
def publisher(settings: Settings, bus: LocalNotifications) -> Iterator[EventPublisher]:
    p = EventPublisher(client("events", settings), bus.bus)
    yield p
    p.close()


def drain(settings: Settings, queue_url: str) -> list[dict[str, Any]]:
    sqs = client("sqs", settings)
    found: list[dict[str, Any]] = []
    while True:
        out = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = out.get("Messages", [])
        if not messages:
            return found
        for m in messages:
            found.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def running_jobs(store: JobStore, batches: BatchStore, n: int, batch_id: str | None = None) -> tuple[str, list[str]]:
    """A batch of ``n`` jobs, counted in as the API does (reserve, then create), each claimed by worker "w"."""
    batch_id = batch_id or uuid.uuid4().hex
    batches.reserve(batch_id, n)
    ids = []
    for _ in range(n):
        job_id = uuid.uuid4().hex
        store.create(NewJob(job_id, batch_id, f"uploads/{batch_id}/{job_id}.jpg", "a.jpg", "person"))
        assert store.claim(job_id, "w") is not None
        ids.append(job_id)
    return batch_id, ids


def finish(store: JobStore, job_id: str) -> bool:
    return store.complete(job_id, "w", result={}, mask_key="m", overlay_key="o")


def test_reserve_counts_and_a_sealed_batch_takes_nothing_more(batches: BatchStore) -> None:
    batch_id = uuid.uuid4().hex
    assert batches.reserve(batch_id, 3).created
    second = batches.reserve(batch_id, 2)
    assert not second.created and batches.get(batch_id).total == 5  # type: ignore[union-attr]
    batches.unreserve(Reservation(batch_id, 1, created=False))
    sealed = batches.seal(batch_id, settle_after_ms=SETTLE_MS)
    assert sealed is not None and sealed.state == BatchState.SEALED and sealed.total == 4
    assert batches.seal(batch_id, settle_after_ms=SETTLE_MS) == sealed  # idempotent
    with pytest.raises(BatchNotOpen):
        batches.reserve(batch_id, 1)
    assert batches.get(batch_id).total == 4  # type: ignore[union-attr]
    assert batches.seal(uuid.uuid4().hex, settle_after_ms=SETTLE_MS) is None


def test_notify_url_and_owner_are_fixed_when_the_batch_is_created(batches: BatchStore) -> None:
    batch_id = uuid.uuid4().hex
    created = batches.create(batch_id, notify_url="https://example.com/hook")
    assert created.notify_url == "https://example.com/hook" and created.total == 0
    assert batches.create(batch_id, notify_url="https://example.com/hook") == created  # a retry
    batches.reserve(batch_id, 1)  # joining without naming a URL is fine
    assert batches.get(batch_id).total == 1  # type: ignore[union-attr]
    with pytest.raises(BatchConflict):
        batches.reserve(batch_id, 1, notify_url="https://other.example.com/hook")
    with pytest.raises(BatchConflict):
        batches.create(batch_id)  # a create that names no URL is not a retry of this one
    owned = uuid.uuid4().hex
    batches.reserve(owned, 1, owner="client-a")
    with pytest.raises(BatchConflict):
        batches.reserve(owned, 1, owner="client-b")
    with pytest.raises(BatchConflict):
        batches.reserve(owned, 1)
    assert batches.get(owned).total == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("notify_url", "owner"), [(None, None), ("https://example.com/hook", "client-a")])
def test_open_fresh_writes_the_record_reserve_writes_and_never_overwrites(
    batches: BatchStore, notify_url: str | None, owner: str | None
) -> None:
    batches.clock = lambda: 1_700_000_000_000
    by_reserve, by_put = uuid.uuid4().hex, uuid.uuid4().hex
    assert batches.reserve(by_reserve, 3, notify_url=notify_url, owner=owner).created
    assert batches.open_fresh(by_put, 3, notify_url=notify_url, owner=owner) == Reservation(by_put, 3, created=True)

    def raw(batch_id: str) -> dict[str, Any]:
        item = batches.client.get_item(TableName=batches.table, Key={"pk": {"S": f"batch#{batch_id}"}})["Item"]
        return {k: v for k, v in item.items() if k != "pk"}

    assert raw(by_put) == raw(by_reserve)
    assert batches.open_fresh(by_put, 5) is None  # an id that exists: reserve decides, nothing is overwritten
    assert batches.get(by_put).total == 3  # type: ignore[union-attr]
    batches.unreserve(Reservation(by_put, 3, created=True))  # a refused request takes a fresh record back too
    assert batches.get(by_put) is None


def test_a_refused_request_takes_its_reservation_back(batches: BatchStore) -> None:
    batch_id = uuid.uuid4().hex
    first = batches.reserve(batch_id, 2)
    batches.unreserve(first)  # the request that created the batch was refused: nothing is left
    assert batches.get(batch_id) is None
    batches.reserve(batch_id, 1)
    refused = batches.reserve(batch_id, 2)
    batches.unreserve(refused)
    assert batches.get(batch_id).total == 1  # type: ignore[union-attr]
    lone = uuid.uuid4().hex
    created = batches.reserve(lone, 2)
    batches.reserve(lone, 1)  # another request joined before the first was refused: the batch stays
    batches.unreserve(created)
    assert batches.get(lone).total == 1  # type: ignore[union-attr]


def test_each_job_counts_once_on_the_transition_that_won(store: JobStore, batches: BatchStore) -> None:
    store.max_attempts = 1
    batch_id, (a, b, c) = running_jobs(store, batches, 3)
    assert finish(store, a)
    assert not finish(store, a)  # processed twice: the second write loses and counts nothing
    assert not store.fail_running(a, "w", "late", error_class="x")
    assert store.release(b, "w", "timeout") == JobStatus.FAILED  # out of attempts
    assert store.fail_running(c, "w", "corrupt", error_class="corrupt_image")
    assert store.release(c, "w", "late") is None and not store.fail_running(c, "w", "again", error_class="x")
    record = batches.get(batch_id)
    assert record is not None
    assert (record.done, record.succeeded, record.failed) == (3, 1, 2)


def test_a_re_driven_job_counts_once(store: JobStore, batches: BatchStore) -> None:
    batch_id, (job_id,) = running_jobs(store, batches, 1)
    assert store.release(job_id, "w", "spot interruption") == JobStatus.QUEUED
    assert batches.get(batch_id).done == 0  # type: ignore[union-attr]
    assert store.claim(job_id, "w2") is not None
    assert store.complete(job_id, "w2", result={}, mask_key=None, overlay_key=None)
    assert not store.complete(job_id, "w", result={}, mask_key=None, overlay_key=None)
    assert batches.get(batch_id).done == 1  # type: ignore[union-attr]


def test_jobs_of_a_batch_without_a_record_create_none(store: JobStore, batches: BatchStore) -> None:
    batch_id, job_id = uuid.uuid4().hex, uuid.uuid4().hex
    store.create(NewJob(job_id, batch_id, f"uploads/{batch_id}/{job_id}.jpg", "a.jpg", "person"))
    store.claim(job_id, "w")
    assert finish(store, job_id)
    assert batches.get(batch_id) is None


@pytest.mark.parametrize("trial", range(5))
def test_two_workers_finishing_the_last_two_jobs_at_once_complete_the_batch_once(
    trial: int, settings: Settings, store: JobStore, batches: BatchStore, bus: LocalNotifications, publisher: Any
) -> None:
    """Two threads finish the last two jobs at the same moment: exactly one Batch Notify Due on the real bus."""
    store.on_terminal = BatchProgress(batches, publisher)
    batch_id, (first, *last_two) = running_jobs(store, batches, 3)
    batches.seal(batch_id, settle_after_ms=SETTLE_MS)
    assert finish(store, first)
    start = threading.Barrier(2)

    def worker(job_id: str) -> None:
        start.wait()
        assert finish(store, job_id)

    threads = [threading.Thread(target=worker, args=(j,)) for j in last_two]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert publisher.flush(10)
    assert batches.get(batch_id).state == BatchState.COMPLETED  # type: ignore[union-attr]
    due = drain(settings, bus.notify_queue_url)
    assert [e["detail"]["batch_id"] for e in due] == [batch_id]
    # The notify runs that follow (the rule's, then a reconcile pass's) send one Batch Completed between them.
    notify_settings = bus.settings(settings, export_on_completion=False)
    for _ in range(2):
        Notifier.from_settings(notify_settings).run(batch_id)
    events = drain(settings, bus.tap_queue_url)
    job_events = [e for e in events if e["detail-type"] != "Batch Completed"]
    assert sorted(e["detail"]["job_id"] for e in job_events) == sorted([first, *last_two])
    assert {e["detail-type"] for e in job_events} == {"Job Succeeded"}
    assert [e["detail"]["batch_id"] for e in events if e["detail-type"] == "Batch Completed"] == [batch_id]


@pytest.mark.parametrize("trial", range(5))
def test_a_seal_racing_the_last_job_completes_the_batch_once(trial: int, store: JobStore, batches: BatchStore) -> None:
    wins: list[bool] = []
    progress = BatchProgress(batches)
    store.on_terminal = lambda job: wins.append(progress.complete(job["batch_id"]) if _count(batches, job) else False)
    batch_id, (job_id,) = running_jobs(store, batches, 1)
    start = threading.Barrier(2)

    def seal() -> None:
        start.wait()
        sealed = batches.seal(batch_id, settle_after_ms=SETTLE_MS)
        wins.append(progress.complete(batch_id) if sealed is not None and sealed.ready_to_complete else False)

    def last_job() -> None:
        start.wait()
        finish(store, job_id)

    threads = [threading.Thread(target=seal), threading.Thread(target=last_job)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1, wins
    record = batches.get(batch_id)
    assert record is not None and record.state == BatchState.COMPLETED and record.work == Work.NOTIFY


def _count(batches: BatchStore, job: dict[str, Any]) -> bool:
    counted = batches.job_finished(job["batch_id"], job["status"])
    return counted is not None and counted.ready_to_complete


def test_a_seal_after_the_last_job_completes_the_batch(store: JobStore, batches: BatchStore) -> None:
    batch_id, jobs = running_jobs(store, batches, 2)
    for job_id in jobs:
        assert finish(store, job_id)
    record = batches.get(batch_id)
    assert record is not None and record.state == BatchState.OPEN and record.done == 2
    sealed = batches.seal(batch_id, settle_after_ms=SETTLE_MS)
    assert sealed is not None and sealed.ready_to_complete
    assert BatchProgress(batches).complete(batch_id)
    assert not BatchProgress(batches).complete(batch_id)
    assert batches.get(batch_id).completed_at is not None  # type: ignore[union-attr]


def test_only_one_of_many_completion_calls_wins(store: JobStore, batches: BatchStore) -> None:
    batch_id, (job_id,) = running_jobs(store, batches, 1)
    batches.seal(batch_id, settle_after_ms=SETTLE_MS)
    store.on_terminal = lambda job: None  # counted below instead, so every thread finds the batch ready
    finish(store, job_id)
    batches.job_finished(batch_id, "SUCCEEDED")
    start = threading.Barrier(8)
    results: list[bool] = []

    def complete() -> None:
        start.wait()
        results.append(batches.try_complete(batch_id) is not None)

    threads = [threading.Thread(target=complete) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_reconcile_recounts_a_batch_whose_count_was_lost(store: JobStore, batches: BatchStore) -> None:
    """A worker killed between a job's transition and its count: the batch stalls until the settle pass."""
    batch_id, (a, b) = running_jobs(store, batches, 2)
    assert finish(store, a)
    store.on_terminal = lambda job: None  # the process dies right after this job's transition
    assert finish(store, b)
    now = batches.clock()
    sealed = batches.seal(batch_id, settle_after_ms=SETTLE_MS)
    assert sealed is not None and sealed.done == 1 and not sealed.ready_to_complete
    progress = BatchProgress(batches)
    early = settle_batches(store, batches, progress, now=now + SETTLE_MS - 1, stuck_after_ms=SETTLE_MS)
    assert early.checked == 0  # not due yet
    report = settle_batches(store, batches, progress, now=now + SETTLE_MS + 1, stuck_after_ms=SETTLE_MS)
    assert report.recounted == [batch_id] and report.completed == [batch_id]
    record = batches.get(batch_id)
    assert record is not None and record.state == BatchState.COMPLETED and record.done == 2
