"""``make dev`` as a user runs it: start ``python -m local.dev``, follow its printed curl example with the
sample portrait, get a person fraction within 30 s, then SIGTERM it and find nothing left running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from local.procs import spawn, wait_until
from tests.e2e.conftest import _alive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_make_dev_curl_example_then_clean_stop(tmp_path: Path) -> None:
    state = tmp_path / "state"
    out = (tmp_path / "dev.out").open("wb")
    proc = spawn([sys.executable, "-m", "local.dev", "--state-dir", str(state)], stdout=out, stderr=out)
    try:
        printed_all = lambda: "Ctrl-C stops everything" in (tmp_path / "dev.out").read_text()  # noqa: E731
        wait_until(lambda: printed_all() or proc.poll() is not None, timeout_s=90, what="the dev banner")
        assert proc.poll() is None, (tmp_path / "dev.out").read_text()
        info = json.loads((state / "dev.json").read_text())
        printed = (tmp_path / "dev.out").read_text()
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
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        out.close()
    assert returncode == 0, (tmp_path / "dev.out").read_text()
    assert not (state / "dev.json").exists()
    children = [pid for pid in info["child_pids"].values() if pid]
    assert len(children) == 2 and not [pid for pid in children if _alive(pid)]
    launched = [json.loads(line) for line in (tmp_path / "dev.out").read_text().splitlines() if '"event"' in line]
    workers = [e["pid"] for e in launched if e["event"] == "worker_launched"]
    assert workers and not [pid for pid in workers if _alive(pid)]
