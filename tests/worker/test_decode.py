"""Decoding every odd input a user can upload into upright 8-bit RGB, or a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from runtime.common.imageinfo import CorruptImage, EmptyImage, NotAnImage, TooManyPixels
from runtime.worker.decode import decode
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
