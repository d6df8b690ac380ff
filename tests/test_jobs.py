"""The job state machine against a real moto server: every transition is conditional."""

from __future__ import annotations

import re
import typing
import uuid
from pathlib import Path

from runtime.common.idempotency import IdempotencyStore
from runtime.common.jobs import Job, JobStatus, JobStore, NewJob

CONTRACTS = Path(__file__).resolve().parents[1] / "docs" / "contracts.md"
DOC_TYPES = {"str": str, "int": int, "float": float, "map": dict}


def _new(store: JobStore, batch_id: str | None = None) -> str:
    job_id = uuid.uuid4().hex
    batch = batch_id or uuid.uuid4().hex
    store.create(
        NewJob(
            job_id=job_id,
            batch_id=batch,
            input_key=f"uploads/{batch}/{job_id}.jpg",
            file_name="a.jpg",
            model="person",
            mm_per_pixel=0.25,
        )
    )
    return job_id


def test_claim_is_exclusive_and_complete_needs_the_lease(store: JobStore) -> None:
    job_id = _new(store)
    assert store.claim(job_id, "w1") is not None
    assert store.claim(job_id, "w2") is None
    assert not store.complete(job_id, "w2", result={"x": 1.5}, mask_key=None, overlay_key=None)
    assert store.complete(job_id, "w1", result={"x": 1.5}, mask_key="m", overlay_key="o")
    job = store.get(job_id)
    assert job is not None
    assert job["status"] == "SUCCEEDED" and job["result"] == {"x": 1.5} and job["attempts"] == 1
    assert job["mm_per_pixel"] == 0.25
    assert "lease_owner" not in job


def test_release_requeues_then_gives_up(store: JobStore) -> None:
    store.max_attempts = 2
    job_id = _new(store)
    store.claim(job_id, "w1")
    assert store.release(job_id, "w1", "spot interruption") == JobStatus.QUEUED
    store.claim(job_id, "w2")
    assert store.release(job_id, "w1", "not mine") is None
    assert store.release(job_id, "w2", "timeout") == JobStatus.FAILED
    job = store.get(job_id)
    assert job is not None and job["status"] == "FAILED"
    assert job["error"] == "gave up after 2 attempts: timeout"


def test_expired_lease_release_only_after_expiry(store: JobStore) -> None:
    job_id = _new(store)
    store.claim(job_id, "w1")
    assert store.release_expired(job_id, "lease expired") is None  # lease still valid
    store.clock = lambda: 10**15
    assert store.release_expired(job_id, "lease expired") == JobStatus.QUEUED


def test_enqueue_compare_and_set(store: JobStore) -> None:
    job_id = _new(store)
    assert store.mark_redrive_unsent(job_id)
    assert not store.mark_redrive_unsent(job_id)
    first = store.get(job_id)
    assert first is not None
    store.clock = lambda: first["enqueued_at"] + 1
    assert store.mark_redrive_stale(job_id, enqueued_at=first["enqueued_at"])
    assert not store.mark_redrive_stale(job_id, enqueued_at=first["enqueued_at"])  # another pass re-drove it
    assert store.get(job_id)["enqueue_count"] == 2  # type: ignore[index]


def test_a_job_promised_to_the_queue_is_written_enqueued_and_its_promise_can_be_taken_back(store: JobStore) -> None:
    """The API writes the send it is about to make with the job (create, submit_uploaded), so no write follows the
    send; a failed send takes it back, but only from a job nobody has sent or claimed since."""
    store.clock = lambda: 1_000
    promised = uuid.uuid4().hex
    store.create(NewJob(promised, promised, "k", "a.png", "m"), enqueued=True)
    plain = _new(store)
    awaiting = uuid.uuid4().hex
    store.create(NewJob(awaiting, awaiting, "k", "a.png", "m"), status=JobStatus.AWAITING_UPLOAD)
    store.clock = lambda: 2_000
    assert store.submit_uploaded(awaiting, size_bytes=1, image_format="png", width=1, height=1)
    jobs = store.get_many([promised, plain, awaiting])
    assert (jobs[promised]["enqueued_at"], jobs[promised]["enqueue_count"]) == (1_000, 1)
    assert (jobs[awaiting]["enqueued_at"], jobs[awaiting]["enqueue_count"], jobs[awaiting]["updated_at"]) == (
        2_000,
        1,
        2_000,
    )
    assert "enqueued_at" not in jobs[plain] and jobs[plain]["enqueue_count"] == 0
    assert store.mark_unsent(promised) and store.mark_unsent(awaiting)
    taken_back = store.get_many([promised, awaiting])
    assert all("enqueued_at" not in j and j["enqueue_count"] == 0 for j in taken_back.values())
    # updated_at unchanged: the re-drive comes when it would have without the promise
    assert [taken_back[j]["updated_at"] for j in (promised, awaiting)] == [1_000, 2_000]
    assert not store.mark_unsent(promised)  # nothing left to take back
    store.clock = lambda: 700_000
    assert store.mark_redrive_unsent(promised) and not store.mark_unsent(promised)  # reconcile's send stays
    assert store.get(promised)["enqueue_count"] == 1  # type: ignore[index]
    claimed = uuid.uuid4().hex
    store.create(NewJob(claimed, claimed, "k", "a.png", "m"), enqueued=True)
    store.claim(claimed, "w1")
    store.release(claimed, "w1", "spot")  # QUEUED again, attempts 1: sent once, by the promise that did go out
    assert not store.mark_unsent(claimed)
    assert store.get(claimed)["enqueue_count"] == 1  # type: ignore[index]


def test_each_failure_holds_only_from_its_own_state(store: JobStore) -> None:
    """fail_running needs the lease, fail_queued a QUEUED job, fail_awaiting_upload an unsubmitted upload; none of
    them touches a job in another state (a terminal job above all)."""
    running, queued = _new(store), _new(store)
    store.claim(running, "w1")
    assert not store.fail_queued(running, "x", error_class="x")
    assert not store.fail_awaiting_upload(running, "x", error_class="x")
    assert not store.fail_running(running, "w2", "x", error_class="x")
    assert store.fail_running(running, "w1", "corrupt", error_class="corrupt_image")
    assert not store.fail_running(running, "w1", "again", error_class="x")
    assert not store.fail_running(queued, "w1", "x", error_class="x")
    assert store.fail_queued(queued, "refused", error_class="refused") and not store.fail_queued(
        queued, "x", error_class="x"
    )
    awaiting = uuid.uuid4().hex
    store.create(NewJob(job_id=awaiting, batch_id=awaiting, input_key="k", file_name="a.png", model="m"),
                 status=JobStatus.AWAITING_UPLOAD)  # fmt: skip
    assert not store.fail_queued(awaiting, "x", error_class="x")
    assert store.fail_awaiting_upload(awaiting, "upload never completed", error_class="upload_never_completed")
    jobs = store.get_many([running, queued, awaiting])
    assert {j["job_id"]: (j["status"], j["error_class"]) for j in jobs.values()} == {
        running: ("FAILED", "corrupt_image"),
        queued: ("FAILED", "refused"),
        awaiting: ("FAILED", "upload_never_completed"),
    }


def test_discard_deletes_only_a_queued_job(store: JobStore) -> None:
    queued, running = _new(store), _new(store)
    store.claim(running, "w1")
    assert not store.discard_queued(running) and store.get(running) is not None
    assert store.discard_queued(queued) and store.get(queued) is None


def test_batch_queries_and_counts(store: JobStore) -> None:
    batch = uuid.uuid4().hex
    ids = [_new(store, batch) for _ in range(7)]
    store.claim(ids[0], "w")
    store.fail_queued(ids[1], "bad image", error_class="corrupt_image")
    assert sorted(j["job_id"] for j in store.iter_batch(batch, page_size=3)) == sorted(ids)
    counts = store.batch_counts(batch)
    assert counts["QUEUED"] == 5 and counts["RUNNING"] == 1 and counts["FAILED"] == 1
    queued = list(store.iter_status(JobStatus.QUEUED, page_size=2))
    assert {j["job_id"] for j in queued} >= set(ids[2:])


def test_idempotency_first_writer_wins(store: JobStore) -> None:
    records = IdempotencyStore(store.client, store.table)
    assert records.get("k") is None
    assert records.put("k", fingerprint="f1", response="{}", ttl_s=60)
    assert not records.put("k", fingerprint="f2", response="{}", ttl_s=60)
    record = records.get("k")
    assert record is not None and record["fingerprint"] == "f1"
    assert store.get("k") is None  # not a job


def test_complete_without_mask_keys_removes_them(store: JobStore) -> None:
    """A model that writes no overlay (or no mask) still completes; None means the attribute is absent."""
    job_id = _new(store)
    store.claim(job_id, "w1")
    assert store.complete(job_id, "w1", result={"classes": {}}, mask_key="m", overlay_key=None)
    job = store.get(job_id)
    assert job is not None and job["status"] == "SUCCEEDED"
    assert job["mask_key"] == "m" and "overlay_key" not in job


def test_the_typed_job_is_the_documented_attribute_list() -> None:
    """``Job`` and the job table's attribute table in docs/contracts.md name the same attributes, with the same
    types and the same required ones: the doc is the contract, the ``TypedDict`` its executable form."""
    text = CONTRACTS.read_text()
    section = text[text.index("- job items:") : text.index("- worker slot items")]
    rows = re.findall(r"^\s*\| `(\w+)` \| (\w+) \| (yes|no) \|", section, re.M)
    assert len(rows) > 10, "the job attribute table in docs/contracts.md was not found"
    documented = {name: (kind, required == "yes") for name, kind, required in rows}
    assert len(documented) == len(rows), "an attribute is documented twice"
    hints = typing.get_type_hints(Job, include_extras=True)
    typed = {}
    for name, hint in hints.items():
        required = typing.get_origin(hint) is typing.Required
        base = typing.get_args(hint)[0] if required else hint
        typed[name] = (typing.get_origin(base) or base, required)
    assert {n: (DOC_TYPES[k], r) for n, (k, r) in documented.items()} == typed
