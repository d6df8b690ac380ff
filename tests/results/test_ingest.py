"""The ingester against a real moto server: a prefix and manifests into jobs, bad input, and a crash at any point
(a checkpoint lost, a process SIGKILLed mid-listing) resumed without a missing or a duplicate job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from runtime.common import messages
from runtime.common.aws import client
from runtime.common.batches import BatchState, BatchStore
from runtime.common.jobs import JobStatus, JobStore
from runtime.common.settings import Settings, env_name
from runtime.results.ingest.run import INGEST_FAILED, Ingester
from runtime.results.rows import RowFormat

ROOT = Path(__file__).resolve().parents[2]
SOURCE_BUCKET = "ingest-source-photos"
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 200  # not decodable, but ingestion reads no bytes: the worker judges images


@pytest.fixture()
def source_bucket(settings: Settings) -> str:
    """A fresh source bucket (not ours) for this test."""
    name = f"src-{uuid.uuid4().hex[:16]}"
    client("s3", settings).create_bucket(Bucket=name)
    return name


def ingest_settings(settings: Settings, bucket: str, **fields: Any) -> Settings:
    return settings.model_copy(update={"ingest_sources": f"s3://{bucket}/photos/,s3://{bucket}/lists/", **fields})


def put_objects(settings: Settings, bucket: str, keys: list[str], body: bytes = JPEG) -> None:
    s3 = client("s3", settings)
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def start(settings: Settings, source: str, kind: str = "prefix", **spec: Any) -> str:
    batch_id = uuid.uuid4().hex
    BatchStore.from_settings(settings).create_ingesting(
        batch_id, source=source, source_kind=kind, spec={"model": "person", **spec}
    )
    return batch_id


def jobs_of(settings: Settings, batch_id: str) -> list[dict[str, Any]]:
    return list(JobStore.from_settings(settings).iter_batch(batch_id))


def sent_ids(settings: Settings) -> list[str]:
    """Every job id in the jobs queue (messages drained)."""
    sqs, ids = client("sqs", settings), []
    while True:
        out = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not out.get("Messages"):
            return ids
        for m in out["Messages"]:
            ids += messages.decode(m["Body"]).job_ids
            sqs.delete_message(QueueUrl=settings.queue_url, ReceiptHandle=m["ReceiptHandle"])


def assert_exactly_once(settings: Settings, batch_id: str, keys: list[str], sent: list[str]) -> None:
    jobs = jobs_of(settings, batch_id)
    assert sorted(j["input_key"] for j in jobs) == sorted(keys)  # none missing, none twice
    batch = BatchStore.from_settings(settings).get(batch_id)
    assert batch is not None and batch.total == len(keys) and batch.state != BatchState.INGESTING
    assert {j["job_id"] for j in jobs if j["status"] == JobStatus.QUEUED} <= set(sent)


def test_a_prefix_becomes_one_job_per_image_page_by_page(settings: Settings, source_bucket: str) -> None:
    s = ingest_settings(settings, source_bucket, max_upload_bytes=1000)
    images = [f"photos/a/{i:03d}.jpg" for i in range(23)]
    put_objects(s, source_bucket, images)
    put_objects(s, source_bucket, ["photos/a/readme.txt", "photos/a/notes.csv"])
    put_objects(s, source_bucket, ["photos/a/big.png"], body=b"\x89PNG" + b"\0" * 2000)
    put_objects(s, source_bucket, ["photos/a/empty.jpg"], body=b"")
    put_objects(s, source_bucket, ["photos/b/other.jpg"])  # beside the prefix: not part of it
    batch_id = start(s, f"s3://{source_bucket}/photos/a/")

    outcome = Ingester(s, page_size=7).run(batch_id)

    assert outcome.finished and outcome.pages == 4 and outcome.skipped == 2
    jobs = {j["input_key"]: j for j in jobs_of(s, batch_id)}
    assert set(jobs) == {*images, "photos/a/big.png", "photos/a/empty.jpg"}
    assert jobs["photos/a/big.png"]["status"] == JobStatus.FAILED
    assert "over the limit of 1,000 bytes" in jobs["photos/a/big.png"]["error"]
    assert "empty" in jobs["photos/a/empty.jpg"]["error"]
    first = jobs[images[0]]
    assert (first["input_bucket"], first["status"], first["model"]) == (source_bucket, JobStatus.QUEUED, "person")
    assert first["input_etag"] and first["enqueued_at"]
    assert RowFormat([]).row(first)["source_uri"] == f"s3://{source_bucket}/{images[0]}"  # the export names it
    assert sorted(sent_ids(s)) == sorted(j["job_id"] for j in jobs.values() if j["status"] == JobStatus.QUEUED)
    batch = BatchStore.from_settings(s).get(batch_id)
    assert batch is not None
    assert (batch.state, batch.total, batch.failed, batch.done, batch.listed, batch.skipped) == (
        BatchState.SEALED, 25, 2, 2, 27, 2,
    )  # fmt: skip


def test_an_empty_prefix_is_a_completed_batch_of_none_with_a_note(settings: Settings, source_bucket: str) -> None:
    s = ingest_settings(settings, source_bucket)
    put_objects(s, source_bucket, ["photos/empty/readme.md"])
    batch_id = start(s, f"s3://{source_bucket}/photos/empty/")
    outcome = Ingester(s).run(batch_id)
    batch = BatchStore.from_settings(s).get(batch_id)
    assert outcome.completed and batch is not None and batch.state == BatchState.COMPLETED and batch.total == 0
    assert batch.ingest_note == (
        "no images: the source holds no objects whose names end in the suffixes (1 other objects skipped)"
    )
    nothing = start(s, f"s3://{source_bucket}/photos/nothing-here/")
    Ingester(s).run(nothing)
    record = BatchStore.from_settings(s).get(nothing)
    assert record is not None and record.ingest_note == "no images: the source holds no objects"


class CrashAtCheckpoint:
    """A DynamoDB client whose ``n``-th checkpoint write kills the run, after the page's jobs were written and
    sent, and the next page's written too (a listing's pages overlap): the gap where a crash leaves the most
    written but uncounted jobs behind."""

    def __init__(self, real: Any, n: int) -> None:
        self._real, self._left = real, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def update_item(self, **kwargs: Any) -> Any:
        if "ingest_cursor" in kwargs.get("UpdateExpression", ""):
            self._left -= 1
            if self._left == 0:
                raise KeyboardInterrupt("killed between a page's writes and its checkpoint")
        return self._real.update_item(**kwargs)


def test_a_run_killed_before_a_checkpoint_is_resumed_without_duplicates(settings: Settings, source_bucket: str) -> None:
    s = ingest_settings(settings, source_bucket)
    images = [f"photos/r/{i:03d}.jpg" for i in range(20)]
    put_objects(s, source_bucket, images)
    batch_id = start(s, f"s3://{source_bucket}/photos/r/")
    crashing = CrashAtCheckpoint(client("dynamodb", s), n=2)
    with pytest.raises(KeyboardInterrupt):
        Ingester(s, dynamodb=crashing, page_size=6, lease_ms=1).run(batch_id)
    assert len(jobs_of(s, batch_id)) == 18  # three pages written, one counted
    # A worker finished one job of each uncounted page before the resume: each must count once, in done and total.
    store = JobStore.from_settings(s)
    written = sorted(jobs_of(s, batch_id), key=lambda j: j["input_key"])
    for uncounted in (written[8]["job_id"], written[14]["job_id"]):
        assert store.claim(uncounted, "w")
        assert store.complete(uncounted, "w", result={}, mask_key=None, overlay_key=None)
    time.sleep(0.01)  # the dead run's lease (1 ms) runs out

    outcome = Ingester(s, page_size=6).run(batch_id)

    assert outcome.claimed and outcome.resumed_from == "photos/r/005.jpg"
    assert_exactly_once(s, batch_id, images, sent_ids(s))
    batch = BatchStore.from_settings(s).get(batch_id)
    assert batch is not None and (batch.done, batch.succeeded) == (2, 2)
    finished = {j["job_id"]: j["status"] for j in jobs_of(s, batch_id)}
    assert finished[written[8]["job_id"]] == finished[written[14]["job_id"]] == JobStatus.SUCCEEDED  # not rewritten


def test_a_live_run_holds_the_batch_and_a_second_run_does_nothing(settings: Settings, source_bucket: str) -> None:
    s = ingest_settings(settings, source_bucket)
    put_objects(s, source_bucket, ["photos/l/a.jpg"])
    batch_id = start(s, f"s3://{source_bucket}/photos/l/")
    assert BatchStore.from_settings(s).claim_ingest(batch_id, "other", lease_ms=60_000) is not None
    outcome = Ingester(s).run(batch_id)
    assert not outcome.claimed and jobs_of(s, batch_id) == []


@pytest.mark.slow
def test_an_ingester_sigkilled_mid_listing_resumes_with_no_missing_and_no_duplicate_job(
    settings: Settings, source_bucket: str
) -> None:
    s = ingest_settings(settings, source_bucket)
    images = [f"photos/k/{i:04d}.jpg" for i in range(1500)]
    put_objects(s, source_bucket, images, body=b"x")
    batch_id = start(s, f"s3://{source_bucket}/photos/k/")
    env = {
        **os.environ,
        **{env_name(k): str(v) for k, v in s.model_dump().items() if v is not None and k != "api_key"},
        env_name("ingest_sources"): s.ingest_sources,
    }
    # 1,000 keys a page: the kill lands inside the second page, after the first page's checkpoint.
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.results", "ingest", "--batch", batch_id],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    batches = BatchStore.from_settings(s)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        batch = batches.get(batch_id)
        if batch is not None and batch.ingest_cursor is not None:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = batches.get(batch_id)
    assert killed is not None and killed.state == BatchState.INGESTING and killed.ingest_cursor is not None
    batches.client.update_item(  # the dead run's lease runs out (5 minutes in AWS; not worth waiting for here)
        TableName=s.table,
        Key={"pk": {"S": f"batch#{batch_id}"}},
        UpdateExpression="SET ingest_lease_until = :zero",
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )

    outcome = Ingester(s).run(batch_id)

    assert outcome.claimed and outcome.finished
    assert_exactly_once(s, batch_id, images, sent_ids(s))


def manifest(settings: Settings, bucket: str, key: str, text: str) -> str:
    client("s3", settings).put_object(Bucket=bucket, Key=key, Body=text.encode())
    return f"s3://{bucket}/{key}"


def test_manifest_lines_become_jobs_and_each_bad_line_a_failed_job_with_its_reason(
    settings: Settings, source_bucket: str
) -> None:
    s = ingest_settings(settings, source_bucket)
    put_objects(s, source_bucket, ["photos/m/1.jpg", "photos/m/2.jpg"])
    text = "\n".join(
        [
            "photos/m/1.jpg",
            "",
            f"s3://{source_bucket}/photos/m/2.jpg",
            "photos/m/1.jpg",  # the same key again: one job
            "s3://someone-elses-bucket/secret.jpg",
            "photos/m/dir/",
            "photos/m/deleted.jpg",  # listed but not there: the worker fails it (input_missing)
        ]
    )
    uri = manifest(s, source_bucket, "lists/batch.txt", text + "\n")
    batch_id = start(s, uri, kind="manifest")
    outcome = Ingester(s, page_size=2).run(batch_id)
    assert outcome.finished
    jobs = jobs_of(s, batch_id)
    failed = {j["file_name"]: j["error"] for j in jobs if j["status"] == JobStatus.FAILED}
    assert failed == {
        "secret.jpg": "s3://someone-elses-bucket/secret.jpg is outside the allowed sources; nothing there can be read",
        "photos/m/dir/": "manifest line 6: 'photos/m/dir/' names no object",
    }
    assert sorted(j["input_key"] for j in jobs if j["status"] == JobStatus.QUEUED) == [
        "photos/m/1.jpg", "photos/m/2.jpg", "photos/m/deleted.jpg",
    ]  # fmt: skip
    batch = BatchStore.from_settings(s).get(batch_id)
    assert batch is not None and (batch.total, batch.failed, batch.skipped) == (5, 2, 1)


def test_jsonl_and_csv_manifests(settings: Settings, source_bucket: str) -> None:
    s = ingest_settings(settings, source_bucket)
    jsonl = manifest(
        s,
        source_bucket,
        "lists/a.jsonl",
        '{"key": "photos/j/1.jpg"}\n{"uri": "s3://' + source_bucket + '/photos/j/2.jpg"}\n[1]\n{bad\n',
    )
    batch_id = start(s, jsonl, kind="manifest")
    Ingester(s).run(batch_id)
    errors = sorted(j.get("error", "") for j in jobs_of(s, batch_id) if j["status"] == JobStatus.FAILED)
    assert errors[0] == 'manifest line 3: a JSON Lines entry must be an object with a string "key" (or "uri")'
    assert errors[1].startswith("manifest line 4: Expecting property name")
    assert all(j["error_class"] == INGEST_FAILED for j in jobs_of(s, batch_id) if j["status"] == JobStatus.FAILED)

    csv_uri = manifest(s, source_bucket, "lists/b.csv", 'id,key\n1,photos/c/1.jpg\n2,"photos/c/2,x.jpg"\n3\n')
    batch_id = start(s, csv_uri, kind="manifest")
    Ingester(s, page_size=1).run(batch_id)  # a page a line: the header is read again for every resumed range
    jobs = jobs_of(s, batch_id)
    assert sorted(j["input_key"] for j in jobs if j["status"] == JobStatus.QUEUED) == [
        "photos/c/1.jpg",
        "photos/c/2,x.jpg",
    ]
    assert [j["error"] for j in jobs if j["status"] == JobStatus.FAILED] == [
        "manifest line 4: 1 columns where the header has 2"
    ]

    headless = manifest(s, source_bucket, "lists/c.csv", "photos/c/1.jpg\n")
    batch_id = start(s, headless, kind="manifest")
    outcome = Ingester(s).run(batch_id)
    batch = BatchStore.from_settings(s).get(batch_id)
    assert outcome.error and batch is not None and batch.state == BatchState.COMPLETED
    assert batch.ingest_note is not None and "header with a 'key' column" in batch.ingest_note


def test_a_manifest_stops_at_the_object_limit_with_a_note(settings: Settings, source_bucket: str) -> None:
    s = ingest_settings(settings, source_bucket, ingest_max_objects=4)
    uri = manifest(s, source_bucket, "lists/big.txt", "".join(f"photos/x/{i}.jpg\n" for i in range(10)))
    batch_id = start(s, uri, kind="manifest")
    Ingester(s, page_size=2).run(batch_id)
    batch = BatchStore.from_settings(s).get(batch_id)
    assert batch is not None and batch.total == 4 and batch.ingest_note == "stopped after 4 objects (the limit)"


def test_a_prefix_stops_at_the_object_limit_and_writes_nothing_past_it(settings: Settings, source_bucket: str) -> None:
    """A listing's pages overlap (the next page is written while one is finished): none is begun past the limit."""
    s = ingest_settings(settings, source_bucket, ingest_max_objects=12)
    put_objects(s, source_bucket, [f"photos/m/{i:02d}.jpg" for i in range(20)])
    batch_id = start(s, f"s3://{source_bucket}/photos/m/")
    outcome = Ingester(s, page_size=6).run(batch_id)
    batch = BatchStore.from_settings(s).get(batch_id)
    assert outcome.finished and outcome.pages == 2
    assert batch is not None and batch.total == 12 and batch.ingest_note == "stopped after 12 objects (the limit)"
    assert sorted(j["input_key"] for j in jobs_of(s, batch_id)) == [f"photos/m/{i:02d}.jpg" for i in range(12)]
    assert len(sent_ids(s)) == 12


def test_a_run_stopped_after_some_pages_leaves_the_next_written_and_a_resume_counts_it_once(
    settings: Settings, source_bucket: str
) -> None:
    s = ingest_settings(settings, source_bucket)
    images = [f"photos/p/{i:02d}.jpg" for i in range(17)]
    put_objects(s, source_bucket, images)
    batch_id = start(s, f"s3://{source_bucket}/photos/p/")
    first = Ingester(s, page_size=5, lease_ms=1).run(batch_id, max_pages=1)
    assert first.pages == 1 and not first.finished
    assert len(jobs_of(s, batch_id)) == 10  # the second page was written, not counted: as a run killed there
    time.sleep(0.01)
    second = Ingester(s, page_size=5).run(batch_id)
    assert second.finished and second.resumed_from == "photos/p/04.jpg" and second.jobs == 12
    assert_exactly_once(s, batch_id, images, sent_ids(s))


def test_the_reconcile_pass_resumes_an_ingestion_whose_start_was_lost(settings: Settings, source_bucket: str) -> None:
    from runtime.results.ingest.due import ingest_everything_due

    s = ingest_settings(settings, source_bucket)
    put_objects(s, source_bucket, ["photos/d/1.jpg"])
    batch_id = start(s, f"s3://{source_bucket}/photos/d/")
    out = ingest_everything_due(s)
    assert [b["batch_id"] for b in out["batches"]] == [batch_id]
    assert json.dumps(out) and len(jobs_of(s, batch_id)) == 1


def test_the_ingester_wakes_a_worker_when_none_is_live(settings: Settings, source_bucket: str) -> None:
    """The pipe starts workers for wake messages only (D8): work the ingester sends must come with one."""
    from runtime.common.messages import decode_wake
    from tests.queues import drain_bodies

    s = ingest_settings(settings, source_bucket)
    assert s.wake_queue_url
    sqs = client("sqs", s)
    drain_bodies(sqs, s.wake_queue_url)
    put_objects(s, source_bucket, [f"photos/wake/{i}.jpg" for i in range(3)])
    batch_id = start(s, f"s3://{source_bucket}/photos/wake/")

    assert Ingester(s, page_size=1).run(batch_id).finished

    wakes = [decode_wake(body) for body in drain_bodies(sqs, s.wake_queue_url)]
    assert [w.by for w in wakes] == ["ingester"]  # one wake for three pages: a starting worker counts as alive


def test_the_ingesters_listing_client_keeps_timestamps_as_text(settings: Settings, source_bucket: str) -> None:
    put_objects(settings, source_bucket, ["photos/a.jpg"])
    (listed,) = Ingester(settings).s3.list_objects_v2(Bucket=source_bucket, Prefix="photos/")["Contents"]
    (parsed,) = client("s3", settings).list_objects_v2(Bucket=source_bucket, Prefix="photos/")["Contents"]
    assert isinstance(listed["LastModified"], str) and listed["LastModified"].startswith(
        str(parsed["LastModified"].year)
    )
    assert {k: v for k, v in listed.items() if k != "LastModified"} == {
        k: v for k, v in parsed.items() if k != "LastModified"
    }
