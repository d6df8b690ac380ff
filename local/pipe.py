"""The pipe emulator: what the EventBridge Pipe does in AWS, for the local stack (docs/architecture.md D6, D8).

Like the real pipe it reads the wake queue, starts one worker per wake message with the body in
``WAKE_MESSAGE``, and deletes the message as soon as the worker has *started*, not when it finishes. Like the real
pipe it has no concurrency limit of its own: the bound on live workers is the worker slots in the job table
(runtime/common/workers.py), and the launch log (one JSON line per launch and exit) is how tests check it.
``lose_launches`` plays a RunTask that answers without starting a task: the message is deleted, no process
starts, and only the slot's expiry (and the next wake) brings a worker.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from local.procs import log_event, spawn, stop_all
from runtime.common.messages import BadMessage, WakeMessage, decode_wake
from runtime.common.settings import WAKE_MESSAGE_ENV

WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "runtime.worker")


@dataclass
class Launch:
    """One worker process started for one wake message."""

    number: int
    message_id: str
    wake: WakeMessage | None  # None: the body was not a wake message (the worker logs and handles that)
    proc: subprocess.Popen[bytes]
    started_at: float
    log_path: Path | None = None
    finished_at: float | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()


def most_at_once(spans: Sequence[tuple[float, float | None]], *, now: float | None = None) -> int:
    """The largest number of (start, end) intervals alive at one moment; an open interval ends ``now``."""
    end_of_time = time.time() if now is None else now
    events = sorted(
        [(s, 1) for s, _ in spans] + [(e if e is not None else end_of_time, -1) for _, e in spans],
        key=lambda ev: (ev[0], ev[1]),  # an exit at the same instant as a start counts first
    )
    alive = peak = 0
    for _, delta in events:
        alive += delta
        peak = max(peak, alive)
    return peak


class PipeEmulator:
    """Polls the wake queue and starts one worker process per message."""

    def __init__(
        self,
        *,
        sqs_client: Any,
        queue_url: str,
        env: Mapping[str, str],
        command: Sequence[str] = WORKER_COMMAND,
        wait_time_s: int = 1,
        log_dir: Path | None = None,
        log: IO[str] | None = None,
        worker_stop_timeout_s: float = 10.0,
        lose_launches: int = 0,
    ) -> None:
        if lose_launches < 0:
            raise ValueError("lose_launches must not be negative")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.env = dict(env)
        self.command = tuple(command)
        self.wait_time_s = wait_time_s
        self.log_dir = log_dir
        self.log = log
        self.worker_stop_timeout_s = worker_stop_timeout_s
        self.lose_launches = lose_launches
        self.lost: list[str] = []  # message ids "launched" without a process
        self._launches: list[Launch] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> PipeEmulator:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="pipe-emulator", daemon=True)
        self._thread.start()
        return self

    @property
    def thread(self) -> threading.Thread | None:
        """The polling thread (the supervisor's liveness check); ``start()`` runs a new one after a crash."""
        return self._thread

    def stop(self) -> None:
        """Stop polling, then stop running workers the way ECS stops a task: SIGTERM, then SIGKILL."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.wait_time_s + self.worker_stop_timeout_s + 30)
        else:
            self._stop_workers()

    def _stop_workers(self) -> None:
        # Runs on the thread that started the workers: they die with it (PR_SET_PDEATHSIG), so it must
        # outlive them to give them their SIGTERM grace period.
        stop_all([launch.proc for launch in self.running()], timeout_s=self.worker_stop_timeout_s)
        self._reap()

    # --- inspection (tests and the dev console use these) ----------------------------------------------
    @property
    def launches(self) -> list[Launch]:
        with self._lock:
            return list(self._launches)

    def running(self) -> list[Launch]:
        return [launch for launch in self.launches if launch.proc.poll() is None]

    def most_alive_at_once(self) -> int:
        """From the launch log: the most worker processes that were alive at the same moment."""
        self._reap()
        return most_at_once([(launch.started_at, launch.finished_at) for launch in self.launches])

    # --- the loop ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._reap()
            try:
                out = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_time_s
                )
            except Exception as exc:  # the moto server going away at shutdown, a network blip: keep polling
                if not self._stop.is_set():
                    log_event(self.log, "pipe_receive_error", error=repr(exc))
                    time.sleep(0.5)
                continue
            for message in out.get("Messages", []):
                self._launch(message)
        self._stop_workers()

    def _delete(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _launch(self, message: dict[str, Any]) -> None:
        body = message["Body"]
        try:
            wake: WakeMessage | None = decode_wake(body)
        except BadMessage:
            wake = None  # the real pipe does not look inside; the worker logs it and takes a free slot, or exits
        if len(self.lost) < self.lose_launches:
            self.lost.append(message["MessageId"])
            self._delete(message)  # RunTask "succeeded" with a failures list: the pipe is done with it
            log_event(self.log, "pipe_launch_lost", message_id=message["MessageId"], slot=wake and wake.slot)
            return
        number = len(self._launches) + 1
        log_path = self.log_dir / f"worker-{number:04d}.log" if self.log_dir is not None else None
        try:
            if log_path is not None:
                with log_path.open("wb") as out:
                    proc = spawn(self.command, env={**self.env, WAKE_MESSAGE_ENV: body}, stdout=out, stderr=out)
            else:
                proc = spawn(self.command, env={**self.env, WAKE_MESSAGE_ENV: body})
        except OSError as exc:
            # RunTask failed: the message stays, comes back after the visibility timeout, and after
            # maxReceiveCount tries lands in the DLQ, which is what the real pipe's retries amount to.
            log_event(self.log, "pipe_launch_failed", message_id=message["MessageId"], error=repr(exc))
            return
        launch = Launch(number, message["MessageId"], wake, proc, time.time(), log_path)
        with self._lock:
            self._launches.append(launch)
        # The exit is stamped the moment it happens, so the launch log's spans are exact.
        threading.Thread(target=self._watch, args=(launch,), name=f"watch-{number}", daemon=True).start()
        self._delete(message)  # delete on launch, like the real pipe once RunTask has answered
        log_event(
            self.log,
            "worker_launched",
            worker=number,
            pid=proc.pid,
            message_id=message["MessageId"],
            slot=wake.slot if wake else None,
            woken_by=wake.by if wake else None,
            log=str(log_path) if log_path else None,
        )

    def _watch(self, launch: Launch) -> None:
        launch.proc.wait()
        self._exited(launch)

    def _exited(self, launch: Launch) -> None:
        with self._lock:
            if launch.finished_at is not None:
                return
            launch.finished_at = time.time()
        log_event(
            self.log,
            "worker_exited",
            worker=launch.number,
            pid=launch.pid,
            returncode=launch.proc.returncode,
            seconds=round(launch.finished_at - launch.started_at, 2),
        )

    def _reap(self) -> None:
        for launch in self.launches:
            if launch.finished_at is None and launch.proc.poll() is not None:
                self._exited(launch)
