"""schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.api.schemathesis_hooks``): what "an image" and "a webhook URL"
are, for the fuzzer.

The OpenAPI document says each ``file`` part is one of the image types the API accepts (its ``encoding``), but
JSON Schema cannot say what makes bytes a JPEG. Without this the fuzzer sends random bytes as schema-valid
images and counts the API's 415 as a wrongly rejected valid request. Negative cases still get random bytes.

Likewise a ``notify_url`` is stated as ``format: uri``, but whether its host resolves to a public address is
known only by asking DNS. Schema-valid URLs are therefore https URLs to public IP addresses written as literals
(judged without a lookup, so the run never waits on DNS); the fuzzer's invalid URIs are still its own, and the
API refuses those from their text alone.
"""

from __future__ import annotations

import io
import ipaddress
import string

import schemathesis
from hypothesis import strategies as st
from PIL import Image

from runtime.common.imageinfo import CONTENT_TYPES
from runtime.common.webhooks import address_problem


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


def _webhook_url(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None, path: str) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"https://{host}{'' if port is None else f':{port}'}/{path}"


_public = st.one_of(st.ip_addresses(v=4), st.ip_addresses(network="2000::/3")).filter(
    lambda ip: address_problem(str(ip), allow_loopback=False) is None
)
schemathesis.openapi.format(
    "uri",
    st.builds(
        _webhook_url,
        _public,
        st.none() | st.integers(min_value=1, max_value=65535),
        st.text(alphabet=string.ascii_letters + string.digits + "-._~/", max_size=40),
    ),
)
