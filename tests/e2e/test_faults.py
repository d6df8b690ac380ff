"""Fault injection on the real local stack (D7b, D7c, D8): kill workers (one at a time, and over and over), kill
the API, lose a worker task at start, and every accepted job still ends with exactly one result, charged only for
its own attempts. Short leases and thresholds make the healing take seconds, not minutes."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from local.dev import LocalStack
from local.pipe import Launch
from local.procs import http_ok, wait_until
from runtime.common.jobs import JobStore
from segscale_cli.client import ApiClient
from tests.e2e.conftest import StackFactory, job_store, result_objects, wait_terminal
from tests.e2e.photos import small_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

START_TIMEOUT_S = 8


@pytest.fixture(scope="module")
def stack(make_stack: StackFactory) -> LocalStack:
    return make_stack(
        max_workers=2,
        reconcile_interval_s=1.0,
        settings={
            "lease_seconds": "6",  # short, so a killed worker's jobs come back fast; renewed every 2 s
            # Reconcile re-sends jobs enqueued but not claimed within this, once the queue is empty.
            "stuck_after_s": "8",
            "batch_window_s": "1.0",
            "worker_slot_lease_s": "3",  # a killed worker's slot and message come back within 3 s
            "worker_idle_exit_s": "4",
            "worker_start_timeout_s": str(START_TIMEOUT_S),
            "worker_scale_interval_s": "1",
            "jobs_per_worker": "20",
        },
    )


def _upload_one_batch(stack: LocalStack, count: int, size: int, key: str) -> tuple[str, list[str]]:
    with ApiClient(stack.api_url, stack.api_key) as api:
        answer = api.upload(small_images(count, size=size), idempotency_key=key)
    return answer["batch_id"], [j["job_id"] for j in answer["jobs"]]


def _pid(worker_id: str) -> int:
    """Worker ids are <host>-<pid>-<random> (runtime.worker.batch.new_worker_id)."""
    return int(worker_id.rsplit("-", 2)[1])


def _worker_mid_batch(stack: LocalStack, store: JobStore, job_ids: list[str]) -> Launch:
    """Wait until a worker has finished some of our jobs and is processing another: then it is mid-batch."""
    found: list[Launch] = []

    def mid_batch() -> bool:
        jobs = store.get_many(job_ids).values()
        running = [j for j in jobs if j["status"] == "RUNNING"]
        if not running or not any(j["status"] == "SUCCEEDED" for j in jobs):
            return False
        pids = {_pid(j["lease_owner"]) for j in running}
        found[:] = [w for w in stack.pipe.running() if w.pid in pids][:1]  # type: ignore[union-attr]
        return bool(found)

    wait_until(mid_batch, timeout_s=90, what="a worker in the middle of our batch", interval_s=0.05)
    return found[0]


def _events(stack: LocalStack) -> list[dict[str, Any]]:
    path = Path(stack.config.log.name)  # type: ignore[union-attr]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _reconciled(stack: LocalStack, reason: str) -> set[str]:
    ids: set[str] = set()
    for event in _events(stack):
        if event["event"] == "schedule_run":
            ids.update(event["result"]["requeued"][reason])
    return ids


def _processed_reports(stack: LocalStack) -> dict[str, int]:
    """How many times each job was reported done (ImagesProcessed) across every worker's log."""
    counts: dict[str, int] = {}
    for launch in stack.pipe.launches:  # type: ignore[union-attr]
        if launch.log_path is None or not launch.log_path.exists():
            continue
        for line in launch.log_path.read_text(errors="replace").splitlines():
            if line.startswith('{"_aws"') and '"ImagesProcessed"' in line:
                job = json.loads(line)["job_id"]
                counts[job] = counts.get(job, 0) + 1
    return counts


def _exactly_one_result_each(stack: LocalStack, batch_ids: set[str], jobs: dict[str, dict[str, Any]]) -> None:
    assert {j["status"] for j in jobs.values()} == {"SUCCEEDED"}, {j["error"] for j in jobs.values() if "error" in j}
    assert all(j["result"]["classes"]["person"]["pixels"] >= 0 for j in jobs.values())
    objects = result_objects(stack, batch_ids)
    assert sorted(objects) == sorted(jobs)
    assert all(len(keys) == 2 for keys in objects.values())  # deterministic keys: a re-run overwrites
    reported = _processed_reports(stack)
    assert all(reported.get(j, 0) <= 1 for j in jobs), "a job was reported done twice"


def _no_worker_live(stack: LocalStack) -> bool:
    from runtime.common.workers import WorkerSlots

    return not stack.pipe.running() and not WorkerSlots.from_settings(stack.settings).live()  # type: ignore[union-attr]


def test_sigterm_hands_the_rest_back_without_reconcile(stack: LocalStack) -> None:
    store = job_store(stack)
    stack.scheduler.pause()  # type: ignore[union-attr]
    try:
        batch_id, job_ids = _upload_one_batch(stack, 40, 192, "sigterm-batch")  # one request: one message
        victim = _worker_mid_batch(stack, store, job_ids)
        os.killpg(victim.pid, signal.SIGTERM)  # what ECS sends on a Spot interruption
        wait_until(lambda: victim.returncode is not None, timeout_s=60, what="the worker to exit after SIGTERM")
        assert victim.returncode == 0
        # The scheduler is paused: only the worker's own hand-back (and its replacement) can bring the rest home.
        jobs = wait_terminal(store, job_ids, timeout_s=120)
    finally:
        stack.scheduler.resume()  # type: ignore[union-attr]
    _exactly_one_result_each(stack, {batch_id}, jobs)
    assert "handing the rest back" in victim.log_path.read_text()  # type: ignore[union-attr]
    # Finishing the image in hand and handing back the rest cost no job an attempt.
    assert all(j["attempts"] == 1 for j in jobs.values()), {j["attempts"] for j in jobs.values()}


def test_sigkill_costs_an_attempt_only_to_the_jobs_being_processed(stack: LocalStack) -> None:
    store = job_store(stack)
    batch_id, job_ids = _upload_one_batch(stack, 40, 192, "sigkill-batch")
    victim = _worker_mid_batch(stack, store, job_ids)
    os.killpg(victim.pid, signal.SIGKILL)  # no goodbye: its leases, its slot and its message simply expire
    wait_until(lambda: victim.returncode is not None, timeout_s=10, what="the killed worker")
    assert victim.returncode == -signal.SIGKILL
    at_kill = store.get_many(job_ids)
    held = [j for j, job in at_kill.items() if job["status"] == "RUNNING" and _pid(job["lease_owner"]) == victim.pid]
    untouched = [j for j, job in at_kill.items() if job["status"] == "QUEUED" and job["attempts"] == 0]
    jobs = wait_terminal(store, job_ids, timeout_s=150)
    _exactly_one_result_each(stack, {batch_id}, jobs)
    assert held and untouched
    # Released by reconcile once their leases expired (only that release counts lost_leases), then claimed again.
    assert all(jobs[j]["attempts"] >= 2 and jobs[j]["lost_leases"] >= 1 for j in held)
    assert all(jobs[j]["attempts"] == 1 for j in untouched)  # the kill cost the jobs it had not started nothing


def test_api_killed_while_uploads_are_in_flight_is_restarted_by_the_stack(stack: LocalStack) -> None:
    """SIGKILL the API process behind the stack's back: the supervisor brings it back within seconds, uploads retry
    like the CLI (same Idempotency-Key), so every image ends up accepted exactly once, and every job finishes."""
    images = small_images(60, size=96)
    accepted: dict[str, str] = {}  # file name -> job id
    lock = threading.Lock()
    killed = threading.Event()
    accepted_after_restart: list[str] = []

    def upload(index: int) -> None:
        name, data = images[index]
        with ApiClient(stack.api_url, stack.api_key, retries=8, backoff_s=0.25, timeout_s=30) as api:
            answer = api.upload([(name, data)], idempotency_key=f"inflight-{index}")
        with lock:
            accepted[name] = answer["jobs"][0]["job_id"]
            if killed.is_set() and stack.api_proc is not None and stack.api_proc.poll() is None:
                accepted_after_restart.append(name)

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(upload, i) for i in range(len(images))]
        wait_until(lambda: len(accepted) >= 15, timeout_s=60, what="15 accepted uploads")
        dead = stack.api_proc
        assert dead is not None
        os.kill(dead.pid, signal.SIGKILL)  # requests in flight die, and the micro-batcher's buffer with them
        killed.set()
        killed_at = time.monotonic()
        wait_until(
            lambda: stack.api_proc is not dead and http_ok(f"{stack.api_url}/healthz"),
            timeout_s=30,
            what="the supervisor to restart the API",
            interval_s=0.05,
        )
        print(f"API back {time.monotonic() - killed_at:.1f} s after SIGKILL")
        for future in futures:
            future.result()  # raises if an upload was never accepted
    logged = [e for e in _events(stack) if e["event"] in ("api_exited", "api_restarted")]
    assert [e["event"] for e in logged] == ["api_exited", "api_restarted"] and logged[0]["pid"] == dead.pid
    assert len(accepted) == len(images) and len(set(accepted.values())) == len(images)
    assert accepted_after_restart, "every upload finished before the API came back: nothing was in flight"
    job_ids = list(accepted.values())
    jobs = wait_terminal(job_store(stack), job_ids, timeout_s=150)
    _exactly_one_result_each(stack, {j["batch_id"] for j in jobs.values()}, jobs)
    # Jobs still in the dead API's enqueue buffer can only have been sent by reconcile: written promised to the
    # queue, they are re-driven as enqueued and never claimed once the queue is empty. The sender thread (D8)
    # empties that buffer within milliseconds, so whether any were caught there depends on timing: the property
    # this test holds is the one above, that every accepted job finished exactly once, rescued or not.
    rescued = (_reconciled(stack, "enqueue_stale") | _reconciled(stack, "never_enqueued")) & set(job_ids)
    print(f"{len(rescued)} accepted jobs were first enqueued by reconcile")


def test_a_worker_task_that_never_starts_is_replaced(stack: LocalStack) -> None:
    """RunTask answers but no task starts: the woken slot expires, and the reconciler wakes another worker."""
    wait_until(lambda: _no_worker_live(stack), timeout_s=60, what="every worker to go idle and leave")
    pipe = stack.pipe
    assert pipe is not None
    lost_before, launched_before = len(pipe.lost), len(pipe.launches)
    pipe.lose_launches = lost_before + 1  # the next wake message starts nothing
    _, (job_id,) = _upload_one_batch(stack, 1, 96, "never-started")
    (job,) = wait_terminal(job_store(stack), [job_id], timeout_s=90).values()
    assert job["status"] == "SUCCEEDED" and job["attempts"] == 1
    assert len(pipe.lost) == lost_before + 1
    first = pipe.launches[launched_before]
    assert first.wake is not None and first.wake.by == "reconciler"
    assert job["finished_at"] - job["created_at"] >= START_TIMEOUT_S * 1000  # it waited out the lost start


def test_chaos_every_valid_image_succeeds_exactly_once(stack: LocalStack) -> None:
    """About 150 photos while workers are SIGKILLed and SIGTERMed over and over: none FAILED, each done once."""
    images = small_images(150, size=96)
    groups = [images[i : i + 10] for i in range(0, len(images), 10)]
    with ApiClient(stack.api_url, stack.api_key) as api, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda g: api.upload(g[1], idempotency_key=f"chaos-{g[0]}"), enumerate(groups)))
    job_ids = [j["job_id"] for a in answers for j in a["jobs"]]
    store = job_store(stack)
    rng = random.Random(17)
    kills: list[str] = []
    # The chaos is bounded (healing after it is bounded by wait_terminal). A replacement worker takes seconds to
    # start on a loaded machine, so the bound is long enough for nine kills, not a fixed few seconds of them.
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and len(kills) < 9:
        time.sleep(rng.uniform(0.8, 1.6))
        running = stack.pipe.running()  # type: ignore[union-attr]
        if not running:
            if all(j["status"] in ("SUCCEEDED", "FAILED") for j in store.get_many(job_ids).values()):
                break
            continue
        victim = rng.choice(running)
        how = signal.SIGKILL if len(kills) % 3 != 2 else signal.SIGTERM
        try:
            os.killpg(victim.pid, how)
        except ProcessLookupError:
            continue
        kills.append(how.name)
    jobs = wait_terminal(store, job_ids, timeout_s=180)
    assert kills.count("SIGKILL") >= 3 and "SIGTERM" in kills, kills
    failed = {j: jobs[j].get("error") for j in job_ids if jobs[j]["status"] != "SUCCEEDED"}
    assert not failed, failed
    _exactly_one_result_each(stack, {a["batch_id"] for a in answers}, jobs)
    assert max(j["attempts"] for j in jobs.values()) <= stack.settings.max_attempts
