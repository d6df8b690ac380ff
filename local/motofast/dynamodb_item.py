"""New DynamoDB items sized once instead of once per attribute.

moto builds every written item with ``Item.__init__``, which stores the attributes one by one in a
``LimitedSizeDict``; each store sums the size of every attribute already stored to enforce DynamoDB's item size
limit, so building an item of n attributes walks n(n+1)/2 attribute values. A job item has about 17 (a map among
them), and every PutItem, BatchWriteItem and transaction item is built this way.

``item_init`` stores the same ``DynamoType`` values in the same order and raises the same ``ItemSizeTooLarge``:
moto's check at attribute i is "the first i attributes (names and values) exceed the limit", a running sum that
only grows, so it is computed as it goes, once. Process-wide (``Item`` is moto's class): it changes CPU only.
"""

from __future__ import annotations

from typing import Any

from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
from moto.dynamodb.models.utilities import bytesize

ITEM_SIZE_LIMIT = 405_000  # LimitedSizeDict's limit (moto/dynamodb/models/dynamo_type.py)
_moto_item_init = Item.__init__


def item_init(self: Item, hash_key: DynamoType, range_key: DynamoType | None, attrs: dict[str, Any]) -> None:
    self.hash_key = hash_key
    self.range_key = range_key
    self.attrs = LimitedSizeDict()
    stored = 0
    for key, value in attrs.items():
        typed = DynamoType(value)
        stored += bytesize(key) + typed.size()
        if stored > ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(self.attrs, key, typed)


def install() -> None:
    Item.__init__ = item_init  # type: ignore[method-assign]
