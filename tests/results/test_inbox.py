"""The drop folder against a real moto server, whose S3 sends its notifications to the inbox queue: objects become
jobs at least once and de-duplicated, ``_SEALED`` lists what events missed and seals, late objects stay out."""

from __future__ import annotations

from typing import Any

import pytest

from local.inbox import create_inbox
from runtime.common.aws import client
from runtime.common.batches import BatchState, BatchStore
from runtime.common.jobs import JobStatus, JobStore
from runtime.common.settings import Settings
from runtime.common.sources import inbox_batch_id
from runtime.results.ingest.inbox import Inbox

JPEG = b"\xff\xd8\xff\xe0" + bytes(64)


@pytest.fixture()
def inbox_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"inbox_queue_url": create_inbox(settings)})


def drop(settings: Settings, key: str, body: bytes = JPEG) -> None:
    client("s3", settings).put_object(Bucket=settings.bucket, Key=key, Body=body)


def jobs(settings: Settings, batch_id: str) -> list[dict[str, Any]]:
    return list(JobStore.from_settings(settings).iter_batch(batch_id))


def test_dropped_files_become_jobs_once_and_the_marker_seals_the_folder(inbox_settings: Settings) -> None:
    s = inbox_settings
    batch_id = inbox_batch_id("shoot-2026")
    for name in ("a.jpg", "b.png", "notes.txt"):
        drop(s, f"inbox/shoot-2026/{name}")
    drop(s, "inbox/shoot-2026/a.jpg")  # the same object again: same ETag, same job
    sqs = client("sqs", s)
    seen = sqs.receive_message(QueueUrl=s.inbox_queue_url, MaxNumberOfMessages=10)["Messages"]
    b_event = next(m["Body"] for m in seen if "b.png" in m["Body"])
    sqs.send_message(QueueUrl=s.inbox_queue_url, MessageBody=b_event)  # S3 delivered an event twice
    for m in seen:
        sqs.change_message_visibility(QueueUrl=s.inbox_queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)

    report = Inbox(s).drain(wait_s=0)

    assert (report.jobs, report.skipped) == (2, 1) and report.duplicates == 2
    made = jobs(s, batch_id)
    assert sorted(j["input_key"] for j in made) == ["inbox/shoot-2026/a.jpg", "inbox/shoot-2026/b.png"]
    assert {j["input_bucket"] for j in made} == {s.bucket} and all(j["input_etag"] for j in made)
    batch = BatchStore.from_settings(s).get(batch_id)
    assert batch is not None and batch.state == BatchState.OPEN and batch.total == 2

    # c.jpg's event is lost; the marker's listing still brings it in, then the batch is sealed.
    drop(s, "inbox/shoot-2026/c.jpg")
    sqs.purge_queue(QueueUrl=s.inbox_queue_url)
    drop(s, "inbox/shoot-2026/_SEALED", b"")
    report = Inbox(s).drain(wait_s=0)
    assert [o.finished for o in report.sealed] == [True]
    batch = BatchStore.from_settings(s).get(batch_id)
    assert batch is not None and batch.state == BatchState.SEALED and batch.total == 3
    assert batch.inbox_name == "shoot-2026"
    assert sorted(j["input_key"] for j in jobs(s, batch_id)) == [
        "inbox/shoot-2026/a.jpg", "inbox/shoot-2026/b.png", "inbox/shoot-2026/c.jpg",
    ]  # fmt: skip
    assert all(j["status"] == JobStatus.QUEUED for j in jobs(s, batch_id))

    drop(s, "inbox/shoot-2026/late.jpg")  # after the seal: not part of the batch
    report = Inbox(s).drain(wait_s=0)
    assert report.jobs == 0 and report.skipped == 1 and len(jobs(s, batch_id)) == 3


def test_a_folder_sealed_empty_is_a_completed_batch_of_none(inbox_settings: Settings) -> None:
    drop(inbox_settings, "inbox/nothing/_SEALED", b"")
    report = Inbox(inbox_settings).drain(wait_s=0)
    batch = BatchStore.from_settings(inbox_settings).get(inbox_batch_id("nothing"))
    assert report.sealed and batch is not None and batch.state == BatchState.COMPLETED and batch.total == 0


def test_bad_folder_names_and_foreign_messages_are_skipped(inbox_settings: Settings) -> None:
    s = inbox_settings
    drop(s, "inbox/bad name!/a.jpg")
    drop(s, "inbox/top-level.jpg")
    client("sqs", s).send_message(QueueUrl=s.inbox_queue_url, MessageBody="not json")
    report = Inbox(s).drain(wait_s=0)
    assert report.jobs == 0 and report.skipped == 3 and report.messages == 4  # with S3's s3:TestEvent
