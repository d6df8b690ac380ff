"""The call recorder itself: who made a call, what it names, under which settings; harness calls stay out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.common import awscalls
from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.contract.calls import Recording, Target, needs

# Code that runs as if it were the worker's (its module name is what the recorder reads from the stack).
WORKER_CODE = """
def touch(settings, key):
    s3 = client("s3", settings)
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"x")
    s3.generate_presigned_url("get_object", Params={"Bucket": settings.bucket, "Key": key})
    s3.list_objects_v2(Bucket=settings.bucket, Prefix="results/")
"""


@pytest.fixture()
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv(awscalls.LOG_ENV, str(path))
    monkeypatch.setattr(awscalls, "_noted", set())  # a fresh process: every configuration is written again
    monkeypatch.setattr(awscalls, "_seen_objects", {})
    return path


def worker_touch(settings: Settings, key: str) -> None:
    namespace: dict[str, Any] = {"__name__": "runtime.worker.probe", "client": client}
    exec(compile(WORKER_CODE, "runtime/worker/probe.py", "exec"), namespace)
    namespace["touch"](settings, key)


def test_a_containers_calls_are_recorded_with_their_settings(log: Path, settings: Settings) -> None:
    client("s3", settings).put_object(Bucket=settings.bucket, Key="uploads/harness.jpg", Body=b"x")  # the test's own
    worker_touch(settings, "results/a/mask.png")
    rec = Recording.load([log])
    described = sorted(c.describe() for c in rec.calls)
    assert described == [
        f"worker: s3.GetObject(Bucket={settings.bucket!r}, Key='results/a/mask.png') (presigned URL)",
        f"worker: s3.ListObjectsV2(Bucket={settings.bucket!r}, Prefix='results/')",
        f"worker: s3.PutObject(Bucket={settings.bucket!r}, Key='results/a/mask.png')",
    ]
    listing = next(c for c in rec.calls if c.operation == "ListObjectsV2")
    (need,) = needs(listing, rec)
    assert need.action == "s3:ListBucket" and need.target == Target("bucket", "s3-bucket", "results/")


def test_calls_without_a_configuration_on_their_stack_are_not_guessed(log: Path, settings: Settings) -> None:
    """Library code handed a bucket name but no settings, in a process that knows two configurations: the call
    cannot be placed in a deployment, so it is left unmapped rather than matched by name."""
    client("s3", settings)
    client("s3", settings.model_copy(update={"bucket": "other-data"}))
    namespace: dict[str, Any] = {"__name__": "runtime.results.probe"}
    exec("def get(s3, bucket):\n    s3.list_objects_v2(Bucket=bucket)\n", namespace)
    namespace["get"](client("s3", settings), settings.bucket)
    rec = Recording.load([log])
    (call,) = rec.calls
    assert call.container == "results" and call.configs == frozenset()
    assert [n.target for n in needs(call, rec)] == [None]


def test_the_entry_points_container_owns_the_call(log: Path, settings: Settings) -> None:
    """The API serves a batch's CSV with the results export's code: its calls are the API's."""
    results: dict[str, Any] = {"__name__": "runtime.results.probe", "client": client}
    exec("def export(settings):\n    client('s3', settings).list_objects_v2(Bucket=settings.bucket)\n", results)
    api: dict[str, Any] = {"__name__": "runtime.api.probe", "export": results["export"]}
    exec("def route(settings):\n    export(settings)\n", api)
    api["route"](settings)
    (call,) = Recording.load([log]).calls
    assert call.container == "api"


def test_nothing_is_recorded_when_off(tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(awscalls.LOG_ENV, raising=False)
    worker_touch(settings, "results/b/mask.png")
    assert not list(tmp_path.iterdir())
