"""Items built by ``item_init`` (local/motofast/dynamodb_item.py) are moto's own: the same attributes, in the
same order, and the same refusal at DynamoDB's item size limit, to the byte."""

from __future__ import annotations

from typing import Any

import pytest
from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, Item

from local.motofast.dynamodb_item import ITEM_SIZE_LIMIT, _moto_item_init, item_init
from tests.local.test_motofast_dynamodb import EVERY_TYPE


def _built(init: Any, attrs: dict[str, Any]) -> Item | type[Exception]:
    item = Item.__new__(Item)
    try:
        init(item, DynamoType({"S": "pk"}), None, attrs)
    except ItemSizeTooLarge as exc:
        return type(exc)
    return item


def test_every_attribute_type_is_stored_as_moto_stores_it() -> None:
    attrs = {"pk": {"S": "pk"}, **EVERY_TYPE}
    ours, moto = _built(item_init, attrs), _built(_moto_item_init, attrs)
    assert isinstance(ours, Item) and isinstance(moto, Item)
    assert list(ours.attrs) == list(moto.attrs) == list(attrs)
    assert ours.attrs == moto.attrs and ours.to_json() == moto.to_json() and ours.size() == moto.size()
    assert type(ours.attrs) is type(moto.attrs)


@pytest.mark.parametrize("over", [-1, 0, 1, 2])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_the_size_limit_is_refused_at_the_same_byte(over: int, where: str) -> None:
    small = {f"a{n}": {"N": str(n)} for n in range(5)}
    small_size = sum(len(k) + DynamoType(v).size() for k, v in small.items())
    big_size = ITEM_SIZE_LIMIT - small_size - len("big") + over
    big = {"big": {"S": "x" * big_size}}
    attrs = {
        "first": {**big, **small},
        "middle": {**dict(list(small.items())[:2]), **big, **small},
        "last": {**small, **big},
    }[where]
    ours, moto = _built(item_init, attrs), _built(_moto_item_init, attrs)
    if over > 0:
        assert ours is moto is ItemSizeTooLarge
    else:
        assert isinstance(ours, Item) and isinstance(moto, Item) and ours.attrs == moto.attrs
