"""The scheduler emulator: what EventBridge Scheduler does for the reconcile task in AWS (docs/architecture.md D6).

It calls an action every ``interval_s`` seconds. The default action is the reconciler itself, called as a
library in this process (``runtime.results.reconcile.reconcile_once``), which is the same code the scheduled
ECS task runs. ``pause``/``resume`` exist so a test can prove that something healed *without* reconcile.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from local.procs import log_event
from runtime.common.settings import Settings


def reconcile_action(settings: Settings, *, max_jobs: int = 1000) -> Callable[[], Any]:
    """The reconcile run the schedule triggers; imported lazily so the emulator loads without the results code."""

    def run() -> Any:
        from runtime.results.reconcile import reconcile_once

        return reconcile_once(settings, max_jobs=max_jobs)

    return run


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


class Scheduler:
    """Runs ``action`` every ``interval_s`` seconds on a thread, logging what each run reports."""

    def __init__(
        self,
        action: Callable[[], Any],
        *,
        interval_s: float,
        name: str = "reconcile",
        log: IO[str] | None = None,
        quiet_when: Callable[[Any], bool] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.action = action
        self.interval_s = interval_s
        self.name = name
        self.log = log
        self.quiet_when = quiet_when
        self.runs = 0
        self.errors = 0
        self.last_result: Any = None
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def pause(self) -> None:
        """Stop triggering; returns once any run in progress has finished."""
        self._paused.set()
        with self._busy:
            pass

    def resume(self) -> None:
        self._paused.clear()

    def run_once(self) -> Any:
        """One run now (also what each tick does); errors are logged and counted, never raised."""
        with self._busy:
            started = time.monotonic()
            try:
                result = self.action()
            except Exception as exc:
                self.errors += 1
                log_event(self.log, "schedule_error", schedule=self.name, error=repr(exc))
                return None
            self.runs += 1
            self.last_result = result
            if self.quiet_when is None or not self.quiet_when(result):
                log_event(
                    self.log,
                    "schedule_run",
                    schedule=self.name,
                    ms=round((time.monotonic() - started) * 1000, 1),
                    result=_jsonable(result),
                )
            return result

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self._paused.is_set():
                self.run_once()
