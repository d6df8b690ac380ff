"""Delete ``uploads/`` objects that have had no job for longer than ``orphan_grace_s`` (a backstop; D7a).

The API writes an image before its job and deletes the image when the job cannot be written, so an object without
a job is left only when that clean-up itself failed (S3 unreachable at that moment, the process killed in between).
No worker would ever read it, and only the bucket's retention rule would remove it. An object younger than the
grace period may belong to a request that is writing its job right now, so it is left alone; an object whose job
exists (whatever its status) is kept; an answer DynamoDB did not give (unprocessed keys) keeps the object too.

Each pass reads at most ``max_scan`` keys, starting at a random point of the prefix and wrapping around, so a huge
prefix is covered over several passes without any state between them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common import keys
from runtime.common.aws import client
from runtime.common.jobs import job_pk
from runtime.common.schema import TABLE_PARTITION_KEY
from runtime.common.settings import Settings

# The job table actions of the sweep (stacks/constructs/grants.py grants them to the results task).
ACTIONS: Final = ("dynamodb:BatchGetItem",)  # _keys_with_jobs: which uploads still have their job
DEFAULT_MAX_SCAN = 10_000
CHECK_BATCH = 100  # BatchGetItem limit
DELETE_BATCH = 1000  # DeleteObjects limit
EXAMPLES = 10


@dataclass
class OrphanReport:
    """What one sweep did; part of the reconcile report (``orphans``)."""

    scanned: int = 0  # keys read under uploads/
    too_young: int = 0  # within the grace period: not judged yet
    deleted: int = 0
    examples: list[str] = field(default_factory=list)  # the first deleted keys, for the log
    delete_failed: list[str] = field(default_factory=list)
    truncated: bool = False  # stopped at max_scan: later passes cover the rest
    error: str | None = None  # the sweep could not finish (S3 or DynamoDB unavailable); reconcile still ran

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _objects(s3: Any, bucket: str, start_after: str) -> Iterator[dict[str, Any]]:
    """Every object under uploads/, from ``start_after`` to the end, then from the start up to it."""
    paginator = s3.get_paginator("list_objects_v2")
    for begin, end in ((start_after, None), (None, start_after)):
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": keys.UPLOADS_PREFIX}
        if begin is not None:
            params["StartAfter"] = begin
        for page in paginator.paginate(**params):
            for obj in page.get("Contents", []):
                if end is not None and obj["Key"] > end:
                    return
                yield obj


def _keys_with_jobs(dynamodb: Any, table: str, candidates: dict[str, str]) -> set[str]:
    """Of ``{key: job_id}``, the keys to keep: their job exists and points to them, or DynamoDB did not say."""
    keep: set[str] = set()
    request: dict[str, Any] = {
        table: {
            "Keys": [{TABLE_PARTITION_KEY: {"S": job_pk(j)}} for j in dict.fromkeys(candidates.values())],
            "ProjectionExpression": "job_id, input_key",
            "ConsistentRead": True,
        }
    }
    found: dict[str, str] = {}
    for _ in range(5):
        out = dynamodb.batch_get_item(RequestItems=request)
        for item in out.get("Responses", {}).get(table, []):
            found[item["job_id"]["S"]] = item.get("input_key", {}).get("S", "")
        request = out.get("UnprocessedKeys") or {}
        if not request:
            break
        time.sleep(0.1)
    unanswered = {k[TABLE_PARTITION_KEY]["S"] for k in request.get(table, {}).get("Keys", [])}
    for key, job_id in candidates.items():
        if found.get(job_id) == key or job_pk(job_id) in unanswered:
            keep.add(key)
    return keep


class _Sweep:
    def __init__(self, settings: Settings, s3: Any, dynamodb: Any, now_ms: int, max_scan: int) -> None:
        self.settings = settings
        self.s3 = s3
        self.dynamodb = dynamodb
        self.cutoff_ms = now_ms - settings.orphan_grace_s * 1000
        self.max_scan = max_scan
        self.report = OrphanReport()
        self.candidates: dict[str, str] = {}  # key -> job id ("" when the key is not one the API makes)

    def run(self, start_after: str) -> None:
        for obj in _objects(self.s3, self.settings.bucket, start_after):
            if self.report.scanned >= self.max_scan:
                self.report.truncated = True
                break
            self.report.scanned += 1
            if obj["LastModified"].timestamp() * 1000 > self.cutoff_ms:
                self.report.too_young += 1
                continue
            ids = keys.parse_upload_key(obj["Key"])
            self.candidates[obj["Key"]] = ids[1] if ids else ""
            if len(self.candidates) >= CHECK_BATCH:
                self.check()
        self.check()

    def check(self) -> None:
        known = {k: j for k, j in self.candidates.items() if j}
        keep = _keys_with_jobs(self.dynamodb, self.settings.table, known) if known else set()
        self.delete([k for k in self.candidates if k not in keep])
        self.candidates = {}

    def delete(self, orphans: list[str]) -> None:
        for i in range(0, len(orphans), DELETE_BATCH):
            chunk = orphans[i : i + DELETE_BATCH]
            out = self.s3.delete_objects(
                Bucket=self.settings.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
            failed = {e["Key"] for e in out.get("Errors", [])}
            self.report.delete_failed.extend(sorted(failed))
            deleted = [k for k in chunk if k not in failed]
            self.report.deleted += len(deleted)
            self.report.examples.extend(deleted[: EXAMPLES - len(self.report.examples)])


def sweep_orphans(
    settings: Settings,
    *,
    now_ms: int,
    max_scan: int = DEFAULT_MAX_SCAN,
    s3: Any | None = None,
    dynamodb: Any | None = None,
    start_after: str | None = None,
) -> OrphanReport:
    """One bounded pass; never raises for S3 or DynamoDB trouble (the report says what stopped it)."""
    start = start_after if start_after is not None else f"{keys.UPLOADS_PREFIX}{secrets.token_hex(16)}"
    sweep = _Sweep(settings, s3 or client("s3", settings), dynamodb or client("dynamodb", settings), now_ms, max_scan)
    try:
        sweep.run(start)
    except (BotoCoreError, ClientError) as exc:
        sweep.report.error = f"{type(exc).__name__}: {exc}"[:300]
    return sweep.report
