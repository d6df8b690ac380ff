"""The micro-batcher against a real (moto) SQS queue and job table: size flush, window flush, shutdown flush,
enqueueing off the request path, every job sent exactly once with no job write after the send, a failed send
taken back, and waking a worker when none is live."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from runtime.api.batcher import MicroBatcher
from runtime.common import messages
from runtime.common.aws import client
from runtime.common.jobs import JobStore, NewJob
from runtime.common.settings import Settings
from runtime.common.workers import EXITING, Waker, WorkerSlots


def _jobs(store: JobStore, n: int) -> list[str]:
    ids = []
    batch = uuid.uuid4().hex
    for _ in range(n):
        job_id = uuid.uuid4().hex
        store.create(NewJob(job_id, batch, f"uploads/{batch}/{job_id}.jpg", "a.jpg", "person"), enqueued=True)
        ids.append(job_id)
    return ids


def _drain(settings: Settings) -> list[dict[str, Any]]:
    sqs = client("sqs", settings)
    out = []
    while True:
        msgs = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        for m in msgs:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=settings.queue_url, ReceiptHandle=m["ReceiptHandle"])


def _wait_messages(settings: Settings, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The sender works in the background: collect messages until ``count`` have arrived."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += _drain(settings)
        time.sleep(0.02)
    return got


def _batcher(
    settings: Settings,
    store: JobStore,
    *,
    max_jobs: int,
    window_s: float,
    sqs: Any = None,
    unmark: Any = None,
    waker: Waker | None = None,
) -> MicroBatcher:
    return MicroBatcher(
        sqs or client("sqs", settings),
        settings.queue_url,
        max_jobs=max_jobs,
        window_s=window_s,
        mark_unsent=unmark or store.mark_unsent,
        waker=waker,
    )


def _untouched_since_created(store: JobStore, ids: list[str]) -> None:
    """A sent job is as the API wrote it: promised to the queue once, and no write after the send."""
    for job in store.get_many(ids).values():
        assert job["enqueue_count"] == 1 and job["enqueued_at"] == job["created_at"] == job["updated_at"]


def test_size_flush_sends_full_messages_at_once(settings: Settings, store: JobStore) -> None:
    b = _batcher(settings, store, max_jobs=3, window_s=60)
    ids = _jobs(store, 7)
    b.add(ids[:2])
    assert _drain(settings) == [] and b.pending() == 2
    b.add(ids[2:])  # 7 buffered: two full messages go now, one id waits for the window
    sent = _wait_messages(settings, 2)
    assert [m["job_ids"] for m in sent] == [ids[0:3], ids[3:6]]
    deadline = time.monotonic() + 5
    while b.pending() > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b.pending() == 1
    b.close()
    assert [m["job_ids"] for m in _drain(settings)] == [ids[6:]]
    _untouched_since_created(store, ids)


def test_window_flush_groups_requests(settings: Settings, store: JobStore) -> None:
    b = _batcher(settings, store, max_jobs=100, window_s=0.3)
    ids = _jobs(store, 3)
    started = time.monotonic()
    for i in ids:
        b.add([i])
    assert _drain(settings) == []
    deadline = time.monotonic() + 5
    sent: list[dict[str, Any]] = []
    while not sent and time.monotonic() < deadline:
        time.sleep(0.05)
        sent = _drain(settings)
    assert time.monotonic() - started >= 0.3
    assert [m["job_ids"] for m in sent] == [ids]
    b.close()


def test_shutdown_flushes_the_buffer(settings: Settings, store: JobStore) -> None:
    b = _batcher(settings, store, max_jobs=100, window_s=3600)
    ids = _jobs(store, 4)
    b.add(ids)
    assert _drain(settings) == []
    b.close()
    assert [m["job_ids"] for m in _drain(settings)] == [ids]
    b.add(_jobs(store, 1))  # after close: sent directly, not buffered forever
    assert len(_drain(settings)) == 1 and b.pending() == 0


def test_window_zero_sends_before_add_returns(settings: Settings, store: JobStore) -> None:
    b = _batcher(settings, store, max_jobs=100, window_s=0)
    ids = _jobs(store, 2)
    b.add(ids)
    assert [m["job_ids"] for m in _drain(settings)] == [ids]
    assert b._thread is None  # no background thread in Lambda mode


def test_largest_batch_fits_the_message_limit(settings: Settings, store: JobStore) -> None:
    taken_back: list[str] = []
    b = _batcher(settings, store, max_jobs=100_000, window_s=0, unmark=lambda i: taken_back.append(i) or True)
    assert b.max_jobs == messages.max_job_ids_per_message()
    ids = [uuid.uuid4().hex for _ in range(b.max_jobs * 2 + 5)]  # no job items needed to check the bodies
    b.add(ids)
    sent = _drain(settings)
    assert [len(m["job_ids"]) for m in sent] == [b.max_jobs, b.max_jobs, 5]
    assert max(len(json.dumps(m, separators=(",", ":"))) for m in sent) <= messages.MESSAGE_BODY_LIMIT_CHARS
    assert sorted(i for m in sent for i in m["job_ids"]) == sorted(ids)  # each job sent exactly once
    assert taken_back == []  # and nothing written per job after a send that went out


def test_concurrent_adds_lose_nothing_and_duplicate_nothing(settings: Settings, store: JobStore) -> None:
    b = _batcher(settings, store, max_jobs=10, window_s=0.05, unmark=lambda i: True)
    ids = [uuid.uuid4().hex for _ in range(200)]

    def worker(chunk: list[str]) -> None:
        for i in chunk:
            b.add([i])

    threads = [threading.Thread(target=worker, args=(ids[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    b.close()
    got = [i for m in _drain(settings) for i in m["job_ids"]]
    assert sorted(got) == sorted(ids)


class FailingSqs:
    """A real boto3 SQS client whose send_message fails like an unreachable endpoint."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def send_message(self, **kwargs: Any) -> Any:
        self.calls += 1
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


@pytest.mark.parametrize("window_s", [0.0, 0.05])
def test_failed_send_takes_the_promise_back(settings: Settings, store: JobStore, window_s: float) -> None:
    sqs = FailingSqs(client("sqs", settings))
    b = _batcher(settings, store, max_jobs=10, window_s=window_s, sqs=sqs)
    ids = _jobs(store, 3)
    b.add(ids)  # must not raise: the 202 was already promised
    b.close()
    assert sqs.calls == 1 and b.failed_messages == 1 and b.pending() == 0
    for i in ids:
        job = store.get(i)
        # the reconciler's signal to re-drive whatever the backlog: never enqueued
        assert job["status"] == "QUEUED" and "enqueued_at" not in job and job["enqueue_count"] == 0
    assert all(store.mark_redrive_unsent(i) for i in ids)


class HalfRefusingSqs:
    """A real boto3 SQS client whose batch sends have SQS refuse every other entry (``Failed`` in the answer)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def send_message_batch(self, **kwargs: Any) -> Any:
        entries = kwargs.pop("Entries")
        out = self.real.send_message_batch(**kwargs, Entries=entries[::2])
        refused = [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in entries[1::2]]
        return {"Successful": out.get("Successful", []), "Failed": refused}


def test_a_partly_refused_batch_takes_back_only_what_did_not_go_out(settings: Settings, store: JobStore) -> None:
    b = _batcher(settings, store, max_jobs=2, window_s=0, sqs=HalfRefusingSqs(client("sqs", settings)))
    ids = _jobs(store, 8)  # four messages of two: the first and third go out
    b.add(ids)
    assert b.sent_messages == 2 and b.failed_messages == 2
    assert [m["job_ids"] for m in _drain(settings)] == [ids[0:2], ids[4:6]]
    _untouched_since_created(store, ids[0:2] + ids[4:6])
    refused = store.get_many(ids[2:4] + ids[6:8]).values()
    assert all("enqueued_at" not in j and j["enqueue_count"] == 0 for j in refused)
    b.close()


class GatedSqs:
    """A real boto3 SQS client whose sends wait until the test opens the gate (at most 10 s)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.entered = threading.Event()
        self.gate = threading.Event()

    def send_message(self, **kwargs: Any) -> Any:
        self.entered.set()
        if not self.gate.wait(10):
            raise AssertionError("the send blocked the caller: it ran in the request thread")
        return self.real.send_message(**kwargs)

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.entered.set()
        if not self.gate.wait(10):
            raise AssertionError("the send blocked the caller: it ran in the request thread")
        return self.real.send_message_batch(**kwargs)


def test_add_never_waits_for_a_flush(settings: Settings, store: JobStore) -> None:
    """The request that fills a batch returns at once; the send happens in the background."""
    sqs = GatedSqs(client("sqs", settings))
    b = _batcher(settings, store, max_jobs=3, window_s=60, sqs=sqs)
    ids = _jobs(store, 6)
    b.add(ids[:3])  # a full batch
    assert sqs.entered.wait(5)  # the sender thread is sending it, held at the gate...
    b.add(ids[3:])  # ...and another full batch is still accepted without waiting
    assert b.pending() == 6
    sqs.gate.set()
    assert b.flush()
    assert [m["job_ids"] for m in _drain(settings)] == [ids[:3], ids[3:]]
    assert b.pending() == 0
    _untouched_since_created(store, ids)
    b.close()


def _waker(settings: Settings, max_workers: int = 2) -> Waker:
    return Waker.from_settings(
        settings.model_copy(update={"max_workers": max_workers}), by="api", service="api", metrics_stream=io.StringIO()
    )


def _wakes(settings: Settings) -> list[messages.WakeMessage]:
    sqs = client("sqs", settings)
    got = sqs.receive_message(QueueUrl=settings.wake_queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [messages.decode_wake(m["Body"]) for m in got]


def test_enqueueing_wakes_a_worker_when_none_is_live(settings: Settings, store: JobStore) -> None:
    waker = _waker(settings)
    b = _batcher(settings, store, max_jobs=10, window_s=0.05, waker=waker)
    b.add(_jobs(store, 2))
    assert b.flush()
    (wake,) = _wakes(settings)
    assert wake.by == "api" and [s.number for s in waker.slots.live()] == [wake.slot]
    b.add(_jobs(store, 2))  # the woken worker counts as live while it starts: no second wake
    assert b.flush()
    assert _wakes(settings) == [] and len(_drain(settings)) == 2
    b.close()


def test_no_wake_while_a_worker_is_live(settings: Settings, store: JobStore) -> None:
    waker = _waker(settings)
    assert waker.slots.acquire("w-live") is not None
    b = _batcher(settings, store, max_jobs=10, window_s=0, waker=waker)
    b.add(_jobs(store, 1))
    assert _wakes(settings) == [] and len(waker.slots.live()) == 1
    b.close()


def test_a_wake_is_retried_while_every_slot_is_on_its_way_out(settings: Settings, store: JobStore) -> None:
    """The last worker is leaving (its slot is exiting, not yet free) just as work arrives: the batcher looks
    again until the slot is free, so the work never waits for the reconciler."""
    waker = _waker(settings, max_workers=1)
    assert waker.slots.acquire("w-leaving") == 0
    assert waker.slots.begin_exit(0, "w-leaving", grace_s=1.5)
    b = _batcher(settings, store, max_jobs=10, window_s=0.05, waker=waker)
    b.add(_jobs(store, 1))
    assert b.flush() and _wakes(settings) == []
    deadline = time.monotonic() + 10
    woken: list[messages.WakeMessage] = []
    while not woken and time.monotonic() < deadline:
        time.sleep(0.2)
        woken = _wakes(settings)
    assert [w.slot for w in woken] == [0] and waker.slots.read()[0].state != EXITING
    b.close()


def test_without_a_wake_queue_the_batcher_only_enqueues(settings: Settings, store: JobStore) -> None:
    off = settings.model_copy(update={"wake_queue_url": ""})
    b = _batcher(off, store, max_jobs=10, window_s=0, waker=_waker(off))
    b.add(_jobs(store, 1))
    assert len(_drain(settings)) == 1 and _wakes(settings) == []
    assert WorkerSlots.from_settings(settings).live() == []
