"""Acceptance on the real models in runtime/models and real photos, through the full batch path on moto.

One batch for the whole module (the text model is the slow part: about a second per image on one core).
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
import skimage.data
from PIL import Image

from local.resources import create_resources
from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.settings import DEFAULT_MODELS_DIR, Settings
from runtime.worker.batch import run_batch
from runtime.worker.models import ModelRegistry
from tests.worker.helpers import encode, read_png, submit

HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"

# (job name, model, image factory)
CASES: dict[str, tuple[str, Any]] = {
    "person_astronaut": ("person", skimage.data.astronaut),
    "person_hopper": ("person", lambda: np.asarray(Image.open(HOPPER).convert("RGB"))),
    "person_rocket": ("person", skimage.data.rocket),
    "text_page": ("text", skimage.data.page),
    "text_astronaut": ("text", skimage.data.astronaut),
    "otsu_coins": ("otsu", skimage.data.coins),
}


@pytest.fixture(scope="module")
def outcome(moto_endpoint: str) -> tuple[dict[str, dict[str, Any]], Settings]:
    resources = create_resources(moto_endpoint, prefix=f"t{uuid.uuid4().hex[:12]}")
    settings = resources.settings(models_dir=DEFAULT_MODELS_DIR)
    store = JobStore.from_settings(settings)
    s3 = client("s3", settings)
    ids = {
        name: submit(store, s3, settings, encode(factory(), "JPEG", quality=92), model=model, ext="jpg")
        for name, (model, factory) in CASES.items()
    }
    report = run_batch(
        settings, list(ids.values()), registry=ModelRegistry(DEFAULT_MODELS_DIR), metrics_stream=io.StringIO()
    )
    assert report.ok and sorted(report.succeeded) == sorted(ids.values()), report.summary()
    jobs = store.get_many(list(ids.values()))
    return {name: jobs[job_id] for name, job_id in ids.items()}, settings


def test_person_photos_are_segmented_and_the_mask_covers_the_person(outcome: Any) -> None:
    jobs, settings = outcome
    s3 = client("s3", settings)
    for name, face_xy, background_xy in (
        ("person_astronaut", (230, 100), (490, 20)),
        ("person_hopper", (270, 200), (20, 20)),
    ):
        job = jobs[name]
        person = job["result"]["classes"]["person"]
        assert 0.25 < person["fraction"] < 0.85, (name, person)
        assert person["largest_component_pixels"] > 0.8 * person["pixels"]  # one body, not speckles
        mask = np.asarray(read_png(s3, settings.bucket, job["mask_key"]))
        assert mask.shape == (job["result"]["height"], job["result"]["width"])
        assert mask[face_xy[1], face_xy[0]] == 1, f"{name}: the face is not in the mask"
        assert mask[background_xy[1], background_xy[0]] == 0, f"{name}: the background corner is in the mask"


def test_rocket_scene_has_almost_no_person(outcome: Any) -> None:
    jobs, _ = outcome
    assert jobs["person_rocket"]["result"]["classes"]["person"]["fraction"] < 0.02


def test_text_model_finds_text_on_a_page_and_almost_none_on_a_portrait(outcome: Any) -> None:
    jobs, _ = outcome
    page = jobs["text_page"]["result"]["classes"]["text"]
    portrait = jobs["text_astronaut"]["result"]["classes"]["text"]
    assert page["fraction"] > 0.05 and page["components"] >= 5, page  # the page has several lines of text
    assert portrait["fraction"] < 0.01, portrait
    assert page["fraction"] > 10 * portrait["fraction"]
    wide = max(b[2] / max(1, b[3]) for b in page["bboxes"])
    assert wide > 5  # text lines are long, thin boxes


def test_classical_otsu_counts_coins(outcome: Any) -> None:
    jobs, _ = outcome
    coins = jobs["otsu_coins"]["result"]["classes"]["foreground"]
    assert 0.1 < coins["fraction"] < 0.6 and coins["components"] >= 10, coins
