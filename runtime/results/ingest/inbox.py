"""The drop folder: objects created under ``inbox/<name>/`` in our bucket become jobs of the batch of ``<name>``
(docs/ingestion.md). S3 sends an event per object to the inbox queue; ``drain_inbox`` reads them.

At least once, de-duplicated: S3 may deliver an event twice and a message is deleted only after all of its records
were handled. A job's id is derived from batch, key and ETag and written with a conditional put, so a repeated
event finds its job and adds nothing. A ``_SEALED`` marker turns the batch INGESTING: the ingester lists the
folder once for objects whose events have not been handled yet, then seals it. Objects dropped after the marker
are not part of the batch (logged, left alone).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from runtime.common import keys
from runtime.common.batches import BatchConflict, BatchNotOpen
from runtime.common.jobs import JobStatus, NewJob
from runtime.common.settings import Settings
from runtime.common.sources import DEFAULT_SUFFIXES, SEALED_MARKER, SourceError, inbox_batch_id, job_id_for, wanted
from runtime.results.ingest.run import VIA_EVENT, Ingester, IngestOutcome

log = logging.getLogger(__name__)


@dataclass
class InboxReport:
    messages: int = 0
    jobs: int = 0
    duplicates: int = 0
    skipped: int = 0  # not images by name, malformed folder names, objects dropped after the seal
    sealed: list[IngestOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Dropped:
    name: str
    batch_id: str
    rest: str  # the key below inbox/<name>/
    key: str
    etag: str
    size: int


def parse_records(body: str, bucket: str) -> list[Dropped | None]:
    """The created objects an S3 notification names (None for a record that is not one of ours)."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError:
        return [None]
    out: list[Dropped | None] = []
    for record in doc.get("Records", []) if isinstance(doc, dict) else []:
        try:
            if not str(record["eventName"]).startswith("ObjectCreated") or record["s3"]["bucket"]["name"] != bucket:
                out.append(None)
                continue
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"])
            name, _, rest = key.removeprefix(keys.INBOX_PREFIX).partition("/")
            if not key.startswith(keys.INBOX_PREFIX) or not rest:
                out.append(None)
                continue
            etag, size = str(obj.get("eTag", "")), int(obj.get("size", 0))
            out.append(Dropped(name, inbox_batch_id(name), rest, key, etag, size))
        except (KeyError, TypeError, ValueError, SourceError):
            out.append(None)
    return out


class Inbox:
    def __init__(self, settings: Settings, ingester: Ingester | None = None) -> None:
        if not settings.inbox_queue_url:
            raise ValueError("SEGSCALE_INBOX_QUEUE_URL is not set: this deployment has no drop folder")
        self.settings = settings
        self.ingester = ingester or Ingester(settings)
        self.queue_url = settings.inbox_queue_url

    def drain(self, *, max_messages: int = 10_000, wait_s: int = 1) -> InboxReport:
        report = InboxReport()
        sqs = self.ingester.sqs
        while report.messages < max_messages:
            out = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s)
            received = out.get("Messages", [])
            if not received:
                break
            send: list[str] = []
            seals: list[Dropped] = []
            for message in received:
                for dropped in parse_records(message["Body"], self.settings.bucket):
                    if dropped is None:
                        report.skipped += 1
                    elif dropped.rest == SEALED_MARKER:
                        seals.append(dropped)
                    else:
                        self._object(dropped, send, report)
            if send:
                self.ingester.enqueue(send)
            for dropped in {d.batch_id: d for d in seals}.values():
                report.sealed.append(self.seal(dropped.name))
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)],
            )
            report.messages += len(received)
        return report

    def _object(self, dropped: Dropped, send: list[str], report: InboxReport) -> None:
        if not wanted(dropped.rest, DEFAULT_SUFFIXES):
            report.skipped += 1
            return
        batches, store = self.ingester.batches, self.ingester.store
        try:
            reservation = batches.reserve(dropped.batch_id, 1)
        except (BatchNotOpen, BatchConflict):
            report.skipped += 1
            log.info("object dropped into a sealed folder ignored", extra={"event": "inbox_late", "key": dropped.key})
            return
        etag = dropped.etag.strip('"')
        job = NewJob(
            job_id=job_id_for(dropped.batch_id, self.settings.bucket, dropped.key, etag),
            batch_id=dropped.batch_id,
            input_key=dropped.key,
            input_bucket=self.settings.bucket,
            input_etag=etag or None,
            via=VIA_EVENT,
            file_name=dropped.rest.rsplit("/", 1)[-1],
            model=self.settings.default_model,
            size_bytes=dropped.size,
        )
        try:
            store.create(job, JobStatus.QUEUED, enqueued=True)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                batches.unreserve(reservation)
                raise
            batches.unreserve(reservation)  # a repeated event: its job exists and is counted
            report.duplicates += 1
            return
        send.append(job.job_id)
        report.jobs += 1

    def seal(self, name: str) -> IngestOutcome:
        """The folder's ``_SEALED``: list it for what its events have not brought yet, then seal the batch."""
        batch_id = inbox_batch_id(name)
        batches = self.ingester.batches
        with contextlib.suppress(BatchNotOpen, BatchConflict):
            batches.reserve(batch_id, 0)  # a folder sealed before any of its events: its (empty) batch
        source = f"s3://{self.settings.bucket}/{keys.INBOX_PREFIX}{name}/"
        spec = {"model": self.settings.default_model}
        batches.start_ingesting(batch_id, source=source, spec=spec, inbox_name=name)
        return self.ingester.run(batch_id)


def drain_inbox(settings: Settings, *, max_messages: int = 10_000) -> InboxReport:
    return Inbox(settings).drain(max_messages=max_messages)
