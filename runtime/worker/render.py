"""The two result images: a mask PNG a program can read and an overlay JPEG a person can look at.

The mask is data: full size, lossless, one class id per pixel. The overlay is a picture: at most
``OVERLAY_MAX_SIDE`` px and a JPEG, which costs a few ms to encode where a PNG of the same picture cost more
than the model (docs/performance.md has the measurements, including WebP at equal visual quality).
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

from runtime.common.cards import ClassSpec

OVERLAY_MAX_SIDE = 1024
OVERLAY_JPEG_QUALITY = 85  # SSIM 0.976 against the unencoded overlay; WebP needs quality 90 for the same
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PALETTE = 3  # IHDR colour type: indexed colour


def overlay_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the overlay of an image this size: the long side at most ``OVERLAY_MAX_SIDE``."""
    scale = min(1.0, OVERLAY_MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resampled to (height, width) for people to look at (the model input has its own rule).

    Bilinear when shrinking by at most 2 (a reduced JPEG decode leaves at most that), which is several times
    cheaper than OpenCV's area filter at fractional factors; area averaging beyond, where bilinear would alias.
    """
    height, width = size
    if rgb.shape[:2] == (height, width):
        return rgb
    factor = max(rgb.shape[0] / height, rgb.shape[1] / width)
    interpolation = cv2.INTER_AREA if factor > 2.0 else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interpolation)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _pack_rows(labels: np.ndarray, depth: int) -> np.ndarray:
    """Rows of ``depth``-bit samples, most significant first, as PNG stores them (values must fit the depth)."""
    if depth == 8:
        return labels
    if depth == 1:
        return np.packbits(labels, axis=1)
    per_byte = 8 // depth
    height, width = labels.shape
    padded = np.zeros((height, -(-width // per_byte) * per_byte), dtype=np.uint8)
    padded[:, :width] = labels
    groups = padded.reshape(height, -1, per_byte)
    packed = np.zeros(groups.shape[:2], dtype=np.uint8)
    for i in range(per_byte):
        packed |= groups[:, :, i] << np.uint8(8 - depth * (i + 1))
    return packed


def mask_png(labels: np.ndarray, classes: tuple[ClassSpec, ...]) -> bytes:
    """Palette PNG: each pixel's value is its class id (0 = no class), the palette holds the card's colours,
    so the same file is exact data for code and a readable picture in any viewer.

    Written here rather than by Pillow because the fastest lossless form of a label map is not one Pillow
    offers for our input: the fewest bits per pixel the largest class id needs (1 bit for a one-class model,
    eight times less data to compress), no row filter and zlib's run-length strategy at level 1. At 12 MP that
    is about 10 ms instead of Pillow's 60 (docs/performance.md). ``labels`` must hold only the classes' ids.
    """
    top = max((c.id for c in classes), default=0)
    depth = next(d for d in (1, 2, 4, 8) if top < (1 << d))
    palette = np.zeros((top + 1, 3), dtype=np.uint8)
    for c in classes:
        palette[c.id] = c.color
    data = np.ascontiguousarray(labels, dtype=np.uint8)
    height, width = data.shape
    packed = _pack_rows(data, depth)
    rows = np.empty((height, packed.shape[1] + 1), dtype=np.uint8)
    rows[:, 0] = 0  # filter type "none" on every row
    rows[:, 1:] = packed
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = deflate.compress(rows) + deflate.flush()  # type: ignore[arg-type]  # an ndarray is a buffer (no copy)
    header = struct.pack(">IIBBBBB", width, height, depth, PNG_PALETTE, 0, 0, 0)
    return b"".join(
        [
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"PLTE", palette.tobytes()),
            _chunk(b"IDAT", idat),
            _chunk(b"IEND", b""),
        ]
    )


def tint(picture: np.ndarray, labels: np.ndarray, classes: tuple[ClassSpec, ...]) -> np.ndarray:
    """``picture`` (RGB) with each class tinted in its colour, half transparent (half photo, half colour).

    ``labels`` may be the full-size label map: it is sampled down to the picture (nearest, so the tint shows
    exactly the mask's pixels).
    """
    height, width = picture.shape[:2]
    if labels.shape != (height, width):
        labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
    out = picture.copy()
    half = picture >> 1  # half the photo; the colour adds the other half (rounded up)
    for c in classes:
        where = np.equal(labels, c.id).view(np.uint8)  # not cv2.compare, which fails on a 1x1 picture
        colour = (*(-(-v // 2) for v in c.color), 0)  # a scalar: OpenCV takes it, its stubs do not say so
        cv2.add(half, colour, dst=out, mask=where)  # type: ignore[call-overload]
    return out


def overlay_jpeg(picture: np.ndarray, labels: np.ndarray, classes: tuple[ClassSpec, ...]) -> bytes:
    """The overlay: ``picture`` (the photo at overlay size, ``overlay_size`` and ``shrink``) tinted, as a JPEG."""
    params = [cv2.IMWRITE_JPEG_QUALITY, OVERLAY_JPEG_QUALITY]
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(tint(picture, labels, classes), cv2.COLOR_RGB2BGR), params)
    if not ok:  # pragma: no cover - cv2 only fails on impossible shapes
        raise ValueError("could not encode the overlay JPEG")
    return encoded.tobytes()
