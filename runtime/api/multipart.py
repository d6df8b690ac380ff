"""Streaming multipart parser with limits, so an oversized upload is refused without being read into memory.

Starlette's form parser reads the whole body before the route sees it. Here every chunk is counted as it arrives:
the first byte past a limit ends parsing with 413 and the rest of the body is never read. File parts are spooled
(memory up to 1 MiB, then a temporary file), never held whole in a ``bytes`` object while receiving.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from runtime.api.problems import ApiProblem
from runtime.api.schemas import MAX_FILE_NAME_CHARS

FILE_FIELD = "file"
SPOOL_MEMORY_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 1024
MAX_HEADER_BYTES = 8 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024  # boundaries, part headers and small fields on top of the files


def display_name(raw: str) -> str:
    """The file name we store and echo back: last path segment, printable characters, at most 255 characters.

    It is only ever data (shown to the user, written to the job item); S3 keys never use it.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        name = "upload"
    return name[:MAX_FILE_NAME_CHARS]


@dataclass
class IncomingFile:
    index: int
    file_name: str
    spool: Any = field(default_factory=lambda: SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES))  # noqa: SIM115
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def read_all(self) -> bytes:
        self.spool.seek(0)
        return bytes(self.spool.read())

    def rewind(self) -> Any:
        self.spool.seek(0)
        return self.spool


@dataclass
class ParsedForm:
    files: list[IncomingFile]
    fields: dict[str, str]

    def close(self) -> None:
        for f in self.files:
            f.spool.close()


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_files: int
    allowed_fields: frozenset[str] = frozenset({"model", "mm_per_pixel", "batch_id", "notify_url", "seal"})

    @property
    def max_body_bytes(self) -> int:
        return self.max_files * self.max_file_bytes + MULTIPART_OVERHEAD_BYTES


class _Collector:
    """python-multipart callbacks; raises ApiProblem as soon as a limit is crossed."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.files: list[IncomingFile] = []
        self.fields: dict[str, str] = {}
        self._header_name = b""
        self._header_value = b""
        self._header_bytes = 0
        self._disposition = b""
        self._file: IncomingFile | None = None
        self._field_name: str | None = None
        self._field_data = bytearray()
        self.ended = False  # the closing boundary was seen (python-multipart's finalize does not check)

    def on_end(self) -> None:
        self.ended = True

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._header_bytes = 0
        self._file = None
        self._field_name = None
        self._field_data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            raise ApiProblem(400, "malformed_multipart", "a multipart part has oversized headers")

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name_raw = options.get(b"name")
        if name_raw is None:
            raise ApiProblem(400, "malformed_multipart", "a multipart part has no Content-Disposition name")
        name = name_raw.decode("utf-8", errors="replace")
        if name == FILE_FIELD:
            if len(self.files) >= self.limits.max_files:
                raise ApiProblem(413, "too_many_files", f"too many files: at most {self.limits.max_files} per request")
            raw_name = options.get(b"filename", b"").decode("utf-8", errors="replace")
            self._file = IncomingFile(index=len(self.files), file_name=display_name(raw_name))
            self.files.append(self._file)
        elif name in self.limits.allowed_fields:
            if name in self.fields:
                raise ApiProblem(422, "invalid_field", f"form field {name!r} is given more than once")
            self._field_name = name
        else:
            allowed = ", ".join(sorted({FILE_FIELD, *self.limits.allowed_fields}))
            raise ApiProblem(422, "invalid_field", f"unknown form field {name[:64]!r}; expected one of: {allowed}")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self._file.size += len(chunk)
            if self._file.size > self.limits.max_file_bytes:
                raise ApiProblem(
                    413,
                    "file_too_large",
                    f"file {self._file.file_name!r} is over the limit of {self.limits.max_file_bytes:,} bytes",
                )
            self._file.spool.write(chunk)
            self._file.digest.update(chunk)
        else:
            self._field_data.extend(chunk)
            if len(self._field_data) > MAX_FIELD_BYTES:
                raise ApiProblem(413, "field_too_large", f"form field {self._field_name!r} is over {MAX_FIELD_BYTES} B")

    def on_part_end(self) -> None:
        if self._field_name is not None:
            self.fields[self._field_name] = self._field_data.decode("utf-8", errors="replace").strip()


async def parse(
    content_type: str | None, content_length: str | None, body: AsyncIterator[bytes], limits: Limits
) -> ParsedForm:
    """Parse a ``multipart/form-data`` body; raises ``ApiProblem`` (400/413/415/422) and reads no further."""
    media, params = parse_options_header(content_type or "")
    if media != b"multipart/form-data":
        raise ApiProblem(415, "not_multipart", "send the images as multipart/form-data with one 'file' part each")
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiProblem(400, "malformed_multipart", "the multipart Content-Type has no boundary")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError as exc:
            raise ApiProblem(400, "bad_content_length", "Content-Length is not a number") from exc
        if declared > limits.max_body_bytes:
            raise ApiProblem(
                413,
                "request_too_large",
                f"the request is {declared:,} bytes; the limit is {limits.max_body_bytes:,} "
                f"({limits.max_files} files of at most {limits.max_file_bytes:,} bytes)",
            )
    collector = _Collector(limits)
    callbacks: Any = {
        "on_part_begin": collector.on_part_begin,
        "on_part_data": collector.on_part_data,
        "on_part_end": collector.on_part_end,
        "on_header_field": collector.on_header_field,
        "on_header_value": collector.on_header_value,
        "on_header_end": collector.on_header_end,
        "on_headers_finished": collector.on_headers_finished,
        "on_end": collector.on_end,
    }
    parser = MultipartParser(boundary, callbacks)
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise ApiProblem(413, "request_too_large", f"the request is over {limits.max_body_bytes:,} bytes")
            parser.write(chunk)
        parser.finalize()
        if not collector.ended:
            raise ApiProblem(400, "malformed_multipart", "the multipart body ended before its closing boundary")
    except ClientDisconnect as exc:
        ParsedForm(collector.files, collector.fields).close()
        raise ApiProblem(400, "client_disconnected", "the client went away before the body was complete") from exc
    except FormParserError as exc:
        ParsedForm(collector.files, collector.fields).close()
        raise ApiProblem(400, "malformed_multipart", f"the multipart body is malformed: {exc}") from exc
    except BaseException:
        ParsedForm(collector.files, collector.fields).close()
        raise
    return ParsedForm(collector.files, collector.fields)
