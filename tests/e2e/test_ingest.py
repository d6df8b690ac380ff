"""S3 ingestion on the local stack, end to end: ``segscale submit`` of a prefix of real photos and of a manifest
(an object deleted before the worker reads it fails with a reason), the drop folder sealed by its marker, and
``segscale watch`` with files added while it runs, stopped by Ctrl-C and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.dev import LocalStack
from runtime.common.aws import client
from runtime.common.sources import inbox_batch_id
from segscale_cli.client import ApiClient
from segscale_cli.main import main as cli
from tests.e2e.conftest import StackFactory
from tests.e2e.photos import small_images

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SOURCE = "e2e-camera-roll"
PHOTOS = 24
DEADLINE_S = 240


@pytest.fixture(scope="module")
def stack(make_stack: StackFactory) -> LocalStack:
    stack = make_stack(
        max_workers=2,
        reconcile_interval_s=2.0,
        settings={"batch_window_s": "0.2", "ingest_sources": f"s3://{SOURCE}/photos/,s3://{SOURCE}/lists/"},
    )
    client("s3", stack.settings).create_bucket(Bucket=SOURCE)
    return stack


def target(stack: LocalStack) -> list[str]:
    return ["--endpoint", stack.api_url, "--api-key", stack.api_key, "--no-progress"]


def view(stack: LocalStack, batch_id: str) -> dict:
    with ApiClient(stack.api_url, stack.api_key) as api:
        return api.batch_page(batch_id, limit=1000)


def test_submit_a_prefix_of_photos_and_a_manifest(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = client("s3", stack.settings)
    for name, data in small_images(PHOTOS, size=64):
        s3.put_object(Bucket=SOURCE, Key=f"photos/roll/{name}", Body=data)
    s3.put_object(Bucket=SOURCE, Key="photos/roll/thumbs.db", Body=b"not an image")
    assert cli(["submit", *target(stack), f"s3://{SOURCE}/photos/roll/"]) == 0
    batch_id = capsys.readouterr().out.strip()
    assert cli(["wait", *target(stack), "--timeout", str(DEADLINE_S), "--interval", "0.5", batch_id]) == 0
    done = view(stack, batch_id)
    assert done["state"] == "COMPLETED" and done["counts"]["SUCCEEDED"] == PHOTOS and done["ingest"]["skipped"] == 1
    assert {j["file_name"] for j in done["jobs"]} == {name for name, _ in small_images(PHOTOS, size=64)}

    s3.put_object(Bucket=SOURCE, Key="photos/m/kept.jpg", Body=small_images(1)[0][1])
    s3.put_object(Bucket=SOURCE, Key="photos/m/text.jpg", Body=b"this is not a JPEG at all")
    s3.put_object(Bucket=SOURCE, Key="lists/m.txt", Body=b"photos/m/kept.jpg\nphotos/m/text.jpg\nphotos/m/gone.jpg\n")
    assert cli(["submit", *target(stack), "--manifest", f"s3://{SOURCE}/lists/m.txt"]) == 0
    batch_id = capsys.readouterr().out.strip()
    assert cli(["wait", *target(stack), "--timeout", str(DEADLINE_S), "--interval", "0.5", batch_id]) == 1
    assert "2 job(s) failed" in capsys.readouterr().err
    jobs = {j["file_name"]: j for j in view(stack, batch_id)["jobs"]}
    assert jobs["kept.jpg"]["status"] == "SUCCEEDED"
    assert jobs["text.jpg"]["status"] == "FAILED" and jobs["text.jpg"]["error"]
    assert jobs["gone.jpg"]["status"] == "FAILED" and "no longer in storage" in jobs["gone.jpg"]["error"]


def test_the_drop_folder_completes_when_sealed(stack: LocalStack) -> None:
    s3 = client("s3", stack.settings)
    for name, data in small_images(3, size=64):
        s3.put_object(Bucket=stack.settings.bucket, Key=f"inbox/e2e-drop/{name}", Body=data)
    s3.put_object(Bucket=stack.settings.bucket, Key="inbox/e2e-drop/_SEALED", Body=b"")
    batch_id = inbox_batch_id("e2e-drop")
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if view(stack, batch_id).get("state") == "COMPLETED":
                break
        except Exception:  # not there before the first reconcile pass drains the inbox
            pass
        time.sleep(0.5)
    done = view(stack, batch_id)
    assert done["state"] == "COMPLETED" and done["counts"]["SUCCEEDED"] == 3
    assert done["ingest"]["inbox_name"] == "e2e-drop"


def wait_watching(proc: subprocess.Popen[str]) -> None:
    """Until the watch says it is watching (its Ctrl-C handler is in place by then)."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("watching "), line


def test_watch_sends_files_added_while_it_runs_and_skips_them_after_a_restart(
    stack: LocalStack, tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    images = small_images(6, size=64)
    (folder / images[0][0]).write_bytes(images[0][1])
    command = [sys.executable, "-m", "segscale_cli", "watch", *target(stack), "--interval", "0.2", str(folder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_watching(proc)
    for name, data in images[1:]:  # while it runs
        (folder / name).write_bytes(data)
        time.sleep(0.1)
    sent_file = folder / ".segscale-sent.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not sent_file.exists() or sent_file.read_text().count(".jpg") < 6):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    batch_id = out.strip()
    assert "6 file(s) sent" in err
    first = view(stack, batch_id)
    assert first["total"] == 6 and first["sealed"]

    again = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_watching(again)
    time.sleep(1)  # a few looks at the folder
    again.send_signal(signal.SIGINT)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and out.strip() == "" and "0 file(s) sent" in err
