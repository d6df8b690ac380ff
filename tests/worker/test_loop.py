"""The warm worker's drain loop in-process against a moto server: slots, the queue, idle exit, races, scaling."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.common import messages, metrics
from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.common.workers import EXITING, WAKING, QueueDepth, Waker, WorkerSlots, new_wake_id, queue_depth
from runtime.worker.loop import Drainer, DrainReport
from runtime.worker.models import ModelRegistry
from tests.worker.helpers import CallLog, emf_lines, encode, red_square, submit


@pytest.fixture(scope="module")
def registry(models_dir: Path) -> ModelRegistry:
    return ModelRegistry(models_dir, threads=1)


@pytest.fixture()
def loop_settings(worker_settings: Settings) -> Settings:
    return worker_settings.model_copy(
        update={
            "worker_idle_exit_s": 1.0,
            "worker_slot_lease_s": 3,
            "max_workers": 2,
            "worker_scale_interval_s": 0.2,
            "jobs_per_worker": 4,
        }
    )


def _drainer(
    settings: Settings,
    registry: ModelRegistry,
    *,
    stop: threading.Event | None = None,
    out: io.StringIO | None = None,
    dynamodb: Any = None,
    worker_id: str | None = None,
) -> Drainer:
    sqs = client("sqs", settings)
    ddb = dynamodb or client("dynamodb", settings)
    slots = WorkerSlots.from_settings(settings, ddb)
    out = out if out is not None else io.StringIO()
    return Drainer(
        settings,
        registry=registry,
        store=JobStore.from_settings(settings, ddb),
        s3=client("s3", settings),
        sqs=sqs,
        slots=slots,
        waker=Waker(slots, sqs, settings.wake_queue_url, by="worker", service="worker", metrics_stream=out),
        stop=stop or threading.Event(),
        worker_id=worker_id,
        metrics_stream=out,
    )


def _enqueue(settings: Settings, store: JobStore, job_ids: list[str], per_message: int = 100) -> None:
    sqs = client("sqs", settings)
    for message in messages.chunk(job_ids, per_message):
        sqs.send_message(QueueUrl=settings.queue_url, MessageBody=message.to_body())
        for job_id in message.job_ids:
            store.mark_enqueued(job_id)


def _jobs(settings: Settings, store: JobStore, s3: Any, n: int) -> list[str]:
    data = encode(red_square(48, (8, 8, 16, 16)))
    return [submit(store, s3, settings, data, model="red") for _ in range(n)]


def _wake_messages(settings: Settings) -> list[messages.WakeMessage]:
    sqs = client("sqs", settings)
    got = sqs.receive_message(QueueUrl=settings.wake_queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [messages.decode_wake(m["Body"]) for m in got]


def _reserve(settings: Settings) -> messages.WakeMessage:
    wake_id = new_wake_id()
    slot = WorkerSlots.from_settings(settings).reserve(wake_id)
    assert slot is not None
    return messages.WakeMessage(slot=slot, wake_id=wake_id, by="api")


def test_drains_every_message_drops_junk_and_leaves_when_idle(
    loop_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    ids = _jobs(loop_settings, store, s3, 9)
    sqs = client("sqs", loop_settings)
    _enqueue(loop_settings, store, ids[:4], per_message=2)
    sqs.send_message(QueueUrl=loop_settings.queue_url, MessageBody="not json at all")
    sqs.send_message(QueueUrl=loop_settings.queue_url, MessageBody=_reserve(loop_settings).to_body())  # wrong queue
    _enqueue(loop_settings, store, ids[4:], per_message=5)
    wake = _reserve(loop_settings)
    out = io.StringIO()
    started = time.monotonic()
    report = _drainer(loop_settings, registry, out=out).run(wake)
    assert report.exit_reason == "idle" and report.slot == wake.slot and report.ok
    assert report.messages == 3 and report.dropped == 2 and report.jobs["succeeded"] == 9
    assert {j["status"] for j in store.get_many(ids).values()} == {"SUCCEEDED"}
    assert queue_depth(sqs, loop_settings.queue_url) == QueueDepth(0, 0)  # every message deleted, junk included
    slot = WorkerSlots.from_settings(loop_settings).read()[wake.slot]
    assert slot.state == EXITING and slot.holder == report.worker_id
    assert time.monotonic() - started < 30
    docs = emf_lines(out.getvalue())
    assert [d[metrics.WORKER_STARTS] for d in docs if metrics.WORKER_STARTS in d] == [1]
    assert sum(d.get(metrics.IMAGES_PROCESSED, 0) for d in docs) == 9


def test_no_free_slot_means_no_work(loop_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry) -> None:
    settings = loop_settings.model_copy(update={"max_workers": 1})
    ids = _jobs(settings, store, s3, 2)
    _enqueue(settings, store, ids)
    assert WorkerSlots.from_settings(settings).acquire("w-busy") == 0
    stale = messages.WakeMessage(slot=0, wake_id=new_wake_id(), by="api")  # its reservation is gone
    report = _drainer(settings, registry).run(stale)
    assert report.exit_reason == "no_slot" and report.messages == 0
    assert {j["status"] for j in store.get_many(ids).values()} == {"QUEUED"}
    assert queue_depth(client("sqs", settings), settings.queue_url).waiting == 1


def test_two_workers_racing_for_one_message_process_each_job_once(
    loop_settings: Settings, store: JobStore, s3: Any, models_dir: Path
) -> None:
    """SQS delivers at least once: the same message twice, two workers at once; the claims decide."""
    ids = _jobs(loop_settings, store, s3, 16)
    body = messages.BatchMessage(job_ids=tuple(ids)).to_body()
    sqs = client("sqs", loop_settings)
    for _ in range(2):
        sqs.send_message(QueueUrl=loop_settings.queue_url, MessageBody=body)
    outs = [io.StringIO(), io.StringIO()]
    reports: list[DrainReport] = []
    barrier = threading.Barrier(2)

    def worker(n: int) -> None:
        drainer = _drainer(loop_settings, ModelRegistry(models_dir, threads=1), out=outs[n], worker_id=f"w{n}")
        barrier.wait()
        reports.append(drainer.run(None))  # no wake message: each takes a free slot itself

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(reports) == 2 and {r.slot for r in reports} == {0, 1}
    assert sum(r.messages for r in reports) == 2
    assert sum(r.jobs["succeeded"] for r in reports) == 16 and sum(r.jobs["skipped"] for r in reports) == 16
    jobs = store.get_many(ids)
    assert all(j["status"] == "SUCCEEDED" and j["attempts"] == 1 for j in jobs.values())
    processed = [d["job_id"] for out in outs for d in emf_lines(out.getvalue()) if metrics.IMAGES_PROCESSED in d]
    assert sorted(processed) == sorted(ids)  # each job reported done exactly once


def test_stop_hands_back_what_was_not_started_and_hands_the_slot_over(
    loop_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    settings = loop_settings.model_copy(update={"worker_io_threads": 2, "worker_idle_exit_s": 30.0})
    ids = _jobs(settings, store, s3, 40)
    _enqueue(settings, store, ids)
    stop = threading.Event()
    ddb = CallLog(
        client("dynamodb", settings),
        hook=lambda op, kw: (
            stop.set() if kw.get("ExpressionAttributeValues", {}).get(":s0", {}).get("S") == "SUCCEEDED" else None
        ),
    )
    wake = _reserve(settings)
    report = _drainer(settings, registry, stop=stop, dynamodb=ddb).run(wake)
    assert report.exit_reason == "stopped" and report.ok
    done, back = report.jobs["succeeded"], report.jobs["requeued"]
    assert done >= 1 and back >= 1 and done + back == 40
    jobs = store.get_many(ids)
    assert sum(j["status"] == "SUCCEEDED" for j in jobs.values()) == done
    assert all(j["attempts"] == 0 for j in jobs.values() if j["status"] == "QUEUED")
    sqs = client("sqs", settings)
    (handed,) = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages.decode(handed["Body"]).job_ids) == back  # the original message was deleted
    (successor,) = _wake_messages(settings)  # work is left: the slot goes to a replacement task at once
    slot = WorkerSlots.from_settings(settings).read()[wake.slot]
    assert successor.slot == wake.slot and slot.state == WAKING and slot.holder == successor.wake_id


def test_work_sent_while_the_worker_leaves_is_still_done(
    loop_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    """The race the exit handshake closes: a waker enqueues just as the worker turns idle, having seen it live."""
    (late,) = _jobs(loop_settings, store, s3, 1)
    sent: list[str] = []

    def on_write(op: str, kwargs: dict[str, Any]) -> None:
        if kwargs.get("ExpressionAttributeValues", {}).get(":state", {}).get("S") == EXITING and not sent:
            sent.append(late)
            _enqueue(loop_settings, store, [late])

    ddb = CallLog(client("dynamodb", loop_settings), hook=on_write)
    report = _drainer(loop_settings, registry, dynamodb=ddb).run(_reserve(loop_settings))
    assert sent and report.messages == 1 and report.exit_reason == "idle"
    assert store.get(late)["status"] == "SUCCEEDED"


def test_a_worker_that_loses_its_slot_stops(
    loop_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    settings = loop_settings.model_copy(update={"worker_idle_exit_s": 60.0, "max_workers": 1})
    wake = _reserve(settings)
    drainer = _drainer(settings, registry)
    result: list[DrainReport] = []
    thread = threading.Thread(target=lambda: result.append(drainer.run(wake)))
    thread.start()
    future = WorkerSlots.from_settings(settings)
    deadline = time.monotonic() + 20
    while not (future.read().get(0) and future.read()[0].state == "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    future.clock = lambda: 10**15  # long after its lease: someone else may take it
    assert future.acquire("w-other") == 0
    thread.join(30)
    assert result and result[0].exit_reason == "slot_lost"
    assert future.read()[0].holder == "w-other"  # leaving did not touch the slot it no longer owns


def test_a_backlog_wakes_one_more_worker_per_jobs_per_worker(
    loop_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    settings = loop_settings.model_copy(update={"max_workers": 3, "jobs_per_worker": 4})
    ids = _jobs(settings, store, s3, 40)
    _enqueue(settings, store, ids, per_message=2)  # 20 messages of 2 jobs
    report = _drainer(settings, registry).run(_reserve(settings))
    assert report.jobs["succeeded"] == 40
    woken = _wake_messages(settings)
    # Never more than max_workers slots: this worker holds one, so at most two more were woken, and only
    # while the backlog was above jobs_per_worker per worker.
    assert 1 <= len(report.woken) <= 2 and sorted(w.slot for w in woken) == sorted(report.woken)
    assert all(w.by == "worker" for w in woken)


def test_end_of_life_hands_the_slot_to_a_replacement(
    loop_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    settings = loop_settings.model_copy(update={"worker_max_lifetime_s": 0.01, "worker_scale_interval_s": 3600.0})
    ids = _jobs(settings, store, s3, 6)
    _enqueue(settings, store, ids, per_message=2)
    wake = _reserve(settings)
    report = _drainer(settings, registry).run(wake)
    assert report.exit_reason == "lifetime" and report.messages <= 1 and report.woken == [wake.slot]
    (successor,) = _wake_messages(settings)
    assert successor.slot == wake.slot
    assert WorkerSlots.from_settings(settings).read()[wake.slot].holder == successor.wake_id
