"""Session plumbing of the least-privilege contract test: record the whole test run's AWS calls, check them last.

``start`` (from ``pytest_configure``) points ``SEGSCALE_AWS_CALL_LOG`` at a file of this session and installs the
recorder in the test process; every process the tests start (API, workers) inherits the variable and records
too. ``contract_tests_last`` moves the contract tests to the end of the run, so in ``make test`` they see the
calls of every other test. Run on their own, they run the suites below in a child pytest first (``SOURCES``):
the end-to-end and fault tests, plus the tests of the calls only some deployments make (Lambda's secret, S3
models).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runtime.common import awscalls

ROOT = Path(__file__).resolve().parents[2]
MARK = "contract"
SOURCES = (
    "tests/e2e",
    "tests/api/test_faults.py",
    "tests/api/test_presign.py",
    "tests/api/test_batch_append.py",
    "tests/api/test_ingest_api.py",
    "tests/api/test_apikey_secret.py",
    "tests/api/test_models_s3.py",
    "tests/worker/test_models_s3.py",
    "tests/results",
)
_state: dict[str, object] = {"collected": set()}


def start() -> None:
    if not os.environ.get(awscalls.LOG_ENV):
        folder = Path(tempfile.mkdtemp(prefix="segscale-aws-calls-"))
        _state["folder"] = folder
        os.environ[awscalls.LOG_ENV] = str(folder / "calls.jsonl")
    awscalls.install()


def finish() -> None:
    folder = _state.pop("folder", None)
    if isinstance(folder, Path):
        os.environ.pop(awscalls.LOG_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def session_log() -> Path:
    return Path(os.environ[awscalls.LOG_ENV])


def contract_tests_last(items: list[pytest.Item]) -> None:
    """Stable reorder: contract tests after everything else; remember which test files this session runs."""
    _state["collected"] = {str(Path(item.path).relative_to(ROOT)) for item in items}
    items.sort(key=lambda item: item.get_closest_marker(MARK) is not None)


def missing_sources() -> list[str]:
    collected = _state["collected"]
    assert isinstance(collected, set)
    return [s for s in SOURCES if not any(path == s or path.startswith(s + "/") for path in collected)]


def record_missing(log: Path) -> list[str]:
    """Run the source suites this session does not run, in a child pytest recording into ``log``."""
    missing = missing_sources()
    if missing:
        env = {**os.environ, awscalls.LOG_ENV: str(log)}
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not cdk", *missing],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"recording run failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    return missing
