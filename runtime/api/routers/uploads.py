"""Presigned uploads: ``POST /v1/uploads`` then ``POST /v1/batches/{id}/submit`` (for files over the request
limit, and for Lambda mode's 6 MB payload cap)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from runtime.api import presign
from runtime.api.deps import BatchIdPath, CallerDep, SealQuery, ServicesDep, add_job_ids
from runtime.api.owners import OwnedBatch
from runtime.api.problems import problem_responses
from runtime.api.schemas import Accepted, PresignedBatch, UploadRequest

router = APIRouter(tags=["uploads"])


@router.post(
    "/v1/uploads",
    status_code=201,
    response_model=PresignedBatch,
    summary="Get presigned S3 PUT URLs for large files",
    description="Creates one AWAITING_UPLOAD job per file. PUT each file to its `upload_url` with the given "
    "headers, then POST `submit_url`. A `batch_id` of a sealed batch, or a `notify_url` other than the batch's "
    "own, is a 409; a `batch_id` another client uses is a 404.",
    responses=problem_responses(401, 404, 409, 413, 422, 503),
)
def create_uploads(request: Request, body: UploadRequest, services: ServicesDep, caller: CallerDep) -> dict:
    out = presign.create_uploads(services, body, caller)
    add_job_ids(request, [j["job_id"] for j in out["jobs"]], out["batch_id"])
    return out


@router.post(
    "/v1/batches/{batch_id}/submit",
    status_code=202,
    response_model=Accepted,
    summary="Queue a batch of presigned uploads",
    description="Checks every uploaded object (exists, size, image header) and queues the batch. If any object "
    "is missing or bad, nothing is queued and the problem lists each file; fix and submit again. With "
    "`seal=true` the batch is sealed once its files are queued (docs/notifications.md).",
    responses=problem_responses(401, 404, 409, 413, 415, 422, 503),
)
def submit_batch(
    request: Request, batch_id: BatchIdPath, services: ServicesDep, _owned: OwnedBatch, seal: SealQuery = False
) -> dict:
    out = presign.submit(services, batch_id, seal=seal)
    add_job_ids(request, [j["job_id"] for j in out["jobs"]], batch_id)
    return out
