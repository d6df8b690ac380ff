"""A small bar histogram drawn with Pillow, so the results image needs no plotting library."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 520, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 16, 28, 44
BAR = (66, 133, 244)
AXIS = (60, 60, 60)


def bin_counts(values: Sequence[float], bins: int) -> tuple[list[int], float, float]:
    """Counts per equal-width bin over [min, max]; one bin when every value is the same."""
    if not values:
        return [], 0.0, 0.0
    if not all(math.isfinite(v) for v in values):
        raise ValueError("histogram values must be finite")
    lo, hi = min(values), max(values)
    if hi == lo:
        return [len(values)], lo, hi
    counts = [0] * bins
    width = (hi - lo) / bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return counts, lo, hi


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def histogram_png(values: Sequence[float], *, title: str, xlabel: str, bins: int = 20) -> bytes:
    """PNG bytes of a histogram of ``values`` (an empty chart says "no data")."""
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((MARGIN_LEFT, 6), title, fill=AXIS, font=font)
    x0, y0 = MARGIN_LEFT, HEIGHT - MARGIN_BOTTOM
    x1, y1 = WIDTH - MARGIN_RIGHT, MARGIN_TOP
    draw.line([(x0, y1), (x0, y0), (x1, y0)], fill=AXIS)
    counts, lo, hi = bin_counts(values, bins)
    if counts:
        top = max(counts)
        slot = (x1 - x0) / len(counts)
        for i, c in enumerate(counts):
            h = (y0 - y1) * c / top
            draw.rectangle([x0 + i * slot + 1, y0 - h, x0 + (i + 1) * slot - 1, y0], fill=BAR)
        draw.text((4, y1), str(top), fill=AXIS, font=font)
        draw.text((x0, y0 + 4), _fmt(lo), fill=AXIS, font=font)
        right = _fmt(hi)
        draw.text((x1 - draw.textlength(right, font=font), y0 + 4), right, fill=AXIS, font=font)
    else:
        draw.text(((x0 + x1) // 2 - 20, (y0 + y1) // 2), "no data", fill=AXIS, font=font)
    draw.text((x0 + (x1 - x0) // 2 - draw.textlength(xlabel, font=font) / 2, HEIGHT - 18), xlabel, fill=AXIS, font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
