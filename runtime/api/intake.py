"""``POST /v1/images``: check every file, then image to S3, then job to DynamoDB, then the 202 (D7a).

All or nothing: one bad file refuses the request before anything is written. If S3 or DynamoDB fails part way,
the answer is 503 and what was written is undone as far as possible: no job ever points to a missing object
(objects are written first), jobs already created are marked FAILED so they are never processed, and objects
without a job are deleted.

A request may name its ``batch_id`` (so one upload session of many requests makes one batch). Its unaccepted jobs
are then deleted with their objects instead of left FAILED, since they would count as failures of the client's
batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api import batchrecord
from runtime.api.callers import Caller
from runtime.api.imagecheck import check_image
from runtime.api.multipart import IncomingFile, ParsedForm
from runtime.api.problems import ApiProblem
from runtime.api.schemas import Accepted, AcceptedJob
from runtime.api.services import Services
from runtime.api.validation import file_problem, parse_batch_id, parse_boolean, parse_mm_per_pixel, refuse_files
from runtime.common import imageinfo, keys
from runtime.common.idempotency import IdempotencyRecord
from runtime.common.jobs import NewJob

log = logging.getLogger("segscale.api")
STORAGE_ERRORS = (BotoCoreError, ClientError)
PARALLEL_WRITES = 8  # per request: a 50-file upload writes S3 and DynamoDB 8 at a time


@dataclass(frozen=True)
class Checked:
    file: IncomingFile
    info: imageinfo.ImageInfo
    job_id: str
    key: str


def storage_unavailable(what: str, exc: Exception) -> ApiProblem:
    log.error(f"{what} failed", extra={"event": "storage_error", "error": f"{type(exc).__name__}: {exc}"[:300]})
    return ApiProblem(
        503,
        "storage_unavailable",
        f"{what} is unavailable; nothing was accepted, retry later",
        headers={"Retry-After": "5"},
    )


def fingerprint(
    form: ParsedForm, model: str, mm_per_pixel: float | None, batch_id: str | None = None, **batch_fields: object
) -> str:
    """Identifies the request's content, independent of the multipart boundary a client happens to choose.
    ``batch_id`` and the batch fields (``notify_url``, ``seal``) are included only when given, so fingerprints
    recorded before they existed still match."""
    doc: dict[str, object] = {
        "model": model,
        "mm_per_pixel": mm_per_pixel,
        "files": [[f.file_name, f.size, f.digest.hexdigest()] for f in form.files],
    }
    if batch_id is not None:
        doc["batch_id"] = batch_id
    doc.update({k: v for k, v in batch_fields.items() if v})
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _check_files(form: ParsedForm, max_pixels: int, batch_id: str) -> list[Checked]:
    checked, problems = [], []
    for f in form.files:
        try:
            info = check_image(f.read_all(), max_pixels=max_pixels)
        except imageinfo.ImageError as exc:
            problems.append(file_problem(f.index, f.file_name, exc))
            continue
        except Exception as exc:  # any decoder failure on user bytes is the user's 422, never our 500
            problems.append(file_problem(f.index, f.file_name, imageinfo.CorruptImage(f"cannot decode: {exc}")))
            continue
        job_id = uuid.uuid4().hex
        checked.append(Checked(f, info, job_id, keys.upload_key(batch_id, job_id, info.extension)))
    if problems:
        raise refuse_files(problems)
    return checked


def _each(fn: Callable[[Checked], None], items: list[Checked]) -> tuple[list[Checked], Exception | None]:
    """``fn`` on every item, up to ``PARALLEL_WRITES`` at once; returns the items that succeeded and the first
    error (any kind: an unexpected one must be cleaned up after as well as a storage error). All calls finish
    before it returns, so the caller knows exactly what was written."""
    done: list[Checked] = []
    error: Exception | None = None
    if len(items) == 1:
        try:
            fn(items[0])
            done.append(items[0])
        except Exception as exc:
            error = exc
        return done, error
    with ThreadPoolExecutor(min(PARALLEL_WRITES, len(items)), thread_name_prefix="intake") as pool:
        futures = [(pool.submit(fn, c), c) for c in items]
        for future, c in futures:
            try:
                future.result()
                done.append(c)
            except Exception as exc:
                error = error or exc
    return done, error


def _refuse(what: str, error: Exception) -> NoReturn:
    """Once a failed write is cleaned up: 503 for a storage error; anything else is a bug, raised as it is (500)."""
    if isinstance(error, STORAGE_ERRORS):
        raise storage_unavailable(what, error) from error
    raise error


def _put_objects(services: Services, items: list[Checked], batch_id: str) -> None:
    def put(c: Checked) -> None:
        services.s3.put_object(
            Bucket=services.settings.bucket,
            Key=c.key,
            Body=c.file.rewind(),
            ContentLength=c.file.size,
            ContentType=c.info.content_type,
            Metadata={"job-id": c.job_id, "batch-id": batch_id},
        )

    done, error = _each(put, items)
    if error is not None:
        _delete_objects(services, [c.key for c in done])
        _refuse("S3", error)


def _delete_objects(services: Services, object_keys: list[str]) -> None:
    for key in object_keys:
        try:
            services.s3.delete_object(Bucket=services.settings.bucket, Key=key)
        except STORAGE_ERRORS:
            log.warning("could not delete an unaccepted upload", extra={"event": "cleanup_failed", "key": key})


def _abandon_jobs(
    services: Services, job_ids: list[str], reason: str, error_class: str, *, keys_by_job: dict[str, str] | None = None
) -> None:
    """Jobs written for a request that was not accepted: FAILED, so no worker or reconciler runs them. With
    ``keys_by_job`` (a client-chosen batch) they are deleted instead, then their objects (job first, so no job
    ever points to a missing object); one that cannot be deleted is failed as before."""
    if keys_by_job is not None:
        job_ids = _discard_jobs(services, job_ids, keys_by_job)
    for job_id in job_ids:
        try:
            services.store.fail_queued(job_id, reason, error_class=error_class)
        except STORAGE_ERRORS:
            log.warning("could not abandon a job", extra={"event": "cleanup_failed", "job_ids": [job_id]})


def _discard_jobs(services: Services, job_ids: list[str], keys_by_job: dict[str, str]) -> list[str]:
    """Deletes the jobs and their objects; returns the ids it could not delete."""
    left: list[str] = []
    deleted: list[str] = []
    for job_id in job_ids:
        try:
            if services.store.discard_queued(job_id):
                deleted.append(job_id)
                continue
        except STORAGE_ERRORS:
            log.warning("could not discard a job", extra={"event": "cleanup_failed", "job_ids": [job_id]})
        left.append(job_id)
    _delete_objects(services, [keys_by_job[j] for j in deleted])
    return left


def _create_jobs(
    services: Services,
    items: list[Checked],
    batch_id: str,
    model: str,
    mm: float | None,
    *,
    shared: bool,
    owner: str,
) -> None:
    def create(c: Checked) -> None:
        services.store.create(
            NewJob(
                job_id=c.job_id,
                batch_id=batch_id,
                input_key=c.key,
                file_name=c.file.file_name,
                model=model,
                size_bytes=c.file.size,
                image_format=c.info.format,
                width=c.info.width,
                height=c.info.height,
                mm_per_pixel=mm,
                owner=owner,
            ),
            enqueued=True,  # promised to the queue: the micro-batcher sends it and writes nothing after (D3)
        )

    created, error = _each(create, items)
    if error is not None:
        created_ids = {c.job_id for c in created}
        _abandon_jobs(
            services,
            sorted(created_ids),
            "the upload request failed before it was accepted",
            "not_accepted",
            keys_by_job={c.job_id: c.key for c in items} if shared else None,
        )
        _delete_objects(services, [c.key for c in items if c.job_id not in created_ids])
        _refuse("DynamoDB", error)


def scoped_idempotency_key(key: str | None, caller: Caller) -> str | None:
    """Idempotency keys are per client: two clients that happen to send the same key never see each other's
    answer. The admin's keys are stored as they come, as they were before there were clients."""
    if key is None or caller.is_admin:
        return key
    return f"{caller.client}\n{key}"


def _replay(record: IdempotencyRecord, fp: str) -> dict:
    if record.get("fingerprint") != fp:
        raise ApiProblem(
            409, "idempotency_key_reused", "this Idempotency-Key was already used with a different request body"
        )
    return json.loads(record["response"])


def accept(services: Services, form: ParsedForm, *, idempotency_key: str | None, caller: Caller) -> dict:
    """Returns the 202 body; raises ApiProblem for everything else."""
    settings = services.settings
    idempotency_key = scoped_idempotency_key(idempotency_key, caller)
    if not form.files:
        raise ApiProblem(422, "no_file", "no file: send one or more multipart parts named 'file'")
    model = services.resolve_model(form.fields.get("model"))
    mm = parse_mm_per_pixel(form.fields.get("mm_per_pixel"))
    chosen_batch = parse_batch_id(form.fields.get("batch_id"))
    notify_url = batchrecord.check_notify_url(services, form.fields.get("notify_url"))
    seal = parse_boolean(form.fields.get("seal"), "seal")
    fp = fingerprint(form, model, mm, chosen_batch, notify_url=notify_url, seal=seal)
    if idempotency_key is not None:
        try:
            record = services.idempotency.get(idempotency_key)
        except STORAGE_ERRORS as exc:
            raise storage_unavailable("DynamoDB", exc) from exc
        if record is not None:
            return _replay(record, fp)

    batch_id = chosen_batch or uuid.uuid4().hex
    items = _check_files(form, settings.max_pixels, batch_id)
    reservation = batchrecord.reserve(services, batch_id, len(items), caller, notify_url, chosen=bool(chosen_batch))
    try:
        _put_objects(services, items, batch_id)
        _create_jobs(services, items, batch_id, model, mm, shared=chosen_batch is not None, owner=caller.client)
    except BaseException:
        batchrecord.release(services, reservation)
        raise
    body = Accepted(
        batch_id=batch_id,
        jobs=[
            AcceptedJob(job_id=c.job_id, file_name=c.file.file_name, status="QUEUED", status_url=f"/v1/jobs/{c.job_id}")
            for c in items
        ],
    ).model_dump()
    job_ids = [c.job_id for c in items]
    if idempotency_key is not None:
        keys_by_job = {c.job_id: c.key for c in items} if chosen_batch is not None else None
        ours = body
        try:
            body = _record_idempotency(services, idempotency_key, fp, body, job_ids, keys_by_job)
        except BaseException:  # storage failed: our jobs were abandoned
            batchrecord.release(services, reservation)
            raise
        if body is not ours:  # a concurrent twin won (same batch id or not); our jobs were abandoned
            batchrecord.release(services, reservation)
            return body
    services.batcher.add(job_ids)
    if seal:
        body["sealed"] = batchrecord.seal_after_accepting(services, batch_id)
    return body


def _record_idempotency(
    services: Services, key: str, fp: str, body: dict, job_ids: list[str], keys_by_job: dict[str, str] | None
) -> dict:
    """Returns ``body`` itself when this request's answer was recorded, else the twin's recorded answer."""
    try:
        stored = services.idempotency.put(
            key, fingerprint=fp, response=json.dumps(body), ttl_s=services.settings.idempotency_ttl_s
        )
        if stored:
            return body
        record = services.idempotency.get(key)
    except STORAGE_ERRORS as exc:
        _abandon_jobs(
            services,
            job_ids,
            "the upload request failed before it was accepted",
            "not_accepted",
            keys_by_job=keys_by_job,
        )
        raise storage_unavailable("DynamoDB", exc) from exc
    _abandon_jobs(
        services,
        job_ids,
        "duplicate of a concurrent request with the same Idempotency-Key",
        "duplicate",
        keys_by_job=keys_by_job,
    )
    if record is None:  # the twin's record expired in between: vanishingly rare; the client may retry
        raise ApiProblem(409, "idempotency_conflict", "a concurrent request with this Idempotency-Key interfered")
    return _replay(record, fp)
