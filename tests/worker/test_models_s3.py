"""Models from an S3 prefix, on the moto server over HTTP: fetched at start, checked like baked-in models, and a
bad one fails only its own jobs."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from runtime.api.s3models import S3Cards
from runtime.common.cards import MAX_CARD_BYTES
from runtime.common.jobs import JobStore
from runtime.common.s3uri import S3UriError, parse_s3_prefix
from runtime.common.settings import Settings
from runtime.worker.batch import run_batch
from runtime.worker.models import ModelRegistry
from runtime.worker.models_s3 import add_s3_models, build_registry
from tests.worker.helpers import encode, red_square, submit, write_card

PREFIX = "models/"


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = write_card(tmp_path_factory.mktemp("s3src"), "proto")
    return (folder / "model.onnx").read_bytes()


def card(name: str, **overrides: Any) -> bytes:
    data: dict[str, Any] = {
        "name": name,
        "version": "2",
        "license": "Apache-2.0",
        "source": "tests/worker/test_models_s3.py",
        "input": {"size": [64, 64]},
        "output": {"activation": "none"},
        "classes": [{"id": 1, "name": "red", "color": [255, 0, 0]}],
    }
    data.update(overrides)
    return json.dumps(data).encode()


def put(s3: Any, settings: Settings, files: dict[str, bytes]) -> None:
    for key, body in files.items():
        s3.put_object(Bucket=settings.bucket, Key=PREFIX + key, Body=body)


def with_uri(settings: Settings, uri: str | None = None) -> Settings:
    return settings.model_copy(update={"models_s3_uri": uri or f"s3://{settings.bucket}/{PREFIX}"})


def test_parse_s3_prefix() -> None:
    assert parse_s3_prefix("s3://my-bucket/models").prefix == "models/"
    assert parse_s3_prefix(" s3://my-bucket//a/b// ").uri("x/") == "s3://my-bucket/a/b/x/"
    assert parse_s3_prefix("s3://my-bucket") == parse_s3_prefix("s3://my-bucket/")
    assert parse_s3_prefix("s3://my-bucket").prefix == ""
    for bad in ("my-bucket/models", "https://my-bucket/models", "s3://", "s3://Bad_Bucket/m", "s3://ab/m"):
        with pytest.raises(S3UriError, match=r"models S3 URI '.*' must look like s3://bucket/prefix/"):
            parse_s3_prefix(bad)


def test_s3_model_runs_and_bad_ones_fail_only_their_jobs(
    worker_settings: Settings, store: JobStore, s3: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    sha = hashlib.sha256(model_bytes).hexdigest()
    put(
        s3,
        worker_settings,
        {
            "mine/card.json": card("mine", sha256=sha),
            "mine/model.onnx": model_bytes,
            "wrongsha/card.json": card("wrongsha", sha256="0" * 64),
            "wrongsha/model.onnx": model_bytes,
            "badcard/card.json": card("badcard", license=""),
            "badcard/model.onnx": model_bytes,
            "renamed/card.json": card("other"),
            "renamed/model.onnx": model_bytes,
            "nofile/card.json": card("nofile"),
            "binary/card.json": b"\xff\xfe\x00card",
            "red/card.json": card("red", classes=[{"id": 1, "name": "stolen"}]),  # a baked-in name
            "red/model.onnx": model_bytes,
        },
    )
    settings = with_uri(worker_settings)
    image = encode(red_square(128, (32, 32, 64, 64)))
    jobs = {m: submit(store, s3, settings, image, model=m) for m in ("mine", "red", "wrongsha", "badcard", "renamed")}
    jobs["nofile"] = submit(store, s3, settings, image, model="nofile")
    jobs["binary"] = submit(store, s3, settings, image, model="binary")

    report = run_batch(settings, list(jobs.values()), worker_id="w-s3")

    assert sorted(report.succeeded) == sorted([jobs["mine"], jobs["red"]]) and report.ok
    mine = store.get(jobs["mine"])
    assert mine is not None and mine["status"] == "SUCCEEDED"
    assert mine["result"]["model"] == "mine" and abs(mine["result"]["classes"]["red"]["pixels"] - 64 * 64) <= 512
    baked = store.get(jobs["red"])
    assert baked is not None and "red" in baked["result"]["classes"]  # the baked card, not the S3 "stolen" one
    uri = f"s3://{settings.bucket}/{PREFIX}"
    reasons = {
        "wrongsha": f"{uri}wrongsha/model.onnx does not match the sha256",
        "badcard": f"{uri}badcard/card.json: license",
        "renamed": "card name 'other' must match its folder name 'renamed'",
        "nofile": f"{uri}nofile/model.onnx is missing",
        "binary": f"{uri}binary/card.json: cannot read the card as UTF-8 text",
    }
    for name, reason in reasons.items():
        job = store.get(jobs[name])
        assert job is not None and job["status"] == "FAILED" and job["error_class"] == "model_error", name
        assert reason in job["error"], job["error"]


def test_baked_model_wins_a_clash_and_files_land_in_a_temp_dir(
    worker_settings: Settings, s3: Any, model_bytes: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    put(
        s3,
        worker_settings,
        {
            "red/card.json": card("red", version="99"),
            "red/model.onnx": model_bytes,
            "mine/card.json": card("mine"),
            "mine/model.onnx": model_bytes,
            "classic/card.json": card("classic", runtime="opencv", processor="otsu", input=None, output=None),
            "Bad Name/card.json": card("bad"),
            "deeper/x/card.json": card("x"),
        },
    )
    registry = build_registry(worker_settings, s3)  # no URI: only the baked-in folder
    assert "mine" not in registry.cards and not registry.temp_dirs
    with caplog.at_level(logging.WARNING, logger="runtime.worker.models_s3"):
        add_s3_models(registry, s3, f"s3://{worker_settings.bucket}/{PREFIX}", tmp_root=tmp_path)
    assert registry.cards["red"].version == "1" and "red" not in registry.files
    assert any("baked-in model of the same name" in r.getMessage() for r in caplog.records)
    assert set(registry.files) == {"mine"} and registry.files["mine"].is_relative_to(tmp_path)
    assert "Bad Name" not in registry.broken and "deeper" not in registry.broken and "x" not in registry.cards
    assert registry.get("mine").card.version == "2" and registry.get("classic").card.runtime == "opencv"
    registry.close()
    assert not any(tmp_path.iterdir())


def test_unreadable_prefix_releases_unknown_models_and_serves_baked_ones(
    worker_settings: Settings, store: JobStore, s3: Any
) -> None:
    settings = with_uri(worker_settings, "s3://no-such-bucket-for-models/models/")
    image = encode(red_square(64, (8, 8, 16, 16)))
    baked = submit(store, s3, settings, image, model="red")
    extra = submit(store, s3, settings, image, model="mine")

    report = run_batch(settings.model_copy(update={"queue_url": ""}), [baked, extra], worker_id="w-s3")

    assert report.succeeded == [baked] and report.released == [extra]
    job = store.get(extra)
    assert job is not None and job["status"] == "QUEUED" and "could not be listed" in job["last_error"]


def test_bad_uri_hands_back_unknown_models_with_the_reason(worker_settings: Settings, s3: Any) -> None:
    registry = build_registry(with_uri(worker_settings, "models/"), s3)
    with pytest.raises(ConnectionError, match="must look like s3://bucket/prefix/"):
        registry.card("mine")
    assert registry.card("red").name == "red"


def test_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSCALE_MODELS_S3_URI", "s3://my-bucket/models/")
    assert Settings().models_s3_uri == "s3://my-bucket/models/"
    monkeypatch.delenv("SEGSCALE_MODELS_S3_URI")
    assert Settings().models_s3_uri is None


def test_worker_and_api_apply_the_same_card_rules(
    worker_settings: Settings, s3: Any, model_bytes: bytes, tmp_path: Path
) -> None:
    """Every folder the API refuses, the worker refuses with the same reason, so no accepted job meets a surprise."""
    put(
        s3,
        worker_settings,
        {
            "ok/card.json": card("ok"),
            "ok/model.onnx": model_bytes,
            "classic/card.json": card("classic", runtime="opencv", processor="otsu", input=None, output=None),
            "bigid/card.json": card("bigid", classes=[{"id": 300, "name": "wide"}]),
            "bigid/model.onnx": model_bytes,
            "escape/card.json": card("escape", file="../model.onnx"),
            "escape/model.onnx": model_bytes,
            "nofile/card.json": card("nofile"),
            "nocard/model.onnx": model_bytes,
            "renamed/card.json": card("other"),
            "notjson/card.json": b"{not json",
            "binary/card.json": b"\xff\xfe\x00card",
            "huge/card.json": card("huge", description="x" * MAX_CARD_BYTES),
            "Bad Name/card.json": card("bad"),
        },
    )
    uri = f"s3://{worker_settings.bucket}/{PREFIX}"
    registry = ModelRegistry(tmp_path / "no-baked-models")
    add_s3_models(registry, s3, uri, tmp_root=tmp_path)
    listing = S3Cards(s3, uri, ttl_s=0.0).listing()
    registry.close()

    assert listing.error is None and registry.source_error is None and not registry.unavailable
    assert set(registry.cards) == set(listing.cards) == {"ok", "classic"}
    assert registry.broken == listing.rejected
    expected = {
        "bigid": f"{uri}bigid/card.json: class ids must be at most 255",
        "escape": f"{uri}escape/card.json: 'file' must be a plain file name, not '../model.onnx'",
        "nofile": f"{uri}nofile/model.onnx is missing",
        "nocard": f"{uri}nocard/card.json is missing",
        "renamed": "card name 'other' must match its folder name 'renamed'",
        "notjson": f"{uri}notjson/card.json: not valid JSON",
        "binary": f"{uri}binary/card.json: cannot read the card as UTF-8 text",
        "huge": f"{uri}huge/card.json is over {MAX_CARD_BYTES} bytes",
    }
    assert set(registry.broken) == set(expected)
    for name, reason in expected.items():
        assert reason in registry.broken[name], registry.broken[name]


def test_a_model_onnxruntime_cannot_load_fails_its_jobs_without_library_text(
    worker_settings: Settings, store: JobStore, s3: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime's message names the worker's temp paths: job records get a stable reason, the log the details."""
    put(s3, worker_settings, {"junk/card.json": card("junk"), "junk/model.onnx": b"not an onnx graph at all"})
    settings = with_uri(worker_settings)
    job_id = submit(store, s3, settings, encode(red_square(64, (8, 8, 16, 16))), model="junk")

    with caplog.at_level(logging.ERROR, logger="runtime.worker.models"):
        run_batch(settings, [job_id], worker_id="w-junk")

    job = store.get(job_id)
    assert job is not None and job["status"] == "FAILED" and job["error_class"] == "model_error"
    assert "model.onnx cannot be loaded by onnxruntime (" in job["error"], job["error"]
    assert "/tmp" not in job["error"] and "segscale-models-" not in job["error"], job["error"]
    logged = " ".join(r.getMessage() for r in caplog.records if r.name == "runtime.worker.models")
    assert "segscale-models-" in logged  # the full text, with the local path, is in the log
