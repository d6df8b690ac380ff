"""The DynamoDB fast path (local/motofast/dynamodb.py) answers exactly as moto's own serializer.

Two servers in one process share moto's state: one with the fast paths, one stock. Every request goes to both,
each against its own table with the same history, and the answers must be equal once parsed (status, content type,
error type, the JSON body), with a CRC32 header that matches the body the fast path wrote.
"""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from typing import Any

import pytest

from local.motofast import DYNAMODB, SERVED
from local.motofast.rawclient import Reply, dynamodb


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


EVERY_TYPE: dict[str, Any] = {
    "s": {"S": 'text ü \u2603 "quoted"'},
    "empty": {"S": ""},
    "n": {"N": "-12.500"},
    "big": {"N": "123456789012345678901234567890"},
    "b": {"B": _b64(b"\x00\x01\xff")},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [_b64(b"x"), _b64(b"\x00")]},
    "null": {"NULL": True},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "l": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"L": [{"B": _b64(b"d")}, {"NULL": True}]}}}, {"L": []}]},
    "m": {"M": {"inner": {"M": {"ss": {"SS": ["z"]}, "bool": {"BOOL": False}}}, "empty": {"M": {}}}},
}


class Pair:
    """The same requests against a table on the fast server and its twin on the stock server."""

    def __init__(self, fast_url: str, stock_url: str) -> None:
        self.urls = {"fast": fast_url, "stock": stock_url}
        self.tables = {side: f"{side}{uuid.uuid4().hex[:10]}" for side in self.urls}

    def send(self, operation: str, payload: dict[str, Any]) -> tuple[Reply, Reply]:
        replies = []
        for side, url in self.urls.items():
            text = json.dumps(payload).replace("TABLE", self.tables[side])
            replies.append(dynamodb(url, operation, json.loads(text)))
        return replies[0], replies[1]

    def parsed(self, reply: Reply, side: str) -> Any:
        return json.loads(reply.body.decode().replace(self.tables[side], "TABLE")) if reply.body else None

    def same(self, operation: str, payload: dict[str, Any]) -> Any:
        served = SERVED[DYNAMODB]
        fast, stock = self.send(operation, payload)
        assert (fast.status, fast.header("Content-Type"), fast.header("X-Amzn-ErrorType")) == (
            stock.status,
            stock.header("Content-Type"),
            stock.header("X-Amzn-ErrorType"),
        ), (operation, payload, fast.body, stock.body)
        assert self.parsed(fast, "fast") == self.parsed(stock, "stock"), (operation, payload)
        assert fast.header("x-amz-crc32") == str(zlib.crc32(fast.body) & 0xFFFFFFFF)
        self.fast_path_taken = SERVED[DYNAMODB] > served
        return self.parsed(fast, "fast"), fast.status


@pytest.fixture()
def pair(servers: tuple[str, str]) -> Pair:
    pair = Pair(*servers)
    for side, url in pair.urls.items():
        reply = dynamodb(
            url,
            "CreateTable",
            {
                "TableName": pair.tables[side],
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "N"},
                    {"AttributeName": "g", "AttributeType": "S"},
                ],
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": "by-g",
                        "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
            },
        )
        assert reply.status == 200, reply.body
    return pair


def key(pk: str, sk: int) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def test_put_get_update_delete_answers_match(pair: Pair) -> None:
    item = {**key("p", 1), **EVERY_TYPE, "g": {"S": "grp"}}
    for capacity in ("NONE", "TOTAL", "INDEXES"):
        body, status = pair.same(
            "PutItem",
            {"TableName": "TABLE", "Item": item, "ReturnValues": "ALL_OLD", "ReturnConsumedCapacity": capacity},
        )
        assert status == 200 and pair.fast_path_taken
    assert body["Attributes"]["bs"] == EVERY_TYPE["bs"] and body["ConsumedCapacity"]["Table"]
    pair.same("PutItem", {"TableName": "TABLE", "Item": key("p", 2), "ReturnItemCollectionMetrics": "SIZE"})

    body, _ = pair.same("GetItem", {"TableName": "TABLE", "Key": key("p", 1), "ReturnConsumedCapacity": "TOTAL"})
    assert body["Item"]["m"] == EVERY_TYPE["m"] and pair.fast_path_taken
    pair.same("GetItem", {"TableName": "TABLE", "Key": key("p", 9)})  # no such item: {}
    pair.same(
        "GetItem",
        {
            "TableName": "TABLE",
            "Key": key("p", 1),
            "ProjectionExpression": "l[2].m, ss, #n",
            "ExpressionAttributeNames": {"#n": "null"},
            "ConsistentRead": True,
        },
    )

    update = {
        "TableName": "TABLE",
        "Key": key("p", 1),
        "UpdateExpression": "SET n = n + :one, newmap = :m, l[0] = :s ADD ns :ns REMOVE yes",
        "ExpressionAttributeValues": {
            ":one": {"N": "1"},
            ":m": {"M": {"b": {"B": _b64(b"q")}}},
            ":s": {"S": "y"},
            ":ns": {"NS": ["7"]},
        },
    }
    for returns in ("NONE", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW", "ALL_OLD"):
        body, status = pair.same("UpdateItem", {**update, "ReturnValues": returns, "ReturnConsumedCapacity": "TOTAL"})
        assert status == 200 and pair.fast_path_taken

    failed = {
        **update,
        "ConditionExpression": "attribute_not_exists(pk)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
    body, status = pair.same("UpdateItem", failed)
    assert status == 400 and body["Item"]["pk"] == {"S": "p"}
    body, status = pair.same(
        "PutItem", {"TableName": "TABLE", "Item": key("p", 1), "ConditionExpression": "attribute_not_exists(pk)"}
    )
    assert status == 400 and "ConditionalCheckFailed" in body["__type"]

    for returns in ("ALL_OLD", "NONE"):
        body, status = pair.same(
            "DeleteItem",
            {"TableName": "TABLE", "Key": key("p", 1), "ReturnValues": returns, "ReturnConsumedCapacity": "INDEXES"},
        )
        assert status == 200 and pair.fast_path_taken


def test_query_scan_pages_match(pair: Pair) -> None:
    for n in range(30):
        pair.same("PutItem", {"TableName": "TABLE", "Item": {**key("q", n), **EVERY_TYPE, "g": {"S": f"g{n % 3}"}}})
    query = {"TableName": "TABLE", "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "q"}}}
    start = None
    pages = 0
    while True:
        body, _ = pair.same(
            "Query",
            {**query, "Limit": 7, "ReturnConsumedCapacity": "TOTAL", **({"ExclusiveStartKey": start} if start else {})},
        )
        assert pair.fast_path_taken
        pages += 1
        start = body.get("LastEvaluatedKey")
        if not start:
            break
    assert pages == 5
    pair.same("Query", {**query, "ScanIndexForward": False, "Select": "COUNT"})
    pair.same(
        "Query",
        {
            **query,
            "FilterExpression": "sk > :five",
            "ProjectionExpression": "sk, m.inner",
            "ExpressionAttributeValues": {":p": {"S": "q"}, ":five": {"N": "5"}},
        },
    )
    pair.same(
        "Query",
        {
            "TableName": "TABLE",
            "IndexName": "by-g",
            "KeyConditionExpression": "g = :g",
            "ExpressionAttributeValues": {":g": {"S": "g1"}},
            "ReturnConsumedCapacity": "INDEXES",
        },
    )
    body, _ = pair.same("Scan", {"TableName": "TABLE", "Limit": 11})
    pair.same("Scan", {"TableName": "TABLE", "ExclusiveStartKey": body["LastEvaluatedKey"], "Select": "COUNT"})
    _, status = pair.same("Query", {**query, "KeyConditionExpression": "nope = :p"})  # a validation error
    assert status == 400


def test_batch_and_transaction_answers_match(pair: Pair) -> None:
    writes = [{"PutRequest": {"Item": {**key("b", n), **EVERY_TYPE}}} for n in range(10)]
    _, status = pair.same(
        "BatchWriteItem",
        {"RequestItems": {"TABLE": writes}, "ReturnConsumedCapacity": "TOTAL", "ReturnItemCollectionMetrics": "SIZE"},
    )
    assert status == 200 and pair.fast_path_taken
    pair.same("BatchWriteItem", {"RequestItems": {"TABLE": [{"DeleteRequest": {"Key": key("b", 9)}}]}})
    keys = [key("b", n) for n in range(12)]
    body, _ = pair.same(
        "BatchGetItem",
        {
            "RequestItems": {"TABLE": {"Keys": keys, "ProjectionExpression": "pk, sk, l"}},
            "ReturnConsumedCapacity": "TOTAL",
        },
    )
    assert len(body["Responses"]["TABLE"]) == 9 and body["UnprocessedKeys"] == {} and pair.fast_path_taken
    transact = [
        {"Put": {"TableName": "TABLE", "Item": {**key("t", 1), "m": EVERY_TYPE["m"]}}},
        {
            "Update": {
                "TableName": "TABLE",
                "Key": key("b", 0),
                "UpdateExpression": "SET s = :s",
                "ExpressionAttributeValues": {":s": {"S": "new"}},
            }
        },
        {"ConditionCheck": {"TableName": "TABLE", "Key": key("b", 1), "ConditionExpression": "attribute_exists(pk)"}},
    ]
    _, status = pair.same("TransactWriteItems", {"TransactItems": transact, "ReturnConsumedCapacity": "TOTAL"})
    assert status == 200 and pair.fast_path_taken
    cancelled = [
        {"Put": {"TableName": "TABLE", "Item": key("t", 2)}},
        {
            "ConditionCheck": {
                "TableName": "TABLE",
                "Key": key("b", 2),
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
    ]
    body, status = pair.same("TransactWriteItems", {"TransactItems": cancelled})
    assert status == 400 and body["CancellationReasons"][1]["Item"]["l"] == EVERY_TYPE["l"]
    gets = [{"Get": {"TableName": "TABLE", "Key": key("b", n)}} for n in (0, 1, 9)]
    body, _ = pair.same("TransactGetItems", {"TransactItems": gets, "ReturnConsumedCapacity": "TOTAL"})
    assert body["Responses"][2] == {} and pair.fast_path_taken


def test_errors_match(pair: Pair) -> None:
    _, status = pair.same("GetItem", {"TableName": "nosuchtable", "Key": key("p", 1)})
    assert status == 400
    _, status = pair.same("PutItem", {"TableName": "TABLE", "Item": key("p", 1), "ReturnValues": "SOMETIMES"})
    assert status == 400
    _, status = pair.same("PutItem", {"TableName": "TABLE", "Item": {"pk": {"S": "only"}}})
    assert status == 400


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    (
        "PutItem",
        {
            "TableName": "t",
            "Item": {**key("p", 1), **EVERY_TYPE},
            "ReturnValues": "ALL_OLD",
            "ConditionExpression": "attribute_not_exists(pk)",
            "Unknown": 1,
            "ReturnConsumedCapacity": None,
        },
    ),
    (
        "UpdateItem",
        {
            "ReturnValues": "ALL_NEW",
            "TableName": "t",
            "Key": key("p", 1),
            "UpdateExpression": "SET a = :a",
            "ExpressionAttributeValues": {":a": EVERY_TYPE["m"]},
            "ExpressionAttributeNames": {"#a": "a"},
        },
    ),
    (
        "Query",
        {
            "TableName": "t",
            "KeyConditionExpression": "pk = :p",
            "ExclusiveStartKey": key("p", 3),
            "Limit": 5,
            "ExpressionAttributeValues": {":p": {"S": "p"}},
            "ScanIndexForward": False,
            "Select": "COUNT",
        },
    ),
    (
        "BatchWriteItem",
        {"RequestItems": {"t": [{"PutRequest": {"Item": EVERY_TYPE}}, {"DeleteRequest": {"Key": key("p", 1)}}]}},
    ),
    ("BatchGetItem", {"RequestItems": {"t": {"Keys": [key("p", 1)], "AttributesToGet": ["a", "b"]}}}),
    (
        "TransactWriteItems",
        {
            "TransactItems": [{"ConditionCheck": {"TableName": "t", "Key": key("p", 2), "ConditionExpression": "x"}}],
            "ClientRequestToken": "tok",
        },
    ),
    ("GetItem", {"TableName": "t", "Key": {"pk": {"M": {"x": {"NULL": True}}}, "sk": {"BS": [_b64(b"\x01")]}}}),
    ("Scan", {"TableName": "t", "Segment": 1, "TotalSegments": 4, "ScanFilter": {"a": {"ComparisonOperator": "EQ"}}}),
]


@pytest.mark.parametrize(("operation", "payload"), REQUESTS, ids=[op for op, _ in REQUESTS])
def test_requests_parse_as_moto_parses_them(operation: str, payload: dict[str, Any]) -> None:
    from moto.core.parse import JSONParser
    from moto.core.utils import get_service_model

    from local.motofast.dynamodb_requests import parse_item_request

    body = json.dumps(payload).encode()
    model = get_service_model("dynamodb").operation_model(operation)
    expected = JSONParser(model, map_type=dict).parse(
        {"method": "POST", "values": {}, "headers": {}, "body": body, "url_path": "/", "url_params": {}}
    )
    parsed = parse_item_request(operation, body)
    assert parsed == expected
    assert json.dumps(parsed, default=repr) == json.dumps(expected, default=repr)  # the same key order too


def test_requests_moto_must_read_are_left_to_moto() -> None:
    from local.motofast.dynamodb_requests import parse_item_request
    from local.motofast.shapes import Unhandled

    for body in (
        b"",
        b"[]",
        b"{not json",
        b'{"TableName": "t", "Item": []}',
        b'{"Item": {"a": {"L": [null]}}}',
        b'{"Item": {"a": {"B": "abc"}}}',
    ):
        with pytest.raises(Unhandled):
            parse_item_request("PutItem", body)
