"""The cost calculator against cases worked by hand, and docs/cost.md against the calculator."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import pytest

from bench import cost
from bench.cost import CostInputs, fargate, inputs_from_results, measured_inputs, sagemaker
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
    ]
    assert measured_inputs(figures) == {"images_per_s_per_vcpu": 6.5, "process_start_s": 1.5}
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


def test_every_input_is_explained() -> None:
    undocumented = [f.name for f in fields(CostInputs) if not f.metadata.get("doc")]
    assert not undocumented


def test_docs_cost_md_is_generated_from_the_calculator() -> None:
    expected = cost.render(inputs_from_results(cost.DEFAULT_RESULTS))
    actual = cost.DEFAULT_DOC.read_text() if cost.DEFAULT_DOC.exists() else ""
    assert actual == expected, "docs/cost.md is stale: run `.venv/bin/python -m bench.cost --write docs/cost.md`"
