"""The API's side of the batch record (runtime/common/batches.py): checking a ``notify_url``, counting a request's
jobs into their batch before they are written, sealing.

A request's jobs are reserved (``total += n``) before anything is stored, in the same conditional write that checks
the batch is still open, so images for a sealed batch are refused before they cost anything. A request that is
then refused takes its reservation back (``release``): its jobs never count in the batch (the API's job store does
not count the jobs it abandons, runtime/api/services.py).
"""

from __future__ import annotations

import logging

from runtime.api.callers import Caller
from runtime.api.owners import batch_not_found
from runtime.api.problems import ApiProblem
from runtime.api.services import Services
from runtime.common.batches import Batch, BatchConflict, BatchNotOpen, Reservation
from runtime.common.progress import BatchProgress
from runtime.common.webhooks import UnsafeUrl, check_url

log = logging.getLogger("segscale.api")


def check_notify_url(services: Services, raw: str | None) -> str | None:
    """A URL that may receive webhooks (resolved now), or 422 ``invalid_notify_url`` saying why not. Absent is no
    webhook; an empty string is refused like any other URL that is not one (the document says ``format: uri``)."""
    if raw is None:
        return None
    try:
        check_url(raw, local_http=services.settings.webhook_local_http)
    except UnsafeUrl as exc:
        raise ApiProblem(422, "invalid_notify_url", str(exc)) from None
    return raw


def refused(exc: BatchNotOpen | BatchConflict, caller: Caller) -> ApiProblem:
    batch = exc.batch
    if batch is not None and batch.owner != caller.client and not (caller.is_admin and batch.owner is None):
        if not caller.is_admin:  # another client's batch: as if it did not exist (runtime/api/callers.py)
            return batch_not_found(batch.batch_id)
        # The admin sees every batch, but adds only to its own: jobs of one batch have the batch's owner.
        return ApiProblem(409, "batch_conflict", f"batch {batch.batch_id} belongs to client {batch.owner!r}")
    if isinstance(exc, BatchNotOpen):
        return ApiProblem(409, "batch_sealed", f"{exc}; start a new batch (nothing of this request was stored)")
    return ApiProblem(409, "batch_conflict", str(exc))


def create(services: Services, batch_id: str, notify_url: str | None, caller: Caller) -> Batch:
    try:
        batch = services.batches.create(
            batch_id, notify_url=notify_url, owner=caller.client, adopt_unowned=caller.is_admin
        )
    except (BatchNotOpen, BatchConflict) as exc:
        raise refused(exc, caller) from None
    if batch.total == 0 and not caller.is_admin and _holds_older_jobs(services, batch_id):
        release(services, Reservation(batch_id, 0, created=True))
        raise batch_not_found(batch_id)
    return batch


def reserve(
    services: Services, batch_id: str, jobs: int, caller: Caller, notify_url: str | None = None, *, chosen: bool
) -> Reservation:
    """Count ``jobs`` into an open batch of the caller's (creating it) before they are written; 409 if it is
    sealed, 404 if it is another client's. ``chosen``: the client named the batch id (a new random id needs no
    check for older jobs)."""
    if not chosen:  # a fresh random id: no batch to join, no older jobs to check
        fresh = services.batches.open_fresh(batch_id, jobs, notify_url=notify_url, owner=caller.client)
        if fresh is not None:
            return fresh
    try:
        reservation = services.batches.reserve(
            batch_id, jobs, notify_url=notify_url, owner=caller.client, adopt_unowned=caller.is_admin
        )
    except (BatchNotOpen, BatchConflict) as exc:
        raise refused(exc, caller) from None
    if reservation.created and chosen and not caller.is_admin and _holds_older_jobs(services, batch_id):
        release(services, reservation)
        raise batch_not_found(batch_id)
    return reservation


def _holds_older_jobs(services: Services, batch_id: str) -> bool:
    """A batch made before batch records existed has jobs but no record, and is the admin's: a client naming its
    id would otherwise make the record, and own those jobs."""
    items, _ = services.store.page_batch(batch_id, limit=1)
    return bool(items)


def release(services: Services, reservation: Reservation) -> None:
    """Take back a refused request's reservation (a batch it created goes away again). If even that fails, the
    batch's count stays high until reconcile recounts it once it is sealed; the request is refused either way."""
    try:
        services.batches.unreserve(reservation)
    except Exception:
        log.warning(
            "could not take back a batch reservation",
            extra={"event": "cleanup_failed", "batch_id": reservation.batch_id},
        )


def seal(services: Services, batch_id: str) -> Batch | None:
    """Seal the batch and, if every job already finished, complete it here (its notifications then follow from
    the next reconcile pass: the API sends no events). None: no such batch."""
    batch = services.batches.seal(batch_id, settle_after_ms=services.settings.stuck_after_s * 1000)
    if batch is not None and batch.ready_to_complete and BatchProgress(services.batches).complete(batch_id):
        batch = services.batches.get(batch_id)
    return batch


def seal_after_accepting(services: Services, batch_id: str) -> bool:
    """Seal in the request that filled the batch. Its jobs are accepted by now, so a failure here must not turn
    the 202 into an error: the answer says ``sealed: false`` and the client seals with the seal call."""
    try:
        return seal(services, batch_id) is not None
    except Exception:
        log.warning("could not seal the batch after accepting", extra={"event": "seal_failed", "batch_id": batch_id})
        return False
