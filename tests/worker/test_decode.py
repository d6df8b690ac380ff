"""Decoding every odd input a user can upload into upright 8-bit RGB, or a clear error."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from runtime.common.imageinfo import CorruptImage, EmptyImage, NotAnImage, TooManyPixels
from runtime.worker.decode import decode, reduction_for
from tests.worker.helpers import encode, png_bomb, red_square

LIMIT = 4_000_000


def test_exif_orientation_is_applied() -> None:
    img = Image.fromarray(red_square(size=40, box=(0, 0, 10, 5)))  # red block at the top left
    img = img.crop((0, 0, 40, 20))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode(encode(img, "JPEG", exif=exif, quality=95), max_pixels=LIMIT)
    assert out.rgb.shape == (40, 20, 3)  # displayed upright: 20 wide, 40 high
    assert out.info.width == 40 and out.info.height == 20  # the header as stored
    assert out.rgb[2, 17, 0] > 150 and out.rgb[2, 17, 2] < 100  # top-left block is now at the top right


def test_grayscale_palette_and_alpha() -> None:
    gray = decode(encode(Image.new("L", (8, 6), 77)), max_pixels=LIMIT).rgb
    assert gray.shape == (6, 8, 3) and (gray == 77).all()
    palette = Image.fromarray(red_square(16, box=(4, 4, 8, 8))).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    pal = decode(encode(palette), max_pixels=LIMIT).rgb
    assert pal[6, 6, 0] > 150 and pal[0, 0, 0] < 100
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2] = (10, 20, 30, 255)  # opaque dark top half; transparent bottom half (garbage colour 0)
    out = decode(encode(Image.fromarray(rgba, "RGBA")), max_pixels=LIMIT).rgb
    assert (out[:2] == (10, 20, 30)).all() and (out[2:] == 255).all()  # transparent -> white


def test_16_bit_png_keeps_contrast() -> None:
    values = np.array([[0, 32768, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(values))  # Pillow makes this "I;16", stored as a 16-bit PNG
    out = decode(data, max_pixels=LIMIT)
    assert out.info.mode.startswith("I")
    assert out.rgb[0, :, 0].tolist() == [0, 128, 255]


def test_cmyk_jpeg_and_animated_gif_first_frame() -> None:
    cmyk = Image.fromarray(red_square(32, box=(8, 8, 16, 16))).convert("CMYK")
    out = decode(encode(cmyk, "JPEG", quality=95), max_pixels=LIMIT)
    assert out.info.mode == "CMYK" and out.rgb.shape == (32, 32, 3)
    assert out.rgb[16, 16, 0] > 150 and out.rgb[0, 0, 2] > 150  # red square on blue, colours intact
    frames = [Image.new("RGB", (10, 10), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    gif = decode(buf.getvalue(), max_pixels=LIMIT)
    assert gif.info.frames == 3 and gif.rgb[5, 5, 0] > 200 and gif.rgb[5, 5, 1] < 50


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", EmptyImage, "empty"),
        (b"%PDF-1.4 not an image", NotAnImage, "not a supported image"),
        (png_bomb(), TooManyPixels, "limit"),
        (b"\xff\xd8\xff\xe0" + b"\x13" * 500, CorruptImage, "damaged"),
    ],
)
def test_bad_bytes_raise_clear_errors(data: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        decode(data, max_pixels=LIMIT)


def test_truncated_jpeg_is_corrupt() -> None:
    rng = np.random.default_rng(0)
    data = encode(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "JPEG")
    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        decode(data[: len(data) // 2], max_pixels=LIMIT)


def _asymmetric(width: int = 48, height: int = 32) -> np.ndarray:
    """A photo-like gradient with a red block at the top left: every flip and turn of it looks different."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=2).astype(np.uint8)
    rgb[: height // 4, : width // 4] = (250, 20, 20)
    return rgb


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(fmt: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(_asymmetric()), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(data)) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    out = decode(data, max_pixels=LIMIT)
    assert out.size == expected.shape[:2] and out.info.width == 48  # upright size; the header as stored
    assert np.array_equal(out.rgb, expected)


def test_a_large_jpeg_is_decoded_at_the_smallest_scale_that_covers_the_need() -> None:
    photo = cv2.resize(_asymmetric(), (1600, 1200), interpolation=cv2.INTER_CUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, as phones store portrait photos
    data = encode(Image.fromarray(photo), "JPEG", exif=exif, quality=92)
    asked: list[tuple[int, int]] = []

    def need(height: int, width: int) -> tuple[int, int]:
        asked.append((height, width))
        return 390, 290  # 1/4 of 1600x1200 covers it, 1/8 does not

    out = decode(data, max_pixels=LIMIT, need=need)
    assert asked == [(1600, 1200)]  # the need is asked for the upright full size
    assert out.size == (1600, 1200) and out.reduction == 4 and out.rgb.shape == (400, 300, 3)
    with Image.open(io.BytesIO(data)) as img:
        full = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    expected = cv2.resize(full, (300, 400), interpolation=cv2.INTER_AREA)
    assert np.abs(out.rgb.astype(int) - expected).mean() < 2.0  # the same picture, upright
    assert out.rgb[5, -5, 0] > 200 and out.rgb[5, 5, 0] < 100  # the red block turned to the top right


def test_reduction_rules() -> None:
    assert reduction_for((3024, 4032), None) == 1
    assert reduction_for((3024, 4032), lambda h, w: (768, 1024)) == 2  # 1/4 would give 756x1008
    assert reduction_for((3024, 4032), lambda h, w: (756, 1008)) == 4
    assert reduction_for((3024, 4032), lambda h, w: (256, 256)) == 8
    assert reduction_for((100, 100), lambda h, w: (h, w)) == 1
    assert reduction_for((9, 9), lambda h, w: (3, 3)) == 4  # libjpeg rounds up: ceil(9 / 4) = 3


def test_only_jpegs_are_reduced_and_odd_jpegs_still_decode() -> None:
    photo = cv2.resize(_asymmetric(), (800, 600), interpolation=cv2.INTER_CUBIC)
    quarter = lambda h, w: (h // 4, w // 4)  # noqa: E731
    png = decode(encode(photo), max_pixels=LIMIT, need=quarter)
    assert png.reduction == 1 and png.rgb.shape == (600, 800, 3)
    cmyk = decode(encode(Image.fromarray(photo).convert("CMYK"), "JPEG"), max_pixels=LIMIT, need=quarter)
    assert cmyk.reduction == 4 and cmyk.rgb.shape == (150, 200, 3) and cmyk.size == (600, 800)
    gray = decode(encode(Image.fromarray(photo).convert("L"), "JPEG"), max_pixels=LIMIT, need=quarter)
    assert gray.rgb.shape == (150, 200, 3) and (gray.rgb[..., 0] == gray.rgb[..., 2]).all()


def test_plain_jpeg_pixels_equal_pillows() -> None:
    data = encode(cv2.resize(_asymmetric(), (640, 480)), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as img:
        assert np.array_equal(decode(data, max_pixels=LIMIT).rgb, np.asarray(img.convert("RGB")))


def test_truncated_jpeg_is_corrupt_even_when_reduced() -> None:
    photo = cv2.resize(_asymmetric(), (800, 600), interpolation=cv2.INTER_CUBIC)
    data = encode(photo, "JPEG")
    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        decode(data[: len(data) // 2], max_pixels=LIMIT, need=lambda h, w: (h // 4, w // 4))
