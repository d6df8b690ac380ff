"""What segscale costs at 10,000 and 1,000,000 images a day, against SageMaker Async Inference, and where it stops.

``python -m bench.cost`` prints the model; ``--write docs/cost.md`` regenerates that page (a test keeps it in step
with this file and with bench/results/latest.json). Every input is in ``CostInputs`` with the reason for its value;
the measured worker speed, start time and warm latency come from the latest benchmark run when there is one.

The model is deliberately small. Warm workers (D8, ``warm``): uploads arrive at random (Poisson) within the active
hours; the fleet is as many workers as keep up with the arrivals; a lone worker stays alive while uploads arrive
less than ``worker_idle_exit_s`` apart, and each upload that finds none alive pays a task start; every task is
billed from image pull to exit (idle tail included) with Fargate's one-minute minimum. The model it replaced
(``fargate``: one Fargate task per micro-batched message) stays as a comparison row.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

from bench.figures import Figure
from bench.report import fmt, load_results
from runtime.common.messages import max_job_ids_per_message

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"
DEFAULT_DOC = REPO_ROOT / "docs" / "cost.md"
VOLUMES = (10_000, 1_000_000)
# AWS limits the bottleneck table compares against (us-east-1 defaults; most are adjustable, check Service Quotas).
FARGATE_LAUNCH_RATE_PER_S = 20.0  # Fargate task launch rate and the ECS RunTask API sustained rate
DDB_PARTITION_WCU_PER_S = 1000.0  # per partition of the table or of a GSI, on-demand or not
DDB_NEW_ON_DEMAND_WRU_PER_S = 4000.0  # what a new on-demand table absorbs at once; it then doubles with past peaks
S3_PUT_PER_PREFIX_PER_S = 3500.0
S3_GET_PER_PREFIX_PER_S = 5500.0
T = TypeVar("T")


def _doc(default: T, doc: str) -> T:
    """A dataclass field that carries its meaning, so the inputs table in docs/cost.md explains every value."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class CostInputs:
    region: str = _doc("us-east-1", "prices are for this region")
    price_date: str = _doc(
        "2025-06",
        "list prices as the author knew them then; CHECK them against the AWS pricing pages before relying on them",
    )
    fargate_vcpu_hour: float = _doc(0.04048, "Fargate Linux/x86, $ per vCPU-hour")
    fargate_gb_hour: float = _doc(0.004445, "Fargate Linux/x86, $ per GB-hour")
    spot_vcpu_hour: float = _doc(
        0.01334053,
        "Fargate Spot, $ per vCPU-hour: a published example; Spot prices move (AWS says up to 70 % below on-demand)",
    )
    spot_gb_hour: float = _doc(0.00146489, "Fargate Spot, $ per GB-hour")
    fargate_min_billed_s: float = _doc(60.0, "Fargate bills per second with a one-minute minimum per task")
    image_pull_s: float = _doc(
        40.0, "billed seconds from task start to container start (ENI, pull of a ~350 MB image); assumed"
    )
    process_start_s: float = _doc(
        2.0, "worker process start to first result (imports, model load); measured when a results file has it"
    )
    images_per_s_per_vcpu: float = _doc(
        4.0,
        "worker throughput per vCPU on real-size photos; measured when a results file has it: images per CPU-second"
        " of the bare loop times the full worker path's efficiency (full / bare, same run), so other load on the"
        " benchmark machine does not count as the worker's cost",
    )
    measured_from: str = _doc("defaults (no benchmark results)", "where the two measured inputs came from")
    warm_latency_s: float = _doc(
        1.5,
        "upload to result when a worker is warm (micro-batch window + processing); measured when a results file has it",
    )
    burst_launches: float = _doc(
        0.0, "worker tasks a 500-upload burst started locally with max_workers 2 (measured; 0: not measured)"
    )
    batch_max_jobs: int = _doc(100, "SEGSCALE_BATCH_MAX_JOBS: jobs per message (before D8: per task)")
    batch_window_s: float = _doc(1.0, "SEGSCALE_BATCH_WINDOW_S: how long the API holds a batch open")
    api_tasks: int = _doc(2, "API tasks; each micro-batches its own uploads")
    worker_vcpu: float = _doc(1.0, "worker task vCPU (segscale.worker_cpu 1024)")
    worker_memory_gb: float = _doc(2.0, "worker task memory, GB (segscale.worker_memory_mib 2048)")
    max_workers: int = _doc(20, "segscale.max_workers: worker tasks alive at once, at most")
    jobs_per_worker: int = _doc(400, "segscale.jobs_per_worker: one more worker per this many waiting jobs")
    worker_idle_exit_s: float = _doc(60.0, "segscale.worker_idle_exit_s: a worker leaves after this long idle")
    worker_max_lifetime_s: float = _doc(
        14400.0, "segscale.worker_max_lifetime_s: a worker hands its slot to a new task after this long"
    )
    active_hours_per_day: float = _doc(24.0, "uploads arrive steadily within this many hours a day")
    s3_puts_per_image: float = _doc(3.0, "upload, mask PNG, overlay JPEG")
    s3_gets_per_image: float = _doc(1.0, "the worker reads the upload")
    ddb_write_units_per_image: float = _doc(
        14.0,
        "4 item writes (create, enqueued, claim, complete) + 4 by_batch GSI writes + 6 by_status GSI writes "
        "(a status change deletes and puts), at 1 KB each; more if the result item is larger",
    )
    ddb_hot_partition_writes_per_image: float = _doc(
        3.0, "writes per image that land on the single by_status GSI partition 'QUEUED' (put, update, delete)"
    )
    ddb_read_units_per_image: float = _doc(2.0, "a status poll and an export read, strongly consistent")
    sqs_requests_per_message: float = _doc(3.0, "send, receive, delete")
    pipes_requests_per_message: float = _doc(1.0, "before D8: one pipe event per message (under 64 KB)")
    warm_ddb_read_units_per_image: float = _doc(
        1.0, "warm workers read every job of a message once before claiming (strongly consistent)"
    )
    worker_polls_per_hour: float = _doc(180.0, "SQS long polls of a worker while idle (20 s each)")
    worker_ddb_writes_per_hour: float = _doc(
        420.0, "a worker's slot renewals (every 20 s) and scale-turn attempts (every 15 s), 1 KB each"
    )
    fleet_checks_per_hour: float = _doc(
        240.0, "scale decisions while any worker lives (one per 15 s): a queue-depth call and a read of every slot"
    )
    api_checks_per_hour: float = _doc(
        3600.0, "at most one live-worker check (a read of every slot) per second per API task, after a flush"
    )
    wake_requests_per_start: float = _doc(2.0, "a wake message and its pipe event per worker task started")
    ddb_writes_per_start: float = _doc(4.0, "slot writes per worker task: reserve, adopt, leave, and its last renewal")
    s3_put_per_1k: float = _doc(0.005, "S3 Standard PUT/COPY/POST/LIST, $ per 1,000")
    s3_get_per_1k: float = _doc(0.0004, "S3 Standard GET, $ per 1,000")
    sqs_per_million: float = _doc(0.40, "SQS standard, $ per million requests (free tier ignored)")
    ddb_write_per_million: float = _doc(0.625, "DynamoDB on-demand, $ per million write request units")
    ddb_read_per_million: float = _doc(0.125, "DynamoDB on-demand, $ per million read request units")
    pipes_per_million: float = _doc(0.40, "EventBridge Pipes, $ per million requests")
    image_mb: float = _doc(2.0, "average upload size, MB (SageMaker data processing, S3 storage)")
    s3_gb_month: float = _doc(0.023, "S3 Standard storage, $ per GB-month")
    retention_days: float = _doc(30.0, "SEGSCALE_RETENTION_DAYS: how long uploads are kept")
    sm_instance: str = _doc("ml.m5.large", "SageMaker Async Inference instance (2 vCPU, 8 GiB)")
    sm_instance_hour: float = _doc(0.115, "ml.m5.large hosting, $ per hour")
    sm_instance_vcpu: float = _doc(2.0, "vCPUs per instance; assumed as fast per vCPU as our worker")
    sm_target_utilisation: float = _doc(0.7, "autoscaling target: instances run at most this busy")
    sm_cold_start_s: float = _doc(
        480.0, "scale from zero to first result (instance launch, container, model); assumed, and billed"
    )
    sm_scale_in_idle_s: float = _doc(
        900.0, "an idle endpoint keeps its instance this long before the backlog alarm scales it to zero"
    )
    sm_data_gb: float = _doc(0.016, "SageMaker data processed in, $ per GB")
    sm_s3_puts_per_image: float = _doc(2.0, "input object and output object")
    sm_s3_gets_per_image: float = _doc(1.0, "SageMaker reads the input")


class _PerDay:
    """What an option costs a day, from its cost per 1,000 images."""

    images_per_day: float
    total_per_1k: float

    @property
    def per_day(self) -> float:
        return self.total_per_1k * self.images_per_day / 1000


class _ComputeAndRequests(_PerDay):
    compute_per_1k: float
    requests_per_1k: float

    @property
    def total_per_1k(self) -> float:  # type: ignore[override]
        return self.compute_per_1k + self.requests_per_1k


@dataclass(frozen=True)
class FargateEstimate(_ComputeAndRequests):
    capacity: str
    images_per_day: float
    arrival_per_s: float
    jobs_per_task: float
    tasks_per_hour: float
    task_s: float
    billed_s: float
    concurrent_tasks: float
    compute_per_1k: float
    requests_per_1k: float
    worst_latency_s: float

    @property
    def runtask_per_s(self) -> float:
        return self.tasks_per_hour / 3600


@dataclass(frozen=True)
class SageMakerEstimate(_PerDay):
    mode: str
    images_per_day: float
    instances: int
    instance_hours_per_day: float
    compute_per_1k: float
    data_per_1k: float
    requests_per_1k: float
    worst_latency_s: float

    @property
    def total_per_1k(self) -> float:  # type: ignore[override]
        return self.compute_per_1k + self.data_per_1k + self.requests_per_1k


def arrival_per_s(inputs: CostInputs, images_per_day: float) -> float:
    return images_per_day / (inputs.active_hours_per_day * 3600)


def jobs_per_task(inputs: CostInputs, rate: float) -> float:
    """Expected batch size: the first upload opens a window; the others arriving in it join, up to the cap."""
    cap = min(inputs.batch_max_jobs, max_job_ids_per_message())
    return min(float(cap), 1.0 + rate / inputs.api_tasks * inputs.batch_window_s)


def request_cost_per_1k(inputs: CostInputs, jobs: float) -> float:
    per_image = (
        inputs.s3_puts_per_image * inputs.s3_put_per_1k / 1000
        + inputs.s3_gets_per_image * inputs.s3_get_per_1k / 1000
        + inputs.ddb_write_units_per_image * inputs.ddb_write_per_million / 1e6
        + inputs.ddb_read_units_per_image * inputs.ddb_read_per_million / 1e6
    )
    per_message = (
        inputs.sqs_requests_per_message * inputs.sqs_per_million / 1e6
        + inputs.pipes_requests_per_message * inputs.pipes_per_million / 1e6
    )
    return 1000 * per_image + 1000 / jobs * per_message


def fargate(inputs: CostInputs, images_per_day: float, capacity: str = "FARGATE") -> FargateEstimate:
    if capacity not in ("FARGATE", "FARGATE_SPOT"):
        raise ValueError(f"capacity must be FARGATE or FARGATE_SPOT, not {capacity!r}")
    spot = capacity == "FARGATE_SPOT"
    rate = arrival_per_s(inputs, images_per_day)
    jobs = jobs_per_task(inputs, rate)
    processing_s = jobs / (inputs.images_per_s_per_vcpu * inputs.worker_vcpu)
    task_s = inputs.image_pull_s + inputs.process_start_s + processing_s
    billed_s = max(inputs.fargate_min_billed_s, task_s)
    hourly = inputs.worker_vcpu * (inputs.spot_vcpu_hour if spot else inputs.fargate_vcpu_hour) + (
        inputs.worker_memory_gb * (inputs.spot_gb_hour if spot else inputs.fargate_gb_hour)
    )
    fill_s = min(inputs.batch_window_s, (jobs - 1) / (rate / inputs.api_tasks)) if jobs > 1 else 0.0
    return FargateEstimate(
        capacity=capacity,
        images_per_day=images_per_day,
        arrival_per_s=rate,
        jobs_per_task=jobs,
        tasks_per_hour=rate * 3600 / jobs,
        task_s=task_s,
        billed_s=billed_s,
        concurrent_tasks=rate / jobs * task_s,
        compute_per_1k=billed_s / 3600 * hourly * 1000 / jobs,
        requests_per_1k=request_cost_per_1k(inputs, jobs),
        worst_latency_s=fill_s + task_s,
    )


def hourly_price(inputs: CostInputs, capacity: str) -> float:
    """$ per hour of one worker task."""
    if capacity not in ("FARGATE", "FARGATE_SPOT"):
        raise ValueError(f"capacity must be FARGATE or FARGATE_SPOT, not {capacity!r}")
    spot = capacity == "FARGATE_SPOT"
    return inputs.worker_vcpu * (inputs.spot_vcpu_hour if spot else inputs.fargate_vcpu_hour) + (
        inputs.worker_memory_gb * (inputs.spot_gb_hour if spot else inputs.fargate_gb_hour)
    )


def worker_rate(inputs: CostInputs) -> float:
    """Images/s one worker task processes."""
    return inputs.images_per_s_per_vcpu * inputs.worker_vcpu


@dataclass(frozen=True)
class WarmEstimate(_ComputeAndRequests):
    capacity: str
    images_per_day: float
    arrival_per_s: float
    workers: int  # worker tasks alive while uploads arrive
    keeps_up: bool  # False: max_workers cannot keep up with the arrivals (the backlog grows)
    cold_share: float  # uploads that find no worker alive and wait for a task start
    starts_per_day: float
    task_hours_per_day: float  # billed, idle tails and start overhead included
    compute_per_1k: float
    requests_per_1k: float
    warm_latency_s: float
    cold_latency_s: float


def warm(inputs: CostInputs, images_per_day: float, capacity: str = "FARGATE") -> WarmEstimate:
    """Warm workers (D8) under steady random (Poisson) arrivals within the active hours."""
    hourly = hourly_price(inputs, capacity)
    rate = arrival_per_s(inputs, images_per_day)
    active_s = inputs.active_hours_per_day * 3600
    mu = worker_rate(inputs)
    needed = max(1, math.ceil(rate / mu))
    workers = min(needed, inputs.max_workers)
    idle = inputs.worker_idle_exit_s
    # A lone worker is alive whenever an upload came in the last ``idle`` seconds; an upload finds none alive
    # with probability exp(-rate * idle) and waits for a task start. A fleet of two or more is never idle that long.
    cold_share = math.exp(-rate * idle) if workers == 1 else 0.0
    first_alive_s = active_s * (1 - cold_share) if workers == 1 else active_s
    alive_s = first_alive_s + (workers - 1) * active_s
    starts = images_per_day * cold_share
    if inputs.active_hours_per_day < 24:  # the fleet starts with the day's first uploads and idles out after
        starts = max(starts, float(workers))
        alive_s += workers * idle
    starts += alive_s / inputs.worker_max_lifetime_s  # replaced at the end of their lifetime
    start_s = inputs.image_pull_s + inputs.process_start_s
    # Each task is billed at least a minute; a task lives its start plus at least one idle tail.
    billed_per_start = max(inputs.fargate_min_billed_s - idle, start_s)
    billed_s = alive_s + starts * billed_per_start
    messages_per_day = images_per_day / jobs_per_task(inputs, rate)
    requests_per_day = (
        images_per_day
        * (
            inputs.s3_puts_per_image * inputs.s3_put_per_1k / 1000
            + inputs.s3_gets_per_image * inputs.s3_get_per_1k / 1000
            + inputs.ddb_write_units_per_image * inputs.ddb_write_per_million / 1e6
            + (inputs.ddb_read_units_per_image + inputs.warm_ddb_read_units_per_image)
            * inputs.ddb_read_per_million
            / 1e6
        )
        + messages_per_day * inputs.sqs_requests_per_message * inputs.sqs_per_million / 1e6
        + alive_s / 3600 * inputs.worker_polls_per_hour * inputs.sqs_per_million / 1e6
        + alive_s / 3600 * inputs.worker_ddb_writes_per_hour * inputs.ddb_write_per_million / 1e6
        + first_alive_s
        / 3600
        * inputs.fleet_checks_per_hour
        * (inputs.sqs_per_million + inputs.max_workers * inputs.ddb_read_per_million)
        / 1e6
        + min(messages_per_day, active_s / 3600 * inputs.api_checks_per_hour * inputs.api_tasks)
        * inputs.max_workers
        * inputs.ddb_read_per_million
        / 1e6
        + starts
        * (
            inputs.wake_requests_per_start * inputs.sqs_per_million
            + inputs.ddb_writes_per_start * inputs.ddb_write_per_million
        )
        / 1e6
    )
    return WarmEstimate(
        capacity=capacity,
        images_per_day=images_per_day,
        arrival_per_s=rate,
        workers=workers,
        keeps_up=workers * mu >= rate,
        cold_share=cold_share,
        starts_per_day=starts,
        task_hours_per_day=billed_s / 3600,
        compute_per_1k=billed_s / 3600 * hourly * 1000 / images_per_day,
        requests_per_1k=requests_per_day * 1000 / images_per_day,
        warm_latency_s=inputs.warm_latency_s,
        cold_latency_s=inputs.batch_window_s + start_s + 1 / mu,
    )


@dataclass(frozen=True)
class BurstEstimate:
    images: int
    starts: int
    task_minutes: float  # billed
    compute_per_1k: float
    last_result_s: float


def burst_warm(inputs: CostInputs, images: int, capacity: str = "FARGATE") -> BurstEstimate:
    """``images`` uploaded at once, nothing running: the fleet grows to one worker per ``jobs_per_worker``
    waiting jobs (at most ``max_workers``), drains the queue, and idles out."""
    workers = min(inputs.max_workers, max(1, math.ceil(images / inputs.jobs_per_worker)))
    start_s = inputs.image_pull_s + inputs.process_start_s
    drain_s = images / (workers * worker_rate(inputs))
    per_task_s = max(inputs.fargate_min_billed_s, start_s + drain_s + inputs.worker_idle_exit_s)
    billed_s = workers * per_task_s
    return BurstEstimate(
        images=images,
        starts=workers,
        task_minutes=billed_s / 60,
        compute_per_1k=billed_s / 3600 * hourly_price(inputs, capacity) * 1000 / images,
        last_result_s=start_s + drain_s,
    )


def burst_per_message(inputs: CostInputs, images: int, capacity: str = "FARGATE") -> BurstEstimate:
    """Before D8: full messages of ``batch_max_jobs``, one task each, started at the launch rate."""
    size = min(inputs.batch_max_jobs, max_job_ids_per_message())
    tasks = math.ceil(images / size)
    task_s = inputs.image_pull_s + inputs.process_start_s + size / worker_rate(inputs)
    billed_s = tasks * max(inputs.fargate_min_billed_s, task_s)
    return BurstEstimate(
        images=images,
        starts=tasks,
        task_minutes=billed_s / 60,
        compute_per_1k=billed_s / 3600 * hourly_price(inputs, capacity) * 1000 / images,
        last_result_s=tasks / FARGATE_LAUNCH_RATE_PER_S + task_s,
    )


def sagemaker(inputs: CostInputs, images_per_day: float, *, scale_to_zero: bool) -> SageMakerEstimate:
    rate = arrival_per_s(inputs, images_per_day)
    per_instance = inputs.images_per_s_per_vcpu * inputs.sm_instance_vcpu
    instances = max(1, math.ceil(rate / (per_instance * inputs.sm_target_utilisation)))
    active_h = inputs.active_hours_per_day
    warm_hours = instances * active_h + 1 * (24 - active_h)  # kept warm: at least one instance all day
    cycle_s = inputs.sm_cold_start_s + inputs.sm_scale_in_idle_s
    if not scale_to_zero:
        hours, latency = warm_hours, 1 / per_instance
    elif 1 / rate > inputs.sm_scale_in_idle_s:  # the endpoint empties between images: a cold start each
        hours = min(warm_hours, images_per_day * (cycle_s + 1 / per_instance) / 3600)
        latency = inputs.sm_cold_start_s + 1 / per_instance
    elif active_h >= 24:  # never idle long enough to scale in
        hours, latency = warm_hours, 1 / per_instance
    else:  # one cold start and one idle tail a day
        hours = instances * (active_h + cycle_s / 3600)
        latency = inputs.sm_cold_start_s + 1 / per_instance
    requests = 1000 * (
        inputs.sm_s3_puts_per_image * inputs.s3_put_per_1k / 1000
        + inputs.sm_s3_gets_per_image * inputs.s3_get_per_1k / 1000
    )
    return SageMakerEstimate(
        mode="scaled to zero" if scale_to_zero else "kept warm",
        images_per_day=images_per_day,
        instances=instances,
        instance_hours_per_day=hours,
        compute_per_1k=hours * inputs.sm_instance_hour / images_per_day * 1000,
        data_per_1k=1000 * inputs.image_mb / 1024 * inputs.sm_data_gb,
        requests_per_1k=requests,
        worst_latency_s=latency,
    )


def storage_per_1k(inputs: CostInputs) -> float:
    """Keeping 1,000 uploads for the retention period: the same for every option, so outside the comparison."""
    return 1000 * inputs.image_mb / 1024 * inputs.s3_gb_month * inputs.retention_days / 30


# --- measured inputs -------------------------------------------------------------------------------------------


def _seconds(fig: Figure) -> float:
    unit = fig.unit.strip().lower()
    if unit in ("ms", "milliseconds"):
        return fig.value / 1000
    if unit in ("s", "sec", "seconds"):
        return fig.value
    raise ValueError(f"{fig.benchmark}/{fig.name}: unit {fig.unit!r} is not a duration")


def measured_inputs(figures: list[Figure]) -> dict[str, float]:
    """The worker's images/s per vCPU, its start-to-first-result, the warm upload-to-result latency and the
    workers a burst started, from a run's figures, where present.

    Images/s per vCPU comes from CPU time where the run has it: the bare loop's images per CPU-second (the
    process's own CPU seconds, which other load on the machine does not inflate) times the full worker path's
    efficiency against the bare loop in the same run (storage calls, threads). Without a CPU-time figure, the
    full path's wall-clock images/s per core is taken as it is."""
    out: dict[str, float] = {}
    cpu_rate: float | None = None
    efficiency: float | None = None
    for fig in figures:
        name, unit = fig.name.lower(), fig.unit.lower()
        if fig.benchmark == "e2e_local" and name == "warm single upload to result p50":
            out["warm_latency_s"] = _seconds(fig)
        elif fig.benchmark == "e2e_local" and name == "worker launches":
            out["burst_launches"] = fig.value
        if not fig.benchmark.startswith("worker"):
            continue
        per_core = "per core" in name or "per vcpu" in name or "/core" in unit or "per core" in unit
        if "images/cpu-s" in unit and "bare" in name and "12 mp" not in name and cpu_rate is None:
            cpu_rate = fig.value
        elif "images/s" in unit and per_core and "bare" not in name and "images_per_s_per_vcpu" not in out:
            out["images_per_s_per_vcpu"] = fig.value
            if fig.baseline_value:
                efficiency = min(1.0, fig.value / fig.baseline_value)
        elif "first result" in name and "process_start_s" not in out:
            out["process_start_s"] = _seconds(fig)
    if cpu_rate is not None and efficiency is not None:
        out["images_per_s_per_vcpu"] = round(cpu_rate * efficiency, 4)
    return out


def inputs_from_results(path: Path = DEFAULT_RESULTS, base: CostInputs | None = None) -> CostInputs:
    base = base or CostInputs()
    if not path.exists():
        return base
    doc = load_results(path)
    found = measured_inputs(doc.figure_list())
    if not found:
        return replace(base, measured_from=f"defaults ({path.name} has no worker figures)")
    commit = (doc.machine.git.get("commit") or "unknown")[:12]
    where = f"{path.name}: run of {doc.run.started_utc} at commit {commit} on {doc.machine.cpu_model}"
    missing = [k for k in ("images_per_s_per_vcpu", "process_start_s") if k not in found]
    if missing:
        where += f" ({', '.join(missing)} not measured: default)"
    return replace(base, measured_from=where, **found)


# --- the page ----------------------------------------------------------------------------------------------------


def _keep_up(workers: int) -> str:
    return "one worker keeps up and stays busy" if workers == 1 else f"{workers} workers keep up and stay busy"


def money(x: float) -> str:
    if x >= 100:
        return f"${x:,.0f}"
    if x >= 1:
        return f"${x:,.2f}"
    return f"${x:.3g}"


def duration(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


HEADER = (
    "| Images/day | Option | Workers | Task starts/day | Task-hours/day (billed) | Compute /1k | Requests /1k "
    "| **Total /1k** | Per day | Time to result |"
)


def _rows(inputs: CostInputs) -> list[str]:
    lines = [HEADER, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for volume in VOLUMES:
        for cap in ("FARGATE", "FARGATE_SPOT"):
            w = warm(inputs, volume, cap)
            cold = f"; {w.cold_share:.2%} wait a start: {duration(w.cold_latency_s)}" if w.cold_share >= 0.0001 else ""
            lines.append(
                f"| {volume:,} | segscale {cap}, warm workers | {w.workers}{'' if w.keeps_up else ' (capped)'} | "
                f"{w.starts_per_day:,.1f} | {w.task_hours_per_day:,.1f} | {money(w.compute_per_1k)} | "
                f"{money(w.requests_per_1k)} | **{money(w.total_per_1k)}** | {money(w.per_day)} | "
                f"{duration(w.warm_latency_s)}{cold} |"
            )
        e = fargate(inputs, volume)
        starts = e.tasks_per_hour * inputs.active_hours_per_day
        lines.append(
            f"| {volume:,} | segscale FARGATE, one task per message (before D8) | {e.concurrent_tasks:.1f} | "
            f"{starts:,.0f} | {starts * e.billed_s / 3600:,.1f} | {money(e.compute_per_1k)} | "
            f"{money(e.requests_per_1k)} | **{money(e.total_per_1k)}** | {money(e.per_day)} | "
            f"{duration(e.worst_latency_s)} |"
        )
        for zero in (False, True):
            sm = sagemaker(inputs, volume, scale_to_zero=zero)
            lines.append(
                f"| {volume:,} | SageMaker async {inputs.sm_instance} {sm.mode} | {sm.instances} inst. | - | "
                f"{sm.instance_hours_per_day:.1f} | {money(sm.compute_per_1k)} | "
                f"{money(sm.requests_per_1k + sm.data_per_1k)} | **{money(sm.total_per_1k)}** | {money(sm.per_day)} | "
                f"{duration(sm.worst_latency_s)} |"
            )
    return lines


# The targets segscale set itself against SageMaker Async kept warm (per 1,000 images, FARGATE, default settings).
TARGETS = ((10_000, 0.5), (1_000_000, 1.0))


def target_rows(inputs: CostInputs) -> list[tuple[str, int, float, float, float, bool]]:
    """(profile, volume, segscale /1k, SageMaker warm /1k, target ratio, met) for both daily profiles."""
    rows = []
    for label, hours in (("24 h", 24.0), ("8 h", 8.0)):
        profile = replace(inputs, active_hours_per_day=hours)
        for volume, target in TARGETS:
            ours = warm(profile, volume).total_per_1k
            theirs = sagemaker(profile, volume, scale_to_zero=False).total_per_1k
            rows.append((label, volume, ours, theirs, target, ours <= target * theirs))
    return rows


def _targets(inputs: CostInputs) -> list[str]:
    lines = [
        "| Uploads within | Images/day | segscale FARGATE /1k | SageMaker kept warm /1k | Ratio | Target | Met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, volume, ours, theirs, target, met in target_rows(inputs):
        lines.append(
            f"| {label} | {volume:,} | {money(ours)} | {money(theirs)} | {ours / theirs:.2f}x | "
            f"{target:g}x | {'yes' if met else '**no**'} |"
        )
    return lines


def _bursts(inputs: CostInputs) -> list[str]:
    lines = [
        "| Burst (uploaded at once) | Model | Task starts | Billed task-minutes | Compute /1k | Last result after |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for images in (500, 10_000, 100_000):
        for label, b in (
            ("warm workers", burst_warm(inputs, images)),
            ("one task per message (before D8)", burst_per_message(inputs, images)),
        ):
            lines.append(
                f"| {images:,} | {label} | {b.starts:,} | {b.task_minutes:,.0f} | {money(b.compute_per_1k)} | "
                f"{duration(b.last_result_s)} |"
            )
    return lines


def _bottlenecks(inputs: CostInputs) -> list[str]:
    lines = [
        "| Limit | At 10,000/day | At 1,000,000/day | Ceiling with these inputs | What moves it |",
        "|---|---:|---:|---:|---|",
    ]
    est = {v: warm(inputs, v) for v in VOLUMES}
    rates = {v: arrival_per_s(inputs, v) for v in VOLUMES}
    per_day = inputs.active_hours_per_day * 3600

    def row(limit: str, load: dict[int, float], unit: str, ceiling_images_s: float, moves: str) -> str:
        loads = [f"{fmt(load[v])} {unit}" if load[v] > 0 else "0" for v in VOLUMES]
        return f"| {limit} | {loads[0]} | {loads[1]} | {ceiling_images_s * per_day:,.0f} images/day | {moves} |"

    lines.append(
        row(
            "Workers: max_workers x images/s per worker",
            {v: est[v].workers for v in VOLUMES},
            "workers",
            inputs.max_workers * worker_rate(inputs),
            "max_workers (and the Fargate vCPU quota it must fit in); worker size",
        )
    )
    lines.append(
        "| Fargate task launch rate and RunTask: 20/s | "
        + " | ".join(f"{est[v].starts_per_day / 86400:.2g} starts/s" for v in VOLUMES)
        + " | not a limit: a task starts per wake, not per batch | at most max_workers tasks start per burst |"
    )
    lines.append(
        "| Fargate vCPU quota (account, per region; check Service Quotas) | "
        + " | ".join(f"{est[v].workers * inputs.worker_vcpu:.1f} vCPU" for v in VOLUMES)
        + f" | max_workers x worker vCPU = {inputs.max_workers * inputs.worker_vcpu:g} vCPU | "
        "stacks/config.py refuses a max_workers that does not fit fargate_vcpu_quota |"
    )
    lines.append(
        row(
            f"DynamoDB partition: {DDB_PARTITION_WCU_PER_S:,.0f} WCU/s (by_status GSI key 'QUEUED')",
            {v: rates[v] * inputs.ddb_hot_partition_writes_per_image for v in VOLUMES},
            "WCU/s",
            DDB_PARTITION_WCU_PER_S / inputs.ddb_hot_partition_writes_per_image,
            "shard the status key (e.g. QUEUED#0..9) or project KEYS_ONLY; batch size does not help",
        )
    )
    lines.append(
        row(
            f"DynamoDB new on-demand table: {DDB_NEW_ON_DEMAND_WRU_PER_S:,.0f} WRU/s at once",
            {v: rates[v] * inputs.ddb_write_units_per_image for v in VOLUMES},
            "WRU/s",
            DDB_NEW_ON_DEMAND_WRU_PER_S / inputs.ddb_write_units_per_image,
            "grows with past peaks (or warm throughput); fewer GSI writes per image",
        )
    )
    lines.append(
        row(
            f"S3 PUT: {S3_PUT_PER_PREFIX_PER_S:,.0f}/s per prefix",
            {v: rates[v] * inputs.s3_puts_per_image for v in VOLUMES},
            "PUT/s",
            S3_PUT_PER_PREFIX_PER_S / inputs.s3_puts_per_image,
            "keys are per batch (uploads/<batch>/, results/<batch>/): S3 splits busy prefixes, "
            "with 503 SlowDown while it does",
        )
    )
    lines.append(
        row(
            f"S3 GET: {S3_GET_PER_PREFIX_PER_S:,.0f}/s per prefix",
            {v: rates[v] * inputs.s3_gets_per_image for v in VOLUMES},
            "GET/s",
            S3_GET_PER_PREFIX_PER_S / inputs.s3_gets_per_image,
            "as above",
        )
    )
    return lines


def _sensitivity(inputs: CostInputs) -> list[str]:
    lines = [
        "| Change (FARGATE, warm workers) | Images/day | Workers | Task starts/day | Total /1k | Time to result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    variants: list[tuple[str, CostInputs]] = [("as above", inputs)]
    variants += [(f"idle exit {i:g} s", replace(inputs, worker_idle_exit_s=i)) for i in (15.0, 300.0)]
    variants += [
        (f"worker {c:g} vCPU / {m:g} GB", replace(inputs, worker_vcpu=c, worker_memory_gb=m))
        for c, m in ((0.5, 1.0), (2.0, 4.0), (4.0, 8.0))
    ]
    for volume in VOLUMES:
        for label, variant in variants:
            w = warm(variant, volume)
            cold = f"; {w.cold_share:.2%} wait a start: {duration(w.cold_latency_s)}" if w.cold_share >= 0.0001 else ""
            lines.append(
                f"| {label} | {volume:,} | {w.workers} | {w.starts_per_day:,.1f} | {money(w.total_per_1k)} | "
                f"{duration(w.warm_latency_s)}{cold} |"
            )
    return lines


def _inputs_table(inputs: CostInputs) -> list[str]:
    lines = ["| Input | Value | Meaning |", "|---|---|---|"]
    for f in fields(inputs):
        lines.append(f"| `{f.name}` | {getattr(inputs, f.name)} | {f.metadata.get('doc', '')} |")
    return lines


def _verdict(inputs: CostInputs) -> list[str]:
    """What the targets table says, in words, including why a missed target is missed and what would meet it."""
    rows = target_rows(inputs)
    missed = [r for r in rows if not r[5]]
    if not missed:
        return [
            "Every target is met with the default settings. At 10,000/day the cost is one small worker kept alive by "
            "the uploads themselves (its idle tail is the price of never waiting for a cold start); at 1,000,000/day "
            "it is requests, not compute: S3 PUTs and DynamoDB writes are most of the bill, and they are the same "
            "for any worker model."
        ]
    out = []
    for label, volume, ours, theirs, target, _ in missed:
        out.append(
            f"- Missed: {volume:,}/day within {label}: {money(ours)} against {target:g} x {money(theirs)}. "
            "A lone warm worker is billed all day whatever the volume; a smaller worker "
            "(`worker_cpu` 512, see 'Config changes') or a shorter `worker_idle_exit_s` would lower it, at the price "
            "of more cold starts."
        )
    return out


def render(inputs: CostInputs) -> str:
    office = replace(inputs, active_hours_per_day=8.0)
    ten_k, one_m = warm(inputs, VOLUMES[0]), warm(inputs, VOLUMES[1])
    old_ten_k = fargate(inputs, VOLUMES[0])
    measured_burst = (
        f" A burst of 500 uploads with max_workers 2 started {inputs.burst_launches:g} worker tasks locally."
        if inputs.burst_launches
        else ""
    )
    parts = [
        "# What segscale costs",
        "",
        "<!-- Generated by `python -m bench.cost --write docs/cost.md` from bench/cost.py and "
        "bench/results/latest.json. Do not edit by hand: tests/bench/test_cost.py fails when it is stale. -->",
        "",
        f"Prices: **{inputs.region} list prices as of {inputs.price_date}, as the author knew them. They must be "
        "checked** against the AWS pricing pages (Fargate, S3, SQS, DynamoDB, EventBridge, SageMaker) before anyone "
        "relies on these figures; change them in `CostInputs` and regenerate. Dollar figures exclude tax, free tiers, "
        "data transfer out of AWS, CloudWatch logs and metrics, NAT (an S3 gateway endpoint is assumed) and the "
        "always-on API service (ALB and API tasks), which is the same at both volumes.",
        "",
        f"Measured inputs: {inputs.images_per_s_per_vcpu:.3g} images/s per vCPU, {inputs.process_start_s:.3g} s "
        f"process start to first result and {inputs.warm_latency_s:.3g} s upload to result on a warm worker "
        f"(p50), from {inputs.measured_from}.{measured_burst}",
        "",
        "Worker speed depends on photo size: the worker benchmark's photos are 1 to 2 MP (its notes in "
        "bench/results/latest.md); a 12 MP phone photo takes about 4 times as long (profile in docs/performance.md), "
        "which raises the compute column but not the requests.",
        "",
        "Workers are warm (docs/architecture.md D8): a worker task drains the queue until it has been idle "
        f"{inputs.worker_idle_exit_s:g} s, so a burst pays a handful of task starts, not one per batch, and an "
        "upload that finds a worker alive waits for no start at all. The row 'one task per message (before D8)' is "
        "the model it replaced, for comparison.",
        "",
        "## Cost per 1,000 images, traffic steady over 24 hours",
        "",
        *_rows(inputs),
        "",
        "Workers = worker tasks alive while uploads arrive (before D8: tasks running on average). Task-hours = "
        "Fargate time billed: work, idle tails, image pulls and starts. Compute = those task-hours at the Fargate "
        "price, spread over the images. Requests = S3, DynamoDB (with GSI writes), SQS, Pipes and the fleet's own "
        "bookkeeping (slot renewals, polls, wake checks); for SageMaker, S3 and data processed. Time to result: "
        "upload to result with a worker warm, and the share of uploads that find none alive and wait for a task "
        f"start. Storing the uploads for {inputs.retention_days:g} days adds {money(storage_per_1k(inputs))} per "
        f"1,000 images at {inputs.image_mb:g} MB each for every option: at 1,000,000/day that outweighs everything "
        "above, so retention is the first cost lever.",
        "",
        "What the table says:",
        "",
        f"- At 10,000/day ({ten_k.arrival_per_s:.2f} uploads/s) one worker serves everything and uploads arrive "
        f"far closer together than its {inputs.worker_idle_exit_s:g} s idle exit, so it is almost never cold: "
        f"{ten_k.starts_per_day:.0f} task starts a day instead of {old_ten_k.tasks_per_hour * 24:,.0f}, and "
        f"{money(ten_k.total_per_1k)} per 1,000 images instead of {money(old_ten_k.total_per_1k)}.",
        f"- At 1,000,000/day ({one_m.arrival_per_s:.1f} uploads/s) {_keep_up(one_m.workers)}; "
        "compute is a small part of the bill and requests dominate.",
        "- SageMaker kept warm costs the same every day whatever the volume; scale-to-zero only helps when traffic "
        "has long idle gaps, and then every burst waits for a cold start of minutes. segscale's idle cost is one "
        "worker's idle tail after the last upload.",
        "",
        "## Same volumes, uploads within 8 hours a day",
        "",
        "Where scale to zero pays: the endpoint sleeps 16 hours; segscale's workers exist only while uploads arrive.",
        "",
        *_rows(office),
        "",
        "## Targets against SageMaker Async kept warm (FARGATE, default settings)",
        "",
        *_targets(inputs),
        "",
        *_verdict(inputs),
        "",
        "## Bursts",
        "",
        "A batch uploaded at once, with nothing running. Warm workers: one worker per "
        f"{inputs.jobs_per_worker} waiting jobs, at most {inputs.max_workers}, each billed from its start to its "
        f"idle exit. Before D8: one task per {inputs.batch_max_jobs}-job message, started at 20 a second.",
        "",
        *_bursts(inputs),
        "",
        "Warm workers trade start-up cost for drain time: a big burst waits for a bounded fleet to work through it "
        "(raise `max_workers` within the Fargate vCPU quota to drain it faster), but pays a few task starts and "
        "idle tails instead of one start and one billed minute per message.",
        "",
        "## Bottlenecks: the AWS limits, our load at both volumes, and the ceiling they set",
        "",
        *_bottlenecks(inputs),
        "",
        "With warm workers the task launch rate no longer binds: a task starts per wake, at most `max_workers` at "
        "once. The fleet's ceiling is `max_workers` times one worker's speed; past it the queue grows. "
        "DynamoDB binds next: a new on-demand table's initial throughput (which grows with use), then the one "
        "partition behind the `by_status` index for each status value (which does not: its partition key is the "
        "status itself). SQS standard queues have no practical throughput limit here.",
        "",
        "## Config changes: what they buy, at both volumes",
        "",
        *_sensitivity(inputs),
        "",
        "- Idle exit: a shorter one bills fewer idle seconds only where uploads come further apart than it; where "
        "they come closer, each gap longer than the idle exit costs a cold start (a task start and a billed minute, "
        "and a minute's wait for the upload that meets it), so at 10,000/day a short idle exit costs more, not less.",
        "- Worker size: vCPU-seconds per image stay the same, so at high volume the size changes little; at low "
        "volume one worker is alive all day and its size is the bill: small workers win there.",
        "- The micro-batch window no longer decides the number of task starts; it only sets how many jobs share a "
        "message (SQS requests) and how long an upload waits before its message is sent.",
        "",
        "## Assumptions",
        "",
        "- Uploads arrive at random (Poisson) at a steady rate within the active hours. A lone worker is alive while "
        f"uploads come less than {inputs.worker_idle_exit_s:g} s apart; an upload that finds no worker waits for a "
        "task start (image pull, process start) and starts one. Two or more workers sharing the load are never "
        "idle that long.",
        "- The fleet is as many workers as keep up with the arrivals (the scale rule adds one per "
        f"{inputs.jobs_per_worker} waiting jobs, so it grows until the queue stops growing); each is replaced "
        f"every {duration(inputs.worker_max_lifetime_s)} (a task start).",
        "- A Fargate task is billed from image pull to exit, per second, minimum one minute; throughput scales with "
        "vCPU.",
        "- SageMaker async: the same per-vCPU speed as our worker (its serving overhead ignored, which favours it), "
        f"autoscaled to {inputs.sm_target_utilisation:.0%} utilisation; kept warm means at least one instance "
        "all day; scaled to zero means the backlog alarm removes the last instance after "
        f"{duration(inputs.sm_scale_in_idle_s)} idle, and a cold start of {duration(inputs.sm_cold_start_s)} "
        "is billed.",
        "- Fargate Spot tasks can be stopped with two minutes' notice; the worker finishes the image in hand, hands "
        "the rest back and its slot to a new task, so an interruption costs a task start (not modelled).",
        "",
        "## Inputs",
        "",
        *_inputs_table(inputs),
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description="Print or write docs/cost.md.")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="benchmark results to read")
    parser.add_argument("--write", type=Path, default=None, metavar="PATH", help="write the page here")
    args = parser.parse_args(argv)
    text = render(inputs_from_results(args.results))
    if args.write is None:
        sys.stdout.write(text)
    else:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
