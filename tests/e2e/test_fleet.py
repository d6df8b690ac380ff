"""A burst of 1,000 jobs through the real local stack with warm workers (D8): the fleet scales up to max_workers
and never past it (read from the pipe's launch log), the reconciler runs all along with short thresholds without
disturbing a single job, and every job ends SUCCEEDED exactly once. The cheap Otsu model keeps it quick."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from local.dev import LocalStack
from segscale_cli.client import ApiClient
from tests.e2e.conftest import StackFactory, job_store, wait_terminal
from tests.worker.helpers import write_otsu_card

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_WORKERS = 3
JOBS = 1000


@pytest.fixture(scope="module")
def stack(make_stack: StackFactory, tmp_path_factory: pytest.TempPathFactory) -> LocalStack:
    models = tmp_path_factory.mktemp("models")
    write_otsu_card(models, "blobs")
    return make_stack(
        max_workers=MAX_WORKERS,
        reconcile_interval_s=15.0,
        settings={
            "models_dir": str(models),
            "default_model": "blobs",
            "batch_max_jobs": "50",
            "batch_window_s": "0.2",
            "jobs_per_worker": "100",
            "worker_scale_interval_s": "0.5",
            "worker_idle_exit_s": "2",
            "stuck_after_s": "5",  # reconcile looks at every job waiting over 5 s while the burst drains
        },
    )


def _tiny_pngs(count: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(count):
        img = np.full((24, 24, 3), 30, np.uint8)
        y, x = rng.integers(0, 12, 2)
        img[y : y + 10, x : x + 10] = 220
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append((f"t{i:04d}.png", buf.getvalue()))
    return out


def test_a_burst_of_1000_jobs_never_runs_more_than_max_workers(stack: LocalStack) -> None:
    images = _tiny_pngs(JOBS)
    groups = [images[i : i + 50] for i in range(0, JOBS, 50)]
    with ApiClient(stack.api_url, stack.api_key) as api, ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda g: api.upload(g[1], model="blobs", idempotency_key=f"b{g[0]}"), enumerate(groups))
        )
    job_ids = [j["job_id"] for a in answers for j in a["jobs"]]
    assert len(set(job_ids)) == JOBS
    jobs = wait_terminal(job_store(stack), job_ids, timeout_s=300)
    assert {j["status"] for j in jobs.values()} == {"SUCCEEDED"}
    assert all(j["attempts"] == 1 for j in jobs.values())  # nothing was re-driven under a live worker

    pipe = stack.pipe
    assert pipe is not None
    most = pipe.most_alive_at_once()
    assert 2 <= most <= MAX_WORKERS, (most, len(pipe.launches))  # it scaled up, and never past the bound
    assert all(launch.wake is not None for launch in pipe.launches)  # each one a wake with a slot reserved

    events = [json.loads(line) for line in Path(stack.config.log.name).read_text().splitlines()]  # type: ignore[union-attr]
    passes = [e["result"] for e in events if e["event"] == "schedule_run"]
    # The API writes each job with its enqueued_at (promised to the queue), so reconcile never takes a job in the
    # sender's hands for a never-enqueued one: no job was re-sent at all, and no worker lost a lease.
    disturbed = {j for r in passes for ids in r["requeued"].values() for j in ids}
    assert not disturbed & set(job_ids), "reconcile re-drove jobs the workers were draining"
    reported: dict[str, int] = {}
    for launch in pipe.launches:
        for line in launch.log_path.read_text(errors="replace").splitlines():  # type: ignore[union-attr]
            if line.startswith('{"_aws"') and '"ImagesProcessed"' in line:
                job = json.loads(line)["job_id"]
                reported[job] = reported.get(job, 0) + 1
    assert reported == dict.fromkeys(job_ids, 1)  # each job done, and reported, exactly once
