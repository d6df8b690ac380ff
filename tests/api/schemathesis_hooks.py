"""schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.api.schemathesis_hooks``): what "an image" is, for the fuzzer.

The OpenAPI document says each ``file`` part is one of the image types the API accepts (its ``encoding``), but
JSON Schema cannot say what makes bytes a JPEG. Without this the fuzzer sends random bytes as schema-valid
images and counts the API's 415 as a wrongly rejected valid request. Negative cases still get random bytes.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

from runtime.common.imageinfo import CONTENT_TYPES


def _encode(fmt: str, width: int, height: int, seed: int) -> bytes:
    img = Image.new("RGB", (width, height))
    img.putdata(
        [((x * 7 + seed) % 256, (y * 13 + seed) % 256, (x * y) % 256) for y in range(height) for x in range(width)]
    )
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


for _fmt, _media_type in CONTENT_TYPES.items():
    schemathesis.openapi.media_type(
        _media_type,
        st.builds(
            _encode,
            st.just(_fmt),
            st.integers(min_value=1, max_value=40),
            st.integers(min_value=1, max_value=40),
            st.integers(min_value=0, max_value=255),
        ),
    )
