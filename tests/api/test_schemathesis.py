"""schemathesis, as an outside tester would run it: the CLI against the API served by uvicorn on the test moto
server, with the API key, every operation, every check and every phase, a fixed seed and a bounded number of
examples. Zero failures; afterwards every object under ``uploads/`` belongs to a job (no orphans).

The run's settings are in ``tests/api/schemathesis.toml`` (413 counts as a rejection of invalid data) and what an
image is in ``tests/api/schemathesis_hooks.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from local.resources import create_resources
from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.keys import parse_upload_key as upload_key_ids
from tests.api.helpers import API_KEY, ApiProcess

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEED = 20261130
MAX_EXAMPLES = 10  # per operation and phase: about a minute on the 2-core CI machine
RUN_TIMEOUT_S = 240  # a hung run fails here rather than at pytest's global timeout

pytestmark = pytest.mark.slow


def test_schemathesis_finds_nothing(moto_endpoint: str, tmp_path: Path) -> None:
    resources = create_resources(moto_endpoint, prefix=f"f{uuid.uuid4().hex[:12]}")
    with ApiProcess(resources, tmp_path / "logs") as api:
        document = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
        operations = sum(len(methods) for methods in document["paths"].values())
        argv = [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{api.url}/openapi.json",
            "--header",
            f"X-Api-Key: {API_KEY}",
            "--checks",
            "all",
            "--seed",
            str(SEED),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--workers",
            "1",  # two threads once tripped CPython 3.11's "AST constructor recursion depth mismatch" in schemathesis
            "--no-color",
        ]
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.api.schemathesis_hooks",
            "PYTHONPATH": str(REPO),
        }
        run = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-12000:]
    assert f"{operations} selected / {operations} total" in report and f"Tested: {operations}" in report, report[-3000:]

    settings = resources.settings()
    s3 = client("s3", settings)
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=resources.bucket)
        for o in page.get("Contents", [])
    ]
    store = JobStore.from_settings(settings, client("dynamodb", settings))
    parsed = {key: upload_key_ids(key) for key in keys}
    jobs = store.get_many([ids[1] for ids in parsed.values() if ids])
    orphans = [k for k, ids in parsed.items() if ids is None or jobs.get(ids[1], {}).get("input_key") != k]
    assert keys and not orphans, f"{len(orphans)} of {len(keys)} objects have no job, e.g. {orphans[:3]}"
