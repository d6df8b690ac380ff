"""What segscale costs at 10,000 and 1,000,000 images a day, against SageMaker Async Inference, and where it stops.

``python -m bench.cost`` prints the model; ``--write docs/cost.md`` regenerates that page (a test keeps it in step
with this file and with bench/results/latest.json). Every input is in ``CostInputs`` with the reason for its value;
the measured worker speed and start time come from the latest benchmark run when there is one.

The model is deliberately small: arrivals are steady within the active hours of a day, the API's micro-batcher
closes a batch when it is full or its window ends, one batch is one message is one Fargate task (D2), and
a task is billed from image pull to exit with Fargate's one-minute minimum.
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
        4.0, "worker throughput per vCPU on real-size photos; measured when a results file has it"
    )
    measured_from: str = _doc("defaults (no benchmark results)", "where the two measured inputs came from")
    batch_max_jobs: int = _doc(100, "SEGSCALE_BATCH_MAX_JOBS: jobs per message, so per task")
    batch_window_s: float = _doc(1.0, "SEGSCALE_BATCH_WINDOW_S: how long the API holds a batch open")
    api_tasks: int = _doc(2, "API tasks; each micro-batches its own uploads")
    worker_vcpu: float = _doc(1.0, "worker task vCPU")
    worker_memory_gb: float = _doc(2.0, "worker task memory, GB")
    active_hours_per_day: float = _doc(24.0, "uploads arrive steadily within this many hours a day")
    s3_puts_per_image: float = _doc(3.0, "upload, mask PNG, overlay PNG")
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
    pipes_requests_per_message: float = _doc(1.0, "one pipe event per message (under 64 KB)")
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


@dataclass(frozen=True)
class FargateEstimate:
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
    def total_per_1k(self) -> float:
        return self.compute_per_1k + self.requests_per_1k

    @property
    def per_day(self) -> float:
        return self.total_per_1k * self.images_per_day / 1000

    @property
    def runtask_per_s(self) -> float:
        return self.tasks_per_hour / 3600


@dataclass(frozen=True)
class SageMakerEstimate:
    mode: str
    images_per_day: float
    instances: int
    instance_hours_per_day: float
    compute_per_1k: float
    data_per_1k: float
    requests_per_1k: float
    worst_latency_s: float

    @property
    def total_per_1k(self) -> float:
        return self.compute_per_1k + self.data_per_1k + self.requests_per_1k

    @property
    def per_day(self) -> float:
        return self.total_per_1k * self.images_per_day / 1000


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
    """The worker's images/s per vCPU and its start-to-first-result from a run's figures, where present."""
    out: dict[str, float] = {}
    for fig in figures:
        name, unit = fig.name.lower(), fig.unit.lower()
        if not fig.benchmark.startswith("worker"):
            continue
        per_core = "per core" in name or "per vcpu" in name or "/core" in unit or "per core" in unit
        if "images/s" in unit and per_core and "bare" not in name and "images_per_s_per_vcpu" not in out:
            out["images_per_s_per_vcpu"] = fig.value
        elif "first result" in name and "process_start_s" not in out:
            out["process_start_s"] = _seconds(fig)
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


def _rows(inputs: CostInputs) -> list[str]:
    lines = [
        "| Images/day | Option | Jobs per task | Tasks/hour | Task s (billed) | Compute /1k | Requests /1k "
        "| **Total /1k** | Per day | Worst time to result |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for volume in VOLUMES:
        for cap in ("FARGATE", "FARGATE_SPOT"):
            e = fargate(inputs, volume, cap)
            lines.append(
                f"| {volume:,} | segscale {cap} | {e.jobs_per_task:.1f} | {e.tasks_per_hour:,.0f} | "
                f"{e.task_s:.0f} ({e.billed_s:.0f}) | {money(e.compute_per_1k)} | {money(e.requests_per_1k)} | "
                f"**{money(e.total_per_1k)}** | {money(e.per_day)} | {duration(e.worst_latency_s)} |"
            )
        for zero in (False, True):
            s = sagemaker(inputs, volume, scale_to_zero=zero)
            lines.append(
                f"| {volume:,} | SageMaker async {inputs.sm_instance} {s.mode} | - | "
                f"{s.instances} inst., {s.instance_hours_per_day:.1f} h/day | - | {money(s.compute_per_1k)} | "
                f"{money(s.requests_per_1k + s.data_per_1k)} | **{money(s.total_per_1k)}** | {money(s.per_day)} | "
                f"{duration(s.worst_latency_s)} |"
            )
    return lines


def _bottlenecks(inputs: CostInputs) -> list[str]:
    lines = [
        "| Limit | At 10,000/day | At 1,000,000/day | Ceiling with these inputs | What moves it |",
        "|---|---:|---:|---:|---|",
    ]
    est = {v: fargate(inputs, v) for v in VOLUMES}
    rates = {v: arrival_per_s(inputs, v) for v in VOLUMES}
    cap = min(inputs.batch_max_jobs, max_job_ids_per_message())
    per_day = inputs.active_hours_per_day * 3600

    def row(limit: str, load: dict[int, float], unit: str, ceiling_images_s: float, moves: str) -> str:
        loads = [f"{fmt(load[v])} {unit}" if load[v] > 0 else "0" for v in VOLUMES]
        return f"| {limit} | {loads[0]} | {loads[1]} | {ceiling_images_s * per_day:,.0f} images/day | {moves} |"

    lines.append(
        row(
            f"Fargate task launch rate and RunTask: {FARGATE_LAUNCH_RATE_PER_S:.0f}/s",
            {v: est[v].runtask_per_s for v in VOLUMES},
            "tasks/s",
            FARGATE_LAUNCH_RATE_PER_S * cap,
            "jobs per task (batch size, and a window long enough to fill it); one RunTask per message",
        )
    )
    lines.append(
        "| Fargate vCPU quota (account, per region; check Service Quotas) | "
        + " | ".join(f"{est[v].concurrent_tasks * inputs.worker_vcpu:.1f} vCPU" for v in VOLUMES)
        + " | the quota / vCPU-seconds per image | worker size does not change vCPU-s per image; "
        "fewer, fuller tasks cut the start overhead |"
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
        "| Change (FARGATE) | Images/day | Jobs per task | Tasks/hour | Total /1k | Worst time to result |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    variants: list[tuple[str, CostInputs]] = [("as above", inputs)]
    variants += [(f"window {w:g} s", replace(inputs, batch_window_s=w)) for w in (10.0, 60.0, 300.0)]
    # Batch and worker size only matter once batches fill, so they are shown with a 60 s window.
    wide = replace(inputs, batch_window_s=60.0)
    variants += [(f"window 60 s, batch size {b}", replace(wide, batch_max_jobs=b)) for b in (25, 190)]
    variants += [
        (f"window 60 s, worker {c:g} vCPU / {m:g} GB", replace(wide, worker_vcpu=c, worker_memory_gb=m))
        for c, m in ((0.5, 1.0), (2.0, 4.0), (4.0, 8.0))
    ]
    for volume in VOLUMES:
        for label, variant in variants:
            e = fargate(variant, volume)
            lines.append(
                f"| {label} | {volume:,} | {e.jobs_per_task:.1f} | {e.tasks_per_hour:,.0f} | "
                f"{money(e.total_per_1k)} | {duration(e.worst_latency_s)} |"
            )
    return lines


def _inputs_table(inputs: CostInputs) -> list[str]:
    lines = ["| Input | Value | Meaning |", "|---|---|---|"]
    for f in fields(inputs):
        lines.append(f"| `{f.name}` | {getattr(inputs, f.name)} | {f.metadata.get('doc', '')} |")
    return lines


def render(inputs: CostInputs) -> str:
    office = replace(inputs, active_hours_per_day=8.0)
    ten_k, one_m = fargate(inputs, VOLUMES[0]), fargate(inputs, VOLUMES[1])
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
        f"Measured inputs: {inputs.images_per_s_per_vcpu:.3g} images/s per vCPU and {inputs.process_start_s:.3g} s "
        f"process start to first result, from {inputs.measured_from}.",
        "",
        "Worker speed depends on photo size: the worker benchmark's photos are 1 to 2 MP (its notes in "
        "bench/results/latest.md); a 12 MP phone photo takes about 4 times as long (profile in docs/performance.md), "
        "which raises the compute column but not the requests.",
        "",
        "## Cost per 1,000 images, traffic steady over 24 hours",
        "",
        *_rows(inputs),
        "",
        "Compute = Fargate vCPU and memory for the billed task seconds, spread over the jobs of the task. "
        "Requests = S3, DynamoDB (with GSI writes), SQS and Pipes; for SageMaker, S3 and data processed. "
        f"Storing the uploads for {inputs.retention_days:g} days adds {money(storage_per_1k(inputs))} per 1,000 images "
        f"at {inputs.image_mb:g} MB each for every option: at 1,000,000/day that outweighs everything above, so "
        "retention is the first cost lever.",
        "",
        "What the table says:",
        "",
        f"- At 10,000/day ({ten_k.arrival_per_s:.2f} uploads/s) the default {inputs.batch_window_s:g} s window "
        f"closes batches of {ten_k.jobs_per_task:.1f} jobs: nearly one task per image, each billed the one-minute "
        "minimum. A longer window (see 'Config changes') fills batches and cuts the cost several-fold, "
        "at the price of latency.",
        f"- At 1,000,000/day ({one_m.arrival_per_s:.1f} uploads/s) batches hold {one_m.jobs_per_task:.1f} jobs "
        f"and about {one_m.concurrent_tasks:.0f} tasks run at once.",
        "- SageMaker kept warm costs the same every day whatever the volume: it wins when traffic is steady and "
        "high enough to keep an instance busy; scale-to-zero only helps when traffic has long idle gaps, and then "
        "every burst waits for a cold start of minutes.",
        "",
        "## Same volumes, uploads within 8 hours a day",
        "",
        "Where scale to zero pays: the endpoint sleeps 16 hours; segscale's tasks exist only while there is work.",
        "",
        *_rows(office),
        "",
        "## Bottlenecks: the AWS limits, our load at both volumes, and the ceiling they set",
        "",
        *_bottlenecks(inputs),
        "",
        "The launch rate binds only when batches are small. With full batches DynamoDB binds first: a new "
        "on-demand table's initial throughput (which grows with use), then the one partition behind the "
        "`by_status` index for each status value (which does not: its partition key is the status itself). "
        "SQS standard "
        "queues have no practical throughput limit here; an EventBridge Pipe's own invocation quota should be "
        "checked in Service Quotas; a message carries at most "
        f"{max_job_ids_per_message()} job ids (RunTask overrides are capped at 8,192 characters).",
        "",
        "## Config changes: what they buy, at both volumes",
        "",
        *_sensitivity(inputs),
        "",
        "- Window: the main lever at low volume. Jobs per task grow with the window until the batch is full; "
        "every job waits up to the window before its task starts.",
        "- Batch size: fewer, longer tasks; fewer RunTask calls (the launch-rate ceiling is 20 x batch size "
        "images/s); a failed or interrupted task re-drives more jobs. Capped by the message size.",
        "- Worker size: vCPU-seconds per image stay the same, but the billed start overhead (image pull, model "
        "load, the one-minute minimum) is paid at the larger size, so bigger workers cost more per image "
        "unless batches are large; they do return results sooner.",
        "",
        "## Assumptions",
        "",
        "- Arrivals are steady within the active hours; the expected batch is 1 + (uploads/s per API task) x window, "
        "capped by the batch size. Bursty uploads fill batches better than this.",
        "- A Fargate task is billed from image pull to exit, per second, minimum one minute; its time is pull + "
        "process start + jobs / (images/s per vCPU x vCPU), i.e. throughput scales with vCPU.",
        "- SageMaker async: the same per-vCPU speed as our worker (its serving overhead ignored, which favours it), "
        f"autoscaled to {inputs.sm_target_utilisation:.0%} utilisation; kept warm means at least one instance "
        "all day; scaled to zero means the backlog alarm removes the last instance after "
        f"{duration(inputs.sm_scale_in_idle_s)} idle, and a cold start of {duration(inputs.sm_cold_start_s)} "
        "is billed.",
        "- Fargate Spot tasks can be stopped with two minutes' notice; the worker releases its jobs and the "
        "reconciler re-drives them, so the re-run cost is a fraction of a task per interruption (not modelled).",
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
