"""The pipe emulator against a real moto SQS queue, with a tiny stand-in worker command.

The stand-in records what it was given, so these tests check the pipe's own contract (one process per message,
body in JOB_BATCH, delete on launch, at most N at once, clean stop); the real worker runs in tests/e2e.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest

from local.pipe import PipeEmulator
from local.procs import wait_until
from local.resources import LocalResources
from runtime.common.aws import client
from runtime.common.messages import BatchMessage
from runtime.common.settings import Settings

FAKE_WORKER = (
    "import json, os, sys, time\n"
    "out = os.path.join(os.environ['OUT_DIR'], str(os.getpid()))\n"
    "start = time.time()\n"
    "time.sleep(float(os.environ.get('SLEEP', '0')))\n"
    "json.dump({'body': os.environ['JOB_BATCH'], 'start': start, 'end': time.time(),\n"
    "           'table': os.environ.get('SEGSCALE_TABLE')}, open(out, 'w'))\n"
    "sys.exit(int(os.environ.get('EXIT', '0')))\n"
)


def _queue_depth(sqs: object, queue_url: str) -> int:
    attrs = sqs.get_queue_attributes(  # type: ignore[attr-defined]
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _pipe(settings: Settings, resources: LocalResources, tmp_path: Path, **kw: object) -> PipeEmulator:
    env = {**resources.env(), "OUT_DIR": str(tmp_path / "out"), **kw.pop("env", {})}  # type: ignore[dict-item]
    (tmp_path / "out").mkdir(exist_ok=True)
    return PipeEmulator(
        sqs_client=client("sqs", settings),
        queue_url=resources.queue_url,
        env=env,
        command=kw.pop("command", (sys.executable, "-c", FAKE_WORKER)),  # type: ignore[arg-type]
        log_dir=tmp_path / "logs",
        **kw,  # type: ignore[arg-type]
    )


def _records(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "out").iterdir()) if p.stat().st_size]


def test_one_worker_per_message_with_the_body_and_the_task_env(
    settings: Settings, resources: LocalResources, tmp_path: Path
) -> None:
    sqs = client("sqs", settings)
    bodies = [BatchMessage(job_ids=(f"{i:032x}",)).to_body() for i in range(3)]
    for body in bodies:
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody=body)
    log = io.StringIO()
    pipe = _pipe(settings, resources, tmp_path, log=log, max_workers=3).start()
    try:
        wait_until(lambda: len(_records(tmp_path)) == 3, timeout_s=30, what="three fake workers")
        wait_until(lambda: not pipe.running(), timeout_s=10, what="workers to exit")
    finally:
        pipe.stop()
    records = _records(tmp_path)
    assert sorted(r["body"] for r in records) == sorted(bodies)
    assert {r["table"] for r in records} == {resources.table}
    assert _queue_depth(sqs, resources.queue_url) == 0  # deleted, not merely in flight
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    launched = [e for e in events if e["event"] == "worker_launched"]
    assert len(launched) == 3 and all(e["jobs"] == 1 and e["pid"] > 0 for e in launched)
    assert [launch.returncode for launch in pipe.launches] == [0, 0, 0]


def test_never_more_than_max_workers_at_once(settings: Settings, resources: LocalResources, tmp_path: Path) -> None:
    sqs = client("sqs", settings)
    for i in range(4):
        sqs.send_message(QueueUrl=resources.queue_url, MessageBody=BatchMessage(job_ids=(f"{i:032x}",)).to_body())
    pipe = _pipe(settings, resources, tmp_path, max_workers=2, env={"SLEEP": "1.0"}).start()
    try:
        wait_until(lambda: len(_records(tmp_path)) == 4, timeout_s=60, what="four fake workers")
    finally:
        pipe.stop()
    spans = [(float(r["start"]), float(r["end"])) for r in _records(tmp_path)]  # type: ignore[arg-type]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == 2


def test_a_crashed_worker_loses_its_message_like_the_real_pipe(
    settings: Settings, resources: LocalResources, tmp_path: Path
) -> None:
    """Delete-on-launch: a worker that dies is not retried by the pipe (the reconciler's job, D1)."""
    sqs = client("sqs", settings)
    sqs.send_message(QueueUrl=resources.queue_url, MessageBody=BatchMessage(job_ids=("a" * 32,)).to_body())
    pipe = _pipe(settings, resources, tmp_path, env={"EXIT": "3"}).start()
    try:
        wait_until(lambda: bool(pipe.launches) and pipe.launches[0].returncode == 3, timeout_s=30, what="crash")
        time.sleep(1.5)  # a full poll cycle: nothing may come back
    finally:
        pipe.stop()
    assert len(pipe.launches) == 1
    assert _queue_depth(sqs, resources.queue_url) == 0


def test_a_failed_launch_keeps_the_message(settings: Settings, resources: LocalResources, tmp_path: Path) -> None:
    sqs = client("sqs", settings)
    sqs.send_message(QueueUrl=resources.queue_url, MessageBody=BatchMessage(job_ids=("b" * 32,)).to_body())
    log = io.StringIO()
    pipe = _pipe(settings, resources, tmp_path, command=(str(tmp_path / "no-such-worker"),), log=log).start()
    try:
        wait_until(lambda: "pipe_launch_failed" in log.getvalue(), timeout_s=30, what="the failed launch")
    finally:
        pipe.stop()
    assert pipe.launches == []
    assert _queue_depth(sqs, resources.queue_url) == 1  # invisible for the visibility timeout, then retried


def test_stop_terminates_running_workers(settings: Settings, resources: LocalResources, tmp_path: Path) -> None:
    sqs = client("sqs", settings)
    sqs.send_message(QueueUrl=resources.queue_url, MessageBody=BatchMessage(job_ids=("c" * 32,)).to_body())
    pipe = _pipe(settings, resources, tmp_path, env={"SLEEP": "120"}, worker_stop_timeout_s=5).start()
    wait_until(lambda: bool(pipe.running()), timeout_s=30, what="a running worker")
    started = time.monotonic()
    pipe.stop()
    assert time.monotonic() - started < 15
    assert pipe.running() == []
    assert pipe.launches[0].returncode == -15  # SIGTERM, as ECS sends when it stops a task


def test_max_workers_must_be_positive(settings: Settings, resources: LocalResources) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        PipeEmulator(sqs_client=None, queue_url=resources.queue_url, env={}, max_workers=0)
