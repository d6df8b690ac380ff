"""The pipe emulator: what the EventBridge Pipe does in AWS, for the local stack (docs/architecture.md D2, D6).

Like the real pipe it receives one message at a time, starts one worker per message with the body in
``JOB_BATCH``, and deletes the message as soon as the worker has *started*, not when it finishes. So a worker
that crashes loses its message, exactly as a Fargate task would, and only the job table plus the reconciler
bring its jobs home (D1). Keeping that semantics locally is what lets the fault tests mean something.
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

from local.procs import log_event, spawn, stop
from runtime.common.messages import BadMessage, decode
from runtime.common.settings import JOB_BATCH_ENV

WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "runtime.worker")


@dataclass
class Launch:
    """One worker process started for one message."""

    number: int
    message_id: str
    job_ids: tuple[str, ...]
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


class PipeEmulator:
    """Polls the jobs queue and runs up to ``max_workers`` worker processes at once."""

    def __init__(
        self,
        *,
        sqs_client: Any,
        queue_url: str,
        env: Mapping[str, str],
        command: Sequence[str] = WORKER_COMMAND,
        max_workers: int = 2,
        wait_time_s: int = 1,
        log_dir: Path | None = None,
        log: IO[str] | None = None,
        worker_stop_timeout_s: float = 10.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.env = dict(env)
        self.command = tuple(command)
        self.max_workers = max_workers
        self.wait_time_s = wait_time_s
        self.log_dir = log_dir
        self.log = log
        self.worker_stop_timeout_s = worker_stop_timeout_s
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
        for launch in self.running():
            stop(launch.proc, timeout_s=self.worker_stop_timeout_s)
        self._reap()

    # --- inspection (tests and the dev console use these) ----------------------------------------------
    @property
    def launches(self) -> list[Launch]:
        with self._lock:
            return list(self._launches)

    def running(self) -> list[Launch]:
        return [launch for launch in self.launches if launch.proc.poll() is None]

    # --- the loop ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._reap()
            if len(self.running()) >= self.max_workers:
                time.sleep(0.05)
                continue
            try:
                out = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=self.wait_time_s
                )
            except Exception as exc:  # the moto server going away at shutdown, a network blip: keep polling
                if not self._stop.is_set():
                    log_event(self.log, "pipe_receive_error", error=repr(exc))
                    time.sleep(0.5)
                continue
            for message in out.get("Messages", []):
                self._launch(message)
        self._stop_workers()

    def _launch(self, message: dict[str, Any]) -> None:
        body = message["Body"]
        try:
            job_ids = decode(body).job_ids
        except BadMessage:
            job_ids = ()  # the real pipe does not look inside; the worker will refuse it and exit
        number = len(self._launches) + 1
        log_path = self.log_dir / f"worker-{number:04d}.log" if self.log_dir is not None else None
        try:
            if log_path is not None:
                with log_path.open("wb") as out:
                    proc = spawn(self.command, env={**self.env, JOB_BATCH_ENV: body}, stdout=out, stderr=out)
            else:
                proc = spawn(self.command, env={**self.env, JOB_BATCH_ENV: body})
        except OSError as exc:
            # RunTask failed: the message stays, comes back after the visibility timeout, and after
            # maxReceiveCount tries lands in the DLQ, which is what the real pipe's retries amount to.
            log_event(self.log, "pipe_launch_failed", message_id=message["MessageId"], error=repr(exc))
            return
        launch = Launch(number, message["MessageId"], tuple(job_ids), proc, time.time(), log_path)
        with self._lock:
            self._launches.append(launch)
        # Delete on launch, like the real pipe once RunTask has answered.
        with contextlib.suppress(Exception):
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        log_event(
            self.log,
            "worker_launched",
            worker=number,
            pid=proc.pid,
            message_id=message["MessageId"],
            jobs=len(job_ids),
            log=str(log_path) if log_path else None,
        )

    def _reap(self) -> None:
        for launch in self.launches:
            if launch.finished_at is None and launch.proc.poll() is not None:
                launch.finished_at = time.time()
                log_event(
                    self.log,
                    "worker_exited",
                    worker=launch.number,
                    pid=launch.pid,
                    returncode=launch.proc.returncode,
                    seconds=round(launch.finished_at - launch.started_at, 2),
                )
