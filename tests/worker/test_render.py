"""The result images: the mask PNG is lossless class ids with the card's palette at any class-id range; the
overlay is a JPEG of at most 1024 px with the classes tinted where the mask has them."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from runtime.common.cards import ClassSpec
from runtime.worker.render import OVERLAY_MAX_SIDE, mask_png, overlay_jpeg, overlay_size, shrink


@pytest.mark.parametrize(
    ("ids", "bits"), [((1,), 1), ((1, 2, 3), 2), ((8, 12, 15), 4), ((3,), 2), ((7, 200), 8), ((255,), 8)]
)
@pytest.mark.parametrize("width", [1, 7, 8, 13, 101])
def test_mask_png_is_lossless_at_the_fewest_bits(ids: tuple[int, ...], bits: int, width: int) -> None:
    classes = tuple(ClassSpec(id=i, name=f"c{i}", color=(i, 255 - i, (7 * i) % 256)) for i in ids)
    labels = np.random.default_rng(width).choice(np.array([0, *ids], dtype=np.uint8), size=(11, width))
    data = mask_png(labels, classes)
    assert data[24] == bits  # IHDR's bit depth: the fewest bits that hold the largest id
    with Image.open(io.BytesIO(data)) as img:
        img.verify()  # chunk CRCs and structure
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "P" and img.size == (width, 11)
        assert np.array_equal(np.asarray(img), labels)
        palette = img.getpalette()
    assert palette is not None
    for c in classes:
        assert tuple(palette[3 * c.id : 3 * c.id + 3]) == c.color
    # Any PNG reader agrees: OpenCV expands the palette to the classes' colours.
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    for c in classes:
        ys, xs = np.nonzero(labels == c.id)
        if ys.size:
            assert tuple(int(v) for v in bgr[ys[0], xs[0], ::-1]) == c.color


def test_a_large_mask_compresses_well() -> None:
    labels = np.zeros((3024, 4032), dtype=np.uint8)
    cv2.circle(labels, (2000, 1500), 1000, 1, -1)
    data = mask_png(labels, (ClassSpec(id=1, name="person"),))
    assert len(data) < 100_000  # 12 MP of one smooth shape
    with Image.open(io.BytesIO(data)) as img:
        assert np.array_equal(np.asarray(img), labels)


@pytest.mark.parametrize(
    ("size", "expected"), [((3024, 4032), (768, 1024)), ((1080, 1440), (768, 1024)), ((500, 300), (500, 300))]
)
def test_overlay_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert overlay_size(*size) == expected
    assert max(overlay_size(*size)) <= OVERLAY_MAX_SIDE


def test_overlay_is_a_jpeg_tinted_exactly_where_the_mask_is() -> None:
    height, width = 1512, 2016  # a 12 MP photo decoded at half size
    photo = np.full((height, width, 3), 100, dtype=np.uint8)
    labels = np.zeros((3024, 4032), dtype=np.uint8)  # the full-size mask
    labels[:, 2016:] = 2  # right half: class 2 (blue)
    picture = shrink(photo, overlay_size(3024, 4032))
    data = overlay_jpeg(picture, labels, (ClassSpec(id=1, name="a"), ClassSpec(id=2, name="b", color=(0, 0, 255))))
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG" and img.size == (1024, 768)
        rgb = np.asarray(img.convert("RGB")).astype(int)
    assert np.abs(rgb[384, 200] - 100).max() <= 3  # untinted: the photo
    assert abs(rgb[384, 800, 2] - 178) <= 4 and abs(rgb[384, 800, 0] - 50) <= 4  # half photo, half blue


def test_shrink_keeps_the_picture() -> None:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    big = cv2.resize(small, (640, 480), interpolation=cv2.INTER_NEAREST)
    for size in ((240, 320), (96, 128)):  # by 2 (bilinear) and by 5 (area)
        out = shrink(big, size)
        assert out.shape == (*size, 3)
        expected = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        assert np.abs(out.astype(int) - expected).mean() < 25
    assert shrink(big, (480, 640)) is big  # already the size: no copy
