"""Batches: create one (with a webhook), seal it, and read its lifecycle, counts and one page of jobs.

``GET /v1/batches/{id}`` shows the batch record (state, times, counters, webhook attempts; docs/notifications.md)
with the counts by status and a page of jobs (cursor pagination)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from runtime.api import batchrecord, ingestreq
from runtime.api.deps import BatchIdPath, CallerDep, ServicesDep, add_job_ids
from runtime.api.owners import OwnedBatch
from runtime.api.problems import ApiProblem, problem_responses
from runtime.api.schemas import BatchProgressView, BatchView, CreateBatch, IngestView, JobView, WebhookView
from runtime.api.services import Services
from runtime.common import schema
from runtime.common.batches import Batch, BatchState

router = APIRouter(tags=["batches"])
CURSOR_PATTERN = r"^[0-9]{1,15}-[0-9a-f]{32}$"


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    """DynamoDB's LastEvaluatedKey as ``<created_at>-<job_id>``: a position in the batch's upload order."""
    if not key:
        return None
    return f"{key['created_at']['N']}-{key['pk']['S'].removeprefix(schema.JOB_PK_PREFIX)}"


def decode_cursor(cursor: str, batch_id: str) -> dict[str, Any]:
    """Every string the pattern admits is a valid position (the page starts after it, in this batch), so a cursor
    can never be refused once it has passed the schema, and never reaches another batch."""
    created_at, job_id = cursor.split("-", 1)
    return {
        "pk": {"S": schema.JOB_PK_PREFIX + job_id},
        "batch_id": {"S": batch_id},
        "created_at": {"N": str(int(created_at))},
    }


def batch_view(
    services: Services,
    batch_id: str,
    record: Batch | None,
    *,
    limit: int = 100,
    cursor: dict[str, Any] | None = None,
) -> BatchView:
    """The record (if any) with the counts by status and one page of jobs; 404 when neither exists."""
    counts = services.store.batch_counts(batch_id)
    total = sum(counts.values())
    if total == 0 and record is None:
        raise ApiProblem(404, "batch_not_found", f"no batch {batch_id}")
    items, next_key = services.store.page_batch(batch_id, limit=limit, cursor=cursor)
    view = BatchView(
        batch_id=batch_id,
        total=total,
        counts=counts,
        jobs=[JobView.from_item(i) for i in items],
        next_cursor=encode_cursor(next_key),
    )
    if record is None:
        return view
    return view.model_copy(
        update={
            "state": str(record.state),
            "sealed": record.state != BatchState.OPEN,
            "completed": record.state == BatchState.COMPLETED,
            "opened_at": record.opened_at,
            "sealed_at": record.sealed_at,
            "completed_at": record.completed_at,
            "progress": BatchProgressView(
                total=record.total, done=record.done, succeeded=record.succeeded, failed=record.failed
            ),
            "notify_url": record.notify_url,
            "event_id": record.event_id,
            "export_key": record.export_key,
            "report_key": record.report_key,
            "webhook": WebhookView.from_record(record.webhook),
            "ingest": _ingest_view(record),
            "owner": record.owner,
        }
    )


def _ingest_view(record: Batch) -> IngestView | None:
    if record.source is None:
        return None
    return IngestView(
        source=record.source,
        kind=record.source_kind or "prefix",
        listed=record.listed,
        skipped=record.skipped,
        note=record.ingest_note,
        inbox_name=record.inbox_name,
    )


@router.post(
    "/v1/batches",
    status_code=201,
    response_model=BatchView,
    summary="Create a batch (optionally with a webhook), or ingest one from S3",
    description="An empty OPEN batch; uploads that name its `batch_id` fill it. `notify_url` is called, signed, "
    "when the batch completes (docs/notifications.md): https only, and never an address inside a network (422 "
    "`invalid_notify_url`). The same call again is answered the same way; another `notify_url` for the same id, "
    "or an id whose batch is sealed, is a 409; an id another client uses is a 404. With a `source` "
    "(docs/ingestion.md) the answer is 202: the batch is INGESTING while its objects become jobs (read in place), "
    "then SEALED; a source outside the allowed ones is a 403 naming them.",
    responses={
        202: {"description": "An S3 source's batch, INGESTING", "model": BatchView},
        **problem_responses(401, 403, 404, 409, 422, 503),
    },
)
def create_batch(
    request: Request, response: Response, body: CreateBatch, services: ServicesDep, caller: CallerDep
) -> BatchView:
    batch_id = body.batch_id or uuid.uuid4().hex
    notify_url = batchrecord.check_notify_url(services, body.notify_url)
    ingestreq.refuse_source_fields_without_source(body)
    if body.source is not None:
        record = ingestreq.create(services, body, batch_id, notify_url, caller)
        response.status_code = 202
    else:
        record = batchrecord.create(services, batch_id, notify_url, caller)
    add_job_ids(request, [], batch_id)
    return batch_view(services, batch_id, record, limit=1)


@router.post(
    "/v1/batches/{batch_id}/seal",
    response_model=BatchView,
    summary="Seal a batch: no more images",
    description="Once sealed, the batch completes when its last job finishes (at once if they all have): then "
    "its export and report are written, `Batch Completed` is sent and its webhook called. Sealing again is "
    "harmless. Images sent to a sealed batch are refused with 409 `batch_sealed`.",
    responses=problem_responses(401, 404, 503),
)
def seal_batch(request: Request, batch_id: BatchIdPath, services: ServicesDep, _owned: OwnedBatch) -> BatchView:
    record = batchrecord.seal(services, batch_id)
    if record is None:
        raise ApiProblem(404, "batch_not_found", f"no batch {batch_id} (or one made before batches could be sealed)")
    add_job_ids(request, [], batch_id)
    return batch_view(services, batch_id, record, limit=1)


@router.get("/v1/batches/{batch_id}", response_model=BatchView, responses=problem_responses(401, 404, 422, 503))
def get_batch(
    request: Request,
    batch_id: BatchIdPath,
    services: ServicesDep,
    record: OwnedBatch,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page")
    ] = None,
) -> BatchView:
    """The batch's state, times and webhook attempts; counts by status for the whole batch, and ``limit`` jobs
    from ``cursor`` on (in upload order)."""
    start = decode_cursor(cursor, batch_id) if cursor else None
    view = batch_view(services, batch_id, record, limit=limit, cursor=start)
    add_job_ids(request, [], batch_id)
    return view
