"""The routing cache (local/motofast/routing.py) sends requests where moto's dispatcher would, and leaves to moto
every request whose backend depends on more than the signature and target."""

from __future__ import annotations

import json
import urllib.request

import pytest

from local.motofast import ALL, DYNAMODB, ROUTING, SERVED, fast_paths
from local.motofast.rawclient import call, dynamodb
from local.motofast.routing import route_key
from local.motoserver import MotoServer


def signed(service: str, **extra: str) -> dict[str, str]:
    auth = (
        f"AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-west-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
    return {"HTTP_AUTHORIZATION": auth, "PATH_INFO": "/", **extra}


def test_route_key_is_what_decides_the_backend() -> None:
    assert route_key(signed("dynamodb", HTTP_X_AMZ_TARGET="DynamoDB_20120810.GetItem")) == (
        "dynamodb",
        "eu-west-1",
        "DynamoDB_20120810.GetItem",
    )
    assert route_key(signed("S3", PATH_INFO="/bucket/key")) == ("s3", "eu-west-1", "")
    assert route_key(signed("s3", PATH_INFO="/v20180820/configuration")) is None  # s3control
    assert route_key(signed("s3", HTTP_HOST="123.s3-control.amazonaws.com")) is None
    assert route_key(signed("sagemaker")) is None  # routed by path too
    assert route_key(signed("sqs", PATH_INFO="/moto-api/reset")) is None
    assert route_key({"PATH_INFO": "/bucket"}) is None  # unsigned
    assert route_key({"HTTP_AUTHORIZATION": "AWS AKID:signature", "PATH_INFO": "/"}) is None  # SigV2


def test_fast_paths_choice() -> None:
    assert fast_paths(True) == ALL and fast_paths(False) == frozenset()
    assert fast_paths([ROUTING]) == {ROUTING}
    with pytest.raises(ValueError, match="unknown moto fast path"):
        fast_paths(["teleport"])


def test_fast_paths_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSCALE_MOTO_FAST", "0")
    assert fast_paths() == frozenset()
    monkeypatch.setenv("SEGSCALE_MOTO_FAST", f"{ROUTING}, {DYNAMODB}")
    assert fast_paths() == {ROUTING, DYNAMODB}
    monkeypatch.delenv("SEGSCALE_MOTO_FAST")
    assert fast_paths() == ALL


def test_cached_routes_reach_the_right_backends() -> None:
    server = MotoServer(fast=[ROUTING]).start()
    try:
        before = SERVED[ROUTING]
        for _ in range(2):
            assert dynamodb(server.url, "ListTables", {}).status == 200
            reply = call(server.url, "GET", "/", "s3")
            assert reply.status == 200 and b"ListAllMyBucketsResult" in reply.body
            reply = call(
                server.url,
                "POST",
                "/",
                "sqs",
                {"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"},
                b"{}",
            )
            assert reply.status == 200
        assert SERVED[ROUTING] - before == 3  # the second round came from the cache
        with urllib.request.urlopen(f"{server.url}/moto-api/data.json") as response:  # moto's own, never cached
            assert "dynamodb" in json.loads(response.read())
    finally:
        server.stop()
