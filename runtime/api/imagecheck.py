"""The API's acceptance check: header probe (415/413/422) plus one decode of the whole compressed stream (422).

Why not ``imageinfo.verify_decodes``: it decodes every pixel at full size, which was most of an upload's CPU time
(about 25 ms for a 200 KB, 1.2 MP JPEG). A JPEG is decoded here in draft mode (DCT scaling to 1/8): the decoder
still reads every entropy-coded byte, so truncated or broken data is caught the same way, for about a quarter of
the CPU. Other formats are decoded in full.

Memory: a full decode of a 64 MP image holds about 200 MB of pixels, so at most ``LARGE_DECODES`` images over
``LARGE_PIXELS`` are decoded at once per process; small images (the common case) never wait.
"""

from __future__ import annotations

import io
import threading
from contextlib import nullcontext

from PIL import Image

from runtime.common import imageinfo

LARGE_PIXELS = 4_000_000
LARGE_DECODES = 2
_large = threading.BoundedSemaphore(LARGE_DECODES)


def check_image(data: bytes, *, max_pixels: int) -> imageinfo.ImageInfo:
    info = imageinfo.probe(data, max_pixels=max_pixels)
    is_draft = info.format == "JPEG"  # draft decodes at most 1/64 of the pixels
    with _large if info.pixels > LARGE_PIXELS and not is_draft else nullcontext():
        _decode(data)
    return info


def _decode(data: bytes) -> None:
    # No warnings.catch_warnings here: it swaps process-wide filters and is not thread-safe. PIL only warns above
    # its own limit (89 MP), which probe has already compared with ours.
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise imageinfo.TooManyPixels(f"image has too many pixels to decode: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise imageinfo.CorruptImage(f"the image data is truncated or corrupt: {exc}") from exc
