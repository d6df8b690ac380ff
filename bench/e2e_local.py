"""End to end on the local stack: photos uploaded to the API until their results are written, vs the worker alone.

End-to-end: the real ``make dev`` stack (moto server, API, pipe emulator, warm workers with ``max_workers`` 2,
scheduler) started by ``local.dev.LocalStack``; a burst of single-image uploads at concurrency 8 (what ``segscale
upload`` does), then upload-to-result latency per job (the job's ``finished_at - created_at``, both written
server-side), images/s from the first upload to the last result, and how many worker processes the burst started.
Then, with a worker still warm, single uploads a few seconds apart: the latency one upload sees when nothing queues.
Baseline, same run, same moto server, same images: the jobs staged straight into S3 and DynamoDB (no API, no
queue, no pipe) and run by ``python -m runtime.worker`` processes (``JOB_BATCH``), 2 at a time, 100 jobs per batch.
The ratio is what the API, the micro-batching window, SQS, waking and draining cost on top of the work.
All uploads of the burst arrive within seconds, far faster than 2 workers drain them, so the burst's latency
percentiles are mostly queueing: p50 is about the time to work through half the backlog.

Everything shares this machine's cores (moto, API, workers and the uploading threads), so on 2 cores the figure
is a lower bound for a deployment where each of them has its own.
"""

from __future__ import annotations

import io
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bench.figures import Figure
from local.dev import LocalStack, StackConfig
from local.procs import spawn
from runtime.common import keys, messages
from runtime.common.aws import client
from runtime.common.jobs import TERMINAL, JobStore, NewJob
from runtime.common.settings import JOB_BATCH_ENV

BENCH = "e2e_local"
FULL_COUNT = 500
QUICK_COUNT = 5
UPLOAD_CONCURRENCY = 8
WORKERS = 2  # max_workers for the stack; the baseline runs this many worker processes
JOBS_PER_MESSAGE = 100
JOBS_PER_WORKER = 50
SIDE = 480  # long side in pixels: phone-thumbnail sized photos keep 500 images inside the bench budget
WARM_UPLOADS = 10  # single uploads to a warm worker, one every WARM_SPACING_S
QUICK_WARM_UPLOADS = 2
WARM_SPACING_S = 3.0


def make_images(count: int, *, seed: int = 6) -> list[tuple[str, bytes]]:
    """Distinct JPEGs cut from the photos that ship in packages (skimage.data, matplotlib's Grace Hopper)."""
    import matplotlib
    import skimage.data as data

    grace = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), grace]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        ch, cw = int(h * rng.uniform(0.7, 1.0)), int(w * rng.uniform(0.7, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = Image.fromarray(np.ascontiguousarray(src[y : y + ch, x : x + cw]))
        img.thumbnail((SIDE, SIDE))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(rng.integers(75, 95)))
        out.append((f"bench{i:04d}.jpg", buf.getvalue()))
    return out


def _wait_done(store: JobStore, job_ids: list[str], timeout_s: float) -> dict[str, dict]:
    """Poll the job table until every job is terminal. Only the unfinished jobs are read, once a second: the local
    DynamoDB serves one request at a time, so heavier polling would slow the very pipeline being measured."""
    deadline = time.monotonic() + timeout_s
    jobs: dict[str, dict] = {}
    pending = list(job_ids)
    while True:
        jobs.update(store.get_many(pending))
        pending = [j for j in pending if j not in jobs or jobs[j]["status"] not in TERMINAL]
        if not pending:
            failed = [j for j in jobs.values() if j["status"] != "SUCCEEDED"]
            if failed:
                raise RuntimeError(f"{len(failed)} job(s) failed, e.g. {failed[0].get('error')}")
            return {j: jobs[j] for j in job_ids}
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs not finished after {timeout_s:.0f} s")
        time.sleep(0.25 if len(pending) <= 2 else 1.0)


def end_to_end(stack: LocalStack, store: JobStore, images: list[tuple[str, bytes]]) -> tuple[list[float], float]:
    """Upload every image as its own request; returns per-job latencies (ms) and images/s."""
    from segscale_cli.client import ApiClient

    started_ms = time.time() * 1000
    with ApiClient(stack.api_url, stack.api_key) as api, ThreadPoolExecutor(UPLOAD_CONCURRENCY) as pool:
        answers = list(pool.map(lambda im: api.upload([im], idempotency_key=uuid.uuid4().hex), images))
    job_ids = [a["jobs"][0]["job_id"] for a in answers]
    jobs = _wait_done(store, job_ids, timeout_s=60 + len(images))
    latencies = [float(j["finished_at"] - j["created_at"]) for j in jobs.values()]
    elapsed_s = (max(j["finished_at"] for j in jobs.values()) - started_ms) / 1000
    return latencies, len(images) / elapsed_s


def warm_singles(stack: LocalStack, store: JobStore, images: list[tuple[str, bytes]]) -> list[float]:
    """One upload every ``WARM_SPACING_S`` while a worker is warm; upload-to-result latency of each (ms)."""
    from segscale_cli.client import ApiClient

    latencies = []
    with ApiClient(stack.api_url, stack.api_key) as api:
        for image in images:
            started = time.monotonic()
            answer = api.upload([image], idempotency_key=uuid.uuid4().hex)
            job_id = answer["jobs"][0]["job_id"]
            job = _wait_done(store, [job_id], timeout_s=60)[job_id]
            latencies.append(float(job["finished_at"] - job["created_at"]))
            time.sleep(max(0.0, WARM_SPACING_S - (time.monotonic() - started)))
    return latencies


def worker_only(stack: LocalStack, store: JobStore, images: list[tuple[str, bytes]]) -> float:
    """The same images staged directly, then worker processes only; returns images/s (process starts included)."""
    settings = stack.settings
    s3 = client("s3", settings)
    batch_id = uuid.uuid4().hex

    def stage(item: tuple[str, bytes]) -> str:
        name, data = item
        job_id = uuid.uuid4().hex
        key = keys.upload_key(batch_id, job_id, "jpg")
        s3.put_object(Bucket=settings.bucket, Key=key, Body=data)
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
        store.create(NewJob(job_id, batch_id, key, name, "person", len(data), "JPEG", width, height))
        return job_id

    with ThreadPoolExecutor(8) as pool:
        job_ids = list(pool.map(stage, images))
    bodies = [m.to_body() for m in messages.chunk(job_ids, JOBS_PER_MESSAGE)]
    started = time.monotonic()
    running: list = []
    with tempfile.TemporaryFile() as log:
        while bodies or running:
            running = [p for p in running if p.poll() is None]
            if bodies and len(running) < WORKERS:
                env = {**stack.runtime_env, JOB_BATCH_ENV: bodies.pop(0)}
                running.append(spawn(stack.config.worker_command, env=env, stdout=log, stderr=log))
            else:
                time.sleep(0.02)
    elapsed = time.monotonic() - started
    _wait_done(store, job_ids, timeout_s=5)
    return len(images) / elapsed


def run(*, quick: bool = False) -> list[Figure]:
    count = QUICK_COUNT if quick else FULL_COUNT
    warm_count = QUICK_WARM_UPLOADS if quick else WARM_UPLOADS
    images = make_images(count + warm_count)
    images, singles = images[:count], images[count:]
    with tempfile.TemporaryDirectory(prefix="segscale-bench-") as tmp:
        events = (Path(tmp) / "events.jsonl").open("w")
        config = StackConfig(
            prefix=f"bench{uuid.uuid4().hex[:8]}",
            max_workers=WORKERS,
            reconcile_interval_s=30.0,
            # A local worker starts in about a second, not the minute a Fargate task takes, so a second worker
            # pays off with far less backlog than the AWS default of 400 waiting jobs per worker.
            settings={
                "batch_window_s": "0.5",
                "batch_max_jobs": str(JOBS_PER_MESSAGE),
                "jobs_per_worker": str(JOBS_PER_WORKER),
            },
            log_dir=Path(tmp),
            log=events,
        )
        with LocalStack(config) as stack:
            settings = stack.settings
            store = JobStore.from_settings(settings, client("dynamodb", settings))
            latencies, e2e_rate = end_to_end(stack, store, images)
            launches = len(stack.pipe.launches) if stack.pipe else 0
            most_alive = stack.pipe.most_alive_at_once() if stack.pipe else 0
            warm = warm_singles(stack, store, singles)  # the burst's workers are still warm (idle exit 60 s)
            baseline_rate = worker_only(stack, store, images)
        events.close()
    p50, p99 = (float(v) for v in np.percentile(latencies, [50, 99]))
    note = (
        f"{count} photos of at most {SIDE} px, single-image uploads at concurrency {UPLOAD_CONCURRENCY}, "
        f"max_workers {WORKERS} (at most {most_alive} alive at once), jobs_per_worker {JOBS_PER_WORKER}"
    )
    warm_note = f"{warm_count} single uploads {WARM_SPACING_S:g} s apart to a warm worker, batch window 0.5 s"
    return [
        Figure(BENCH, "upload-to-result latency p50", p50, "ms", higher_is_better=False, notes=note),
        Figure(BENCH, "upload-to-result latency p99", p99, "ms", higher_is_better=False, notes=note),
        Figure(
            BENCH,
            "end-to-end images/s",
            e2e_rate,
            "images/s",
            baseline_name=f"worker only ({WORKERS} processes, {JOBS_PER_MESSAGE} jobs per batch)",
            baseline_value=baseline_rate,
            notes=note,
        ),
        Figure(BENCH, "worker launches", float(max(launches, 1)), "launches", higher_is_better=False, notes=note),
        Figure(
            BENCH,
            "warm single upload to result p50",
            float(np.percentile(warm, 50)),
            "ms",
            higher_is_better=False,
            notes=warm_note,
        ),
        Figure(BENCH, "warm single upload to result max", max(warm), "ms", higher_is_better=False, notes=warm_note),
    ]


if __name__ == "__main__":
    for figure in run(quick=False):
        print(figure.to_dict())
