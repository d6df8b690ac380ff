"""What happens to one image between its bytes and its result, kept free of S3/DynamoDB so it is easy to
test and to benchmark as the "bare loop" (decode + preprocess + infer + postprocess)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.worker.measure import measure
from runtime.worker.models import Processor
from runtime.worker.render import mask_png, overlay_png


@dataclass(frozen=True)
class Analysis:
    labels: np.ndarray
    classes: dict[str, Any]  # per-class measurements
    timings_ms: dict[str, float]  # preprocess, inference, postprocess (incl. measuring)


def analyse(processor: Processor, rgb: np.ndarray, *, mm_per_pixel: float | None) -> Analysis:
    """Segment and measure: the CPU-bound part, run on the worker's single inference thread."""
    seg = processor.segment(rgb)
    started = time.perf_counter()
    classes = measure(seg.labels, processor.card.classes, mm_per_pixel=mm_per_pixel)
    post = seg.postprocess_ms + (time.perf_counter() - started) * 1000.0
    return Analysis(
        seg.labels, classes, {"preprocess": seg.preprocess_ms, "inference": seg.inference_ms, "postprocess": post}
    )


def render(processor: Processor, rgb: np.ndarray, labels: np.ndarray) -> tuple[bytes, bytes]:
    """(mask PNG, overlay PNG); PNG encoding releases the GIL, so it runs on the I/O threads."""
    classes = processor.card.classes
    return mask_png(labels, classes), overlay_png(rgb, labels, classes)


def result_document(
    processor: Processor,
    rgb: np.ndarray,
    analysis: Analysis,
    *,
    mm_per_pixel: float | None,
    timings_ms: dict[str, float],
) -> dict[str, Any]:
    """The ``result`` attribute exactly as docs/contracts.md describes it."""
    height, width = rgb.shape[:2]
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
