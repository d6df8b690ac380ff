"""The worker's fast path against its reference path, on the project's real photos and the real models.

Fast path: what the worker runs (a JPEG decoded only as large as the model input and the overlay need, the
probabilities upsampled as 16-bit integers). Reference path: the same code with every pixel decoded
(``load_photo(full=True)``) and float upsampling (``ModelRegistry(exact=True)``), i.e. how the worker computed
masks before those two changes. Per class, the fraction of the image may move by at most 0.5 percentage points
and the mask IoU must be at least 0.99. The photos are used at their own size, at 1.5 MP and at 12 MP (stored
sideways with an EXIF rotation, as phones store portrait photos), where reduced decoding actually happens.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from runtime.common.settings import DEFAULT_MODELS_DIR
from runtime.worker.models import ModelRegistry
from runtime.worker.process import Analysis, Photo, analyse, load_photo
from tests.models.photos import photo

MAX_FRACTION_MOVE = 0.005  # 0.5 percentage points
MIN_IOU = 0.99
MAX_PIXELS = 20_000_000
PHONE = 4032  # long side of a 12 MP phone photo


@pytest.fixture(scope="module")
def fast() -> ModelRegistry:
    return ModelRegistry(DEFAULT_MODELS_DIR)


@pytest.fixture(scope="module")
def reference() -> ModelRegistry:
    return ModelRegistry(DEFAULT_MODELS_DIR, exact=True)


def jpeg(rgb: np.ndarray, long_side: int | None, *, sideways: bool = False) -> bytes:
    img = Image.fromarray(rgb)
    if long_side is not None:
        scale = long_side / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    if sideways:
        img = img.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6  # "rotate 90 clockwise to display": upright again
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92, exif=exif)
    return buf.getvalue()


def both(model: str, data: bytes, fast: ModelRegistry, reference: ModelRegistry) -> tuple[Photo, Analysis, Analysis]:
    photo_fast = load_photo(fast.card(model), data, max_pixels=MAX_PIXELS)
    photo_ref = load_photo(reference.card(model), data, max_pixels=MAX_PIXELS, full=True)
    assert photo_fast.size == photo_ref.size == photo_ref.rgb.shape[:2]
    got = analyse(fast.get(model), photo_fast, mm_per_pixel=None)
    want = analyse(reference.get(model), photo_ref, mm_per_pixel=None)
    return photo_fast, got, want


def assert_close(model: str, got: Analysis, want: Analysis, fast: ModelRegistry) -> None:
    assert got.labels.shape == want.labels.shape
    for c in fast.card(model).classes:
        moved = abs(got.classes[c.name]["fraction"] - want.classes[c.name]["fraction"])
        assert moved <= MAX_FRACTION_MOVE, f"{c.name}: fraction moved by {100 * moved:.3f} percentage points"
        ours, theirs = got.labels == c.id, want.labels == c.id
        union = int(np.count_nonzero(ours | theirs))
        if union:
            iou = np.count_nonzero(ours & theirs) / union
            assert iou >= MIN_IOU, f"{c.name}: mask IoU {iou:.4f}"


CASES = [
    pytest.param(name, size, id=f"{name}-{size or 'own size'}")
    for name in ("astronaut", "grace_hopper", "rocket", "coffee")
    for size in (None, 1600)
]
CASES += [pytest.param(name, PHONE, id=f"{name}-12MP") for name in ("grace_hopper", "coffee")]
CASES += [pytest.param(name, PHONE, id=f"{name}-12MP", marks=pytest.mark.slow) for name in ("astronaut", "rocket")]


@pytest.mark.parametrize(("name", "long_side"), CASES)
def test_person_model_keeps_its_masks(
    name: str, long_side: int | None, fast: ModelRegistry, reference: ModelRegistry
) -> None:
    data = jpeg(photo(name), long_side, sideways=long_side == PHONE)
    decoded, got, want = both("person", data, fast, reference)
    if long_side == PHONE:
        assert decoded.rgb.shape[0] < decoded.size[0]  # the reduced path really ran
    assert_close("person", got, want, fast)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["page", "astronaut"])
def test_text_model_keeps_its_masks(name: str, fast: ModelRegistry, reference: ModelRegistry) -> None:
    _, got, want = both("text", jpeg(photo(name), 1600), fast, reference)
    assert_close("text", got, want, fast)


def test_a_full_resolution_card_gets_every_pixel(fast: ModelRegistry, reference: ModelRegistry) -> None:
    """The Otsu card asks for ``full_resolution``: same pixels, same mask, even for a 12 MP phone photo."""
    coins = np.repeat(skimage.data.coins()[:, :, None], 3, axis=2)
    decoded, got, want = both("otsu", jpeg(coins, PHONE, sideways=True), fast, reference)
    assert decoded.rgb.shape[:2] == decoded.size
    assert np.array_equal(got.labels, want.labels) and got.classes == want.classes
