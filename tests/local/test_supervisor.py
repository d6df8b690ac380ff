"""The supervisor's rules with a controlled clock: restart after a doubling backoff that resets once a piece is
stable, retry a failed restart, never restart a fatal piece; and on a real thread, a dead process comes back."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from typing import Any

from local.procs import spawn, stop, wait_until
from local.supervisor import Piece, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Flaky:
    """A piece whose life the test decides; ``fail_restarts`` restarts raise before one succeeds."""

    def __init__(self, fail_restarts: int = 0) -> None:
        self.up = True
        self.restarts = 0
        self.fail_restarts = fail_restarts

    def alive(self) -> bool:
        return self.up

    def restart(self) -> None:
        if self.fail_restarts:
            self.fail_restarts -= 1
            raise OSError("port in use")
        self.restarts += 1
        self.up = True


def _events(log: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.getvalue().splitlines()]


def _supervisor(pieces: list[Piece], clock: Clock, log: io.StringIO) -> Supervisor:
    return Supervisor(pieces, log=log, clock=clock, backoff_min_s=0.5, backoff_max_s=4.0, stable_s=30.0)


def test_restart_with_doubling_backoff_that_resets_when_stable() -> None:
    clock, log, api = Clock(), io.StringIO(), Flaky()
    sup = _supervisor([Piece("api", api.alive, api.restart, exit_info=lambda: {"returncode": -9})], clock, log)
    delays = []
    for _ in range(5):  # dies at once after every restart: 0.5, 1, 2, 4, 4 s
        api.up = False
        sup.check_once()
        delay = _events(log)[-1]["restart_in_s"]
        delays.append(delay)
        clock.now += delay - 0.01
        sup.check_once()
        assert not api.up  # not before its time
        clock.now += 0.01
        sup.check_once()
        assert api.up
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0] and api.restarts == 5 and sup.restarts["api"] == 5
    clock.now += 31  # stable for longer than stable_s: the next crash starts the backoff over
    sup.check_once()
    api.up = False
    sup.check_once()
    assert _events(log)[-1] == {**_events(log)[-1], "event": "api_exited", "restart_in_s": 0.5, "returncode": -9}
    assert [e["event"] for e in _events(log)].count("api_restarted") == 5
    assert not sup.failed.is_set()


def test_a_failed_restart_is_logged_and_tried_again_later() -> None:
    clock, log, pipe = Clock(), io.StringIO(), Flaky(fail_restarts=1)
    sup = _supervisor([Piece("pipe", pipe.alive, pipe.restart)], clock, log)
    pipe.up = False
    sup.check_once()
    clock.now += 0.5
    sup.check_once()
    failed = _events(log)[-1]
    assert failed["event"] == "pipe_restart_failed" and "port in use" in failed["error"] and failed["retry_in_s"] == 1.0
    clock.now += 0.9
    sup.check_once()
    assert not pipe.up
    clock.now += 0.1
    sup.check_once()
    assert pipe.up and _events(log)[-1]["event"] == "pipe_restarted"


def test_a_fatal_piece_is_never_restarted_and_fails_the_stack() -> None:
    clock, log, moto, api = Clock(), io.StringIO(), Flaky(), Flaky()
    pieces = [
        Piece("moto", moto.alive, None, fatal_message="the moto server exited: its data is gone"),
        Piece("api", api.alive, api.restart),
    ]
    sup = _supervisor(pieces, clock, log)
    moto.up = api.up = False
    sup.check_once()
    assert sup.failed.is_set() and sup.failure == "the moto server exited: its data is gone"
    assert _events(log) == [{**_events(log)[0], "event": "moto_exited", "fatal": True, "reason": sup.failure}]
    assert moto.restarts == 0 and api.restarts == 0


def test_a_killed_process_is_back_within_a_second_on_the_supervisor_thread() -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(spawn([sys.executable, "-c", "import time; time.sleep(60)"]))

    start()
    log = io.StringIO()
    sup = Supervisor(
        [Piece("api", lambda: procs[-1].poll() is None, start)], log=log, interval_s=0.05, backoff_min_s=0.2
    ).start()
    try:
        procs[0].kill()
        killed_at = time.monotonic()
        wait_until(lambda: len(procs) == 2 and procs[1].poll() is None, timeout_s=10, what="the restarted process")
        assert time.monotonic() - killed_at < 2
    finally:
        sup.stop()
        for proc in procs:
            stop(proc)
        sup.release()
    assert [e["event"] for e in _events(log)] == ["api_exited", "api_restarted"]
