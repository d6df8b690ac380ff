from __future__ import annotations

import io
import itertools
import json
import time

import pytest

from local.procs import wait_until
from local.scheduler import Scheduler


def test_runs_every_interval_and_logs_reports() -> None:
    calls: list[float] = []
    log = io.StringIO()
    sched = Scheduler(lambda: calls.append(time.monotonic()) or {"requeued": len(calls)}, interval_s=0.05, log=log)
    sched.start()
    try:
        wait_until(lambda: len(calls) >= 3, timeout_s=10, what="three runs")
    finally:
        sched.stop()
    assert sched.runs == len(calls) >= 3
    assert all(b - a >= 0.04 for a, b in itertools.pairwise(calls))
    first = json.loads(log.getvalue().splitlines()[0])
    assert first["event"] == "schedule_run" and first["result"] == {"requeued": 1}


def test_pause_stops_runs_until_resumed() -> None:
    calls: list[int] = []
    sched = Scheduler(lambda: calls.append(1), interval_s=0.02, log=io.StringIO()).start()
    try:
        wait_until(lambda: len(calls) >= 1, timeout_s=10, what="a first run")
        sched.pause()
        paused_at = len(calls)
        time.sleep(0.2)
        assert len(calls) == paused_at
        sched.resume()
        wait_until(lambda: len(calls) > paused_at, timeout_s=10, what="a run after resume")
    finally:
        sched.stop()


def test_an_error_is_logged_and_the_schedule_continues() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("table not there yet")
        return "ok"

    log = io.StringIO()
    sched = Scheduler(flaky, interval_s=0.02, log=log).start()
    try:
        wait_until(lambda: sched.runs >= 1, timeout_s=10, what="a good run after the error")
    finally:
        sched.stop()
    assert sched.errors == 1 and sched.last_result == "ok"
    assert "table not there yet" in log.getvalue()


def test_quiet_when_suppresses_empty_reports() -> None:
    log = io.StringIO()
    sched = Scheduler(lambda: {"requeued": 0}, interval_s=1, log=log, quiet_when=lambda r: r["requeued"] == 0)
    assert sched.run_once() == {"requeued": 0}
    assert log.getvalue() == ""


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        Scheduler(lambda: None, interval_s=0)
