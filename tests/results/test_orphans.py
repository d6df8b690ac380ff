"""The orphan sweep against a real moto server: only objects under uploads/ with no job, past the grace period,
are deleted; everything else (a job's object, a young object, other prefixes) is kept; the reconciler reports it."""

from __future__ import annotations

import time
import uuid
from typing import Any

from runtime.common import keys
from runtime.common.aws import client
from runtime.common.jobs import JobStore, job_pk
from runtime.common.settings import Settings
from runtime.results.orphans import sweep_orphans
from runtime.results.reconcile import reconcile_once
from tests.results.conftest import new_job


def _put(settings: Settings, key: str) -> str:
    client("s3", settings).put_object(Bucket=settings.bucket, Key=key, Body=b"x")
    return key


def _keys(settings: Settings) -> set[str]:
    out = client("s3", settings).list_objects_v2(Bucket=settings.bucket)
    return {o["Key"] for o in out.get("Contents", [])}


def _later(settings: Settings) -> int:
    """A clock past the grace period of every object written so far."""
    return int(time.time() * 1000) + settings.orphan_grace_s * 1000 + 60_000


def _orphan_key() -> str:
    return keys.upload_key(uuid.uuid4().hex, uuid.uuid4().hex, "jpg")


def test_only_old_objects_without_a_job_are_deleted(settings: Settings, store: JobStore) -> None:
    batch = uuid.uuid4().hex
    with_job = new_job(store, batch)
    kept = _put(settings, store.get(with_job)["input_key"])  # type: ignore[index]
    other = new_job(store, batch)
    points_elsewhere = _put(settings, keys.upload_key(batch, other, "png"))  # the job's input_key is its .jpg
    orphan = _put(settings, _orphan_key())
    strange = _put(settings, "uploads/not-a-key-the-api-makes")
    elsewhere = {_put(settings, "results/x/mask.png"), _put(settings, "reports/r.csv")}

    young = sweep_orphans(settings, now_ms=int(time.time() * 1000))
    assert (young.deleted, young.too_young, young.scanned) == (0, 4, 4) and young.error is None

    report = sweep_orphans(settings, now_ms=_later(settings))
    assert report.deleted == 3 and sorted(report.examples) == sorted([points_elsewhere, orphan, strange])
    assert report.error is None and not report.truncated and report.delete_failed == []
    assert _keys(settings) == {kept, *elsewhere}


def test_a_pass_is_bounded_and_wraps_around(settings: Settings) -> None:
    orphans = sorted(_put(settings, _orphan_key()) for _ in range(5))
    first = sweep_orphans(settings, now_ms=_later(settings), max_scan=3, start_after=orphans[2])
    # From after the third key to the end (two keys), then from the start: the first key, and the budget is spent.
    assert first.truncated and first.scanned == 3 and sorted(first.examples) == [orphans[0], orphans[3], orphans[4]]
    rest = sweep_orphans(settings, now_ms=_later(settings), start_after=orphans[0])
    assert rest.deleted == 2 and not rest.truncated and _keys(settings) == set()


def test_an_unanswered_lookup_keeps_the_object(settings: Settings) -> None:
    """DynamoDB leaving keys unprocessed (throttling) is not 'no job': the object stays for a later pass."""
    job_id = uuid.uuid4().hex
    orphan = _put(settings, keys.upload_key(uuid.uuid4().hex, job_id, "jpg"))
    dynamodb = client("dynamodb", settings)

    def unprocessed(parsed: dict[str, Any], **_: Any) -> None:  # at the AWS boundary: what DynamoDB answered
        parsed["Responses"] = {}
        parsed["UnprocessedKeys"] = {settings.table: {"Keys": [{"pk": {"S": job_pk(job_id)}}]}}

    dynamodb.meta.events.register("after-call.dynamodb.BatchGetItem", unprocessed)
    report = sweep_orphans(settings, now_ms=_later(settings), dynamodb=dynamodb)
    assert report.deleted == 0 and report.error is None and _keys(settings) == {orphan}


def test_storage_trouble_is_reported_not_raised(settings: Settings) -> None:
    broken = settings.model_copy(update={"bucket": "no-such-bucket-here"})
    report = sweep_orphans(broken, now_ms=_later(settings))
    assert report.deleted == 0 and report.error is not None and "NoSuchBucket" in report.error


def test_reconcile_deletes_orphans_and_reports_how_many(settings: Settings) -> None:
    orphan = _put(settings, _orphan_key())
    report = reconcile_once(settings, now_ms=_later(settings))
    data = report.to_dict()
    assert data["summary"]["orphans_deleted"] == 1 and data["orphans"]["examples"] == [orphan]
    assert _keys(settings) == set()
