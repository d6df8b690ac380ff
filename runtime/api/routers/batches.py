"""``GET /v1/batches/{id}``: counts by status and one page of jobs (cursor pagination)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from runtime.api.deps import ServicesDep, add_job_ids
from runtime.api.problems import ApiProblem, problem_responses
from runtime.api.schemas import BatchView, JobView
from runtime.api.validation import is_id

router = APIRouter(tags=["batches"])


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, batch_id: str) -> dict[str, Any]:
    """The cursor is DynamoDB's LastEvaluatedKey; check its shape so a forged one is a 422, not a 500."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise ApiProblem(422, "invalid_cursor", "cursor is not one this API returned") from exc
    ok = (
        isinstance(key, dict)
        and set(key) == {"pk", "batch_id", "created_at"}
        and key["batch_id"] == {"S": batch_id}
        and isinstance(key["pk"], dict)
        and isinstance(key["pk"].get("S"), str)
        and isinstance(key["created_at"], dict)
        and isinstance(key["created_at"].get("N"), str)
        and key["created_at"]["N"].isdigit()
    )
    if not ok:
        raise ApiProblem(422, "invalid_cursor", "cursor is not one this API returned for this batch")
    return key


@router.get("/v1/batches/{batch_id}", response_model=BatchView, responses=problem_responses(401, 404, 422, 503))
def get_batch(
    request: Request,
    batch_id: str,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> BatchView:
    """Counts by status for the whole batch, and ``limit`` jobs from ``cursor`` on (in upload order)."""
    if not is_id(batch_id):
        raise ApiProblem(404, "batch_not_found", f"no batch {batch_id[:64]!r}")
    start = decode_cursor(cursor, batch_id) if cursor else None
    counts = services.store.batch_counts(batch_id)
    total = sum(counts.values())
    if total == 0:
        raise ApiProblem(404, "batch_not_found", f"no batch {batch_id}")
    items, next_key = services.store.page_batch(batch_id, limit=limit, cursor=start)
    add_job_ids(request, [], batch_id)
    return BatchView(
        batch_id=batch_id,
        total=total,
        counts=counts,
        jobs=[JobView.from_item(i) for i in items],
        next_cursor=encode_cursor(next_key),
    )
