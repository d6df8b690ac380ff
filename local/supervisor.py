"""Restart what crashes, as ECS replaces a stopped task: the local stack's API process and its emulator threads.

Each supervised piece is a name, an ``alive`` check and a ``restart``. A piece found dead is logged
(``<name>_exited``) and restarted after a backoff that doubles from ``backoff_min_s`` to ``backoff_max_s`` and starts
over once the piece has stayed up for ``stable_s`` (``<name>_restarted``, or ``<name>_restart_failed`` and another
try later), so a piece that dies at once on every start costs a log line now and then, not a busy loop.

A piece without a ``restart`` is fatal: the moto server holds every bucket, table and queue in memory, so a new one
would be empty and a restart would only hide that the jobs are gone. Its death sets ``failed`` with a message that
says so; the owner (``local.dev``) stops the stack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from local.procs import log_event


@dataclass
class Piece:
    name: str
    alive: Callable[[], bool]
    restart: Callable[[], object] | None  # what it returns is ignored; None: its death is fatal
    exit_info: Callable[[], dict[str, Any]] = field(default=lambda: {})  # e.g. the exit status, for the log
    fatal_message: str = ""


@dataclass
class _State:
    failures: int = 0  # restarts since the piece was last stable
    up_since: float = 0.0
    next_try_at: float | None = None  # set while the piece is down


class Supervisor:
    def __init__(
        self,
        pieces: list[Piece],
        *,
        log: IO[str] | None = None,
        interval_s: float = 0.25,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stable_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pieces = pieces
        self.log = log
        self.interval_s = interval_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.stable_s = stable_s
        self.clock = clock
        self.failed = threading.Event()
        self.failure = ""
        self.restarts: dict[str, int] = {p.name: 0 for p in pieces}
        self._states = {p.name: _State(up_since=clock()) for p in pieces}
        self._stop = threading.Event()
        self._release = threading.Event()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """No restart after this returns (one in progress is let finish). What the supervisor started keeps
        running until ``release``: children die with the thread that started them (local/procs.py), and the
        stack stops them properly first."""
        self._stop.set()
        with self._busy:
            pass

    def release(self) -> None:
        self._stop.set()
        self._release.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and not self.failed.is_set():
            with self._busy:
                if not self._stop.is_set():
                    try:
                        self.check_once()
                    except Exception as exc:  # a bug here must not end supervision without a word
                        log_event(self.log, "supervisor_error", error=repr(exc)[:300])
        self._release.wait()

    def backoff_s(self, failures: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_min_s * 2**failures))

    def check_once(self) -> None:
        """One look at every piece: restart what is due, or declare the stack failed."""
        for piece in self.pieces:
            state = self._states[piece.name]
            now = self.clock()
            if piece.alive():
                if state.failures and now - state.up_since >= self.stable_s:
                    state.failures = 0
                continue
            if piece.restart is None:
                self.failure = piece.fatal_message or f"the {piece.name} exited"
                log_event(self.log, f"{piece.name}_exited", fatal=True, reason=self.failure, **piece.exit_info())
                self.failed.set()
                return
            if state.next_try_at is None:
                delay = self.backoff_s(state.failures)
                state.next_try_at = now + delay
                log_event(self.log, f"{piece.name}_exited", restart_in_s=delay, **piece.exit_info())
            if now < state.next_try_at:
                continue
            state.failures += 1
            try:
                piece.restart()
            except Exception as exc:
                delay = self.backoff_s(state.failures)
                state.next_try_at = self.clock() + delay
                log_event(self.log, f"{piece.name}_restart_failed", error=repr(exc)[:300], retry_in_s=delay)
                continue
            state.next_try_at = None
            state.up_since = self.clock()
            self.restarts[piece.name] += 1
            log_event(self.log, f"{piece.name}_restarted", restarts=self.restarts[piece.name])
