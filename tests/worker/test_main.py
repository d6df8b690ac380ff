"""``python -m runtime.worker`` as a real process: what the container runs, SIGTERM included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from local.resources import LocalResources
from runtime.common import metrics
from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.messages import BatchMessage, WakeMessage
from runtime.common.settings import JOB_BATCH_ENV, WAKE_MESSAGE_ENV, Settings
from runtime.common.workers import WorkerSlots
from tests.worker.helpers import emf_lines, encode, red_square, submit

ROOT = Path(__file__).resolve().parents[2]


def _env(resources: LocalResources, models_dir: Path, body: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **resources.env(),
        "SEGSCALE_MODELS_DIR": str(models_dir),
        JOB_BATCH_ENV: body,
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def test_malformed_message_exits_zero(resources: LocalResources, models_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.worker"],
        env=_env(resources, models_dir, '{"v": 1, "job_ids": ["../etc/passwd"]}'),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "job_ids must be" in proc.stderr


def test_sigterm_mid_batch_hands_the_rest_back_and_exits_zero(
    resources: LocalResources, settings: Settings, store: JobStore, models_dir: Path
) -> None:
    s3 = client("s3", settings)
    batch = "b" * 32
    data = encode(red_square(96, (10, 10, 40, 40)))
    ids = [submit(store, s3, settings, data, model="red", batch_id=batch) for _ in range(60)]
    for job_id in ids:
        store.mark_enqueued(job_id)
    body = BatchMessage(job_ids=tuple(ids)).to_body()
    # One I/O thread keeps the batch slow enough (several seconds) to stop it in the middle.
    env = _env(resources, models_dir, body, SEGSCALE_WORKER_IO_THREADS="1", SEGSCALE_LEASE_SECONDS="60")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and store.batch_counts(batch)["SUCCEEDED"] == 0:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    jobs = store.get_many(ids)
    statuses = {j: jobs[j]["status"] for j in ids}
    done = [j for j, s in statuses.items() if s == "SUCCEEDED"]
    back = [j for j, s in statuses.items() if s == "QUEUED"]
    assert len(done) + len(back) == len(ids), statuses  # nothing left RUNNING, nothing FAILED
    assert done and back, statuses  # it really was stopped mid-batch
    assert all("lease_owner" not in jobs[j] for j in back)
    assert all(jobs[j]["enqueue_count"] == 2 for j in back)  # re-enqueued once, by the worker
    sqs = client("sqs", settings)
    sent: set[str] = set()
    for _ in range(5):
        got = sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        for m in got:
            sent.update(json.loads(m["Body"])["job_ids"])
    assert sent == set(back)
    processed = [d for d in emf_lines(out) if "ImagesProcessed" in d]
    assert len(processed) == len(done)
    assert "handing the rest back" in err
    assert all(jobs[j]["attempts"] == 0 for j in back)  # never claimed: handing them back cost nothing


def _drain_env(resources: LocalResources, models_dir: Path, wake: str, **extra: str) -> dict[str, str]:
    env = _env(resources, models_dir, "", SEGSCALE_WORKER_IDLE_EXIT_S="1", **extra)
    del env[JOB_BATCH_ENV]
    return {**env, WAKE_MESSAGE_ENV: wake}


def test_a_malformed_wake_message_is_dropped_and_the_worker_still_drains(
    resources: LocalResources, settings: Settings, store: JobStore, models_dir: Path
) -> None:
    """The pipe does not look inside wake messages: junk starts a task, which logs it, takes a free slot and works."""
    s3 = client("s3", settings)
    job_id = submit(store, s3, settings, encode(red_square(48, (4, 4, 16, 16))), model="red")
    client("sqs", settings).send_message(
        QueueUrl=settings.queue_url, MessageBody=BatchMessage(job_ids=(job_id,)).to_body()
    )
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.worker"],
        env=_drain_env(resources, models_dir, '{"v": 1, "kind": "wake", "slot": "zero"}'),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "dropping malformed wake message" in proc.stderr and "'exit_reason': 'idle'" in proc.stderr
    assert store.get(job_id)["status"] == "SUCCEEDED"  # type: ignore[index]
    assert [d[metrics.WORKER_STARTS] for d in emf_lines(proc.stdout) if metrics.WORKER_STARTS in d] == [1]


def test_sigterm_while_idle_in_a_long_poll_leaves_at_once(resources: LocalResources, models_dir: Path) -> None:
    """An idle warm worker spends its time in a 20 s SQS long poll; SIGTERM must not wait for that poll to end.

    The local stack gives a worker 10 s between SIGTERM and SIGKILL: a worker that only looked at its stop flag
    between polls was killed there, without handing its slot back."""
    # A 60 s lease and idle exit: the worker long-polls the empty queue for 20 s at a time.
    env = {**_drain_env(resources, models_dir, ""), "SEGSCALE_WORKER_IDLE_EXIT_S": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.worker"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        slots = WorkerSlots.from_settings(resources.settings())
        deadline = time.monotonic() + 60
        while not slots.live():  # it holds a slot: from here on it polls the empty queue
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(1.0)  # well inside its first 20 s poll
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=8)  # before the local stack's 10 s grace runs out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert b"'exit_reason': 'stopped'" in err


def test_no_free_slot_means_the_task_exits_at_once(
    resources: LocalResources, settings: Settings, models_dir: Path
) -> None:
    assert WorkerSlots.from_settings(settings.model_copy(update={"max_workers": 1})).acquire("w-busy") == 0
    wake = WakeMessage(slot=0, by="api").to_body()  # a reservation that is not (or no longer) there
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.worker"],
        env=_drain_env(resources, models_dir, wake, SEGSCALE_MAX_WORKERS="1"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "no free worker slot" in proc.stderr
    assert metrics.WORKER_STARTS not in proc.stdout
