"""A batch's results as files: ``GET /v1/batches/{id}/jobs.csv`` and ``GET /v1/batches/{id}/report``.

The CSV is the results task's export format (docs/results.md, the same ``RowFormat`` and writer), streamed from
the job table page by page, so a person in the web console gets the measurements without running a task. The
HTML report is only linked: the results task writes it (it reads every overlay, too much work for a request), and
the API answers with a presigned link to it, or a 404 that says how to make it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from itertools import chain

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from runtime.api.deps import BatchIdPath, ServicesDep, add_job_ids
from runtime.api.links import link_responses, presigned_get
from runtime.api.owners import OwnedBatch
from runtime.api.problems import ApiProblem, problem_responses
from runtime.common import keys
from runtime.common.jobs import Job
from runtime.results.export import PAGE_SIZE, RowWriter
from runtime.results.rows import RowFormat, card_classes

router = APIRouter(tags=["batches"])
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
CHUNK_CHARS = 64 * 1024  # send the CSV in pieces of about this size


def _csv_chunks(jobs: Iterator[Job], row_format: RowFormat) -> Iterator[str]:
    buf = io.StringIO()
    writer = RowWriter(buf, "csv", row_format.columns)
    for job in jobs:
        writer.write(row_format.row(job))
        if buf.tell() >= CHUNK_CHARS:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


@router.get(
    "/v1/batches/{batch_id}/jobs.csv",
    response_class=StreamingResponse,
    responses={
        200: {"description": "one row per job (docs/results.md columns)", "content": {"text/csv": {}}},
        **problem_responses(401, 404, 422, 503),
    },
)
def batch_csv(request: Request, batch_id: BatchIdPath, services: ServicesDep, _owned: OwnedBatch) -> StreamingResponse:
    """Every job of the batch as CSV, in upload order: the results task's export columns, streamed."""
    jobs = services.store.iter_batch(batch_id, page_size=PAGE_SIZE)
    first = next(jobs, None)  # read before answering: an unknown batch or a storage failure is still a problem
    if first is None:
        raise ApiProblem(404, "batch_not_found", f"no batch {batch_id}")
    add_job_ids(request, [], batch_id)
    row_format = RowFormat(card_classes(services.settings.models_dir))
    return StreamingResponse(
        _csv_chunks(chain([first], jobs), row_format),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="segscale-{batch_id}.csv"'},
    )


@router.get(
    "/v1/batches/{batch_id}/report",
    status_code=307,
    response_class=RedirectResponse,  # what the docs show; with Accept: application/json it is a JSONResponse
    responses=link_responses("HTML report") | problem_responses(401, 404, 422, 503),
)
def batch_report(request: Request, batch_id: BatchIdPath, services: ServicesDep, _owned: OwnedBatch) -> Response:
    """The batch's HTML report, once the results task has written it (``report --batch``)."""
    key = keys.report_html_key(batch_id)
    # A listing, not a HEAD: without s3:ListBucket, S3 answers a HEAD of a missing key with 403, not 404.
    listed = services.s3.list_objects_v2(Bucket=services.settings.bucket, Prefix=key, MaxKeys=1)
    if not any(obj.get("Key") == key for obj in listed.get("Contents", [])):
        raise ApiProblem(
            404,
            "no_report",
            f"batch {batch_id} has no report yet: the results task writes it "
            f"(python -m runtime.results report --batch {batch_id}, docs/results.md)",
        )
    add_job_ids(request, [], batch_id)
    return presigned_get(request, services, key)
