"""``python -m runtime.worker``: what the worker container runs once per batch message (docs/architecture.md D2).

Exit 0 when every job of the batch is terminal, released or someone else's (also on SIGTERM, after releasing
and re-enqueuing), and for a malformed message (nothing to retry). Exit 1 only when a job may still be held
under our lease because DynamoDB could not be reached; the reconciler re-drives it when the lease expires.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from runtime.common import logs
from runtime.common.messages import BadMessage, decode
from runtime.common.settings import JOB_BATCH_ENV, Settings


def main() -> int:
    settings = Settings()
    logs.configure(settings.log_level)  # JSON lines on stderr: stdout carries the EMF metric documents only
    log = logging.getLogger("runtime.worker")
    stop = threading.Event()

    def on_term(signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %d: finishing the current image, releasing the rest", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    try:
        message = decode(os.environ.get(JOB_BATCH_ENV, ""))
    except BadMessage as exc:
        log.error("nothing to do: %s", exc)
        return 0

    from runtime.worker.batch import run_batch  # heavy imports (onnxruntime, cv2) after the cheap checks

    report = run_batch(settings, list(message.job_ids), stop=stop)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
