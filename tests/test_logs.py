"""One log format: every process (API, worker, results task, local supervisor) writes the same JSON keys."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from local.procs import log_event
from runtime.common import logs

ROOT = Path(__file__).resolve().parents[1]


def _record(**extra: object) -> dict[str, object]:
    record = logging.LogRecord("segscale.test", logging.WARNING, __file__, 1, "job %s: %s", ("j1", "late"), None)
    record.__dict__.update(extra)
    return json.loads(logs.JsonLines().format(record))


def test_a_line_has_the_common_keys_then_ids_then_extras() -> None:
    doc = _record(job_id="j1", batch_id="b1", event="x")
    assert list(doc)[:4] == list(logs.KEYS)
    assert doc["level"] == "WARNING" and doc["logger"] == "segscale.test" and doc["message"] == "job j1: late"
    assert doc["time"].endswith("+00:00") and "T" in doc["time"]
    assert (doc["job_id"], doc["batch_id"], doc["event"]) == ("j1", "b1", "x")


def test_bound_ids_reach_every_line_inside_and_extra_wins() -> None:
    with logs.bind(job_id="bound", request_id="r1"):
        inside = _record()
        explicit = _record(job_id="explicit")
    after = _record()
    assert inside["job_id"] == "bound" and inside["request_id"] == "r1"
    assert explicit["job_id"] == "explicit"
    assert "job_id" not in after and "request_id" not in after


def test_exceptions_are_one_line_with_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = logs.JsonLines().format(record)
    assert "\n" not in line and "ValueError: boom" in json.loads(line)["exc"]


def test_the_local_supervisor_writes_the_same_format() -> None:
    out = io.StringIO()
    log_event(out, "worker_launched", pid=7)
    doc = json.loads(out.getvalue())
    assert list(doc)[:4] == list(logs.KEYS)
    assert doc["message"] == doc["event"] == "worker_launched" and doc["pid"] == 7


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "SEGSCALE_QUEUE_URL": "", **env}
    return subprocess.run(argv, env=full, capture_output=True, text=True, timeout=120, cwd=ROOT)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_worker_results_and_api_log_json_lines_on_stderr() -> None:
    worker = _run([sys.executable, "-m", "runtime.worker"], JOB_BATCH="not json")
    assert worker.returncode == 0 and worker.stdout == "", "the worker's stdout is for EMF metrics only"
    results = _run([sys.executable, "-m", "runtime.results", "reconcile"])
    assert results.returncode == 1
    api = _run(
        [
            sys.executable,
            "-c",
            "import logging; from runtime.api.main import create_app; "
            "logging.getLogger('uvicorn.error').warning('adopted')",
        ]
    )
    assert api.returncode == 0, api.stderr
    for proc, logger in ((worker, "runtime.worker"), (results, "runtime.results"), (api, "uvicorn.error")):
        lines = _json_lines(proc.stderr)
        assert lines, proc.stderr
        assert all(list(line)[:4] == list(logs.KEYS) for line in lines)
        assert logger in {line["logger"] for line in lines}, lines
