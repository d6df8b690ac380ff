"""The reconciler against a real moto server: every stuck case heals, healthy jobs are left alone, attempts are
bounded, and two passes at once never enqueue a job twice (docs/architecture.md D1, D7b)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from typing import Any

from runtime.common import keys, messages, metrics
from runtime.common.aws import client
from runtime.common.jobs import JobStatus, JobStore, NewJob
from runtime.common.settings import Settings
from runtime.results.reconcile import ReconcileReport, reconcile_once
from tests.results.conftest import Clock, new_job, person_result

S = 1000  # ms per second


def drain(settings: Settings) -> list[str]:
    """Every job id in the queue, one entry per time it was sent."""
    sqs = client("sqs", settings)
    ids: list[str] = []
    while True:
        out = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not out.get("Messages"):
            return ids
        for m in out["Messages"]:
            ids.extend(messages.decode(m["Body"]).job_ids)
            sqs.delete_message(QueueUrl=settings.queue_url, ReceiptHandle=m["ReceiptHandle"])


def run(settings: Settings, store: JobStore, now: int, **kw: Any) -> ReconcileReport:
    return reconcile_once(settings, now_ms=now, store=store, **kw)


def test_heals_each_stuck_case_and_leaves_healthy_jobs_alone(
    rsettings: Settings, store: JobStore, clock: Clock
) -> None:
    batch = uuid.uuid4().hex
    t0 = clock.now
    never_sent = new_job(store, batch)
    stale = new_job(store, batch)
    store.mark_enqueued(stale)
    dead_worker = new_job(store, batch)
    store.mark_enqueued(dead_worker)
    store.claim(dead_worker, "w-killed")
    abandoned_upload = new_job(store, batch, status=JobStatus.AWAITING_UPLOAD)
    done = new_job(store, batch)
    store.claim(done, "w1")
    store.complete(done, "w1", result=person_result(10), mask_key="m", overlay_key="o")
    failed = new_job(store, batch)
    store.fail_queued(failed, "bad image", error_class="corrupt_image")
    enqueued_recently = new_job(store, batch)  # old job, but re-sent 10 s before "now"

    now = t0 + 1000 * S  # past the lease (300 s), the threshold (60 s) and presign expiry + threshold (960 s)
    clock.now = now - 10 * S
    store.mark_enqueued(enqueued_recently)
    live_worker = new_job(store, batch)
    store.mark_enqueued(live_worker)
    store.claim(live_worker, "w-alive")
    fresh_upload = new_job(store, batch, status=JobStatus.AWAITING_UPLOAD)
    fresh_unsent = new_job(store, batch)
    healthy = [done, failed, enqueued_recently, live_worker, fresh_upload, fresh_unsent]
    before = {j: store.get(j) for j in healthy}

    report = run(rsettings, store, now)

    assert report.requeued == {"never_enqueued": [never_sent], "enqueue_stale": [stale], "lease_expired": [dead_worker]}
    assert report.failed == {"gave_up": [], "expired": [], "upload_never_completed": [abandoned_upload]}
    assert report.lost_races == 0 and report.send_failed == [] and not report.truncated
    assert sorted(drain(rsettings)) == sorted([never_sent, stale, dead_worker])
    assert {j: store.get(j) for j in healthy} == before

    healed = store.get(dead_worker)
    assert healed is not None
    assert healed["status"] == "QUEUED" and healed["attempts"] == 1 and healed["enqueued_at"] == now
    assert healed["last_error"] == "lease expired" and "lease_owner" not in healed
    assert store.get(never_sent)["enqueue_count"] == 1  # type: ignore[index]
    assert store.get(stale)["enqueue_count"] == 2  # type: ignore[index]
    upload = store.get(abandoned_upload)
    assert upload is not None and upload["status"] == "FAILED" and upload["error"] == "upload never completed"

    again = run(rsettings, store, now)  # idempotent: same state, nothing to do
    assert again.actions == 0 and drain(rsettings) == []


def test_an_unclaimed_job_is_redriven_without_charge_until_it_expires(
    rsettings: Settings, store: JobStore, clock: Clock
) -> None:
    """Only a job's own attempts fail it: a job whose messages keep getting lost (workers killed before they
    reached it) is sent again and again, never charged, and ends only past the age limit, with its history."""
    job = new_job(store, uuid.uuid4().hex)
    store.mark_enqueued(job)  # the API's send
    now = clock.now
    for expected_count in range(2, store.max_attempts + 8):
        now += 61 * S
        report = run(rsettings, store, now)
        assert report.requeued["enqueue_stale"] == [job] and report.failed["expired"] == []
        assert drain(rsettings) == [job]  # a worker took the message and died before claiming the job
        current = store.get(job)
        assert current["enqueue_count"] == expected_count and current["attempts"] == 0  # type: ignore[index]
        assert current["status"] == "QUEUED"  # type: ignore[index]
    created = store.get(job)["created_at"]  # type: ignore[index]
    report = run(rsettings, store, created + rsettings.job_max_age_s * S + 1)
    assert report.failed["expired"] == [job] and report.requeued_ids == []
    final = store.get(job)
    assert final is not None and final["status"] == "FAILED" and final["error_class"] == "expired"
    enqueues = store.max_attempts + 7
    assert final["error"].startswith(
        f"not processed within 24 h of its upload (0 attempt(s), sent to the queue {enqueues}"
    )
    assert drain(rsettings) == []


def test_enqueued_jobs_wait_while_the_queue_has_a_backlog(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    """A long queue is not a stuck job: no duplicate messages, no healthy job failed as never picked up."""
    waiting = new_job(store, uuid.uuid4().hex)
    store.mark_enqueued(waiting)
    unsent = new_job(store, uuid.uuid4().hex)  # never enqueued: nothing in the queue can carry it
    sqs = client("sqs", rsettings)
    sqs.send_message(QueueUrl=rsettings.queue_url, MessageBody=messages.BatchMessage(job_ids=(waiting,)).to_body())
    now = clock.now + 61 * S
    first = run(rsettings, store, now)
    assert first.requeued["never_enqueued"] == [unsent]  # no message can carry it: sent whatever the backlog
    assert first.requeued["enqueue_stale"] == [] and first.waiting_behind_backlog == 1
    for _ in range(store.max_attempts + 3):  # long past max attempts at the normal threshold
        now += 61 * S
        report = run(rsettings, store, now)
        assert report.requeued_ids == [] and report.failed["expired"] == []
        assert report.waiting_behind_backlog == 2 and report.queue_backlog == 2
    assert store.get(unsent)["enqueue_count"] == 1  # type: ignore[index]
    assert store.get(waiting)["status"] == "QUEUED"  # type: ignore[index]
    # Past the grace period the job is re-driven even behind a backlog.
    report = run(rsettings, store, store.get(waiting)["enqueued_at"] + rsettings.backlog_grace_s * S + 1)  # type: ignore[index]
    assert report.requeued["enqueue_stale"] == [waiting]
    # Once the queue is empty (its message was consumed but never claimed), it is re-driven at once.
    assert sorted(drain(rsettings)) == sorted([waiting, unsent, waiting])
    report = run(rsettings, store, now + 61 * S)
    assert report.queue_backlog == 0 and report.requeued["enqueue_stale"] == [unsent]


def test_jobs_an_api_accepted_but_never_sent_are_redriven(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    """The API writes a job promised to the queue (``enqueued_at`` = ``created_at``) and nothing after its send.
    A job it never sent (the API was killed) is re-driven as ``enqueue_stale`` at the very threshold a never-enqueued
    job has, once the queue is empty; behind a backlog it waits, at most ``backlog_grace_s``. A job whose send
    failed had its promise taken back (``mark_unsent``): re-driven as ``never_enqueued`` whatever the backlog."""

    def accepted_by_the_api() -> str:
        job_id = uuid.uuid4().hex
        store.create(NewJob(job_id, batch, keys.upload_key(batch, job_id, "jpg"), "a.jpg", "person"), enqueued=True)
        return job_id

    batch = uuid.uuid4().hex
    created = clock.now
    killed, send_failed = accepted_by_the_api(), accepted_by_the_api()
    assert store.mark_unsent(send_failed)
    threshold = rsettings.stuck_after_s * S
    assert run(rsettings, store, created + threshold - 1).requeued_ids == []  # not a millisecond early
    report = run(rsettings, store, created + threshold)
    assert report.requeued == {"never_enqueued": [send_failed], "enqueue_stale": [killed], "lease_expired": []}
    assert sorted(drain(rsettings)) == sorted([killed, send_failed])
    assert [store.get(j)["enqueue_count"] for j in (killed, send_failed)] == [2, 1]  # type: ignore[index]
    for done in (killed, send_failed):  # a worker took them
        assert store.claim(done, "w1")
        assert store.complete(done, "w1", result=person_result(1), mask_key=None, overlay_key=None)

    clock.advance(3600 * S)
    behind, send_failed = accepted_by_the_api(), accepted_by_the_api()
    assert store.mark_unsent(send_failed)
    other = messages.BatchMessage(job_ids=(uuid.uuid4().hex,)).to_body()
    client("sqs", rsettings).send_message(QueueUrl=rsettings.queue_url, MessageBody=other)  # a backlog
    report = run(rsettings, store, clock.now + threshold)
    assert report.requeued["never_enqueued"] == [send_failed] and report.requeued["enqueue_stale"] == []
    assert report.waiting_behind_backlog == 1  # ours, never sent, looks like a job waiting for its message
    report = run(rsettings, store, clock.now + rsettings.backlog_grace_s * S)
    assert report.requeued["enqueue_stale"] == [behind] and report.queue_backlog  # late, never lost


def test_expired_leases_give_up_after_max_attempts(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    job = new_job(store, uuid.uuid4().hex)
    store.mark_enqueued(job)
    for attempt in range(1, store.max_attempts + 1):
        assert store.claim(job, f"w{attempt}") is not None
        clock.advance(301 * S)
        report = run(rsettings, store, clock.now)
        if attempt < store.max_attempts:
            assert report.requeued["lease_expired"] == [job]
        else:
            assert report.failed["gave_up"] == [job] and report.requeued_ids == []
    final = store.get(job)
    assert final is not None and final["status"] == "FAILED" and final["attempts"] == store.max_attempts
    assert final["error"] == f"gave up after {store.max_attempts} attempts: lease expired"
    assert final["lost_leases"] == store.max_attempts  # each time, its own worker vanished while processing it
    assert drain(rsettings) == [job] * (store.max_attempts - 1)


def _stuck_jobs(store: JobStore, clock: Clock, n: int) -> list[str]:
    batch = uuid.uuid4().hex
    ids = []
    for i in range(n):
        job = new_job(store, batch)
        if i % 3 >= 1:
            store.mark_enqueued(job)
        if i % 3 == 2:
            store.claim(job, "w-dead")
        ids.append(job)
    return ids


def test_two_concurrent_passes_never_enqueue_a_job_twice(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    ids = _stuck_jobs(store, clock, 60)
    both = rsettings  # the shared moto server makes each conditional write atomic, as DynamoDB does
    now = clock.now + 400 * S
    reports: list[ReconcileReport] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        own = JobStore.from_settings(both)  # its own client, like a second task
        barrier.wait()
        reports.append(reconcile_once(both, now_ms=now, store=own))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(reports) == 2
    sent = drain(rsettings)
    assert Counter(sent) == Counter(ids)  # each exactly once
    assert sorted(reports[0].requeued_ids + reports[1].requeued_ids) == sorted(ids)
    assert all(j["enqueue_count"] == (2 if i % 3 else 1) for i, j in enumerate(store.get(x) for x in ids))  # type: ignore[index]


def test_max_jobs_bounds_each_pass(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    batch = uuid.uuid4().hex
    ids = [new_job(store, batch) for _ in range(25)]
    now = clock.now + 61 * S
    sizes = []
    for _ in range(4):
        report = run(rsettings, store, now, max_jobs=10)
        sizes.append((len(report.requeued_ids), report.truncated))
    assert sizes[:3] == [(10, True), (10, True), (5, False)] and sizes[3] == (0, False)
    assert sorted(drain(rsettings)) == sorted(ids)


def test_a_failed_send_is_redriven_by_the_next_pass(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    job = new_job(store, uuid.uuid4().hex)
    now = clock.now + 61 * S
    gone = rsettings.model_copy(update={"queue_url": rsettings.queue_url + "-missing"})
    report = run(gone, store, now)
    assert report.requeued["never_enqueued"] == [job] and report.send_failed == [job]
    assert drain(rsettings) == []
    later = run(rsettings, store, now + 61 * S)
    assert later.requeued["enqueue_stale"] == [job] and later.send_failed == []
    assert drain(rsettings) == [job]


def test_cli_prints_a_json_report(rsettings: Settings, store: JobStore, resources: Any) -> None:
    job = new_job(store, uuid.uuid4().hex)  # created now (real clock): healthy, so nothing to do
    env = {**os.environ, **resources.env(), "SEGSCALE_STUCK_AFTER_S": "60"}
    out = subprocess.run(
        [sys.executable, "-m", "runtime.results", "reconcile", "--max-jobs", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["summary"]["requeued_never_enqueued"] == 0 and data["scanned"] == 0
    assert store.get(job)["status"] == "QUEUED"  # type: ignore[index]
    missing = subprocess.run(
        [sys.executable, "-m", "runtime.results", "reconcile"],
        env={**env, "SEGSCALE_QUEUE_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "SEGSCALE_QUEUE_URL" in missing.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "runtime.results", "reconcile", "--max-jobs", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "must be positive" in bad.stderr


def test_a_crowd_of_live_workers_does_not_starve_the_queued_check(
    rsettings: Settings, store: JobStore, clock: Clock
) -> None:
    batch = uuid.uuid4().hex
    workers = {}
    for n in range(5):  # long-running jobs whose workers keep renewing their leases
        job = new_job(store, batch)
        store.claim(job, f"w{n}")
        workers[job] = f"w{n}"
    stuck = new_job(store, batch)
    clock.advance(400 * S)
    assert all(store.renew_lease(job, worker) for job, worker in workers.items())
    report = run(rsettings, store, clock.now, max_scan=3)
    assert report.requeued["never_enqueued"] == [stuck] and report.requeued["lease_expired"] == []
    assert report.truncated and report.scanned == 4  # 3 live RUNNING jobs read, then the QUEUED one
    assert drain(rsettings) == [stuck]


def _wakes(settings: Settings) -> list[messages.WakeMessage]:
    sqs = client("sqs", settings)
    got = sqs.receive_message(QueueUrl=settings.wake_queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [messages.decode_wake(m["Body"]) for m in got]


def test_wakes_a_worker_when_work_waits_and_none_is_live(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    """The safety net: every other waker failed (a task never started, an API died before waking)."""
    job = new_job(store, uuid.uuid4().hex)
    store.mark_enqueued(job)
    client("sqs", rsettings).send_message(
        QueueUrl=rsettings.queue_url, MessageBody=messages.BatchMessage(job_ids=(job,)).to_body()
    )
    out = io.StringIO()
    first = reconcile_once(rsettings, now_ms=clock.now + 1 * S, store=store, metrics_stream=out)
    assert first.woke_slot is not None and first.live_workers == 0 and first.starting_workers == 0
    (wake,) = _wakes(rsettings)
    assert wake.slot == first.woke_slot and wake.by == "reconciler"
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {d.get(metrics.SERVICE_DIMENSION) for d in docs} == {metrics.RESULTS_SERVICE}
    assert [d[metrics.WORKER_WAKES] for d in docs if metrics.WORKER_WAKES in d] == [1]
    assert [d[metrics.LIVE_WORKERS] for d in docs if metrics.LIVE_WORKERS in d] == [0]
    # The woken task is starting: the next pass waits for it instead of waking another.
    second = reconcile_once(rsettings, now_ms=clock.now + 2 * S, store=store)
    assert second.woke_slot is None and second.starting_workers == 1 and _wakes(rsettings) == []
    # Its task never started: past the start timeout the slot is free, and the safety net wakes again.
    later = clock.now + (rsettings.worker_start_timeout_s + 3) * S
    assert reconcile_once(rsettings, now_ms=later, store=store).woke_slot is not None


def test_no_wake_without_work(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    report = reconcile_once(rsettings, now_ms=clock.now, store=store)
    assert report.woke_slot is None and report.live_workers == 0 and _wakes(rsettings) == []


def test_counts_finished_jobs_exactly_once_across_passes(rsettings: Settings, store: JobStore, clock: Clock) -> None:
    def finish(ok: bool) -> str:
        job = new_job(store, uuid.uuid4().hex)
        store.claim(job, "w")
        if ok:
            store.complete(job, "w", result=person_result(1), mask_key="m", overlay_key="o")
        else:
            store.fail_running(job, "w", "bad", error_class="corrupt_image")
        return job

    def counted(now: int) -> dict[str, int] | None:
        out = io.StringIO()
        report = reconcile_once(rsettings, now_ms=now, store=store, metrics_stream=out)
        docs = [json.loads(line) for line in out.getvalue().splitlines()]
        emitted = [(d[metrics.JOBS_SUCCEEDED], d[metrics.JOBS_FAILED]) for d in docs if metrics.JOBS_SUCCEEDED in d]
        assert emitted == ([] if report.counted is None else [(report.counted["SUCCEEDED"], report.counted["FAILED"])])
        return report.counted

    start = clock.now
    assert counted(start) is None  # the first pass only starts the count
    clock.advance(10 * S)
    finish(True), finish(True), finish(False)
    clock.advance(100 * S)
    assert counted(clock.now) == {"SUCCEEDED": 2, "FAILED": 1}
    assert counted(clock.now) is None  # the same window is never counted twice
    finish(True)  # finishes now: inside the settle margin, counted by a later pass
    assert counted(clock.now + 1 * S) == {"SUCCEEDED": 0, "FAILED": 0}
    assert counted(clock.now + 61 * S) == {"SUCCEEDED": 1, "FAILED": 0}
