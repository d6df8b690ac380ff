"""Fault injection on the real local stack (D7b, D7c): kill workers and the API, and every accepted job
still ends with exactly one result. A short lease and stuck threshold make the healing take seconds, not minutes."""

from __future__ import annotations

import json
import os
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


@pytest.fixture(scope="module")
def stack(make_stack: StackFactory) -> LocalStack:
    return make_stack(
        max_workers=2,
        reconcile_interval_s=1.0,
        settings={
            "lease_seconds": "3",
            # Reconcile re-enqueues jobs not claimed within this and fails them after max_attempts + 1 such
            # enqueues: on a loaded 2-core machine the queue can hold a backlog of 20 s or more, so keep room.
            "stuck_after_s": "8",
            "max_attempts": "6",
            "batch_window_s": "1.0",
        },
    )


def _upload_one_batch(stack: LocalStack, count: int, size: int, key: str) -> tuple[str, list[str]]:
    with ApiClient(stack.api_url, stack.api_key) as api:
        answer = api.upload(small_images(count, size=size), idempotency_key=key)
    return answer["batch_id"], [j["job_id"] for j in answer["jobs"]]


def _worker_mid_batch(stack: LocalStack, store: JobStore, job_ids: list[str]) -> Launch:
    """Wait until a worker holding our jobs has finished some and is running another: then it is mid-batch."""
    ours = set(job_ids)
    found: list[Launch] = []

    def mid_batch() -> bool:
        jobs = store.get_many(job_ids)
        statuses = [j["status"] for j in jobs.values()]
        if "SUCCEEDED" not in statuses or "RUNNING" not in statuses:
            return False
        running = [w for w in stack.pipe.running() if ours & set(w.job_ids)]  # type: ignore[union-attr]
        found[:] = running[:1]
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


def _exactly_one_result_each(stack: LocalStack, batch_ids: set[str], jobs: dict[str, dict[str, Any]]) -> None:
    assert {j["status"] for j in jobs.values()} == {"SUCCEEDED"}, {j["error"] for j in jobs.values() if "error" in j}
    assert all(j["result"]["classes"]["person"]["pixels"] >= 0 for j in jobs.values())
    objects = result_objects(stack, batch_ids)
    assert sorted(objects) == sorted(jobs)
    assert all(len(keys) == 2 for keys in objects.values())  # deterministic keys: a re-run overwrites


def test_sigterm_releases_and_reenqueues_without_reconcile(stack: LocalStack) -> None:
    store = job_store(stack)
    stack.scheduler.pause()  # type: ignore[union-attr]
    try:
        batch_id, job_ids = _upload_one_batch(stack, 40, 192, "sigterm-batch")
        victim = _worker_mid_batch(stack, store, job_ids)
        os.killpg(victim.pid, signal.SIGTERM)  # what ECS sends on a Spot interruption
        wait_until(lambda: victim.returncode is not None, timeout_s=60, what="the worker to exit after SIGTERM")
        assert victim.returncode == 0
        # The scheduler is paused: only the worker's own re-enqueue can bring the rest home.
        jobs = wait_terminal(store, job_ids, timeout_s=120)
    finally:
        stack.scheduler.resume()  # type: ignore[union-attr]
    _exactly_one_result_each(stack, {batch_id}, jobs)
    # Jobs of the victim's own message came back in a new message: the worker re-enqueued them itself.
    later = [w for w in stack.pipe.launches if w.number > victim.number and set(w.job_ids) & set(victim.job_ids)]  # type: ignore[union-attr]
    assert later, "no worker was launched for the released jobs"


def test_sigkill_mid_batch_heals_through_reconcile(stack: LocalStack) -> None:
    store = job_store(stack)
    batch_id, job_ids = _upload_one_batch(stack, 40, 192, "sigkill-batch")
    victim = _worker_mid_batch(stack, store, job_ids)
    os.killpg(victim.pid, signal.SIGKILL)  # no goodbye: its leases simply expire
    wait_until(lambda: victim.returncode is not None, timeout_s=10, what="the killed worker")
    assert victim.returncode == -signal.SIGKILL
    # What it held when it died (its own message's jobs; another worker may hold other jobs of the batch).
    snapshot = store.get_many(list(victim.job_ids))
    held = [j for j, job in snapshot.items() if job["status"] == "RUNNING"]
    jobs = wait_terminal(store, job_ids, timeout_s=150)
    _exactly_one_result_each(stack, {batch_id}, jobs)
    assert held and all(jobs[j]["attempts"] >= 2 for j in held)  # claimed again after the lease expired
    healed = _reconciled(stack, "lease_expired") & set(job_ids)
    assert set(held) <= healed | set(_reconciled(stack, "enqueue_stale"))


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
    # Some accepted jobs were still in the dead API's buffer: only reconcile could have sent them.
    assert _reconciled(stack, "never_enqueued") & set(job_ids)
