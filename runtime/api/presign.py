"""Presigned uploads for files too large for one request (Lambda caps a request at 6 MB).

``create_uploads`` records AWAITING_UPLOAD jobs and signs one S3 POST policy per file, whose
``content-length-range`` makes S3 itself refuse a file over ``max_upload_bytes`` (a presigned PUT cannot bound
the size). ``submit`` checks each object (exists, size, header probe of the first bytes) and only then moves the
jobs to QUEUED, pinning each object's ETag on its job: the worker reads with ``IfMatch`` and checks the size
again, so an object replaced through a still-valid URL after submit fails its job (``input_replaced``) instead
of being processed unchecked. Size is checked at submit as well as by S3 because S3-compatible stores (the
local moto server among them) may not enforce the policy. A submit with a missing or bad object changes nothing,
so the client can re-upload and submit again while the URLs are valid. Requests that name the same ``batch_id``
add to one batch; its submit checks and queues every file still awaiting upload in it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from runtime.api import batchrecord
from runtime.api.callers import Caller
from runtime.api.intake import STORAGE_ERRORS, storage_unavailable
from runtime.api.multipart import display_name
from runtime.api.problems import ApiProblem, FileProblem
from runtime.api.schemas import Accepted, AcceptedJob, PresignedBatch, PresignedJob, UploadRequest
from runtime.api.services import Services
from runtime.api.validation import file_problem, is_id, parse_mm_per_pixel, refuse_files
from runtime.common import imageinfo, keys
from runtime.common.jobs import Job, JobStatus, NewJob

UPLOAD_EXTENSION = "bin"  # the format is unknown until submit sniffs it; the job records the real one
UPLOAD_CONTENT_TYPE = "application/octet-stream"
PROBE_BYTES = 64 * 1024


def create_uploads(services: Services, req: UploadRequest, caller: Caller) -> dict:
    settings = services.settings
    if len(req.files) > settings.max_files_per_request:
        raise ApiProblem(413, "too_many_files", f"too many files: at most {settings.max_files_per_request} per batch")
    too_big = [
        FileProblem(
            index=i,
            file_name=display_name(f.file_name),
            type="file_too_large",
            status=413,
            detail=f"{f.size_bytes:,} bytes is over the limit of {settings.max_upload_bytes:,}",
        )
        for i, f in enumerate(req.files)
        if f.size_bytes is not None and f.size_bytes > settings.max_upload_bytes
    ]
    if too_big:
        raise refuse_files(too_big)
    model = services.resolve_model(req.model)
    mm = parse_mm_per_pixel(req.mm_per_pixel)
    batch_id = req.batch_id or uuid.uuid4().hex  # the schema already checked a client-chosen id's shape
    notify_url = batchrecord.check_notify_url(services, req.notify_url)
    reservation = batchrecord.reserve(services, batch_id, len(req.files), caller, notify_url, chosen=bool(req.batch_id))
    jobs = []
    created = 0
    try:
        for f in req.files:
            job_id = uuid.uuid4().hex
            key = keys.upload_key(batch_id, job_id, UPLOAD_EXTENSION)
            name = display_name(f.file_name)
            services.store.create(
                NewJob(
                    job_id=job_id,
                    batch_id=batch_id,
                    input_key=key,
                    file_name=name,
                    model=model,
                    size_bytes=f.size_bytes or 0,
                    mm_per_pixel=mm,
                    owner=caller.client,
                ),
                status=JobStatus.AWAITING_UPLOAD,
            )
            created += 1
            post = presigned_post(services, key)
            jobs.append(PresignedJob(job_id=job_id, file_name=name, upload_url=post["url"], fields=post["fields"]))
    except STORAGE_ERRORS as exc:
        # Jobs already written stay AWAITING_UPLOAD: never queued, never processed, no object expected; reconcile
        # fails them in time, and they count in the batch then. The ones never written are taken back.
        unwritten = replace(reservation, jobs=len(req.files) - created, created=reservation.created and not created)
        batchrecord.release(services, unwritten)
        raise storage_unavailable("DynamoDB", exc) from exc
    return PresignedBatch(
        batch_id=batch_id,
        jobs=jobs,
        submit_url=f"/v1/batches/{batch_id}/submit",
        expires_in_s=settings.presign_expiry_s,
    ).model_dump()


def presigned_post(services: Services, key: str) -> dict[str, Any]:
    """S3's ``{"url", "fields"}`` for one object: any size from 1 byte to ``max_upload_bytes``, our content type."""
    settings = services.settings
    return dict(
        services.presigner.generate_presigned_post(
            Bucket=settings.bucket,
            Key=key,
            Fields={"Content-Type": UPLOAD_CONTENT_TYPE},
            Conditions=[
                {"Content-Type": UPLOAD_CONTENT_TYPE},
                ["content-length-range", 1, settings.max_upload_bytes],
            ],
            ExpiresIn=settings.presign_expiry_s,
        )
    )


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def _is_replaced(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")


def _check_object(services: Services, job: Job) -> tuple[imageinfo.ImageInfo, int, str] | FileProblem:
    """The object's image header, size and ETag, all of the same object version, or the problem with it."""
    try:
        return _check_pinned(services, job)
    except ClientError as exc:
        if not _is_replaced(exc):
            raise
        return FileProblem(
            index=0,
            file_name=job.get("file_name", ""),
            type="upload_changed",
            status=409,
            detail="the object was replaced while submit checked it; submit again",
        )


def _check_pinned(services: Services, job: Job) -> tuple[imageinfo.ImageInfo, int, str] | FileProblem:
    settings = services.settings
    index, name, key = 0, job.get("file_name", ""), job["input_key"]
    try:
        head = services.s3.head_object(Bucket=settings.bucket, Key=key)
    except ClientError as exc:
        if _is_missing(exc):
            return FileProblem(
                index=index, file_name=name, type="not_uploaded", status=409, detail="no object was uploaded yet"
            )
        raise
    size = int(head.get("ContentLength", 0))
    if size == 0:
        return file_problem(index, name, imageinfo.EmptyImage("the uploaded object is empty"))
    if size > settings.max_upload_bytes:
        return FileProblem(
            index=index,
            file_name=name,
            type="file_too_large",
            status=413,
            detail=f"{size:,} bytes is over the limit of {settings.max_upload_bytes:,}",
        )
    etag = str(head["ETag"])  # every read below is of this object: IfMatch fails if it was replaced meanwhile
    head_bytes = services.s3.get_object(
        Bucket=settings.bucket, Key=key, Range=f"bytes=0-{PROBE_BYTES - 1}", IfMatch=etag
    )
    data = head_bytes["Body"].read()
    try:
        info = imageinfo.probe(data, max_pixels=settings.max_pixels)
    except (imageinfo.NotAnImage, imageinfo.TooManyPixels, imageinfo.EmptyImage) as exc:
        return file_problem(index, name, exc)
    except Exception:  # the prefix may be too short for some headers (e.g. a GIF's frame count)
        if size <= len(data):
            return file_problem(index, name, imageinfo.CorruptImage("the image header is damaged"))
        data = services.s3.get_object(Bucket=settings.bucket, Key=key, IfMatch=etag)["Body"].read()
        try:
            info = imageinfo.probe(data, max_pixels=settings.max_pixels)
        except imageinfo.ImageError as exc:
            return file_problem(index, name, exc)
        except Exception as exc:
            return file_problem(index, name, imageinfo.CorruptImage(f"the image header is damaged: {exc}"))
    return info, size, etag


def submit(services: Services, batch_id: str, *, seal: bool = False) -> dict:
    if not is_id(batch_id):
        raise ApiProblem(404, "batch_not_found", f"no batch {batch_id[:64]!r}")
    try:
        jobs = list(services.store.iter_batch(batch_id))
        if not jobs:
            raise ApiProblem(404, "batch_not_found", f"no batch {batch_id}")
        checked: list[tuple[Job, imageinfo.ImageInfo, int, str]] = []
        problems: list[FileProblem] = []
        for index, job in enumerate(jobs):
            if job["status"] != JobStatus.AWAITING_UPLOAD:
                continue
            outcome = _check_object(services, job)
            if isinstance(outcome, FileProblem):
                problems.append(outcome.model_copy(update={"index": index}))
            else:
                checked.append((job, *outcome))
        if problems:
            raise refuse_files(problems)
        queued = []
        for job, info, size, etag in checked:
            if services.store.submit_uploaded(
                job["job_id"],
                size_bytes=size,
                image_format=info.format,
                width=info.width,
                height=info.height,
                input_etag=etag,
            ):
                queued.append(job["job_id"])
                job["status"] = str(JobStatus.QUEUED)
            else:  # a concurrent submit moved it first: report what it is now
                latest = services.store.get(job["job_id"])
                job["status"] = latest["status"] if latest else job["status"]
    except STORAGE_ERRORS as exc:
        raise storage_unavailable("storage", exc) from exc
    services.batcher.add(queued)
    sealed = batchrecord.seal_after_accepting(services, batch_id) if seal else False
    return Accepted(
        sealed=sealed,
        batch_id=batch_id,
        jobs=[
            AcceptedJob(
                job_id=j["job_id"],
                file_name=j.get("file_name", ""),
                status=j["status"],
                status_url=f"/v1/jobs/{j['job_id']}",
            )
            for j in jobs
        ],
    ).model_dump()
