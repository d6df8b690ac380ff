"""Classical (no deep learning) processors, selected by a card's ``processor`` field.

They prove the ``Processor`` interface is not tied to ONNX, and give a fast baseline on images with a clear
foreground/background contrast (documents, parts on a plain table, cells on a slide).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from runtime.common.cards import ModelCard


def otsu(rgb: np.ndarray, card: ModelCard) -> np.ndarray:
    """Otsu split of the blurred grayscale image; the side that owns most of the border is background.

    Deciding by the border (not "bright is foreground") makes dark objects on light paper and bright objects
    on a dark table both come out as foreground.
    """
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if min(gray.shape) >= 3:
        gray = cv2.GaussianBlur(gray, (3, 3), 0)
    _, bright = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    border = np.concatenate([bright[0, :], bright[-1, :], bright[:, 0], bright[:, -1]])
    foreground = bright if border.mean() < 0.5 else 1 - bright
    return (foreground * np.uint8(card.classes[0].id)).astype(np.uint8)


PROCESSORS: dict[str, Callable[[np.ndarray, ModelCard], np.ndarray]] = {"otsu": otsu}
