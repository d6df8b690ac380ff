"""The two result images: a mask PNG a program can read and an overlay PNG a person can look at."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from runtime.common.cards import ClassSpec

OVERLAY_ALPHA = 0.5


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
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def overlay_png(rgb: np.ndarray, labels: np.ndarray, classes: tuple[ClassSpec, ...]) -> bytes:
    """The photo with each class tinted in its colour (half transparent)."""
    colors = np.zeros((256, 3), dtype=np.float32)
    tinted = np.zeros(256, dtype=bool)
    for c in classes:
        colors[c.id] = c.color
        tinted[c.id] = True
    where = tinted[labels]
    out = rgb.copy()
    if where.any():
        blend = rgb[where].astype(np.float32) * (1 - OVERLAY_ALPHA) + colors[labels[where]] * OVERLAY_ALPHA
        out[where] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 only fails on impossible shapes
        raise ValueError("could not encode the overlay PNG")
    return encoded.tobytes()
