"""Per-class measurements from a label map: the numbers users pay for (``result.classes`` in docs/contracts.md)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from runtime.common.cards import ClassSpec

MAX_BBOXES = 5  # bounding boxes of the largest few components; more would bloat the DynamoDB item


def measure_class(
    mask: np.ndarray, *, mm_per_pixel: float | None = None, max_bboxes: int = MAX_BBOXES
) -> dict[str, Any]:
    """Pixels, fraction, 8-connected components, largest component and its box, physical area.

    Everything is a plain ``int``/``float`` so the dict goes straight into DynamoDB and JSON.
    """
    binary = np.ascontiguousarray(mask, dtype=np.uint8)
    total = int(binary.size)
    pixels = int(np.count_nonzero(binary))
    out: dict[str, Any] = {
        "pixels": pixels,
        "fraction": round(pixels / total, 6) if total else 0.0,
        "components": 0,
        "largest_component_pixels": 0,
        "bboxes": [],
    }
    if pixels:
        count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        comps = stats[1:count]  # row 0 is the background
        order = np.argsort(-comps[:, cv2.CC_STAT_AREA], kind="stable")
        out["components"] = int(count - 1)
        out["largest_component_pixels"] = int(comps[order[0], cv2.CC_STAT_AREA])
        out["bboxes"] = [
            [int(v) for v in comps[i, [cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT]]]
            for i in order[:max_bboxes]
        ]
    if mm_per_pixel is not None:
        out["area_mm2"] = round(pixels * float(mm_per_pixel) ** 2, 6)
    return out


def measure(labels: np.ndarray, classes: tuple[ClassSpec, ...], *, mm_per_pixel: float | None) -> dict[str, Any]:
    """``{"class name": measurements}`` for every class the card lists (absent classes measure zero)."""
    return {c.name: measure_class(labels == c.id, mm_per_pixel=mm_per_pixel) for c in classes}
