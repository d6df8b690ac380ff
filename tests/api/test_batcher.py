"""The micro-batcher against a real (moto) SQS queue and job table: size flush, window flush, shutdown flush."""

from __future__ import annotations

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


def _jobs(store: JobStore, n: int) -> list[str]:
    ids = []
    batch = uuid.uuid4().hex
    for _ in range(n):
        job_id = uuid.uuid4().hex
        store.create(NewJob(job_id, batch, f"uploads/{batch}/{job_id}.jpg", "a.jpg", "person"))
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


def _batcher(
    settings: Settings, store: JobStore, *, max_jobs: int, window_s: float, sqs: Any = None, mark: Any = None
) -> MicroBatcher:
    return MicroBatcher(
        sqs or client("sqs", settings),
        settings.queue_url,
        max_jobs=max_jobs,
        window_s=window_s,
        mark_enqueued=mark or store.mark_enqueued,
    )


def test_size_flush_sends_full_messages_at_once(settings: Settings, store: JobStore) -> None:
    b = _batcher(settings, store, max_jobs=3, window_s=60)
    ids = _jobs(store, 7)
    b.add(ids[:2])
    assert _drain(settings) == [] and b.pending() == 2
    b.add(ids[2:])  # 7 buffered: two full messages go now, one id waits for the window
    sent = _drain(settings)
    assert [m["job_ids"] for m in sent] == [ids[0:3], ids[3:6]]
    assert b.pending() == 1
    assert all("enqueued_at" in store.get(i) for i in ids[:6]) and "enqueued_at" not in store.get(ids[6])
    b.close()
    assert [m["job_ids"] for m in _drain(settings)] == [ids[6:]]
    assert store.get(ids[6])["enqueue_count"] == 1


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
    marked: list[str] = []
    b = _batcher(settings, store, max_jobs=100_000, window_s=0, mark=lambda i: marked.append(i) or True)
    assert b.max_jobs == messages.max_job_ids_per_message()
    ids = [uuid.uuid4().hex for _ in range(b.max_jobs * 2 + 5)]  # no job items needed to check the bodies
    b.add(ids)
    sent = _drain(settings)
    assert [len(m["job_ids"]) for m in sent] == [b.max_jobs, b.max_jobs, 5]
    assert max(len(json.dumps(m, separators=(",", ":"))) for m in sent) <= messages.MESSAGE_BODY_LIMIT_CHARS
    assert marked == ids  # marked after each send, in order


def test_concurrent_adds_lose_nothing_and_duplicate_nothing(settings: Settings, store: JobStore) -> None:
    b = _batcher(settings, store, max_jobs=10, window_s=0.05, mark=lambda i: True)
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
def test_failed_send_leaves_jobs_queued_without_enqueued_at(
    settings: Settings, store: JobStore, window_s: float
) -> None:
    sqs = FailingSqs(client("sqs", settings))
    b = _batcher(settings, store, max_jobs=10, window_s=window_s, sqs=sqs)
    ids = _jobs(store, 3)
    b.add(ids)  # must not raise: the 202 was already promised
    b.close()
    assert sqs.calls == 1 and b.failed_messages == 1 and b.pending() == 0
    for i in ids:
        job = store.get(i)
        assert job["status"] == "QUEUED" and "enqueued_at" not in job  # the reconciler's signal to re-drive
    assert all(store.mark_redrive_unsent(i) for i in ids)
