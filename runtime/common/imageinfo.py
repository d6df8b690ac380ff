"""Identify an image from its bytes and header, without decoding the pixels.

Used by the API (to answer 415/413/422 before accepting) and by the worker (to refuse a decompression bomb
before decoding). The file name and the client's content type are never trusted: only the bytes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Formats we accept and the extension we store them under.
SUPPORTED_FORMATS: dict[str, str] = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tif",
    "GIF": "gif",
}
CONTENT_TYPES: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
}


class ImageError(ValueError):
    """Base for a bad image; ``kind`` is a short stable class for metrics and API problem types."""

    kind = "invalid_image"


class NotAnImage(ImageError):
    kind = "unsupported_media_type"


class CorruptImage(ImageError):
    kind = "corrupt_image"


class TooManyPixels(ImageError):
    kind = "too_many_pixels"


class EmptyImage(ImageError):
    kind = "empty_file"


@dataclass(frozen=True)
class ImageInfo:
    format: str  # PIL format name, e.g. "JPEG"
    width: int
    height: int
    mode: str  # PIL mode, e.g. "RGB", "L", "I;16", "CMYK"
    frames: int

    @property
    def extension(self) -> str:
        return SUPPORTED_FORMATS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def pixels(self) -> int:
        return self.width * self.height


def probe(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Read the header only; raise an ``ImageError`` subclass with a message a user can act on."""
    if not data:
        raise EmptyImage("the file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise TooManyPixels(f"image has too many pixels (limit {max_pixels:,})") from exc
        except UnidentifiedImageError as exc:
            raise NotAnImage("not a supported image: the bytes are not JPEG, PNG, WebP, BMP, TIFF or GIF") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise CorruptImage(f"the image header is damaged: {exc}") from exc
    with img:
        fmt = img.format or ""
        if fmt not in SUPPORTED_FORMATS:
            raise NotAnImage(f"image format {fmt or 'unknown'} is not supported")
        width, height = img.size
        if width <= 0 or height <= 0:
            raise CorruptImage(f"image has impossible dimensions {width}x{height}")
        if width * height > max_pixels:
            raise TooManyPixels(f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
        frames = int(getattr(img, "n_frames", 1) or 1)
        return ImageInfo(format=fmt, width=width, height=height, mode=img.mode, frames=frames)


def verify_decodes(data: bytes, *, max_pixels: int) -> ImageInfo:
    """``probe`` plus a full decode, to catch truncated or corrupt pixel data (the API's 422)."""
    info = probe(data, max_pixels=max_pixels)
    Image.MAX_IMAGE_PIXELS = None  # we enforced our own limit in probe
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"the image data is truncated or corrupt: {exc}") from exc
    return info
