"""The job state machine against a real moto server: every transition is conditional."""

from __future__ import annotations

import uuid

from runtime.common.jobs import JobStatus, JobStore, NewJob


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
    assert store.release(job_id, None, "lease expired") is None  # lease still valid
    store.clock = lambda: 10**15
    assert store.release(job_id, None, "lease expired") == JobStatus.QUEUED


def test_enqueue_compare_and_set(store: JobStore) -> None:
    job_id = _new(store)
    assert store.mark_redrive_unsent(job_id)
    assert not store.mark_redrive_unsent(job_id)
    first = store.get(job_id)
    assert first is not None
    assert store.mark_enqueued(job_id, expected_enqueued_at=first["enqueued_at"])
    assert not store.mark_enqueued(job_id, expected_enqueued_at=first["enqueued_at"])
    assert store.get(job_id)["enqueue_count"] == 2  # type: ignore[index]


def test_batch_queries_and_counts(store: JobStore) -> None:
    batch = uuid.uuid4().hex
    ids = [_new(store, batch) for _ in range(7)]
    store.claim(ids[0], "w")
    store.fail(ids[1], "bad image", error_class="corrupt_image", from_status=JobStatus.QUEUED)
    assert sorted(j["job_id"] for j in store.iter_batch(batch, page_size=3)) == sorted(ids)
    counts = store.batch_counts(batch)
    assert counts["QUEUED"] == 5 and counts["RUNNING"] == 1 and counts["FAILED"] == 1
    queued = list(store.iter_status(JobStatus.QUEUED, page_size=2))
    assert {j["job_id"] for j in queued} >= set(ids[2:])


def test_idempotency_first_writer_wins(store: JobStore) -> None:
    assert store.get_idempotency("k") is None
    assert store.put_idempotency("k", fingerprint="f1", response="{}", ttl_s=60)
    assert not store.put_idempotency("k", fingerprint="f2", response="{}", ttl_s=60)
    record = store.get_idempotency("k")
    assert record is not None and record["fingerprint"] == "f1"


def test_complete_without_mask_keys_removes_them(store: JobStore) -> None:
    """A model that writes no overlay (or no mask) still completes; None means the attribute is absent."""
    job_id = _new(store)
    store.claim(job_id, "w1")
    assert store.complete(job_id, "w1", result={"classes": {}}, mask_key="m", overlay_key=None)
    job = store.get(job_id)
    assert job is not None and job["status"] == "SUCCEEDED"
    assert job["mask_key"] == "m" and "overlay_key" not in job
