"""The reconciler's JobsQueuedTooLong metric: QUEUED jobs older than stuck_after_s, counted before the pass acts."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import pytest

from runtime.common import metrics
from runtime.common.jobs import JobStatus, JobStore
from runtime.common.settings import Settings
from runtime.results.reconcile import reconcile_once
from runtime.results.stuck import emit_stuck_queued
from tests.results.conftest import Clock, new_job

S = 1000


def emf_values(text: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]
    return [r for r in records if metrics.JOBS_QUEUED_TOO_LONG in r]


def test_reconcile_emits_how_many_jobs_it_found_queued_too_long(
    rsettings: Settings, store: JobStore, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = uuid.uuid4().hex
    t0 = clock.now
    never_sent = new_job(store, batch)
    sent_long_ago = new_job(store, batch)
    store.mark_enqueued(sent_long_ago)
    running = new_job(store, batch)
    store.claim(running, "w1")
    new_job(store, batch, status=JobStatus.AWAITING_UPLOAD)
    now = t0 + 120 * S  # stuck_after_s is 60
    clock.now = now - 10 * S
    new_job(store, batch)  # queued 10 s ago: not stuck

    report = reconcile_once(rsettings, now_ms=now, store=store)

    (record,) = emf_values(capsys.readouterr().err)  # stderr: stdout is the command's JSON report
    assert record[metrics.JOBS_QUEUED_TOO_LONG] == 2  # never_sent, sent_long_ago
    assert record[metrics.SERVICE_DIMENSION] == metrics.RESULTS_SERVICE
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == rsettings.metrics_namespace
    assert directive["Dimensions"] == [[metrics.SERVICE_DIMENSION]]
    assert sorted(report.requeued_ids) == sorted([never_sent, sent_long_ago])  # the pass still did its work


def test_count_is_capped_and_a_failed_count_does_not_raise(rsettings: Settings, store: JobStore) -> None:
    batch = uuid.uuid4().hex
    for _ in range(3):
        new_job(store, batch)
    out = io.StringIO()
    later = store.clock() + 3600 * S
    assert emit_stuck_queued(rsettings, store, later, stream=out, cap=2) == 2
    assert emf_values(out.getvalue())[0][metrics.JOBS_QUEUED_TOO_LONG] == 2
    missing = JobStore(store.client, "no-such-table")
    quiet = io.StringIO()
    assert emit_stuck_queued(rsettings, missing, later, stream=quiet) is None
    assert quiet.getvalue() == ""
