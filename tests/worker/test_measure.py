"""Component statistics from traced borders must equal those from labelling every pixel, on masks made to be hard:
noise at every density, rings with islands in their holes, one-pixel lines, checkerboards, nested frames,
shapes on the image border, any class id."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.worker.measure import (
    MAX_TRACED_COMPONENTS,
    labelled_components,
    largest_first,
    measure_class,
    traced_components,
)


def _mask(rng: np.random.Generator, kind: int) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(1, 90, 2))
    m = np.zeros((h, w), np.uint8)
    if kind == 0:  # noise, sparse to dense
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
    elif kind == 1:  # smooth blobs, like a thresholded probability map
        blurred = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), float(rng.uniform(0.5, 4)))
        m = (blurred > rng.uniform(0.3, 0.7)).astype(np.uint8)
    elif kind == 2:  # rings with a disc inside: a component in another's hole
        for _ in range(int(rng.integers(1, 5))):
            centre, radius = (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(1, 25))
            cv2.circle(m, centre, radius, 1, int(rng.integers(1, 4)))
            cv2.circle(m, centre, radius // 3, 1, -1)
    elif kind == 3:  # one-pixel lines, crossing and touching diagonally
        for _ in range(int(rng.integers(1, 6))):
            a, b = (tuple(int(v) for v in rng.integers(0, 90, 2)) for _ in range(2))
            cv2.line(m, a, b, 1, 1)
    elif kind == 4:  # checkerboard with noise: diagonal contacts everywhere
        m = ((np.indices((h, w)).sum(0) + rng.integers(0, 2, (h, w))) % 2).astype(np.uint8)
    else:  # frames within frames: holes within holes
        for k in range(0, min(h, w) // 2, 2):
            m[k : h - k, k : w - k] = 1
            m[k + 1 : h - k - 1, k + 1 : w - k - 1] = 0
    return m * np.uint8(rng.choice([1, 7, 255]))


@pytest.mark.parametrize("kind", range(6))
def test_traced_statistics_equal_labelled_ones(kind: int) -> None:
    rng = np.random.default_rng(kind)
    traced_masks = 0
    for _ in range(250):
        mask = _mask(rng, kind)
        want = largest_first(labelled_components(mask))
        got = traced_components(mask)
        if got is None:  # too many components to trace: the caller labels instead
            assert len(want) > MAX_TRACED_COMPONENTS
            continue
        traced_masks += 1
        assert np.array_equal(largest_first(got), want), mask.tolist()
    assert traced_masks > 100  # the comparison really ran on traced masks


def test_an_island_in_a_hole_is_its_own_component() -> None:
    mask = np.zeros((9, 9), np.uint8)
    mask[0:9, 0:9] = 1
    mask[2:7, 2:7] = 0  # a hole...
    mask[4, 4] = 1  # ...with an island in it
    stats = largest_first(traced_components(mask))
    assert stats.tolist() == [[0, 0, 9, 9, 81 - 25], [4, 4, 1, 1, 1]]
    m = measure_class(mask)
    assert (m["components"], m["largest_component_pixels"], m["bboxes"]) == (2, 56, [[0, 0, 9, 9], [4, 4, 1, 1]])


def test_many_components_are_labelled_and_measure_the_same() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[::3, ::3] = 1  # 14 x 14 single pixels
    assert traced_components(mask) is None
    m = measure_class(mask)
    assert m["components"] == 196 and m["largest_component_pixels"] == 1 and m["bboxes"][0] == [0, 0, 1, 1]
