"""The fast acceptance check must refuse every damaged file the full decode refuses (real photos, cut or garbled)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from runtime.api.imagecheck import check_image
from runtime.common import imageinfo


def _photo(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(skimage.data.astronaut())).save(buf, fmt)
    return buf.getvalue()


PHOTOS = {fmt: _photo(fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF")}


@pytest.mark.parametrize("fmt", sorted(PHOTOS))
def test_intact_photo_passes(fmt: str) -> None:
    info = check_image(PHOTOS[fmt], max_pixels=10**7)
    assert (info.format, info.width, info.height) == (fmt, 512, 512)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_photo_is_corrupt(fmt: str, cut: float) -> None:
    data = PHOTOS[fmt][: int(len(PHOTOS[fmt]) * cut)]
    with pytest.raises(imageinfo.CorruptImage):
        imageinfo.verify_decodes(data, max_pixels=10**7)  # the reference check agrees it is damaged...
    with pytest.raises(imageinfo.CorruptImage):
        check_image(data, max_pixels=10**7)  # ...and so does the fast one


def test_garbled_jpeg_is_corrupt() -> None:
    data = bytearray(PHOTOS["JPEG"])
    for i in range(len(data) // 2, len(data) // 2 + 400):
        data[i] ^= 0x55
    with pytest.raises(imageinfo.CorruptImage):
        check_image(bytes(data), max_pixels=10**7)


def test_pixel_limit_comes_before_decoding() -> None:
    with pytest.raises(imageinfo.TooManyPixels):
        check_image(PHOTOS["JPEG"], max_pixels=512 * 512 - 1)


def test_large_png_is_checked_under_the_decode_limit() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (2100, 2000), (10, 200, 30)).save(buf, "PNG")  # 4.2 MP: over LARGE_PIXELS
    info = check_image(buf.getvalue(), max_pixels=10**7)
    assert info.pixels == 4_200_000
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]
    with pytest.raises(imageinfo.CorruptImage):
        check_image(truncated, max_pixels=10**7)
