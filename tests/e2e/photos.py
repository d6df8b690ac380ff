"""Real photos for the end-to-end tests, from packages (no downloads): skimage.data and matplotlib's sample."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
import skimage.data
from PIL import Image

GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def _encode(array: np.ndarray, fmt: str, size: int | None = None) -> bytes:
    img = Image.fromarray(array)
    if size is not None:
        img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


def photo_folder(folder: Path) -> dict[str, str]:
    """Write a few real photos and what each should show: "person", "no person", or "any" (the person model is
    made for people near the camera; on some scenes, like the coffee cup, it finds a little "person")."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grace_hopper.jpg").write_bytes(GRACE_HOPPER.read_bytes())
    (folder / "astronaut.png").write_bytes(_encode(skimage.data.astronaut(), "PNG", 256))
    (folder / "scenes").mkdir(exist_ok=True)
    (folder / "scenes" / "rocket.jpg").write_bytes(_encode(skimage.data.rocket(), "JPEG", 320))
    (folder / "scenes" / "coffee.jpg").write_bytes(_encode(skimage.data.coffee(), "JPEG", 320))
    return {
        "grace_hopper.jpg": "person",
        "astronaut.png": "person",
        "rocket.jpg": "no person",
        "coffee.jpg": "any",
    }


def small_images(count: int, *, size: int = 96) -> list[tuple[str, bytes]]:
    """``count`` distinct small JPEGs cut from real photos, so the worker does real (if quick) work."""
    sources = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    out = []
    for i in range(count):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        side = min(h, w) // 2 + (i * 7) % (min(h, w) // 2)
        y, x = (i * 13) % (h - side + 1), (i * 29) % (w - side + 1)
        out.append((f"img{i:04d}.jpg", _encode(np.ascontiguousarray(src[y : y + side, x : x + side]), "JPEG", size)))
    return out
