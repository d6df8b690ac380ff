"""The real local stack (moto server, API, pipe and scheduler emulators, worker processes) for e2e tests.

Each test module starts its own stack with the settings it needs through ``local.dev.LocalStack``, the same
code ``make dev`` runs, and the teardown checks that no process it started is left behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.dev import LocalStack, StackConfig
from runtime.common.aws import client
from runtime.common.jobs import TERMINAL, JobStore

StackFactory = Callable[..., LocalStack]
WAIT_CHUNK = 100


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_no_leftovers(stack: LocalStack) -> None:
    pids = [p.pid for p in (stack.moto_proc, stack.dynamodb_proc, stack.api_proc) if p is not None]
    pids += [launch.pid for launch in (stack.pipe.launches if stack.pipe else [])]
    pids += [p.pid for p in stack.retired]
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in pids if _alive(pid)]
    assert not left, f"processes left behind: {left}"


@pytest.fixture(scope="module")
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackFactory]:
    """Start stacks for this module; all are stopped (and checked for leftovers) at the end of the module."""
    started: list[LocalStack] = []

    def factory(**config: Any) -> LocalStack:
        log_dir = tmp_path_factory.mktemp("stack-logs")
        log = (log_dir / "events.jsonl").open("a")
        stack = LocalStack(StackConfig(log_dir=log_dir, log=log, **config))
        started.append(stack)
        return stack.start()

    yield factory
    for stack in started:
        stack.stop()
        if stack.config.log is not None:
            stack.config.log.close()
    for stack in started:
        assert_no_leftovers(stack)


def job_store(stack: LocalStack) -> JobStore:
    settings = stack.settings
    return JobStore.from_settings(settings, client("dynamodb", settings))


def wait_terminal(store: JobStore, job_ids: list[str], *, timeout_s: float) -> dict[str, dict[str, Any]]:
    """Poll the job table (the source of truth) until every job is SUCCEEDED or FAILED."""
    deadline = time.monotonic() + timeout_s
    jobs: dict[str, dict[str, Any]] = {}
    pending = list(job_ids)
    while True:
        # The local DynamoDB serves one request at a time, so read as little as possible: the first unfinished
        # jobs (they finish roughly in order), moving on at once while those are done.
        head = pending[:WAIT_CHUNK]
        jobs.update(store.get_many(head))
        done = {j for j in head if j in jobs and jobs[j]["status"] in TERMINAL}
        pending = [j for j in pending if j not in done]
        if not pending:
            return {j: jobs[j] for j in job_ids}
        if time.monotonic() > deadline:
            states = {j: jobs[j]["status"] if j in jobs else "missing" for j in pending[:10]}
            raise AssertionError(f"{len(pending)} job(s) not finished after {timeout_s:.0f} s, e.g. {states}")
        if len(done) < len(head):
            time.sleep(0.5)


def result_objects(stack: LocalStack, batch_ids: set[str]) -> dict[str, list[str]]:
    """S3 result keys per job id, for the given batches."""
    s3 = client("s3", stack.settings)
    keys: dict[str, list[str]] = {}
    for batch_id in batch_ids:
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=stack.settings.bucket, Prefix=f"results/{batch_id}/"):
            for obj in page.get("Contents", []):
                keys.setdefault(obj["Key"].split("/")[2], []).append(obj["Key"])
    return keys
