"""S3TextStream against a real moto server: small exports are one PutObject, big ones go up in parts, and an
error leaves nothing behind."""

from __future__ import annotations

import io

import pytest

from runtime.common.aws import client
from runtime.common.settings import Settings
from runtime.results.s3stream import S3TextStream

MIB = 1024 * 1024


def test_small_text_is_one_put_and_is_teed(settings: Settings) -> None:
    s3 = client("s3", settings)
    local = io.StringIO()
    with S3TextStream(s3, settings.bucket, "reports/x/a.csv", content_type="text/csv", tee=local) as out:
        out.write("a,b\n")
        out.write("é,2\n")
    obj = s3.get_object(Bucket=settings.bucket, Key="reports/x/a.csv")
    assert obj["Body"].read().decode("utf-8") == "a,b\né,2\n" == local.getvalue()
    assert (
        obj["ContentType"] == "text/csv" and out.parts_uploaded == 0 and out.bytes_written == len("a,b\né,2\n".encode())
    )


def test_big_text_goes_up_in_parts(settings: Settings) -> None:
    s3 = client("s3", settings)
    line = "x" * 1023 + "\n"
    with S3TextStream(s3, settings.bucket, "reports/x/big.csv", content_type="text/csv", part_size=5 * MIB) as out:
        for _ in range(11 * 1024):  # 11 MiB: two full parts and a last one
            out.write(line)
    head = s3.head_object(Bucket=settings.bucket, Key="reports/x/big.csv")
    assert out.parts_uploaded == 3 and head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == 11 * MIB and head["ContentType"] == "text/csv"


def test_an_error_aborts_and_leaves_nothing(settings: Settings) -> None:
    s3 = client("s3", settings)
    with (
        pytest.raises(RuntimeError, match="boom"),
        S3TextStream(s3, settings.bucket, "reports/x/broken.csv", content_type="text/csv", part_size=5 * MIB) as out,
    ):
        out.write("y" * (6 * MIB))  # one part already uploaded
        assert out.parts_uploaded == 1
        raise RuntimeError("boom")
    assert s3.list_objects_v2(Bucket=settings.bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=settings.bucket).get("Uploads", []) == []
    with pytest.raises(ValueError, match="closed"):
        out.write("more")
