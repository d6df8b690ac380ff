"""``GET /v1/batches/{id}``: counts by status and one page of jobs (cursor pagination)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from runtime.api.deps import BatchIdPath, ServicesDep, add_job_ids
from runtime.api.problems import ApiProblem, problem_responses
from runtime.api.schemas import BatchView, JobView
from runtime.api.validation import is_id
from runtime.common import schema

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


@router.get("/v1/batches/{batch_id}", response_model=BatchView, responses=problem_responses(401, 404, 422, 503))
def get_batch(
    request: Request,
    batch_id: BatchIdPath,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page")
    ] = None,
) -> BatchView:
    """Counts by status for the whole batch, and ``limit`` jobs from ``cursor`` on (in upload order)."""
    if not is_id(batch_id):
        raise ApiProblem(404, "batch_not_found", f"no batch {batch_id[:64]!r}")
    counts = services.store.batch_counts(batch_id)
    total = sum(counts.values())
    if total == 0:
        raise ApiProblem(404, "batch_not_found", f"no batch {batch_id}")
    start = decode_cursor(cursor, batch_id) if cursor else None
    items, next_key = services.store.page_batch(batch_id, limit=limit, cursor=start)
    add_job_ids(request, [], batch_id)
    return BatchView(
        batch_id=batch_id,
        total=total,
        counts=counts,
        jobs=[JobView.from_item(i) for i in items],
        next_cursor=encode_cursor(next_key),
    )
