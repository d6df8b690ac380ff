"""The ListObjectsV2 fast path (local/motofast/s3_list.py) answers exactly as moto does.

A fast server and a stock one share moto's state in one process, so both list the same buckets: every page must be
the same bytes (status, content type, XML; continuation tokens are moto's, so they match too), and full listings
through boto3's paginator must be what a client sees from moto.
"""

from __future__ import annotations

import random
import re
import urllib.parse
import uuid
from typing import Any

import boto3
import pytest

from local.motofast import S3_LIST, SERVED
from local.motofast.rawclient import Reply, call

NAMES = (
    [
        "a/1",
        "a/2",
        "a/b/c",
        "a/b/d",
        "a+b/x",
        "b c",
        "b c/d e",
        "x+y",
        "ü/z",
        "é",
        "é/ü",
        "plus+/q",
        "sp ace/x y",
        "deep/1/2/3",
        "deep/1/4",
        "amp&<lt>/'q'\"",
        "k0k0",
        "k1",
        "tail/",
        "tail//x",
        "~",
        "zz\u2603",
    ]
    + [f"p/k{n:04d}" for n in range(60)]
    + [f"p/sub{n % 3}/k{n:03d}" for n in range(30)]
)


def s3(url: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture(scope="module")
def buckets(servers: tuple[str, str]) -> tuple[str, str]:
    """A plain bucket, and a versioned one with delete markers (a folder holding only deleted keys)."""
    client = s3(servers[1])
    plain, versioned = f"plain-{uuid.uuid4().hex[:8]}", f"versioned-{uuid.uuid4().hex[:8]}"
    for bucket in (plain, versioned):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Enabled"})
    for name in NAMES:
        client.put_object(Bucket=plain, Key=name, Body=name.encode())
        client.put_object(Bucket=versioned, Key=name, Body=b"v2 longer", ChecksumAlgorithm="SHA256")
    for name in ("a/b/c", "a/b/d", "k1", "p/k0003", "é/ü"):
        client.delete_object(Bucket=versioned, Key=name)
    return plain, versioned


def query(params: dict[str, Any]) -> str:
    return "&".join(f"{k}={urllib.parse.quote(str(v), safe='')}" for k, v in params.items() if v is not None)


def without_request_id(body: bytes) -> bytes:
    return re.sub(rb"<RequestId>[^<]*</RequestId>", b"<RequestId/>", body)


def same_page(servers: tuple[str, str], bucket: str, params: dict[str, Any]) -> Reply:
    served = SERVED[S3_LIST]
    path = f"/{bucket}?list-type=2&{query(params)}"
    fast, stock = (call(url, "GET", path, "s3") for url in servers)
    assert (fast.status, fast.header("Content-Type"), without_request_id(fast.body)) == (
        stock.status,
        stock.header("Content-Type"),
        without_request_id(stock.body),
    ), (bucket, params)
    assert fast.status != 200 or SERVED[S3_LIST] > served, "the fast path did not answer"
    return fast


def token_of(reply: Reply) -> str | None:
    body = reply.body.decode()
    if "<NextContinuationToken>" not in body:
        return None
    return body.split("<NextContinuationToken>")[1].split("</NextContinuationToken>")[0]


def test_every_page_of_many_listings_is_the_same_bytes(servers: tuple[str, str], buckets: tuple[str, str]) -> None:
    rng = random.Random(7)
    choices = {
        "prefix": [None, "", "a", "a/", "p/", "p/k00", "p/sub", "zz", "ü", "é", "sp ", "b c", "a+b", "tail/", "q"],
        "delimiter": [None, "/", "k0", "+", " ", "//"],
        "max-keys": [None, 0, 1, 3, 7, 1000],
        "start-after": [None, "", "a/1", "p/k0050", "a", "p/sub1", "é"],
        "encoding-type": [None, "url"],
        "fetch-owner": [None, "true", "false"],
    }
    pages = 0
    for _ in range(70):
        params = {name: rng.choice(values) for name, values in choices.items()}
        bucket = rng.choice(buckets)
        reply = same_page(servers, bucket, params)
        for _ in range(25):
            token = token_of(reply)
            if token is None:
                break
            reply = same_page(servers, bucket, {**params, "continuation-token": token})
            pages += 1
    assert pages > 50


def test_listing_through_boto3_paginator_is_what_moto_gives(servers: tuple[str, str], buckets: tuple[str, str]) -> None:
    for bucket in buckets:
        for kwargs in (
            {},
            {"Prefix": "p/", "Delimiter": "/"},
            {"Delimiter": "/", "EncodingType": "url"},
            {"Prefix": "a", "StartAfter": "a/1", "FetchOwner": True},
        ):
            listings = []
            for url in servers:
                pages = (
                    s3(url)
                    .get_paginator("list_objects_v2")
                    .paginate(Bucket=bucket, PaginationConfig={"PageSize": 4}, **kwargs)
                )
                listings.append([{k: v for k, v in page.items() if k != "ResponseMetadata"} for page in pages])
            assert listings[0] == listings[1]
            assert listings[0][0]["KeyCount"] > 0


def test_index_follows_writes_between_pages(servers: tuple[str, str]) -> None:
    client = s3(servers[1])
    bucket = f"moving-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    for n in range(0, 40, 2):
        client.put_object(Bucket=bucket, Key=f"k{n:03d}", Body=b"x")
    first = same_page(servers, bucket, {"max-keys": 5})
    for n in range(1, 40, 2):
        client.put_object(Bucket=bucket, Key=f"k{n:03d}", Body=b"y")
    client.delete_object(Bucket=bucket, Key="k010")
    second = same_page(servers, bucket, {"max-keys": 5, "continuation-token": token_of(first)})
    assert b"<Key>k009</Key>" in second.body and b"k010" not in second.body
    for n in range(120):  # enough changes to rebuild the index rather than patch it
        client.put_object(Bucket=bucket, Key=f"m{n:03d}", Body=b"z")
    same_page(servers, bucket, {"prefix": "m", "max-keys": 1000})


def test_errors_are_moto_errors(servers: tuple[str, str], buckets: tuple[str, str]) -> None:
    replies = [
        same_page(servers, "no-such-bucket-here", {}),
        same_page(servers, buckets[0], {"continuation-token": ""}),
    ]
    assert [reply.status for reply in replies] == [404, 400]
    fast, stock = (s3(url) for url in servers)
    errors = []
    for client in (fast, stock):
        with pytest.raises(client.exceptions.NoSuchBucket) as error:
            client.list_objects_v2(Bucket="no-such-bucket-here")
        errors.append(error.value.response["Error"])
    assert errors[0] == errors[1]
