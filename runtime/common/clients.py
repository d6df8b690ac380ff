"""Per-client API keys: named clients, each with its own keys, stored as hashes in the job table.

A key reads ``sgk_<key_id>_<secret>``: ``key_id`` (12 hex characters) is the public part, the item's key
(``apikey#<key_id>``), what logs and ``segscale admin keys list`` show; ``secret`` is 32 random bytes. Only the
SHA-256 of the whole key is stored: with 256 bits of randomness a plain hash cannot be reversed or guessed, so no
slow password hash is needed, and a lookup is one GetItem by ``key_id`` plus a constant-time comparison of digests.
The plain key exists once, in the answer that issued it.

A key is valid until its ``revoked_at`` (epoch milliseconds). Revoking sets it to now; rotating issues a new key
for the same client and sets the old key's ``revoked_at`` to now plus a grace period, so the client can switch
without an outage. Lookups read consistently and are not cached, so a revoked key is refused from the next request
on, on every API task.

The deployment's bootstrap key (Secrets Manager, ``api_key``) is not stored here: it is the admin client
(``ADMIN_CLIENT``), which sees every job and batch.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import ClientError

from runtime.common import schema
from runtime.common.jobs import deserialize, now_ms, serialize

KEY_PREFIX = "sgk"
ADMIN_CLIENT = "admin"  # the bootstrap key's client id: reserved, no stored key may name it
KEY_LIST = "apikey"  # the one ``key_list`` value: every key record is in the ``api_keys`` index under it
CLIENT_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
KEY_ID_PATTERN = r"^[0-9a-f]{12}$"
_KEY = re.compile(r"^sgk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_CLIENT = re.compile(CLIENT_PATTERN)
_KEY_ID = re.compile(KEY_ID_PATTERN)
ISSUE_ATTEMPTS = 5  # a new key id that is already taken (48 random bits: practically never) is drawn again


class ClientKeyError(ValueError):
    """A request the key store refuses (bad client name, unknown or revoked key); the message says why."""


def parse_key(presented: str) -> str | None:
    """The key id of a string shaped like a client key, else None (the bootstrap key, or garbage)."""
    match = _KEY.fullmatch(presented)
    return match.group(1) if match else None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_client_name(client: str) -> str:
    if not _CLIENT.fullmatch(client):
        raise ClientKeyError(
            f"client name {client[:64]!r} must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if client == ADMIN_CLIENT:
        raise ClientKeyError(f"{ADMIN_CLIENT!r} is the deployment's bootstrap key; choose another client name")
    return client


def is_key_id(value: str) -> bool:
    return bool(_KEY_ID.fullmatch(value))


def _pk(key_id: str) -> dict[str, Any]:
    return {schema.TABLE_PARTITION_KEY: {"S": schema.APIKEY_PK_PREFIX + key_id}}


@dataclass(frozen=True)
class ClientKey:
    """One stored key, without its secret (times are epoch milliseconds)."""

    key_id: str
    client: str
    created_at: int
    key_hash: str
    revoked_at: int | None = None
    replaced_by: str | None = None  # the key id that a rotation issued in its place

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ClientKey:
        return cls(
            key_id=item[schema.TABLE_PARTITION_KEY].removeprefix(schema.APIKEY_PK_PREFIX),
            client=item["client"],
            created_at=int(item["created_at"]),
            key_hash=item["key_hash"],
            revoked_at=item.get("revoked_at"),
            replaced_by=item.get("replaced_by"),
        )

    def valid_at(self, now: int) -> bool:
        return self.revoked_at is None or now < self.revoked_at

    def state(self, now: int) -> str:
        """``active``; ``expiring`` (rotated, valid until ``revoked_at``); ``revoked``."""
        if self.revoked_at is None:
            return "active"
        return "expiring" if now < self.revoked_at else "revoked"

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(self.key_hash, digest(presented))


@dataclass(frozen=True)
class IssuedKey:
    """A new key: ``key`` is the only copy of its secret, shown once."""

    record: ClientKey
    key: str


# The DynamoDB actions of the key store (the API only; stacks/constructs/grants.py grants them).
ACTIONS: Final = (
    "dynamodb:GetItem",  # get, lookup
    "dynamodb:PutItem",  # issue, rotate
    "dynamodb:UpdateItem",  # revoke, rotate
    "dynamodb:Query",  # keys (api_keys)
)


class ClientKeyStore:
    """Every read and write of client keys (the API's authentication and its admin routes)."""

    def __init__(self, dynamodb_client: Any, table_name: str, *, clock: Any = now_ms) -> None:
        self.client = dynamodb_client
        self.table = table_name
        self.clock = clock

    def issue(self, client: str) -> IssuedKey:
        check_client_name(client)
        for _ in range(ISSUE_ATTEMPTS):
            key_id = secrets.token_hex(6)
            key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
            item = {
                schema.TABLE_PARTITION_KEY: schema.APIKEY_PK_PREFIX + key_id,
                "key_list": KEY_LIST,
                "client": client,
                "created_at": self.clock(),
                "key_hash": digest(key),
            }
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item=serialize(item),
                    ConditionExpression="attribute_not_exists(#pk)",
                    ExpressionAttributeNames={"#pk": schema.TABLE_PARTITION_KEY},
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    continue
                raise
            return IssuedKey(ClientKey.from_item(item), key)
        raise RuntimeError(f"no free key id after {ISSUE_ATTEMPTS} draws")  # a broken random source, not bad luck

    def get(self, key_id: str) -> ClientKey | None:
        if not is_key_id(key_id):
            return None
        out = self.client.get_item(TableName=self.table, Key=_pk(key_id), ConsistentRead=True)
        item = out.get("Item")
        return ClientKey.from_item(deserialize(item)) if item else None

    def lookup(self, presented: str) -> ClientKey | None:
        """The stored key that ``presented`` is (valid or not), or None: not a client key, or not one of ours."""
        key_id = parse_key(presented)
        if key_id is None:
            return None
        record = self.get(key_id)
        return record if record is not None and record.matches(presented) else None

    def keys(self, client: str | None = None) -> Iterator[ClientKey]:
        """Every key (of ``client``, if given), oldest first: one Query of the sparse ``api_keys`` index."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": schema.API_KEYS_INDEX,
            "KeyConditionExpression": "key_list = :list",
            "ExpressionAttributeValues": {":list": {"S": KEY_LIST}},
        }
        if client is not None:
            kwargs["FilterExpression"] = "#client = :client"
            kwargs["ExpressionAttributeNames"] = {"#client": "client"}
            kwargs["ExpressionAttributeValues"][":client"] = {"S": client}
        while True:
            out = self.client.query(**kwargs)
            for item in out.get("Items", []):
                yield ClientKey.from_item(deserialize(item))
            if not out.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    def revoke(self, key_id: str, *, after_ms: int = 0, replaced_by: str | None = None) -> ClientKey:
        """The key stops working ``after_ms`` from now (0: at once). A key already due to stop earlier keeps its
        earlier time, so revoking is idempotent and a rotation's grace never extends a revocation."""
        now = self.clock()
        until = now + after_ms
        sets = "SET revoked_at = :until" + (", replaced_by = :by" if replaced_by else "")
        values: dict[str, Any] = {":until": until}
        if replaced_by:
            values[":by"] = replaced_by
        try:
            out = self.client.update_item(
                TableName=self.table,
                Key=_pk(key_id),
                UpdateExpression=sets,
                ConditionExpression="attribute_exists(#pk)"
                " AND (attribute_not_exists(revoked_at) OR revoked_at > :until)",
                ExpressionAttributeNames={"#pk": schema.TABLE_PARTITION_KEY},
                ExpressionAttributeValues=serialize(values),
                ReturnValues="ALL_NEW",
            )
            return ClientKey.from_item(deserialize(out["Attributes"]))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        current = self.get(key_id)
        if current is None:
            raise ClientKeyError(f"no key {key_id[:64]!r}")
        return current  # already revoked, or due to stop before ``until``

    def rotate(self, key_id: str, *, grace_ms: int) -> tuple[IssuedKey, ClientKey]:
        """A new key for the same client; the old one keeps working for ``grace_ms``. Returns (new, old)."""
        old = self.get(key_id)
        if old is None:
            raise ClientKeyError(f"no key {key_id[:64]!r}")
        if not old.valid_at(self.clock()):
            raise ClientKeyError(f"key {key_id} is revoked; create a new key for client {old.client!r} instead")
        new = self.issue(old.client)
        return new, self.revoke(key_id, after_ms=grace_ms, replaced_by=new.record.key_id)
