"""``make dev`` as a user runs it: start ``python -m local.dev``, follow its printed curl example with the
sample portrait, get a person fraction within 30 s; kill its API and find it back; then SIGTERM it and find nothing
left running. And when its moto server dies, it stops with a message that says what was lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.procs import http_ok, spawn, wait_until
from tests.e2e.conftest import _alive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _start_dev(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, dict[str, Any]]:
    state = tmp_path / "state"
    output = tmp_path / "dev.out"
    out = output.open("wb")
    proc = spawn([sys.executable, "-m", "local.dev", "--state-dir", str(state)], stdout=out, stderr=out)
    out.close()  # the child has its own copy
    printed_all = lambda: "Ctrl-C stops everything" in output.read_text()  # noqa: E731
    try:
        wait_until(lambda: printed_all() or proc.poll() is not None, timeout_s=90, what="the dev banner")
    except TimeoutError:
        proc.kill()
        raise
    assert proc.poll() is None, output.read_text()
    return proc, state, json.loads((state / "dev.json").read_text())


def _children(*infos: dict[str, Any]) -> set[int]:
    return {pid for info in infos for pid in info["child_pids"].values() if pid}


def test_make_dev_curl_example_api_restart_then_clean_stop(tmp_path: Path) -> None:
    proc, state, info = _start_dev(tmp_path)
    output = tmp_path / "dev.out"
    restarted: dict[str, Any] = {}
    try:
        printed = output.read_text()
        assert info["api_key"] in printed and f"curl -s -F file=@{state / 'sample.jpg'}" in printed
        # The web console's URL is printed, and it serves the page (no key needed to load it).
        assert f"console    {info['endpoint']}/ " in printed
        page = httpx.get(info["endpoint"] + "/", timeout=10)
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]

        # The curl example: multipart upload of the sample portrait, then the job's status URL.
        headers = {"X-Api-Key": info["api_key"]}
        photo = (state / "sample.jpg").read_bytes()
        started = time.monotonic()
        answer = httpx.post(
            f"{info['endpoint']}/v1/images", files={"file": ("sample.jpg", photo)}, headers=headers, timeout=30
        )
        assert answer.status_code == 202, answer.text
        status_url = info["endpoint"] + answer.json()["jobs"][0]["status_url"]
        job: dict = {}

        def done() -> bool:
            job.update(httpx.get(status_url, headers=headers, timeout=10).json())
            return job["status"] in ("SUCCEEDED", "FAILED")

        wait_until(done, timeout_s=30, what="the portrait's result (acceptance: within 30 s)", interval_s=0.25)
        assert job["status"] == "SUCCEEDED", job
        assert job["result"]["classes"]["person"]["fraction"] > 0.3
        print(f"upload to result: {time.monotonic() - started:.1f} s")

        # A crashed API comes back on the same address with the same key; dev.json names the new process.
        os.kill(info["child_pids"]["api"], signal.SIGKILL)

        def api_back() -> bool:
            restarted.update(json.loads((state / "dev.json").read_text()))
            return restarted["child_pids"]["api"] != info["child_pids"]["api"] and http_ok(status_url)

        wait_until(api_back, timeout_s=30, what="make dev to restart its API", interval_s=0.1)
        assert httpx.get(status_url, headers=headers, timeout=10).json()["status"] == "SUCCEEDED"
        assert '"event": "api_restarted"' in output.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert returncode == 0, output.read_text()
    assert not (state / "dev.json").exists()
    children = _children(info, restarted)
    # two moto servers (DynamoDB has its own), the API and the API that replaced it: all gone
    assert len(children) == 4 and not [pid for pid in children if _alive(pid)]
    launched = [json.loads(line) for line in output.read_text().splitlines() if '"event"' in line]
    workers = [e["pid"] for e in launched if e["event"] == "worker_launched"]
    assert workers and not [pid for pid in workers if _alive(pid)]


@pytest.mark.parametrize(("server", "held"), [("moto", "bucket and queues"), ("moto_dynamodb", "tables")])
def test_make_dev_stops_with_a_clear_message_when_moto_dies(tmp_path: Path, server: str, held: str) -> None:
    proc, state, info = _start_dev(tmp_path)
    os.kill(info["child_pids"][server], signal.SIGKILL)
    try:
        returncode = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    printed = (tmp_path / "dev.out").read_text()
    assert returncode == 1, printed
    assert f"segscale stopped: the moto server (pid {info['child_pids'][server]}) exited" in printed
    assert f"it held this stack's {held} in memory" in printed and "every job and image in them is gone" in printed
    assert not (state / "dev.json").exists()
    assert not [pid for pid in _children(info) if _alive(pid)]
