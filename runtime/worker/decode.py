"""Turn untrusted image bytes into an upright 8-bit RGB array, or a clear ``ImageError``.

The header is probed first (``imageinfo.probe``) so a decompression bomb is refused before a single pixel is
decoded. Everything odd a user can upload (EXIF rotation, grayscale, alpha, palette, 16-bit, CMYK, animated
GIF) is normalised here, so the model code only ever sees ``uint8`` HxWx3 RGB.

Only the pixels that are needed are decoded. A caller that does not need the full resolution says how small
the image may be (``need``), and a JPEG is then decoded with DCT scaling at 1/2, 1/4 or 1/8 of its size, which
skips most of the inverse DCT work: a 12 MP phone photo costs a fraction of a full decode. The full size is
still reported (``DecodedImage.size``), because results such as the mask are defined on it.

Plain JPEGs (8-bit YCbCr or grayscale, the camera case) are decoded by OpenCV straight into a numpy array; its
libjpeg-turbo gives the same pixels as Pillow's, without Pillow's copy into numpy, which costs as much as the
decode itself. Every other image goes through Pillow. Both paths apply the EXIF orientation the same way
(``orient``), on the decoded array.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from runtime.common.imageinfo import CorruptImage, ImageInfo, TooManyPixels, probe

EXIF_ORIENTATION = 0x0112
# DCT scaling factors libjpeg offers, largest reduction first.
JPEG_REDUCTIONS = (8, 4, 2, 1)
_CV2_REDUCED = {
    1: 0,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
# The JPEG end-of-image marker. OpenCV decodes a truncated JPEG with a warning and grey rows instead of failing,
# so only files that end properly take its path; Pillow (which raises "truncated") takes the rest.
JPEG_EOI = b"\xff\xd9"

# (height, width) of the full upright image -> the smallest (height, width) the caller can work from.
Need = Callable[[int, int], tuple[int, int]]


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # uint8, hxwx3, upright (EXIF orientation applied); the full image or a DCT-scaled one
    info: ImageInfo  # header facts as stored (before orientation)
    size: tuple[int, int]  # (height, width) of the full image, upright

    @property
    def reduction(self) -> int:
        """1 for a full decode, else the DCT scaling denominator (2, 4 or 8)."""
        return max(1, round(self.size[0] / self.rgb.shape[0]))


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    """16-bit and 32-bit integer or float samples to 0..255, keeping contrast (Pillow would clip instead)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    data = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        finite = data[np.isfinite(data)]
        top = float(finite.max()) if finite.size else 1.0
        scale = 255.0 if top <= 1.0 else 1.0
        data = np.nan_to_num(data, nan=0.0, posinf=top, neginf=0.0) * scale
    else:
        top = float(data.max()) if data.size else 0.0
        # 16-bit data (the usual case for "I;16" PNG/TIFF and "I" PNG) maps 65535 -> 255.
        data = data / 257.0 if top > 255 else data
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _to_8bit(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        # Transparent pixels often hold garbage colour: composite on white so the model sees what a viewer sees.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """The array as a viewer shows it, for an EXIF orientation (1 to 8; anything else is taken as 1).

    The same transforms as Pillow's ``ImageOps.exif_transpose`` (the tests hold them to it), on numpy views.
    """
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return arr.swapaxes(0, 1)[:, ::-1]
    if orientation == 7:
        return arr[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return arr.swapaxes(0, 1)[::-1]
    return arr


def _upright_size(info: ImageInfo, orientation: int) -> tuple[int, int]:
    """(height, width) as displayed: orientations 5 to 8 turn the stored image on its side."""
    return (info.width, info.height) if orientation in (5, 6, 7, 8) else (info.height, info.width)


def reduction_for(size: tuple[int, int], need: Need | None) -> int:
    """The largest DCT reduction whose result still has at least the pixels ``need`` asks for."""
    if need is None:
        return 1
    height, width = size
    need_h, need_w = need(height, width)
    for factor in JPEG_REDUCTIONS:
        # libjpeg rounds the scaled size up.
        if -(-height // factor) >= need_h and -(-width // factor) >= need_w:
            return factor
    return 1


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block must not cost the image; it is shown as stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode_plain_jpeg(data: bytes, factor: int) -> np.ndarray:
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION | _CV2_REDUCED[factor]
    rgb = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if rgb is None:
        raise CorruptImage("the image data is truncated or corrupt: the JPEG decoder refused it")
    return rgb


def _decode_pillow(img: Image.Image, factor: int) -> np.ndarray:
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # animated GIF/WebP/TIFF: the first frame
    if factor > 1 and img.format == "JPEG":
        # Pillow picks the largest scale s with size // request >= s, so ask for the floor of the scaled size.
        img.draft(img.mode, (max(1, img.width // factor), max(1, img.height // factor)))
    img.load()
    return _to_rgb(img)


def decode(data: bytes, *, max_pixels: int, need: Need | None = None) -> DecodedImage:
    """Probe, then decode the first frame; raises an ``imageinfo.ImageError`` subclass for any bad input.

    ``need`` (None: the full image) gives, for the full upright size, the smallest size the caller can use;
    a JPEG is then decoded at the largest DCT reduction that still covers it. Other formats decode in full.
    """
    info = probe(data, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit was enforced above
            with Image.open(io.BytesIO(data)) as img:
                plain_jpeg = img.format == "JPEG" and img.mode in ("RGB", "L") and data.endswith(JPEG_EOI)
                orientation = _orientation(img) if img.format == "JPEG" else 1
                factor = reduction_for(_upright_size(info, orientation), need) if img.format == "JPEG" else 1
                if plain_jpeg:
                    stored = _decode_plain_jpeg(data, factor)
                else:
                    stored = _decode_pillow(img, factor)
                    if img.format != "JPEG":
                        orientation = _orientation(img)  # PNG and WebP keep EXIF after the pixels
    except Image.DecompressionBombError as exc:  # Pillow's own limit, if max_pixels was raised above it
        raise TooManyPixels(f"the image is too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, CorruptImage):
            raise
        raise CorruptImage(f"the image data is truncated or corrupt: {exc}") from exc
    rgb = orient(stored, orientation)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise CorruptImage(f"decoded to an unexpected shape {rgb.shape}")
    size = _upright_size(info, orientation) if factor > 1 else (int(rgb.shape[0]), int(rgb.shape[1]))
    return DecodedImage(rgb=np.ascontiguousarray(rgb), info=info, size=size)
