"""The cost calculator against cases worked by hand, and docs/cost.md against the calculator."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path

import pytest

from bench import cost
from bench.cost import (
    CostInputs,
    burst_per_message,
    burst_warm,
    fargate,
    inputs_from_results,
    measured_inputs,
    sagemaker,
    target_rows,
    warm,
)
from bench.figures import Figure
from bench.machine import machine_info
from bench.report import build_doc, write_results

# Round prices so every figure below can be checked with pencil and paper.
HAND = replace(
    CostInputs(),
    fargate_vcpu_hour=0.04,
    fargate_gb_hour=0.004,
    spot_vcpu_hour=0.01,
    spot_gb_hour=0.001,
    image_pull_s=40.0,
    process_start_s=0.0,
    images_per_s_per_vcpu=5.0,
    batch_max_jobs=100,
    batch_window_s=100.0,
    api_tasks=1,
    worker_vcpu=1.0,
    worker_memory_gb=2.0,
    s3_puts_per_image=3.0,
    s3_put_per_1k=0.005,
    s3_gets_per_image=0.0,
    ddb_write_units_per_image=0.0,
    ddb_read_units_per_image=0.0,
    sqs_requests_per_message=3.0,
    sqs_per_million=0.40,
    pipes_requests_per_message=0.0,
    sm_instance_hour=0.1,
    sm_instance_vcpu=2.0,
    sm_target_utilisation=0.5,
    sm_cold_start_s=600.0,
    sm_scale_in_idle_s=1200.0,
    image_mb=1.024,
    sm_data_gb=0.016,
    sm_s3_puts_per_image=2.0,
    sm_s3_gets_per_image=0.0,
)


def test_fargate_full_batches_by_hand() -> None:
    # 864,000/day = 10 images/s; window 100 s -> batch capped at 100; task 40 + 100/5 = 60 s.
    e = fargate(HAND, 864_000)
    assert e.arrival_per_s == pytest.approx(10.0)
    assert e.jobs_per_task == 100
    assert (e.task_s, e.billed_s) == (pytest.approx(60.0), pytest.approx(60.0))
    # 60 s x (1 x 0.04 + 2 x 0.004) $/h = $0.0008 per task; 10 tasks per 1,000 images.
    assert e.compute_per_1k == pytest.approx(0.008)
    # 3,000 PUTs at $0.005/1k = $0.015; 10 messages x 3 SQS requests at $0.40/M = $0.000012.
    assert e.requests_per_1k == pytest.approx(0.015012)
    assert e.total_per_1k == pytest.approx(0.023012)
    assert e.per_day == pytest.approx(0.023012 * 864)
    assert e.tasks_per_hour == pytest.approx(360.0)
    assert e.concurrent_tasks == pytest.approx(6.0)  # 0.1 tasks/s x 60 s
    # The 100th job arrives 9.9 s after the first (99 / 10 per s), then the task runs 60 s.
    assert e.worst_latency_s == pytest.approx(69.9)


def test_spot_changes_only_the_compute_price() -> None:
    e = fargate(HAND, 864_000, "FARGATE_SPOT")
    assert e.compute_per_1k == pytest.approx(60 / 3600 * (0.01 + 0.002) * 10)
    assert e.requests_per_1k == pytest.approx(fargate(HAND, 864_000).requests_per_1k)
    with pytest.raises(ValueError, match="FARGATE or FARGATE_SPOT"):
        fargate(HAND, 864_000, "EC2")


def test_low_rate_pays_the_one_minute_minimum_per_small_batch() -> None:
    # 8,640/day = 0.1 images/s; window 10 s -> expected batch 1 + 0.1 x 10 = 2; task 40.4 s, billed 60 s.
    e = fargate(replace(HAND, batch_window_s=10.0), 8_640)
    assert e.jobs_per_task == pytest.approx(2.0)
    assert e.task_s == pytest.approx(40.4)
    assert e.billed_s == 60.0
    assert e.compute_per_1k == pytest.approx(0.0008 * 500)
    assert e.tasks_per_hour == pytest.approx(180.0)


def test_batch_size_is_capped_by_what_a_message_holds() -> None:
    e = fargate(replace(HAND, batch_max_jobs=10_000, batch_window_s=1e6), 864_000)
    assert e.jobs_per_task == cost.max_job_ids_per_message() < 10_000


# The warm model's own bookkeeping requests set to zero, so its compute and per-image costs can be checked by hand.
WARM_HAND = replace(
    HAND,
    worker_idle_exit_s=60.0,
    worker_max_lifetime_s=14_400.0,
    max_workers=20,
    jobs_per_worker=400,
    warm_ddb_read_units_per_image=0.0,
    worker_polls_per_hour=0.0,
    worker_ddb_writes_per_hour=0.0,
    fleet_checks_per_hour=0.0,
    api_checks_per_hour=0.0,
    wake_requests_per_start=0.0,
    ddb_writes_per_start=0.0,
)


def test_a_lone_warm_worker_by_hand() -> None:
    # 8,640/day = 0.1 uploads/s; one worker does 5/s. An upload finds it gone when the last one came more than
    # 60 s before: e^-6 of them. It is alive the rest of the day, and replaced every 4 hours.
    w = warm(WARM_HAND, 8_640)
    cold = math.exp(-6)
    assert (w.workers, w.keeps_up) == (1, True)
    assert w.cold_share == pytest.approx(cold)
    alive = 86_400 * (1 - cold)
    starts = 8_640 * cold + alive / 14_400
    assert w.starts_per_day == pytest.approx(starts)
    # Each start bills the 40 s pull before it works (its idle tail is inside the alive time: the minute is met).
    assert w.task_hours_per_day == pytest.approx((alive + starts * 40) / 3600)
    assert w.compute_per_1k == pytest.approx(w.task_hours_per_day * 0.048 * 1000 / 8_640)
    # 3 PUTs at $0.005/1k, plus 3 SQS requests per message of 1 + 0.1 x 100 = 11 jobs.
    assert w.requests_per_1k == pytest.approx(0.015 + 1000 / 11 * 3 * 0.4e-6)
    assert w.cold_latency_s == pytest.approx(100 + 40 + 0.2)  # window + start + one image


def test_a_warm_fleet_that_keeps_up_by_hand() -> None:
    # 864,000/day = 10/s: two 5/s workers, busy all day, never cold, each replaced every 4 hours.
    w = warm(WARM_HAND, 864_000)
    assert (w.workers, w.cold_share, w.starts_per_day) == (2, 0.0, pytest.approx(12.0))
    assert w.task_hours_per_day == pytest.approx((2 * 86_400 + 12 * 40) / 3600)
    assert w.compute_per_1k == pytest.approx(w.task_hours_per_day * 0.048 * 1000 / 864_000)
    capped = warm(replace(WARM_HAND, max_workers=1), 864_000)
    assert (capped.workers, capped.keeps_up) == (1, False)


def test_warm_workers_at_eight_hours_a_day() -> None:
    # 8,640 in 8 h: 0.3 uploads/s, never 60 s apart in practice; one start a day plus the 4-hour replacements,
    # and an idle tail after the last upload.
    w = warm(replace(WARM_HAND, active_hours_per_day=8.0), 8_640)
    alive = 8 * 3600 * (1 - math.exp(-18)) + 60
    assert w.starts_per_day == pytest.approx(max(8_640 * math.exp(-18), 1.0) + alive / 14_400)
    assert w.task_hours_per_day == pytest.approx((alive + w.starts_per_day * 40) / 3600)


def test_bursts_by_hand() -> None:
    # 10,000 at once: 25 workers wanted, 20 allowed; each drains 500 at 5/s (100 s) after a 40 s start, then idles
    # 60 s: 200 s billed each. Before D8: 100 tasks of 100 jobs, 60 s each, started at 20 a second.
    b = burst_warm(WARM_HAND, 10_000)
    assert (b.starts, b.task_minutes, b.last_result_s) == (20, pytest.approx(20 * 200 / 60), pytest.approx(140.0))
    assert b.compute_per_1k == pytest.approx(20 * 200 / 3600 * 0.048 * 1000 / 10_000)
    old = burst_per_message(WARM_HAND, 10_000)
    assert (old.starts, old.task_minutes, old.last_result_s) == (100, pytest.approx(100.0), pytest.approx(65.0))
    small = burst_warm(WARM_HAND, 300)  # one worker; 40 + 60 + 60 s, above the billed minute
    assert (small.starts, small.task_minutes) == (1, pytest.approx(160 / 60))


def test_targets_compare_with_sagemaker_kept_warm() -> None:
    rows = target_rows(CostInputs())
    assert [(r[0], r[1], r[4]) for r in rows] == [
        ("24 h", 10_000, 0.5),
        ("24 h", 1_000_000, 1.0),
        ("8 h", 10_000, 0.5),
        ("8 h", 1_000_000, 1.0),
    ]
    for _, _, ours, theirs, target, met in rows:
        assert met == (ours <= target * theirs)
    assert rows[0][2] == warm(CostInputs(), 10_000).total_per_1k


def test_sagemaker_warm_and_scaled_to_zero_by_hand() -> None:
    # 10 images/s; an instance does 2 x 5 = 10/s, at 50 % -> 2 instances, 48 h/day at $0.1 = $4.80/day.
    warm = sagemaker(HAND, 864_000, scale_to_zero=False)
    assert (warm.instances, warm.instance_hours_per_day) == (2, pytest.approx(48.0))
    assert warm.compute_per_1k == pytest.approx(4.8 / 864)
    assert warm.data_per_1k == pytest.approx(0.016)  # 1,000 x 1.024 MB = 1 GB
    assert warm.requests_per_1k == pytest.approx(0.01)  # 2,000 PUTs
    # Steady all day: never idle, so scaling to zero changes nothing.
    assert sagemaker(HAND, 864_000, scale_to_zero=True).instance_hours_per_day == pytest.approx(48.0)

    office = replace(HAND, active_hours_per_day=8.0)  # 288,000 in 8 h = 10/s
    assert sagemaker(office, 288_000, scale_to_zero=False).instance_hours_per_day == pytest.approx(2 * 8 + 16)
    # One cold start (10 min) and one idle tail (20 min) a day per instance: 2 x 8.5 h.
    zero = sagemaker(office, 288_000, scale_to_zero=True)
    assert zero.instance_hours_per_day == pytest.approx(17.0)
    assert zero.worst_latency_s == pytest.approx(600.1)

    # 10 images a day: each one finds the endpoint empty and pays a whole cycle (600 + 1200 + 0.1 s).
    sparse = sagemaker(HAND, 10, scale_to_zero=True)
    assert sparse.instance_hours_per_day == pytest.approx(10 * 1800.1 / 3600)


def test_measured_figures_replace_the_defaults(tmp_path: Path) -> None:
    figures = [
        Figure("api_upload", "uploads/s at concurrency 8", 50.0, "uploads/s"),
        Figure("worker_throughput", "bare loop images/s per core", 9.0, "images/s"),
        Figure("worker_throughput", "worker images/s per core", 6.5, "images/s", "bare loop", 9.0),
        Figure("worker_throughput", "process start to first result", 1500.0, "ms", higher_is_better=False),
        Figure("e2e_local", "warm single upload to result p50", 900.0, "ms", higher_is_better=False),
        Figure("e2e_local", "worker launches", 2.0, "launches", higher_is_better=False),
    ]
    assert measured_inputs(figures) == {
        "images_per_s_per_vcpu": 6.5,
        "process_start_s": 1.5,
        "warm_latency_s": 0.9,
        "burst_launches": 2.0,
    }
    run = {
        "started_utc": "2026-01-01T00:00:00+00:00",
        "finished_utc": "2026-01-01T00:05:00+00:00",
        "duration_s": 300.0,
        "quick": False,
        "repeats": 3,
        "budget_s": 540.0,
        "command": "python -m bench",
    }
    doc = build_doc(machine=machine_info(), run=run, modules=[], figures=figures)
    json_path, _ = write_results(doc, tmp_path / "latest")
    inputs = inputs_from_results(json_path)
    assert (inputs.images_per_s_per_vcpu, inputs.process_start_s) == (6.5, 1.5)
    assert "2026-01-01T00:00:00" in inputs.measured_from
    assert inputs_from_results(tmp_path / "absent.json") == CostInputs()


def test_worker_throughput_comes_from_cpu_time_where_measured() -> None:
    """A loaded benchmark machine slows the wall clock, not the worker's own CPU seconds: the CPU-time rate of the
    bare loop, discounted by the full path's efficiency in the same run, is what a vCPU does."""
    figures = [
        Figure("worker_throughput", "full worker path, images/s per core", 3.0, "images/s/core", "bare loop", 4.0),
        Figure("worker_throughput", "bare loop, images/s per core", 4.0, "images/s/core"),
        Figure("worker_throughput", "bare loop, images per CPU-second", 8.0, "images/CPU-s"),
        Figure("worker_throughput", "bare loop at 12 MP, images per CPU-second", 1.0, "images/CPU-s"),
    ]
    assert measured_inputs(figures) == {"images_per_s_per_vcpu": 6.0}  # 8 x 3/4


def test_every_input_is_explained() -> None:
    undocumented = [f.name for f in fields(CostInputs) if not f.metadata.get("doc")]
    assert not undocumented


def test_docs_cost_md_is_generated_from_the_calculator() -> None:
    expected = cost.render(inputs_from_results(cost.DEFAULT_RESULTS))
    actual = cost.DEFAULT_DOC.read_text() if cost.DEFAULT_DOC.exists() else ""
    assert actual == expected, "docs/cost.md is stale: run `.venv/bin/python -m bench.cost --write docs/cost.md`"
