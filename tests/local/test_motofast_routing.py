"""The routing cache (local/motofast/routing.py) sends requests where moto's dispatcher would, and leaves to moto
every request whose backend depends on more than the signature and target."""

from __future__ import annotations

import json
import urllib.request

import moto.core.responses
import pytest
from moto.dynamodb.responses import DynamoHandler
from moto.events.responses import EventsHandler
from moto.s3.responses import S3Response
from moto.sqs.responses import SQSResponse

from local.motofast import ALL, DYNAMODB, ROUTING, SERVED, fast_paths
from local.motofast.dynamodb import FastDynamoHandler
from local.motofast.rawclient import call, dynamodb
from local.motofast.routing import _ACTION_NAMES, _method_names_from_class, cached_method_names, route_key
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


def test_the_action_lookup_memo_lists_what_moto_lists(servers: tuple[str, str]) -> None:
    fast, _ = servers
    assert moto.core.responses.method_names_from_class is cached_method_names  # installed by the fast server
    assert dynamodb(fast, "ListTables", {}).status == 200  # through moto's call_action
    assert any(issubclass(clazz, DynamoHandler) for clazz in _ACTION_NAMES)
    for clazz in (DynamoHandler, FastDynamoHandler, EventsHandler, S3Response, SQSResponse):
        assert cached_method_names(clazz) == _method_names_from_class(clazz)
        assert cached_method_names(clazz) is cached_method_names(clazz)
    assert "update_item" in cached_method_names(DynamoHandler)
