"""Helpers for the results tests: jobs in chosen states, made through the real JobStore transitions."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from runtime.common import keys
from runtime.common.jobs import JobStatus, JobStore, NewJob
from runtime.common.settings import Settings


class Clock:
    """A controllable clock for ``store.clock``: tests move time instead of sleeping."""

    def __init__(self, start: int = 1_700_000_000_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


def new_job(
    store: JobStore,
    batch_id: str,
    *,
    file_name: str = "a.jpg",
    model: str = "person",
    size_bytes: int = 1000,
    mm_per_pixel: float | None = None,
    status: JobStatus = JobStatus.QUEUED,
) -> str:
    job_id = uuid.uuid4().hex
    store.create(
        NewJob(
            job_id=job_id,
            batch_id=batch_id,
            input_key=keys.upload_key(batch_id, job_id, "jpg"),
            file_name=file_name,
            model=model,
            size_bytes=size_bytes,
            image_format="JPEG",
            width=64,
            height=48,
            mm_per_pixel=mm_per_pixel,
        ),
        status=status,
    )
    return job_id


def person_result(pixels: int, *, mm_per_pixel: float | None = None, total_ms: float = 60.0) -> dict[str, Any]:
    """A ``result`` attribute in the shape of docs/contracts.md."""
    person: dict[str, Any] = {
        "pixels": pixels,
        "fraction": pixels / (64 * 48),
        "components": 1,
        "largest_component_pixels": pixels,
        "bboxes": [[0, 0, 8, 8]],
    }
    if mm_per_pixel is not None:
        person["area_mm2"] = pixels * mm_per_pixel**2
    return {
        "model": "person",
        "model_version": "1.0",
        "width": 64,
        "height": 48,
        "mm_per_pixel": mm_per_pixel,
        "classes": {"person": person},
        "timings_ms": {
            "download": 1.5,
            "decode": 2.0,
            "preprocess": 3.0,
            "inference": 40.0,
            "postprocess": 4.0,
            "upload": 6.0,
            "total": total_ms,
        },
    }


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    """Two cards (card-only folders: the results task reads cards, never model files)."""
    root = tmp_path / "models"
    for name, classes in {"person": ["person"], "text": ["text"]}.items():
        folder = root / name
        folder.mkdir(parents=True)
        card = {
            "name": name,
            "version": "1.0",
            "license": "Apache-2.0",
            "source": "test",
            "runtime": "opencv",
            "processor": "otsu",
            "classes": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
        }
        (folder / "card.json").write_text(json.dumps(card))
    return root


@pytest.fixture()
def rsettings(settings: Settings, models_dir: Path) -> Settings:
    """The shared test settings, with our cards and a short stuck threshold."""
    return settings.model_copy(update={"models_dir": models_dir, "stuck_after_s": 60, "presign_expiry_s": 900})


@pytest.fixture()
def clock(store: JobStore) -> Clock:
    c = Clock()
    store.clock = c
    return c
