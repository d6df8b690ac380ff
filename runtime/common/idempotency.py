"""Idempotency records: the first answer to a request with an ``Idempotency-Key``, replayed to its retries.

They live in the job table (docs/contracts.md: ``pk = "idem#<sha256(key)>"``) but are not jobs: they have no
``batch_id`` or ``status``, so the sparse indexes never see them, and DynamoDB's TTL deletes them. A store of
their own keeps the job store's surface to jobs and their transitions.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Final, TypedDict, cast

from botocore.exceptions import ClientError

from runtime.common import schema
from runtime.common.jobs import deserialize, serialize

# The DynamoDB actions of this store (the API only); stacks/constructs/grants.py grants them.
ACTIONS: Final = (
    "dynamodb:GetItem",  # get
    "dynamodb:PutItem",  # put
)


class IdempotencyRecord(TypedDict):
    pk: str
    fingerprint: str  # of the request that stored it: a retry with another body is refused
    response: str  # the JSON answer, replayed as is
    expires_at: int  # schema.TTL_ATTRIBUTE, epoch seconds


def idempotency_pk(key: str) -> str:
    return schema.IDEMPOTENCY_PK_PREFIX + hashlib.sha256(key.encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self.client = dynamodb_client
        self.table = table_name

    def get(self, key: str) -> IdempotencyRecord | None:
        """The live record of ``key``, or None (never stored, or past its TTL)."""
        out = self.client.get_item(
            TableName=self.table,
            Key={schema.TABLE_PARTITION_KEY: {"S": idempotency_pk(key)}},
            ConsistentRead=True,
        )
        item = out.get("Item")
        if not item:
            return None
        record = deserialize(item)
        if record.get(schema.TTL_ATTRIBUTE, 0) < time.time():  # TTL deletion is lazy (and absent in moto)
            return None
        return cast(IdempotencyRecord, record)

    def put(self, key: str, *, fingerprint: str, response: str, ttl_s: int) -> bool:
        """Store the first answer for an idempotency key; False if another request stored one first."""
        item = {
            schema.TABLE_PARTITION_KEY: idempotency_pk(key),
            "fingerprint": fingerprint,
            "response": response,
            schema.TTL_ATTRIBUTE: int(time.time()) + ttl_s,
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialize(item),
                ConditionExpression=f"attribute_not_exists(#pk) OR {schema.TTL_ATTRIBUTE} < :now",
                ExpressionAttributeNames={"#pk": schema.TABLE_PARTITION_KEY},
                ExpressionAttributeValues={":now": {"N": str(int(time.time()))}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True
