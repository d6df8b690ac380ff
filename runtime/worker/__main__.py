"""``python -m runtime.worker``: what the worker container runs (docs/architecture.md D8).

Started by the pipe with ``WAKE_MESSAGE`` (the wake message's body): adopt the slot it names (or a free one) and
drain the jobs queue until idle, old or stopped (``runtime.worker.loop``). A malformed wake message is logged and
treated as none: the task takes a free slot if there is one, else exits. With ``JOB_BATCH`` instead (a batch
message, for benchmarks and manual runs): process that one batch and exit.

Exit 0 when every job the worker took is terminal, handed back or someone else's (also on SIGTERM, and for a
malformed message: nothing to retry). Exit 1 only when a job may still be held under our lease because DynamoDB
could not be reached; the reconciler re-drives it when the lease expires.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from runtime.common import logs
from runtime.common.messages import BadMessage, WakeMessage, decode, decode_wake
from runtime.common.settings import JOB_BATCH_ENV, WAKE_MESSAGE_ENV, Settings


def main() -> int:
    settings = Settings()
    logs.configure(settings.log_level)  # JSON lines on stderr: stdout carries the EMF metric documents only
    log = logging.getLogger("runtime.worker")
    stop = threading.Event()

    def on_term(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d: finishing the current image, handing the rest back", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    if JOB_BATCH_ENV in os.environ:
        try:
            message = decode(os.environ[JOB_BATCH_ENV])
        except BadMessage as exc:
            log.error("nothing to do: %s", exc)
            return 0
        from runtime.worker.batch import run_batch  # heavy imports (onnxruntime, cv2) after the cheap checks

        report = run_batch(settings, list(message.job_ids), stop=stop)
        return 0 if report.ok else 1

    wake: WakeMessage | None = None
    body = os.environ.get(WAKE_MESSAGE_ENV)
    if body:
        try:
            wake = decode_wake(body)
        except BadMessage as exc:
            log.error("dropping malformed wake message (%s); taking a free slot if there is one", exc)

    from runtime.worker.loop import drain

    drained = drain(settings, wake=wake, stop=stop)
    return 0 if drained.ok else 1


if __name__ == "__main__":
    sys.exit(main())
