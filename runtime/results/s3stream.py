"""Stream text to S3 as it is produced, so an export of 100,000 jobs never sits in memory.

Rows are buffered only up to one multipart part; each full part is uploaded and dropped. An export that stays
smaller than one part is sent with a single ``PutObject``. If the writer is left by an exception the multipart
upload is aborted, so no half-written report appears under ``reports/`` and no orphan parts are billed.
"""

from __future__ import annotations

import io
from types import TracebackType
from typing import IO, Any

# S3 refuses parts under 5 MiB (except the last); 8 MiB keeps the number of parts low for big exports.
DEFAULT_PART_SIZE = 8 * 1024 * 1024


class S3TextStream:
    """A write-only text stream that uploads to ``s3://bucket/key`` in parts and optionally copies to a local stream."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        *,
        content_type: str,
        part_size: int = DEFAULT_PART_SIZE,
        tee: IO[str] | None = None,
    ) -> None:
        if part_size <= 0:
            raise ValueError("part_size must be positive")
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.content_type = content_type
        self.part_size = part_size
        self.tee = tee
        self.bytes_written = 0
        self._buffer = io.BytesIO()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._closed = False

    @property
    def parts_uploaded(self) -> int:
        return len(self._parts)

    def write(self, text: str) -> int:
        if self._closed:
            raise ValueError("write to a closed S3TextStream")
        if self.tee is not None:
            self.tee.write(text)
        data = text.encode("utf-8")
        self._buffer.write(data)
        self.bytes_written += len(data)
        if self._buffer.tell() >= self.part_size:
            self._flush_part()
        return len(text)

    def _flush_part(self) -> None:
        data = self._buffer.getvalue()
        self._buffer = io.BytesIO()
        if self._upload_id is None:
            out = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key, ContentType=self.content_type)
            self._upload_id = out["UploadId"]
        number = len(self._parts) + 1
        out = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"PartNumber": number, "ETag": out["ETag"]})

    def close(self) -> None:
        """Send what is left and make the object visible."""
        if self._closed:
            return
        self._closed = True
        if self.tee is not None:
            self.tee.flush()
        if self._upload_id is None:
            self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=self._buffer.getvalue(), ContentType=self.content_type
            )
            self._buffer = io.BytesIO()
            return
        if self._buffer.tell() > 0:
            self._flush_part()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )

    def abort(self) -> None:
        """Drop everything: nothing appears in S3."""
        self._closed = True
        self._buffer = io.BytesIO()
        if self._upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None

    def __enter__(self) -> S3TextStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
