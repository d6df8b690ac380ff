"""Per-class measurements from a label map: the numbers users pay for (``result.classes`` in docs/contracts.md)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from runtime.common.cards import ClassSpec

MAX_BBOXES = 5  # bounding boxes of the largest few components; more would bloat the DynamoDB item
# Tracing components' borders costs one fill per component; beyond this many, labelling every pixel is cheaper.
MAX_TRACED_COMPONENTS = 64
_STATS = [cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA]


def labelled_components(binary: np.ndarray) -> np.ndarray:
    """One row ``[left, top, width, height, area]`` per 8-connected component, by labelling every pixel.

    OpenCV's BBDT algorithm finds the same components as its default with less CPU; still, computing the
    statistics visits every pixel of the image, which at 12 MP cost more than the model.
    """
    count, _, stats, _ = cv2.connectedComponentsWithStatsWithAlgorithm(binary, 8, cv2.CV_32S, cv2.CCL_BBDT)
    return stats[1:count][:, _STATS].astype(np.int64)  # row 0 is the background


def traced_components(binary: np.ndarray) -> np.ndarray | None:
    """The same rows as ``labelled_components``, from the components' borders; None if there are too many.

    ``findContours`` (RETR_TREE) gives one outer border per 8-connected component, holes below it and the
    components inside a hole below that. A component's box is its outer border's. Its area is the count of
    mask pixels inside its filled outer border, less what the components inside its holes count the same way.
    Work is one pass for the borders plus one fill per component over its box, about a fifth of labelling
    every pixel of a person mask (docs/performance.md); the tests hold it to ``labelled_components``.
    """
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 5), dtype=np.int64)
    parent = [int(p) for p in hierarchy[0][:, 3]]
    outer = [i for i, d in enumerate(_depths(parent)) if d % 2 == 0]  # a component's outer border; odd: a hole
    if len(outer) > MAX_TRACED_COMPONENTS:
        return None
    inside: dict[int, int] = {}  # outer border -> pixels of the mask within it, nested components included
    rows: dict[int, list[int]] = {}
    for i in outer:
        x, y, w, h = cv2.boundingRect(contours[i])
        fill = np.zeros((h, w), dtype=np.uint8)
        cv2.drawContours(fill, contours, i, 255, thickness=cv2.FILLED, offset=(-x, -y))
        roi = binary[y : y + h, x : x + w]
        inside[i] = cv2.countNonZero(cv2.bitwise_and(roi, roi, mask=fill))
        rows[i] = [x, y, w, h]
    areas = dict(inside)
    for i in outer:  # a component inside a hole of another: its parent is the hole, the hole's parent the other
        if parent[i] >= 0:
            areas[parent[parent[i]]] -= inside[i]
    return np.array([[*rows[i], areas[i]] for i in outer], dtype=np.int64)


def _depths(parent: list[int]) -> list[int]:
    """How deep each contour is nested (0: top level), from each one's parent index (-1: none)."""
    depth = [-1] * len(parent)
    for i in range(len(parent)):
        path, j = [], i
        while j >= 0 and depth[j] < 0:
            path.append(j)
            j = parent[j]
        d = depth[j] if j >= 0 else -1
        for k in reversed(path):
            d += 1
            depth[k] = d
    return depth


def largest_first(stats: np.ndarray) -> np.ndarray:
    """Rows by area, largest first; equal areas by top, then left (a defined order whatever found them)."""
    order = np.lexsort((stats[:, 0], stats[:, 1], -stats[:, 4]))
    return stats[order]


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
        traced = traced_components(binary)
        stats = largest_first(labelled_components(binary) if traced is None else traced)
        out["components"] = len(stats)
        out["largest_component_pixels"] = int(stats[0, 4])
        out["bboxes"] = [[int(v) for v in row[:4]] for row in stats[:max_bboxes]]
    if mm_per_pixel is not None:
        out["area_mm2"] = round(pixels * float(mm_per_pixel) ** 2, 6)
    return out


def measure(labels: np.ndarray, classes: tuple[ClassSpec, ...], *, mm_per_pixel: float | None) -> dict[str, Any]:
    """``{"class name": measurements}`` for every class the card lists (absent classes measure zero).

    ``labels`` holds only the classes' ids and 0, so with one class (not id 0) it already is that class's mask:
    no full-size comparison and copy is made for it.
    """
    if len(classes) == 1 and classes[0].id != 0:
        return {classes[0].name: measure_class(labels, mm_per_pixel=mm_per_pixel)}
    return {c.name: measure_class(labels == c.id, mm_per_pixel=mm_per_pixel) for c in classes}
