"""``POST /v1/batches`` with a ``source``: check it, record an INGESTING batch, start the ingester (D10).

Everything that can be judged before listing is judged here, so the client hears it at once: a source that is not
an S3 URI (422), one outside the allowed sources (403 naming them), a manifest that is missing, unreadable, over
the size bound or without one valid line in its first 64 KiB (422 listing the first errors). Listing and job
creation happen outside the request, in the results task's ``ingest``; the API starts it with one internal
``Batch Ingest Due`` event (the only event it may put). A lost event costs latency, not the batch: every reconcile
pass resumes ingestions that are due.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api import batchrecord
from runtime.api.callers import Caller
from runtime.api.problems import ApiProblem
from runtime.api.schemas import SOURCE_ONLY_FIELDS, CreateBatch
from runtime.api.services import Services
from runtime.common.aws import client
from runtime.common.batches import Batch, BatchConflict
from runtime.common.events import ingest_due_event, put_events
from runtime.common.sources import (
    DEFAULT_SUFFIXES,
    Source,
    SourceError,
    SourceKind,
    allowed,
    csv_header,
    describe_allow_list,
    parse_allow_list,
    parse_manifest_line,
    parse_source,
)

log = logging.getLogger("segscale.api")
MANIFEST_PROBE_BYTES = 64 * 1024
SHOWN_ERRORS = 10


def refuse_source_fields_without_source(body: CreateBatch) -> None:
    """Ingestion fields without a ``source`` would be silently ignored: a 422 says so instead."""
    given = [name for name in SOURCE_ONLY_FIELDS if name in body.model_fields_set]
    if body.source is None and given:
        raise ApiProblem(422, "invalid_field", f"{', '.join(given)} only apply to a batch with a source")


def create(services: Services, body: CreateBatch, batch_id: str, notify_url: str | None, caller: Caller) -> Batch:
    settings = services.settings
    assert body.source is not None
    try:
        source = parse_source(body.source, manifest=body.manifest)
    except SourceError as exc:
        raise ApiProblem(422, "invalid_source", str(exc)) from None
    allow = parse_allow_list(settings.ingest_sources)
    if not allowed(source.bucket, source.key, allow):
        raise ApiProblem(
            403,
            "source_not_allowed",
            f"{source.uri} is outside the sources this deployment may read; allowed: {describe_allow_list(allow)}",
        )
    model = services.resolve_model(body.model)
    if body.max_bytes is not None and body.max_bytes > settings.max_upload_bytes:
        raise ApiProblem(
            422, "invalid_max_bytes", f"max_bytes may be at most the upload limit, {settings.max_upload_bytes:,}"
        )
    if source.kind == SourceKind.MANIFEST:
        _probe_manifest(services, source)
    spec: dict[str, Any] = {
        "model": model,
        "mm_per_pixel": body.mm_per_pixel,
        "suffixes": sorted({s.lower() for s in body.suffixes}) if body.suffixes else list(DEFAULT_SUFFIXES),
        "max_bytes": body.max_bytes or settings.max_upload_bytes,
    }
    try:
        batch = services.batches.create_ingesting(
            batch_id,
            source=source.uri,
            source_kind=str(source.kind),
            spec=spec,
            notify_url=notify_url,
            owner=caller.client,
        )
    except BatchConflict as exc:
        raise batchrecord.refused(exc, caller) from None
    except (BotoCoreError, ClientError) as exc:
        raise ApiProblem(503, "storage_unavailable", "DynamoDB is unavailable; nothing was created, retry later",
                         headers={"Retry-After": "5"}) from exc  # fmt: skip
    start_ingester(services, batch_id)
    return batch


def start_ingester(services: Services, batch_id: str) -> None:
    """The one event the API puts. Failing is not failing the request: reconcile resumes the batch."""
    bus = services.settings.ingest_bus
    if not bus:
        return
    try:
        put_events(client("events", services.settings), bus, [ingest_due_event(batch_id)])
    except Exception as exc:
        log.warning(
            "could not start the ingester; the next reconcile pass will",
            extra={"event": "ingest_start_failed", "batch_id": batch_id, "error": str(exc)[:300]},
        )


def _probe_manifest(services: Services, source: Source) -> None:
    """Read the manifest's first 64 KiB: it must exist, be readable, be within the size bound and, when that is
    the whole manifest, hold at least one valid line."""
    settings = services.settings
    try:
        out = services.s3.get_object(Bucket=source.bucket, Key=source.key, Range=f"bytes=0-{MANIFEST_PROBE_BYTES - 1}")
        head = out["Body"].read()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
            raise ApiProblem(422, "source_not_found", f"there is no manifest at {source.uri}") from None
        if code in ("AccessDenied", "403"):
            raise ApiProblem(403, "source_not_readable", f"the API may not read {source.uri}") from None
        if code == "InvalidRange":  # an empty object
            raise ApiProblem(422, "invalid_manifest", f"the manifest {source.uri} is empty") from None
        raise ApiProblem(503, "storage_unavailable", "S3 is unavailable; nothing was created, retry later",
                         headers={"Retry-After": "5"}) from exc  # fmt: skip
    except BotoCoreError as exc:
        raise ApiProblem(503, "storage_unavailable", "S3 is unavailable; nothing was created, retry later",
                         headers={"Retry-After": "5"}) from exc  # fmt: skip
    size = _total_size(out.get("ContentRange"), len(head))
    if size > settings.ingest_manifest_max_bytes:
        raise ApiProblem(
            422,
            "manifest_too_large",
            f"the manifest is {size:,} bytes; at most {settings.ingest_manifest_max_bytes:,} (split it into batches)",
        )
    whole = size <= len(head)
    lines = head.split(b"\n") if whole else head.split(b"\n")[:-1]  # the last line may be cut off
    errors, valid = _judge(lines, source)
    if not valid and (whole or errors):
        shown = "; ".join(errors[:SHOWN_ERRORS]) or "it holds no lines"
        raise ApiProblem(422, "invalid_manifest", f"the manifest {source.uri} names no object: {shown}")


def _judge(lines: list[bytes], source: Source) -> tuple[list[str], int]:
    fmt, header = source.manifest_format, None
    errors: list[str] = []
    valid = 0
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(f"manifest line {number}: not UTF-8")
            continue
        if fmt == "csv" and header is None:
            try:
                header = csv_header(text)
            except SourceError as exc:
                return [str(exc)], 0
            continue
        line = parse_manifest_line(number, text, fmt, default_bucket=source.bucket, header=header)
        if line is None:
            continue
        if line.error is not None:
            errors.append(line.error)
        else:
            valid += 1
    return errors, valid


def _total_size(content_range: str | None, read: int) -> int:
    match = re.fullmatch(r"bytes \d+-\d+/(\d+)", content_range or "")
    return int(match.group(1)) if match else read
