"""The happy path through real processes: the CLI against the local stack, and 200 images in mixed requests."""

from __future__ import annotations

import csv
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench import soak
from local.dev import LocalStack
from local.procs import REPO_ROOT
from runtime.common import keys
from segscale_cli.client import ApiClient
from segscale_cli.main import batch_jobs
from segscale_cli.main import main as cli
from tests.e2e.conftest import StackFactory, job_store, result_objects, wait_terminal
from tests.e2e.photos import photo_folder, small_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(make_stack: StackFactory) -> LocalStack:
    return make_stack(max_workers=2, reconcile_interval_s=5.0, settings={"batch_window_s": "0.5"})


def test_a_folder_of_photos_through_the_cli(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = photo_folder(tmp_path / "photos")
    (tmp_path / "photos" / "notes.jpg").write_text("not an image, whatever the name says")
    target = ["--endpoint", stack.api_url, "--api-key", stack.api_key, "--no-progress"]

    # One file is refused by the API (415): the CLI names it and exits 1; the four photos are accepted, one request
    # each, into the one batch of this upload command.
    assert cli(["upload", *target, "--concurrency", "2", str(tmp_path / "photos")]) == 1
    out, err = capsys.readouterr()
    batch_ids = out.split()
    assert len(batch_ids) == 1 and len(batch_ids[0]) == 32, out
    assert "notes.jpg" in err and "415" in err and "uploaded 4 of 5 file(s) in 5 request(s)" in err

    assert cli(["wait", *target, "--timeout", "120", "--interval", "0.5", *batch_ids]) == 0
    assert "4 succeeded, 0 failed" in capsys.readouterr().err

    csv_path = tmp_path / "results.csv"
    assert cli(["results", *target, *batch_ids, "--out", str(csv_path)]) == 0
    rows = {r["file_name"]: r for r in csv.DictReader(csv_path.open())}
    assert set(rows) == set(expected)
    assert {r["status"] for r in rows.values()} == {"SUCCEEDED"}
    for name, kind in expected.items():
        fraction = float(rows[name]["person_fraction"])
        if kind == "person":
            assert fraction > 0.15, (name, fraction)
        elif kind == "no person":
            assert fraction < 0.05, (name, fraction)
    assert int(rows["grace_hopper.jpg"]["width"]) == 512 and int(rows["astronaut.png"]["width"]) == 256
    assert all(int(r["upload_to_result_ms"]) > 0 for r in rows.values())

    # The installed-free entry point, as a user runs it, reading the endpoint from the environment.
    job_id = rows["grace_hopper.jpg"]["job_id"]
    env = {**os.environ, "SEGSCALE_ENDPOINT": stack.api_url, "SEGSCALE_API_KEY": stack.api_key}
    done = subprocess.run(
        [str(REPO_ROOT / "bin" / "segscale"), "status", job_id], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "SUCCEEDED" and job["result"]["classes"]["person"]["fraction"] > 0.15


def test_200_images_in_mixed_single_and_multi_file_requests(stack: LocalStack) -> None:
    images = small_images(200)
    sizes = [1, 7, 1, 1, 20, 1, 3, 50, 1, 12]  # cycled: single uploads between multi-file requests
    groups: list[list[tuple[str, bytes]]] = []
    i = 0
    while i < len(images):
        size = sizes[len(groups) % len(sizes)]
        groups.append(images[i : i + size])
        i += size
    api = ApiClient(stack.api_url, stack.api_key)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda g: api.upload(g[1], idempotency_key=f"mixed-{g[0]}"), enumerate(groups)))
    api.close()
    job_ids = [job["job_id"] for answer in answers for job in answer["jobs"]]
    assert len(job_ids) == len(set(job_ids)) == 200
    assert any(len(a["jobs"]) == 1 for a in answers) and any(len(a["jobs"]) >= 20 for a in answers)

    jobs = wait_terminal(job_store(stack), job_ids, timeout_s=180)
    assert {j["status"] for j in jobs.values()} == {"SUCCEEDED"}
    assert all("person" in j["result"]["classes"] for j in jobs.values())
    objects = result_objects(stack, {a["batch_id"] for a in answers})
    assert sorted(objects) == sorted(job_ids)
    files = sorted([keys.MASK_FILE, keys.OVERLAY_FILE])
    assert all(sorted(k.rsplit("/", 1)[1] for k in found) == files for found in objects.values())
    # The CLI's paging through GET /v1/batches/{id} (small pages, so the cursor is followed several times).
    biggest = max(answers, key=lambda a: len(a["jobs"]))
    with ApiClient(stack.api_url, stack.api_key) as api:
        paged = batch_jobs(api, biggest["batch_id"], page_size=7)
    assert sorted(j["job_id"] for j in paged) == sorted(j["job_id"] for j in biggest["jobs"])
    assert all(j["status"] == "SUCCEEDED" and "person" in j["result"]["classes"] for j in paged)
    # Warm workers (docs/architecture.md D8): a few worker tasks drain every message, never more than max_workers.
    assert len(stack.pipe.launches) <= 6 and stack.pipe.most_alive_at_once() <= 2  # type: ignore[union-attr]


def test_the_soak_uploader_is_answered_and_its_jobs_end(stack: LocalStack) -> None:
    """``make soak``'s lean uploader (bench/soak.py) through the real API: every upload is accepted on reused
    connections, a rejected one (a body that is not an image) gets its problem answer on the same connection, and
    every accepted job ends SUCCEEDED."""
    photos = [data for _, data in small_images(5)]
    uploads, _ = soak.upload_all(stack, photos, 24, 3)
    assert uploads.outcomes == {"202": 24} and len(set(uploads.accepted)) == 24
    uploader = soak.Uploader(stack.api_url, stack.api_key)
    status, body = uploader.post_image("not-an-image.jpg", b"plain text")
    assert 400 <= status < 500 and json.loads(body)["status"] == status
    status, body = uploader.post_image("after.jpg", photos[0])
    assert status == 202, body
    jobs = wait_terminal(job_store(stack), [*uploads.accepted, json.loads(body)["jobs"][0]["job_id"]], timeout_s=120)
    assert {j["status"] for j in jobs.values()} == {"SUCCEEDED"} and len(jobs) == 25
