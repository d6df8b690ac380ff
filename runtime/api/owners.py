"""Owner checks for the by-id routes, as FastAPI dependencies: a job or batch of another client is a 404, answered
word for word as for an id that does not exist (runtime/api/callers.py says why).

A batch's owner is its record's; a batch without a record (made before batch records existed) and its jobs are the
admin's. Every route that takes a batch or job id depends on one of these, so the check runs before the route
reads or writes anything else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from runtime.api.callers import Caller
from runtime.api.deps import BatchIdPath, CallerDep, JobIdPath, ServicesDep
from runtime.api.problems import ApiProblem
from runtime.api.services import Services
from runtime.api.validation import is_id
from runtime.common.batches import Batch
from runtime.common.jobs import Job


def job_not_found(job_id: str) -> ApiProblem:
    return ApiProblem(404, "job_not_found", f"no job {job_id[:64]!r}")


def batch_not_found(batch_id: str) -> ApiProblem:
    return ApiProblem(404, "batch_not_found", f"no batch {batch_id[:64]!r}")


def owned_job(job_id: JobIdPath, caller: CallerDep, services: ServicesDep) -> Job:
    """The job, if it exists and the caller may see it; else 404."""
    item = services.store.get(job_id) if is_id(job_id) else None
    if item is None or not caller.owns(item.get("owner")):
        raise job_not_found(job_id)
    return item


def batch_record(services: Services, caller: Caller, batch_id: str) -> Batch | None:
    """The batch's record if the caller may see the batch; None for the admin when the batch has no record (an
    older batch: the route decides whether it exists); 404 otherwise."""
    if not is_id(batch_id):
        raise batch_not_found(batch_id)
    record = services.batches.get(batch_id)
    if record is None:
        if caller.is_admin:
            return None
        raise batch_not_found(batch_id)
    if not caller.owns(record.owner):
        raise batch_not_found(batch_id)
    return record


def owned_batch(batch_id: BatchIdPath, caller: CallerDep, services: ServicesDep) -> Batch | None:
    return batch_record(services, caller, batch_id)


OwnedJob = Annotated[Job, Depends(owned_job)]
OwnedBatch = Annotated[Batch | None, Depends(owned_batch)]
