"""Turn untrusted image bytes into an upright 8-bit RGB array, or a clear ``ImageError``.

The header is probed first (``imageinfo.probe``) so a decompression bomb is refused before a single pixel is
decoded. Everything odd a user can upload (EXIF rotation, grayscale, alpha, palette, 16-bit, CMYK, animated
GIF) is normalised here, so the model code only ever sees ``uint8`` HxWx3 RGB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from runtime.common.imageinfo import CorruptImage, ImageInfo, TooManyPixels, probe


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # uint8, HxWx3, upright (EXIF orientation applied)
    info: ImageInfo  # header facts as stored (before orientation)


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    """16-bit and 32-bit integer or float samples to 0..255, keeping contrast (Pillow would clip instead)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    data = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        finite = data[np.isfinite(data)]
        top = float(finite.max()) if finite.size else 1.0
        scale = 255.0 if top <= 1.0 else 1.0
        data = np.nan_to_num(data, nan=0.0, posinf=top, neginf=0.0) * scale
    else:
        top = float(data.max()) if data.size else 0.0
        # 16-bit data (the usual case for "I;16" PNG/TIFF and "I" PNG) maps 65535 -> 255.
        data = data / 257.0 if top > 255 else data
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _to_8bit(np.asarray(img))
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        # Transparent pixels often hold garbage colour: composite on white so the model sees what a viewer sees.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Probe, then decode the first frame; raises an ``imageinfo.ImageError`` subclass for any bad input."""
    info = probe(data, max_pixels=max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit was enforced above
            with Image.open(io.BytesIO(data)) as img:
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)  # animated GIF/WebP/TIFF: the first frame
                img.load()
                upright = ImageOps.exif_transpose(img) or img
                rgb = _to_rgb(upright)
    except Image.DecompressionBombError as exc:  # Pillow's own limit, if max_pixels was raised above it
        raise TooManyPixels(f"the image is too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"the image data is truncated or corrupt: {exc}") from exc
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise CorruptImage(f"decoded to an unexpected shape {rgb.shape}")
    return DecodedImage(rgb=np.ascontiguousarray(rgb), info=info)
