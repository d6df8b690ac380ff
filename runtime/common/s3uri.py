"""The one rule for `s3://bucket/prefix/` settings (`models_s3_uri`): worker, API and CDK config all use it.

Three copies of this rule once drifted apart in small ways; a URI the deploy config accepted must be one every
container reads as the same bucket and prefix, so all of them call :func:`parse_s3_prefix`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# S3 bucket naming: 3-63 characters, lowercase letters, digits, '.' and '-', starting and ending with a letter/digit.
_S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?")


class S3UriError(ValueError):
    """A setting that should be ``s3://bucket/prefix/`` is not; the message quotes the value."""


@dataclass(frozen=True)
class S3Prefix:
    """A bucket and a key prefix that is either empty or ends in "/" (so ``prefix + name`` is a key)."""

    bucket: str
    prefix: str

    def uri(self, rest: str = "") -> str:
        """``s3://bucket/prefix/`` followed by ``rest``: the canonical form, used in every message."""
        return f"s3://{self.bucket}/{self.prefix}{rest}"


def parse_s3_prefix(uri: str, *, what: str = "models S3 URI") -> S3Prefix:
    """Parse and normalise ``s3://bucket[/prefix[/]]``; surrounding spaces and extra slashes around the prefix
    are forgiven, anything else that is not an S3 URI raises :class:`S3UriError` naming ``what``."""
    match = _S3_URI.fullmatch(uri.strip())
    if not match:
        raise S3UriError(f"{what} {uri!r} must look like s3://bucket/prefix/")
    prefix = (match.group(2) or "").strip("/")
    return S3Prefix(match.group(1), f"{prefix}/" if prefix else "")
