"""Job status and results: ``GET /v1/jobs/{id}``, ``/mask``, ``/overlay``."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from runtime.api.deps import JobIdPath, ServicesDep, add_job_ids
from runtime.api.links import link_responses, presigned_get
from runtime.api.owners import OwnedJob
from runtime.api.problems import ApiProblem, problem_responses
from runtime.api.schemas import JobView

router = APIRouter(tags=["jobs"])


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=problem_responses(401, 404, 422, 503))
def get_job(request: Request, job_id: JobIdPath, item: OwnedJob) -> JobView:
    """Status, attempts, timings; the measurements when SUCCEEDED, the reason when FAILED. Another client's job
    is a 404, as if it did not exist."""
    add_job_ids(request, [job_id])
    return JobView.from_item(item)


@router.get(
    "/v1/jobs/{job_id}/{kind}",
    status_code=307,
    response_class=RedirectResponse,  # what the docs show; with Accept: application/json it is a JSONResponse
    responses=link_responses("mask or overlay") | problem_responses(401, 404, 422, 503),
)
def get_result_file(
    request: Request, job_id: JobIdPath, kind: Literal["mask", "overlay"], services: ServicesDep, item: OwnedJob
) -> Response:
    """The mask or overlay image of a finished job (a redirect, or its link as JSON)."""
    add_job_ids(request, [job_id])
    key = item.get("mask_key") if kind == "mask" else item.get("overlay_key")
    if not key:
        raise ApiProblem(404, f"no_{kind}", f"job {job_id} has no {kind} (status {item['status']})")
    return presigned_get(request, services, key)
