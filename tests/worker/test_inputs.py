"""The worker's read of a job's image: size-checked before the body, pinned to the object submit checked.

An oversized or replaced object fails its own job, permanently and with a reason, and costs no other job of
its batch an attempt. AWS errors reach the job record as codes, never as botocore's text.
"""

from __future__ import annotations

import io
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runtime.api.main import create_app
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.worker.batch import run_batch
from runtime.worker.errors import classify
from runtime.worker.models import ModelRegistry, ModelSourceUnavailable
from tests.api.helpers import AUTH, presigned_post
from tests.aws_errors import access_denied, leaks
from tests.worker.helpers import encode, red_square, submit


@pytest.fixture(scope="module")
def registry(models_dir: Path) -> ModelRegistry:
    return ModelRegistry(models_dir, threads=1)


def photo(n: int) -> bytes:
    return encode(red_square(64, (n, n, 32, 32)))


def assert_untouched(store: JobStore, job_ids: list[str]) -> None:
    """Each job succeeded at its first attempt: the bad job next to it cost it nothing."""
    for job_id in job_ids:
        job = store.get(job_id)
        assert job is not None and job["status"] == "SUCCEEDED" and job["attempts"] == 1, job


def test_an_oversized_object_fails_its_job_alone(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry
) -> None:
    batch = uuid.uuid4().hex
    limit = 20_000
    small = worker_settings.model_copy(update={"max_upload_bytes": limit})
    big = submit(store, s3, small, b"\x89PNG" + bytes(5 * limit), model="red", batch_id=batch)
    others = [submit(store, s3, small, photo(n), model="red", batch_id=batch) for n in (0, 8)]

    report = run_batch(small, [others[0], big, others[1]], registry=registry, metrics_stream=io.StringIO())

    assert report.ok and report.failed == [big] and not report.released
    job = store.get(big)
    assert job["status"] == "FAILED" and job["error_class"] == "input_too_large" and job["attempts"] == 1
    assert job["error"] == ("the uploaded image is 100,004 bytes, over the limit of 20,000 bytes; send a smaller image")
    assert_untouched(store, others)


def presign_and_submit(api: TestClient, files: list[bytes]) -> tuple[str, list[dict[str, Any]]]:
    r = api.post("/v1/uploads", json={"files": [{"file_name": f"{i}.png"} for i in range(len(files))], "model": "red"})
    assert r.status_code == 201, r.text
    jobs = r.json()["jobs"]
    for job, data in zip(jobs, files, strict=True):
        post(job, data)
    assert api.post(r.json()["submit_url"]).status_code == 202
    return r.json()["batch_id"], jobs


def post(job: dict[str, Any], data: bytes) -> None:
    r = presigned_post(job, data)
    assert r.status_code == 204, r.text


def test_a_presigned_object_replaced_after_submit_fails_its_job_alone(
    worker_settings: Settings, store: JobStore, registry: ModelRegistry, models_dir: Path, tmp_path: Path
) -> None:
    """The presigned POST stays valid after submit; posting again (here a 10x oversized file, which moto stores
    although the policy's content-length-range forbids it) must not get an unchecked object processed."""
    limit = 20_000
    settings = worker_settings.model_copy(update={"max_upload_bytes": limit, "batch_window_s": 0.0})
    api_models = tmp_path / "models"  # the API reads cards only, and refuses a folder with a broken one
    shutil.copytree(models_dir / "red", api_models / "red")
    with TestClient(create_app(settings.model_copy(update={"models_dir": api_models})), headers=AUTH) as api:
        _, jobs = presign_and_submit(api, [photo(0), photo(4), photo(8)])
    post(jobs[1], b"\x89PNG" + bytes(10 * limit))
    ids = [j["job_id"] for j in jobs]

    report = run_batch(settings, ids, registry=registry, metrics_stream=io.StringIO())

    assert report.ok and report.failed == [ids[1]] and not report.released
    replaced = store.get(ids[1])
    assert replaced["status"] == "FAILED" and replaced["error_class"] == "input_replaced"
    assert replaced["error"] == "the uploaded image was replaced after it was submitted; upload it again in a new batch"
    assert_untouched(store, [ids[0], ids[2]])


class DeniedFor:
    """A real boto3 S3 client whose reads of one key fail as a role without s3:GetObject would (AWS's own text)."""

    def __init__(self, real: Any, key: str) -> None:
        self._real, self._key = real, key

    def __getattr__(self, op: str) -> Any:
        method = getattr(self._real, op)
        if op != "get_object":
            return method

        def call(**kwargs: Any) -> Any:
            if kwargs.get("Key") == self._key:
                raise access_denied()
            return method(**kwargs)

        return call


def test_an_access_denied_job_records_the_code_and_the_log_keeps_the_text(
    worker_settings: Settings, store: JobStore, s3: Any, registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    denied = submit(store, s3, worker_settings, photo(0), model="red")
    fine = submit(store, s3, worker_settings, photo(8), model="red")
    one_try = worker_settings.model_copy(update={"max_attempts": 1})
    wrapped = DeniedFor(s3, store.get(denied)["input_key"])
    with caplog.at_level(logging.INFO, logger="runtime.worker.batch"):
        report = run_batch(one_try, [denied, fine], registry=registry, s3=wrapped, metrics_stream=io.StringIO())
    assert report.failed == [denied]  # the one attempt was used: it gave up
    job = store.get(denied)
    assert job["error"] == "gave up after 1 attempts: temporary storage error (AccessDenied on GetObject)"
    assert not leaks(job["error"]) and not leaks(job.get("last_error", ""))
    assert any(leaks(r.getMessage()) and denied in r.getMessage() for r in caplog.records)  # the log has the text
    assert_untouched(store, [fine])


@pytest.mark.parametrize(
    ("exc", "error_class", "reason"),
    [
        (access_denied(), "aws_error", "temporary storage error (AccessDenied on GetObject)"),
        (ValueError(f"bad value from {access_denied()}"), "processing_error", "processing failed (ValueError)"),
        (
            ModelSourceUnavailable("model 'mine' could not be fetched: s3://m/mine/ (AccessDenied on GetObject)"),
            "aws_error",
            "temporary storage error: model 'mine' could not be fetched",
        ),
    ],
)
def test_failure_reasons_carry_codes_not_library_text(exc: BaseException, error_class: str, reason: str) -> None:
    failure = classify(exc)
    assert failure.error_class == error_class and failure.reason.startswith(reason)
    assert not leaks(failure.reason)
