"""Index Queries answered from the queried partition (local/motofast/dynamodb_query.py) equal moto's own answers.

The same requests go to the fast and the stock server, each against its own copy of a table shaped like the job
table's status index (a string hash key and a number range key, ``ALL`` and ``KEYS_ONLY`` projections, items missing
the range key), and every answer must be equal: each range operator, both directions, every page of a paged walk,
``COUNT``, projections and filters, and the cases the shortcut hands back to moto.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.motofast import SERVED
from local.motofast.dynamodb_query import QUERY_SERVED
from local.motofast.rawclient import dynamodb
from tests.local.test_motofast_dynamodb import EVERY_TYPE, Pair

STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED")


def _index(name: str, hash_attr: str, range_attr: str, projection: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_attr, "KeyType": "HASH"},
            {"AttributeName": range_attr, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": projection},
    }


@pytest.fixture(scope="module")
def jobs(servers: tuple[str, str]) -> Pair:
    """A job-like table on both servers: 120 jobs over three statuses, updated_at 1000..1119 (some equal), two
    without ``updated_at`` (not in the index), and a ``KEYS_ONLY`` index with a string range key. Read only by the
    tests, so one table serves the module."""
    pair = Pair(*servers)
    for side, url in pair.urls.items():
        reply = dynamodb(
            url,
            "CreateTable",
            {
                "TableName": pair.tables[side],
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
                "AttributeDefinitions": [
                    {"AttributeName": "job_id", "KeyType": "HASH", "AttributeType": "S"},
                    {"AttributeName": "status", "AttributeType": "S"},
                    {"AttributeName": "updated_at", "AttributeType": "N"},
                    {"AttributeName": "batch_id", "AttributeType": "S"},
                    {"AttributeName": "name", "AttributeType": "S"},
                ],
                "GlobalSecondaryIndexes": [
                    _index("by_status", "status", "updated_at", "ALL"),
                    _index("by_name", "batch_id", "name", "KEYS_ONLY"),
                ],
            },
        )
        assert reply.status == 200, reply.body
    writes = []
    for n in range(120):
        item = {
            "job_id": {"S": f"job-{(n * 37) % 120:03d}"},
            "status": {"S": STATUSES[n % 3]},
            "batch_id": {"S": f"b{n % 2}"},
            "name": {"S": f"img-{n % 9}-{n:03d}.png"},
            "m": EVERY_TYPE["m"],
            "l": EVERY_TYPE["l"],
        }
        if n not in (4, 5):
            item["updated_at"] = {"N": str(1000 + n - n % 4)}  # four jobs share each value
        writes.append({"PutRequest": {"Item": item}})
    for start in range(0, len(writes), 25):
        _, status = pair.same("BatchWriteItem", {"RequestItems": {"TABLE": writes[start : start + 25]}})
        assert status == 200
    return pair


def _by_status(condition: str, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "TableName": "TABLE",
        "IndexName": "by_status",
        "KeyConditionExpression": "#s = :s" + (f" AND {condition}" if condition else ""),
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":s": {"S": "QUEUED"}, **values},
        **extra,
    }


def _pages(pair: Pair, request: dict[str, Any]) -> tuple[list[Any], bool]:
    """Every page of a paged Query, compared side by side; (pages, whether every page took the shortcut)."""
    pages, start, shortcut = [], None, True
    while True:
        served = SERVED[QUERY_SERVED]
        body, status = pair.same("Query", {**request, **({"ExclusiveStartKey": start} if start else {})})
        assert status == 200, body
        shortcut = shortcut and SERVED[QUERY_SERVED] > served
        pages.append(body)
        start = body.get("LastEvaluatedKey")
        if not start:
            return pages, shortcut


RANGES = [
    ("updated_at <= :b", {":b": {"N": "1050"}}),
    ("updated_at < :b", {":b": {"N": "1048"}}),
    ("updated_at >= :a", {":a": {"N": "1100"}}),
    ("updated_at > :a", {":a": {"N": "1100"}}),
    ("updated_at = :a", {":a": {"N": "1008"}}),
    ("updated_at BETWEEN :a AND :b", {":a": {"N": "1010"}, ":b": {"N": "1060.5"}}),
    ("updated_at BETWEEN :a AND :b", {":a": {"N": "5000"}, ":b": {"N": "6000"}}),  # nothing
    ("", {}),
]


@pytest.mark.parametrize(("condition", "values"), RANGES)
@pytest.mark.parametrize("forward", [True, False])
@pytest.mark.parametrize("limit", [None, 1, 3, 7])
def test_range_conditions_directions_and_pages_match(
    jobs: Pair, condition: str, values: dict[str, Any], forward: bool, limit: int | None
) -> None:
    request = _by_status(condition, values, ScanIndexForward=forward, **({"Limit": limit} if limit else {}))
    pages, shortcut = _pages(jobs, request)
    if limit is None:
        assert len(pages) == 1 and shortcut
    returned = [item["updated_at"]["N"] for page in pages for item in page["Items"]]
    assert returned == sorted(returned, key=float, reverse=not forward)


def test_count_projection_filter_and_keys_only_index_match(jobs: Pair) -> None:
    served = SERVED[QUERY_SERVED]
    body, _ = jobs.same("Query", _by_status("updated_at <= :b", {":b": {"N": "1100"}}, Select="COUNT"))
    assert body["Count"] > 0 and "Items" not in body
    body, _ = jobs.same(
        "Query",
        _by_status(
            "updated_at > :a",
            {":a": {"N": "1003"}, ":b": {"S": "b1"}},
            FilterExpression="batch_id = :b",
            ProjectionExpression="job_id, m.inner, l[2]",
            ReturnConsumedCapacity="INDEXES",
        ),
    )
    assert 0 < body["Count"] < body["ScannedCount"]
    request = {
        "TableName": "TABLE",
        "IndexName": "by_name",
        "KeyConditionExpression": "batch_id = :b AND begins_with(#n, :p)",
        "ExpressionAttributeNames": {"#n": "name"},
        "ExpressionAttributeValues": {":b": {"S": "b0"}, ":p": {"S": "img-4"}},
        "Limit": 2,
    }
    pages, _ = _pages(jobs, request)
    assert sum(page["Count"] for page in pages) > 2 and set(pages[0]["Items"][0]) == {"job_id", "batch_id", "name"}
    assert SERVED[QUERY_SERVED] > served + 2


def test_what_the_shortcut_hands_back_to_moto_still_matches(jobs: Pair) -> None:
    # A page ending at Limit on the last match, with non-matching partition items after it: moto's answer.
    body, _ = jobs.same("Query", _by_status("updated_at <= :b", {":b": {"N": "1011"}}, Select="COUNT"))
    served = SERVED[QUERY_SERVED]
    body, _ = jobs.same("Query", _by_status("updated_at <= :b", {":b": {"N": "1011"}}, Limit=body["Count"]))
    assert SERVED[QUERY_SERVED] == served and "LastEvaluatedKey" in body
    # Errors: a consistent read on a global index, an unknown index, a key condition on a non-key attribute.
    for request in (
        _by_status("", {}, ConsistentRead=True),
        {**_by_status("", {}), "IndexName": "nope"},
        _by_status("batch_id = :b", {":b": {"S": "b0"}}),
    ):
        _, status = jobs.same("Query", request)
        assert status == 400
    # A table Query is moto's own.
    served = SERVED[QUERY_SERVED]
    body, _ = jobs.same(
        "Query",
        {
            "TableName": "TABLE",
            "KeyConditionExpression": "job_id = :j",
            "ExpressionAttributeValues": {":j": {"S": "job-001"}},
        },
    )
    assert body["Count"] == 1 and SERVED[QUERY_SERVED] == served
