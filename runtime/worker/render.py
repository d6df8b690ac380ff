"""The two result images: a mask PNG a program can read and an overlay PNG a person can look at."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from runtime.common.cards import ClassSpec

OVERLAY_ALPHA = 0.5
OVERLAY_MAX_SIDE = 1024


def mask_png(labels: np.ndarray, classes: tuple[ClassSpec, ...]) -> bytes:
    """Palette PNG: each pixel's value is its class id (0 = no class), the palette holds the card's colours,
    so the same file is exact data for code and a readable picture in any viewer."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for c in classes:
        palette[c.id] = c.color
    data = np.ascontiguousarray(labels, dtype=np.uint8)
    img = Image.frombytes("P", (data.shape[1], data.shape[0]), data.tobytes())
    img.putpalette(palette.flatten().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def overlay_png(rgb: np.ndarray, labels: np.ndarray, classes: tuple[ClassSpec, ...]) -> bytes:
    """The photo with each class tinted in its colour (half transparent), at most ``OVERLAY_MAX_SIDE`` wide.

    It is a picture for people (reports, the browser), so it is scaled down: a full-size PNG of a photo is
    several MB and costs more to encode than the model costs to run. The mask stays full size: it is the data.
    """
    height, width = labels.shape
    scale = min(1.0, OVERLAY_MAX_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
    lut = np.zeros((256, 1, 3), dtype=np.uint8)
    tinted = np.zeros((256, 1, 3), dtype=np.uint8)
    for c in classes:
        lut[c.id, 0] = c.color
        tinted[c.id, 0] = 255
    labels3 = cv2.merge([labels, labels, labels])
    colour = cv2.LUT(labels3, lut)  # cv2.LUT: several times faster than numpy fancy indexing here
    blended = cv2.addWeighted(rgb, 1 - OVERLAY_ALPHA, colour, OVERLAY_ALPHA, 0.0)
    out = rgb.copy()
    out = cv2.copyTo(blended, cv2.LUT(labels3, tinted)[:, :, 0], out)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), params)
    if not ok:  # pragma: no cover - cv2 only fails on impossible shapes
        raise ValueError("could not encode the overlay PNG")
    return encoded.tobytes()
