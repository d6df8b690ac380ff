"""Reading a source page by page, each page ending at a cursor the ingester can resume from.

- A prefix: one ``ListObjectsV2`` page (up to 1,000 keys); the cursor is the page's last key, and a resumed run
  lists with ``StartAfter`` it (S3 lists in key order, so nothing is skipped or read twice).
- A manifest: up to 1,000 lines; the cursor is ``<byte offset>:<line number>`` of the next line, and a resumed
  run reads from that offset with a ranged GET (a CSV manifest's header is read again from the start).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runtime.common.sources import (
    Source,
    SourceError,
    csv_header,
    parse_manifest_line,
    wanted,
)

PAGE_LINES = 1000
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """An object to make a job of, or (``error``) a manifest line that names none."""

    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None
    line: int | None = None
    error: str | None = None


@dataclass
class Page:
    entries: list[Entry] = field(default_factory=list)
    cursor: str = ""
    listed: int = 0
    skipped: int = 0  # names the suffix filter left out


def prefix_pages(
    s3: Any, source: Source, *, start_after: str | None, suffixes: tuple[str, ...], page_keys: int = 1000
) -> Iterator[Page]:
    kwargs: dict[str, Any] = {"Bucket": source.bucket, "Prefix": source.key, "MaxKeys": page_keys}
    if start_after:
        kwargs["StartAfter"] = start_after
    while True:
        out = s3.list_objects_v2(**kwargs)
        contents = out.get("Contents", [])
        page = Page(listed=len(contents))
        for obj in contents:
            key = obj["Key"]
            if not wanted(key, suffixes):
                page.skipped += 1
                continue
            page.entries.append(Entry(source.bucket, key, str(obj.get("ETag", "")).strip('"'), int(obj.get("Size", 0))))
        if contents:
            page.cursor = contents[-1]["Key"]
            yield page
        if not out.get("IsTruncated"):
            return
        kwargs["ContinuationToken"] = out["NextContinuationToken"]
        kwargs.pop("StartAfter", None)


def manifest_pages(s3: Any, source: Source, *, cursor: str | None, page_lines: int = PAGE_LINES) -> Iterator[Page]:
    """Pages of manifest lines from ``cursor`` on. A line that is not valid UTF-8 or names no object is an entry
    with its ``error``; raises ``SourceError`` for a CSV manifest without a ``key`` header."""
    fmt = source.manifest_format
    offset, number = (int(part) for part in cursor.split(":")) if cursor else (0, 0)
    header: list[str] | None = None
    if fmt == "csv":
        first = _first_line(s3, source)
        header = csv_header(first.decode("utf-8", errors="replace"))
        if offset == 0:
            offset, number = len(first), 1
    request: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
    if offset:
        request["Range"] = f"bytes={offset}-"
    try:
        body = s3.get_object(**request)["Body"]
    except Exception as exc:  # a range past the end: nothing left to read
        if "InvalidRange" in str(exc):
            return
        raise
    page = Page()
    for raw in _lines(body):
        offset += len(raw)
        number += 1
        page.listed += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            page.entries.append(Entry(source.bucket, "", line=number, error=f"manifest line {number}: not UTF-8"))
        else:
            line = parse_manifest_line(number, text, fmt, default_bucket=source.bucket, header=header)
            if line is None:
                page.listed -= 1
            elif line.error is not None:
                page.entries.append(Entry(source.bucket, line.text, line=number, error=line.error))
            else:
                assert line.bucket is not None and line.key is not None
                page.entries.append(Entry(line.bucket, line.key, line=number))
        if page.listed >= page_lines:
            page.cursor = f"{offset}:{number}"
            yield page
            page = Page()
    if page.listed or page.entries:
        page.cursor = f"{offset}:{number}"
        yield page


def _first_line(s3: Any, source: Source) -> bytes:
    body = s3.get_object(Bucket=source.bucket, Key=source.key, Range="bytes=0-65535")["Body"].read()
    end = body.find(b"\n")
    if end < 0 and len(body) >= 65536:
        raise SourceError("the CSV manifest's header line is longer than 64 KiB")
    return body if end < 0 else body[: end + 1]


def _lines(body: Any) -> Iterator[bytes]:
    """Raw lines with their line ends (so offsets add up), read a megabyte at a time."""
    rest = b""
    while True:
        chunk = body.read(_READ_CHUNK)
        if not chunk:
            break
        rest += chunk
        *complete, rest = rest.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if rest:
        yield rest
