"""Results find the user, on the local stack: a sealed batch of 50 photos gives 50 job events and one Batch
Completed on the (moto) EventBridge bus, and one signed webhook delivery that verifies with the documented recipe."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from local.dev import LocalStack
from runtime.common.aws import client
from segscale_cli.client import ApiClient
from segscale_cli.main import main as cli
from tests.e2e.conftest import StackFactory
from tests.e2e.photos import small_images
from tests.results.test_notify import documented_verifier

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PHOTOS = 50
DEADLINE_S = 240


def test_a_sealed_batch_of_50_photos_notifies_once_on_the_bus_and_by_webhook(
    make_stack: StackFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack: LocalStack = make_stack(max_workers=2, settings={"batch_window_s": "0.5"})
    assert stack.events is not None and stack.webhooks is not None and stack.notifier is not None
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, data in small_images(PHOTOS, size=64):
        (folder / name).write_bytes(data)
    target = ["--endpoint", stack.api_url, "--api-key", stack.api_key, "--no-progress"]

    # The CLI creates the batch with its webhook, uploads ten photos a request, and seals it when all are sent.
    args = ["upload", *target, "--notify-url", stack.webhooks.url, "--files-per-request", "10", str(folder)]
    assert cli(args) == 0
    batch_id = capsys.readouterr().out.strip()
    assert cli(["wait", *target, "--timeout", str(DEADLINE_S), "--interval", "0.5", batch_id]) == 0
    assert f"{PHOTOS} succeeded, 0 failed" in capsys.readouterr().err

    deadline = time.monotonic() + 60  # completion -> notify (export, report, event, webhook)
    while time.monotonic() < deadline and not (
        stack.events.of_type("Batch Completed", batch_id) and stack.webhooks.deliveries
    ):
        time.sleep(0.5)
    time.sleep(2)  # anything duplicated would arrive now

    jobs = stack.events.of_type("Job Succeeded", batch_id)
    assert len(jobs) == PHOTOS and len({e["detail"]["job_id"] for e in jobs}) == PHOTOS
    assert stack.events.of_type("Job Failed", batch_id) == []
    (completed,) = stack.events.of_type("Batch Completed", batch_id)
    detail = completed["detail"]
    assert detail["counts"] == {"SUCCEEDED": PHOTOS, "FAILED": 0} and detail["total"] == PHOTOS
    s3 = client("s3", stack.settings)
    for part in ("export", "report"):
        assert s3.head_object(Bucket=detail[part]["bucket"], Key=detail[part]["key"])["ContentLength"] > 0

    (delivery,) = stack.webhooks.deliveries
    secret = client("secretsmanager", stack.settings).get_secret_value(SecretId=stack.notifications.secret_arn)
    headers = {name: delivery.headers[name.lower()] for name in ("Segscale-Timestamp", "Segscale-Signature")}
    assert documented_verifier()(secret["SecretString"], headers, delivery.body)
    body = delivery.json()
    assert body["id"] == detail["event_id"] == delivery.headers["segscale-event-id"]
    assert body["detail"] == detail

    with ApiClient(stack.api_url, stack.api_key) as api:
        view = api.batch_page(batch_id, limit=1)
    assert view["state"] == "COMPLETED" and view["progress"]["done"] == PHOTOS
    assert view["webhook"]["state"] == "delivered" and view["webhook"]["attempt_count"] == 1
    assert view["export_key"] == detail["export"]["key"]
