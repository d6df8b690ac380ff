"""One log format for every process: JSON lines with the same keys, chosen here once.

The API, the worker, the results task and the local supervisor all log through ``configure``; CloudWatch Logs
Insights (and ``jq`` locally) can then query them together: ``fields time, level, logger, message, job_id``.

Every line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and ``message``; then the ids
it is about (``request_id``, ``job_id``, ``batch_id``) when known, from ``extra={...}`` or from ``bind``; then
any other ``extra`` fields; ``exc`` holds a traceback. Logs go to stderr: the worker's stdout carries only its
EMF metric documents (runtime/common/metrics.py), and the results task prints its data and summary there.

Why not Powertools for AWS Lambda's ``Logger``: it would add a dependency to every image for what fits in this
module, its key names differ from the ones we query on, and the containers are mostly not Lambda functions;
``runtime/common/metrics.py`` already writes EMF without its ``Metrics`` (docs/deploy.md has the comparison).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

KEYS = ("time", "level", "logger", "message")
ID_KEYS = ("request_id", "job_id", "batch_id")
# color_message: uvicorn's terminal-coloured copy of the message.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}
_bound: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("segscale_log_ids", default=None)


class JsonLines(logging.Formatter):
    """A record as one JSON object: the common keys first, then ids, then the record's own extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}
        ids = {**(_bound.get() or {}), **{k: extras.pop(k) for k in ID_KEYS if k in extras}}
        doc.update({k: ids[k] for k in ID_KEYS if ids.get(k) is not None})
        doc.update({k: v for k, v in extras.items() if k not in doc})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


# Servers that install their own handlers: their lines go through ours instead (uvicorn's startup and errors).
ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure(level: str = "INFO", *, stream: IO[str] | None = None) -> None:
    """Make the root logger write JSON lines to ``stream`` (stderr); calling it again only changes the level."""
    root = logging.getLogger()
    if not any(getattr(h, "_segscale_json", False) for h in root.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonLines())
        handler._segscale_json = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for name in ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        for other in list(adopted.handlers):
            adopted.removeHandler(other)
        adopted.propagate = True
    root.setLevel(level.upper())


@contextlib.contextmanager
def bind(**ids: Any) -> Iterator[None]:
    """Every line logged inside (in this thread or task) carries these ids: ``with bind(job_id=...):``."""
    token = _bound.set({**(_bound.get() or {}), **ids})
    try:
        yield
    finally:
        _bound.reset(token)


def line(logger: str, message: str, *, level: int = logging.INFO, **fields: Any) -> str:
    """One line in this format without a handler: for code that writes events to its own stream (the local
    supervisor's event log, which tests parse)."""
    record = logging.LogRecord(logger, level, __file__, 0, message, None, None)
    record.__dict__.update(fields)
    return _FORMATTER.format(record)


_FORMATTER = JsonLines()
