"""Real photos that ship inside installed packages (no download): people, and scenes without people."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import skimage.data
from PIL import Image

PEOPLE = ("astronaut", "grace_hopper")
NO_PEOPLE = ("rocket",)


def photo(name: str) -> np.ndarray:
    """An RGB uint8 photo by name: a ``skimage.data`` function or matplotlib's ``grace_hopper``."""
    if name == "grace_hopper":
        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return np.asarray(Image.open(path).convert("RGB"))
    return np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB"))


def stretched(name: str, size: tuple[int, int] = (256, 256)) -> np.ndarray:
    """The photo stretched to (height, width), the person model's input rule."""
    return np.asarray(Image.fromarray(photo(name)).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def person_input(images: list[np.ndarray]) -> np.ndarray:
    """NCHW float32 x/255 batch, as the person card describes."""
    return np.stack([img.astype(np.float32).transpose(2, 0, 1) / 255.0 for img in images])
