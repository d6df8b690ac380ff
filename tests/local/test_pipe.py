"""The pipe emulator against a real moto SQS queue, with a tiny stand-in worker command.

The stand-in records what it was given, so these tests check the pipe's own contract (one process per wake
message, body in WAKE_MESSAGE, delete on launch, no limit of its own, a launch log with exact spans, lost
launches, clean stop); the real worker runs in tests/e2e.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest

from local.pipe import PipeEmulator, most_at_once
from local.procs import wait_until
from local.resources import LocalResources
from runtime.common.aws import client
from runtime.common.messages import WakeMessage
from runtime.common.settings import Settings

FAKE_WORKER = (
    "import json, os, sys, time\n"
    "out = os.path.join(os.environ['OUT_DIR'], str(os.getpid()))\n"
    "start = time.time()\n"
    "time.sleep(float(os.environ.get('SLEEP', '0')))\n"
    "json.dump({'body': os.environ['WAKE_MESSAGE'], 'start': start, 'end': time.time(),\n"
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
        queue_url=resources.wake_queue_url,
        env=env,
        command=kw.pop("command", (sys.executable, "-c", FAKE_WORKER)),  # type: ignore[arg-type]
        log_dir=tmp_path / "logs",
        **kw,  # type: ignore[arg-type]
    )


def _records(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "out").iterdir()) if p.stat().st_size]


def _wake(sqs: object, resources: LocalResources, slot: int = 0) -> str:
    body = WakeMessage(slot=slot, by="api").to_body()
    sqs.send_message(QueueUrl=resources.wake_queue_url, MessageBody=body)  # type: ignore[attr-defined]
    return body


def test_one_worker_per_message_with_the_body_and_the_task_env(
    settings: Settings, resources: LocalResources, tmp_path: Path
) -> None:
    sqs = client("sqs", settings)
    bodies = [_wake(sqs, resources, slot) for slot in range(3)]
    log = io.StringIO()
    pipe = _pipe(settings, resources, tmp_path, log=log).start()
    try:
        wait_until(lambda: len(_records(tmp_path)) == 3, timeout_s=30, what="three fake workers")
        wait_until(lambda: not pipe.running(), timeout_s=10, what="workers to exit")
    finally:
        pipe.stop()
    records = _records(tmp_path)
    assert sorted(r["body"] for r in records) == sorted(bodies)
    assert {r["table"] for r in records} == {resources.table}
    assert _queue_depth(sqs, resources.wake_queue_url) == 0  # deleted, not merely in flight
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    launched = [e for e in events if e["event"] == "worker_launched"]
    assert len(launched) == 3 and sorted(e["slot"] for e in launched) == [0, 1, 2]
    assert all(e["pid"] > 0 and e["woken_by"] == "api" for e in launched)
    assert [launch.returncode for launch in pipe.launches] == [0, 0, 0]


def test_no_limit_of_its_own_and_exact_spans_in_the_launch_log(
    settings: Settings, resources: LocalResources, tmp_path: Path
) -> None:
    """Like the real pipe it starts a process for every wake at once: the bound is the worker slots' job."""
    sqs = client("sqs", settings)
    for slot in range(4):
        _wake(sqs, resources, slot)
    pipe = _pipe(settings, resources, tmp_path, env={"SLEEP": "1.5"}).start()
    try:
        wait_until(lambda: len(_records(tmp_path)) == 4, timeout_s=60, what="four fake workers")
        wait_until(lambda: not pipe.running(), timeout_s=10, what="workers to exit")
    finally:
        pipe.stop()
    spans = [(float(r["start"]), float(r["end"])) for r in _records(tmp_path)]  # type: ignore[arg-type]
    assert most_at_once(spans) == 4 == pipe.most_alive_at_once()
    for launch in pipe.launches:  # the log's span covers the process's own, and ends within a moment of it
        own = json.loads((tmp_path / "out" / str(launch.pid)).read_text())
        assert launch.finished_at is not None
        assert launch.started_at <= own["start"] and own["end"] <= launch.finished_at < own["end"] + 1.0


def test_most_at_once_counts_overlaps() -> None:
    assert most_at_once([]) == 0
    assert most_at_once([(0, 1), (1, 2), (2, 3)]) == 1  # one ends as the next starts
    assert most_at_once([(0, 10), (1, 2), (1.5, 3), (5, None)], now=6) == 3
    assert most_at_once([(0, None), (1, None)], now=0.5) == 1


def test_a_crashed_worker_loses_its_message_like_the_real_pipe(
    settings: Settings, resources: LocalResources, tmp_path: Path
) -> None:
    """Delete-on-launch: a worker that dies is not retried by the pipe (the reconciler's job, D1)."""
    sqs = client("sqs", settings)
    _wake(sqs, resources)
    pipe = _pipe(settings, resources, tmp_path, env={"EXIT": "3"}).start()
    try:
        wait_until(lambda: bool(pipe.launches) and pipe.launches[0].returncode == 3, timeout_s=30, what="crash")
        time.sleep(1.5)  # a full poll cycle: nothing may come back
    finally:
        pipe.stop()
    assert len(pipe.launches) == 1
    assert _queue_depth(sqs, resources.wake_queue_url) == 0


def test_a_failed_launch_keeps_the_message(settings: Settings, resources: LocalResources, tmp_path: Path) -> None:
    sqs = client("sqs", settings)
    _wake(sqs, resources)
    log = io.StringIO()
    pipe = _pipe(settings, resources, tmp_path, command=(str(tmp_path / "no-such-worker"),), log=log).start()
    try:
        wait_until(lambda: "pipe_launch_failed" in log.getvalue(), timeout_s=30, what="the failed launch")
    finally:
        pipe.stop()
    assert pipe.launches == []
    assert _queue_depth(sqs, resources.wake_queue_url) == 1  # invisible for the visibility timeout, then retried


def test_stop_terminates_running_workers(settings: Settings, resources: LocalResources, tmp_path: Path) -> None:
    sqs = client("sqs", settings)
    _wake(sqs, resources)
    pipe = _pipe(settings, resources, tmp_path, env={"SLEEP": "120"}, worker_stop_timeout_s=5).start()
    wait_until(lambda: bool(pipe.running()), timeout_s=30, what="a running worker")
    started = time.monotonic()
    pipe.stop()
    assert time.monotonic() - started < 15
    assert pipe.running() == []
    assert pipe.launches[0].returncode == -15  # SIGTERM, as ECS sends when it stops a task


def test_a_lost_launch_deletes_the_message_and_starts_nothing(
    settings: Settings, resources: LocalResources, tmp_path: Path
) -> None:
    """RunTask answering without a task: the pipe is done with the message, and no worker ever comes."""
    sqs = client("sqs", settings)
    _wake(sqs, resources, 0)
    log = io.StringIO()
    pipe = _pipe(settings, resources, tmp_path, log=log, lose_launches=1).start()
    try:
        wait_until(lambda: "pipe_launch_lost" in log.getvalue(), timeout_s=30, what="the lost launch")
        _wake(sqs, resources, 1)  # the next wake starts a worker as usual
        wait_until(lambda: len(_records(tmp_path)) == 1, timeout_s=30, what="the next worker")
    finally:
        pipe.stop()
    assert len(pipe.lost) == 1 and [launch.wake.slot for launch in pipe.launches] == [1]  # type: ignore[union-attr]
    assert _queue_depth(sqs, resources.wake_queue_url) == 0


def test_a_body_that_is_not_a_wake_message_still_starts_a_worker(
    settings: Settings, resources: LocalResources, tmp_path: Path
) -> None:
    """The real pipe does not look inside: the worker decides what a malformed wake means."""
    sqs = client("sqs", settings)
    sqs.send_message(QueueUrl=resources.wake_queue_url, MessageBody="junk")
    pipe = _pipe(settings, resources, tmp_path).start()
    try:
        wait_until(lambda: len(_records(tmp_path)) == 1, timeout_s=30, what="the worker")
    finally:
        pipe.stop()
    assert _records(tmp_path)[0]["body"] == "junk" and pipe.launches[0].wake is None


def test_lose_launches_must_not_be_negative(resources: LocalResources) -> None:
    with pytest.raises(ValueError, match="lose_launches"):
        PipeEmulator(sqs_client=None, queue_url=resources.wake_queue_url, env={}, lose_launches=-1)
