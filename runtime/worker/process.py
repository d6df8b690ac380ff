"""What happens to one image between its bytes and its result, kept free of S3/DynamoDB so it is easy to
test and to benchmark as the "bare loop" (decode + preprocess + infer + postprocess + render).

Each stage works at the resolution its output needs, not at the photo's: the model sees a few hundred pixels
a side, the overlay at most ``OVERLAY_MAX_SIDE``, and only the mask (and the measurements made on it) is full
size. So a JPEG is decoded only as large as the model input and the overlay need (``load_photo``), and the
overlay picture is made once from that decode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.common.cards import ModelCard
from runtime.common.imageinfo import ImageInfo
from runtime.worker.decode import Need, decode
from runtime.worker.measure import measure
from runtime.worker.models import Processor
from runtime.worker.render import mask_png, overlay_jpeg, overlay_size, shrink
from runtime.worker.tensors import content_size


@dataclass(frozen=True)
class Photo:
    """One decoded upload: the pixels the stages need, and the full size the results are defined on."""

    rgb: np.ndarray  # upright uint8 RGB: the full image, or a JPEG decoded at 1/2, 1/4 or 1/8 of it
    picture: np.ndarray  # ``rgb`` at overlay size (``render.overlay_size``); may be ``rgb`` itself
    size: tuple[int, int]  # (height, width) of the full upright image: the mask's size
    info: ImageInfo  # header facts as stored


@dataclass(frozen=True)
class Analysis:
    labels: np.ndarray
    classes: dict[str, Any]  # per-class measurements
    timings_ms: dict[str, float]  # preprocess, inference, postprocess (incl. measuring)


def needed_size(card: ModelCard) -> Need | None:
    """For a full image size, the fewest pixels ``card``'s processor and the overlay can work from (None: all)."""
    if card.full_resolution:
        return None
    spec = card.input

    def need(height: int, width: int) -> tuple[int, int]:
        over_h, over_w = overlay_size(height, width)
        if spec is None:  # a classical processor that does not need every pixel
            return over_h, over_w
        model_h, model_w = content_size(height, width, spec)
        return max(over_h, model_h), max(over_w, model_w)

    return need


def load_photo(card: ModelCard, data: bytes, *, max_pixels: int, full: bool = False) -> Photo:
    """Decode ``data`` for ``card``'s processor; ``full`` decodes every pixel whatever the card says (the
    accuracy tests' reference). Raises ``imageinfo.ImageError`` for bad input, like ``decode``."""
    decoded = decode(data, max_pixels=max_pixels, need=None if full else needed_size(card))
    picture = shrink(decoded.rgb, overlay_size(*decoded.size))
    return Photo(rgb=decoded.rgb, picture=picture, size=decoded.size, info=decoded.info)


def analyse(processor: Processor, photo: Photo, *, mm_per_pixel: float | None) -> Analysis:
    """Segment and measure: the CPU-bound part, run on the worker's single inference thread.

    The model input is made from ``photo.rgb`` (the decode, reduced or not), not from the overlay picture, even
    where that would cover it: two resampling steps instead of one moved the person mask of an ambiguous photo
    (the coffee cup) by more than 1 % IoU, and the accuracy tests allow less.
    """
    seg = processor.segment(photo.rgb, photo.size)
    started = time.perf_counter()
    classes = measure(seg.labels, processor.card.classes, mm_per_pixel=mm_per_pixel)
    post = seg.postprocess_ms + (time.perf_counter() - started) * 1000.0
    return Analysis(
        seg.labels, classes, {"preprocess": seg.preprocess_ms, "inference": seg.inference_ms, "postprocess": post}
    )


def render(processor: Processor, photo: Photo, labels: np.ndarray) -> tuple[bytes, bytes]:
    """(mask PNG, overlay JPEG); both encoders release the GIL, so this runs on the I/O threads."""
    classes = processor.card.classes
    return mask_png(labels, classes), overlay_jpeg(photo.picture, labels, classes)


def result_document(
    processor: Processor,
    photo: Photo,
    analysis: Analysis,
    *,
    mm_per_pixel: float | None,
    timings_ms: dict[str, float],
) -> dict[str, Any]:
    """The ``result`` attribute exactly as docs/contracts.md describes it."""
    height, width = photo.size
    doc: dict[str, Any] = {
        "model": processor.card.name,
        "model_version": processor.card.version,
        "width": int(width),
        "height": int(height),
        "classes": analysis.classes,
        "timings_ms": {k: round(float(v), 3) for k, v in timings_ms.items()},
    }
    if mm_per_pixel is not None:
        doc["mm_per_pixel"] = float(mm_per_pixel)
    return doc
