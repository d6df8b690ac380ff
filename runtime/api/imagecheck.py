"""The API's acceptance check: header probe (415/413/422) plus one decode of the whole compressed stream (422).

Why not ``imageinfo.verify_decodes``: it decodes every pixel at full size, which was most of an upload's CPU time
(about 25 ms for a 200 KB, 1.2 MP JPEG). A JPEG is decoded here in draft mode (DCT scaling to 1/8): the decoder
still reads every entropy-coded byte, so truncated or broken data is caught the same way, for about a quarter of
the CPU. Other formats are decoded in full.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

from runtime.common import imageinfo


def check_image(data: bytes, *, max_pixels: int) -> imageinfo.ImageInfo:
    info = imageinfo.probe(data, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # probe enforced our own limit
            with Image.open(io.BytesIO(data)) as img:
                if img.format == "JPEG":
                    img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
    except Image.DecompressionBombError as exc:
        raise imageinfo.TooManyPixels(f"image has too many pixels to decode: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise imageinfo.CorruptImage(f"the image data is truncated or corrupt: {exc}") from exc
    return info
