"""Where ingested images come from (docs/ingestion.md, docs/architecture.md D10): S3 sources, the allow-list,
manifests, drop-folder names and the ids of ingested jobs. The API, the ingester and the CDK config all use these
rules, so a source the API accepts is one the ingester reads and the deployment granted.

Job ids are derived, never random: ``sha256(batch, bucket, key, etag)``. An ingester killed mid-listing and run
again, or an S3 event delivered twice, makes the same id, so it finds the job it already wrote instead of adding a
second one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass
from enum import StrEnum

from runtime.common.s3uri import S3Prefix, S3UriError, parse_s3_prefix

# Object names the ingester turns into jobs unless a request names its own suffixes (case-insensitive).
DEFAULT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
MANIFEST_SUFFIXES = {".txt": "text", ".lst": "text", ".jsonl": "jsonl", ".csv": "csv"}
MAX_KEY_BYTES = 1024  # S3's own limit on a key
SEALED_MARKER = "_SEALED"
_INBOX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ID = re.compile(r"^[0-9a-f]{32}$")


class SourceError(ValueError):
    """A source, manifest line or drop-folder name that cannot be used; the message says why."""


class SourceKind(StrEnum):
    PREFIX = "prefix"
    MANIFEST = "manifest"


@dataclass(frozen=True)
class Source:
    """A prefix (``key`` ends in "/" or is empty: every object under it) or one manifest object."""

    kind: SourceKind
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def manifest_format(self) -> str:
        return manifest_format(self.key)


def manifest_format(key: str) -> str:
    for suffix, fmt in MANIFEST_SUFFIXES.items():
        if key.lower().endswith(suffix):
            return fmt
    raise SourceError(
        f"manifest {key!r} must end in one of {', '.join(MANIFEST_SUFFIXES)} (a key per line, JSON Lines, or CSV "
        "with a 'key' column)"
    )


def parse_source(uri: str, *, manifest: bool) -> Source:
    """``s3://bucket/prefix/`` (a prefix: the trailing "/" is implied) or, with ``manifest``, ``s3://bucket/key``."""
    if manifest:
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)", uri.strip())
        if not match or match.group(2).endswith("/"):
            raise SourceError(f"manifest {uri!r} must look like s3://bucket/path/manifest.txt")
        manifest_format(match.group(2))
        return Source(SourceKind.MANIFEST, match.group(1), match.group(2))
    try:
        where = parse_s3_prefix(uri, what="source")
    except S3UriError as exc:
        raise SourceError(str(exc)) from None
    return Source(SourceKind.PREFIX, where.bucket, where.prefix)


def parse_allow_list(text: str) -> tuple[S3Prefix, ...]:
    """The ``ingest_sources`` setting: ``s3://bucket/prefix/`` entries separated by commas (empty: none)."""
    entries = [part.strip() for part in text.split(",") if part.strip()]
    return tuple(parse_s3_prefix(entry, what="ingest source") for entry in entries)


def allowed(bucket: str, key: str, allow: tuple[S3Prefix, ...]) -> bool:
    """True when ``s3://bucket/key`` lies under an allowed prefix (a prefix source must lie wholly inside one)."""
    return any(bucket == a.bucket and key.startswith(a.prefix) for a in allow)


def describe_allow_list(allow: tuple[S3Prefix, ...]) -> str:
    return ", ".join(a.uri() for a in allow) if allow else "none (this deployment reads no outside sources)"


def job_id_for(batch_id: str, bucket: str, key: str, version: str) -> str:
    """The id of the job for one object (``version``: its ETag or version id; a manifest line: its line number)."""
    digest = hashlib.sha256("\0".join((batch_id, bucket, key, version)).encode()).hexdigest()
    return digest[:32]


def inbox_batch_id(name: str) -> str:
    """The batch of drop folder ``inbox/<name>/``: ``name`` itself when it is a batch id, else derived from it."""
    if not _INBOX_NAME.fullmatch(name):
        raise SourceError(f"drop folder name {name[:64]!r} must be 1-128 letters, digits, '.', '_' or '-'")
    if _ID.fullmatch(name):
        return name
    return hashlib.sha256(f"inbox\0{name}".encode()).hexdigest()[:32]


def wanted(key: str, suffixes: tuple[str, ...]) -> bool:
    low = key.lower()
    return not low.endswith("/") and low.endswith(tuple(s.lower() for s in suffixes))


@dataclass(frozen=True)
class ManifestLine:
    """One manifest line: an object to ingest (``key``), or why the line is not one (``error``)."""

    number: int  # 1-based
    text: str
    bucket: str | None = None
    key: str | None = None
    error: str | None = None


def parse_manifest_line(
    number: int, raw: str, fmt: str, *, default_bucket: str, header: list[str] | None = None
) -> ManifestLine | None:
    """A line of a text, JSON Lines or CSV manifest (None: a blank line or the CSV header). A key is relative to the
    manifest's bucket; ``s3://bucket/key`` names another (allow-listed) bucket."""
    text = raw.strip()
    if not text:
        return None
    shown = text[:200]
    try:
        if fmt == "text":
            value = text
        elif fmt == "jsonl":
            doc = json.loads(text)
            named = doc.get("key", doc.get("uri")) if isinstance(doc, dict) else None
            if not isinstance(named, str):
                raise SourceError('a JSON Lines entry must be an object with a string "key" (or "uri")')
            value = named
        else:
            assert header is not None
            row = next(csv.reader(io.StringIO(text)))
            if len(row) != len(header):
                raise SourceError(f"{len(row)} columns where the header has {len(header)}")
            value = row[header.index("key")].strip()
        bucket, key = _split(value, default_bucket)
    except (SourceError, json.JSONDecodeError, csv.Error) as exc:
        return ManifestLine(number, shown, error=f"manifest line {number}: {exc}")
    return ManifestLine(number, shown, bucket=bucket, key=key)


def csv_header(raw: str) -> list[str]:
    """The header row of a CSV manifest; it must name a ``key`` column."""
    header = [h.strip().lower() for h in next(csv.reader(io.StringIO(raw.strip())), [])]
    if "key" not in header:
        raise SourceError(f"the CSV manifest's first line must be a header with a 'key' column, got {raw[:120]!r}")
    return header


def _split(value: str, default_bucket: str) -> tuple[str, str]:
    if value.startswith("s3://"):
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)", value)
        if not match:
            raise SourceError(f"{value[:120]!r} is not an s3://bucket/key URI")
        bucket, key = match.group(1), match.group(2)
    else:
        bucket, key = default_bucket, value.lstrip("/")
    if not key or key.endswith("/"):
        raise SourceError(f"{value[:120]!r} names no object")
    if len(key.encode()) > MAX_KEY_BYTES or any(ord(c) < 32 for c in key):
        raise SourceError(f"{value[:120]!r} is not a valid S3 key")
    return bucket, key
