"""Index Queries that look only at the queried partition, with moto's answers.

moto 5.2's ``Table.query`` on an index sorts the whole table, compares every item's index hash key through
``DynamoType`` (a ``Decimal`` or a copy per comparison), sorts the partition, and only then applies the range
condition, computing ``Item.size()`` of every item in the partition on the way. The reconcile pass's Query for old
QUEUED jobs (``status = QUEUED AND updated_at <= cutoff``: a handful of matches in a partition of thousands) took 1.3
to 1.6 s on a 10,000-job local table, under the lock that serializes the local DynamoDB, and every upload waited.

Here the partition is picked without sorting the table, the range condition is applied before the sort, and sizes
are computed for matches only. Everything after that (paging, projection, filter) is moto's code on the same items.
The answer is moto's whenever the shortcut cannot prove it equal; the cases it hands back are:

- a table (not index) Query, a legacy ``QueryFilter``, or an index whose key is not one hash and one range attribute;
- index key values of mixed types in the partition (moto's sort compares them and may fail);
- a page that ends exactly at ``Limit`` on the last match while the range condition left out some of the partition:
  moto sets ``LastEvaluatedKey`` if any partition item follows, match or not, and telling that needs the whole
  partition sorted;
- a page over ``RESULT_SIZE_LIMIT - MAX_ITEM_BYTES``: moto's size check also counts the items between matches.

Items between matches cannot change a page otherwise: moto's limit check on such an item leads to the same
``LastEvaluatedKey`` as on the next match, and its size check cannot trip while the page is under the bound above,
because moto refuses items over ``MAX_ITEM_BYTES`` (``LimitedSizeDict``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb.comparisons import get_comparison_func
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import RESULT_SIZE_LIMIT, Table

from local.motofast import SERVED
from local.motofast.shapes import Unhandled

QUERY_SERVED = "dynamodb-query"  # SERVED counter: index Queries this module answered
MAX_ITEM_BYTES = 405_000  # moto's item size limit (moto/dynamodb/models/dynamo_type.py, LimitedSizeDict)
_moto_query = Table.query
_state = threading.local()


@contextmanager
def fast_queries() -> Iterator[None]:
    """Queries on this thread (one request) take the partition shortcut; other servers in the process do not."""
    _state.on = True
    try:
        yield
    finally:
        _state.on = False


def _query(table: Table, *args: Any, **kwargs: Any) -> Any:
    if getattr(_state, "on", False):
        try:
            answer = index_query(table, *args, **kwargs)
        except Unhandled:
            pass
        else:
            SERVED[QUERY_SERVED] += 1
            return answer
    return _moto_query(table, *args, **kwargs)


def install() -> None:
    """Route ``Table.query`` through the shortcut (only on threads inside ``fast_queries``)."""
    Table.query = _query  # type: ignore[method-assign,assignment]


def _items(table: Table) -> Iterator[Item]:
    entries: Any = table.items.values()  # hash key -> item, or -> {range key -> item} when the table has one
    for entry in entries:
        if table.range_key_attr:
            yield from entry.values()
        else:
            yield entry


def _equals(expected: DynamoType) -> Any:
    """``value == expected`` for the hash key, as ``DynamoType.__eq__`` decides it; cheap for strings."""
    if expected.type == "S":
        wanted = expected.value
        return lambda value: value.type == "S" and value.value == wanted
    return lambda value: value == expected


def index_query(
    table: Table,
    hash_key: DynamoType | None,
    range_comparison: str | None,
    range_objs: list[DynamoType],
    limit: int,
    exclusive_start_key: dict[str, Any] | None,
    scan_index_forward: bool,
    projection_expressions: list[list[str]] | None,
    index_name: str | None = None,
    consistent_read: bool = False,
    filter_expression: Any = None,
    hash_key_conditions: list[tuple[str, DynamoType]] | None = None,
    range_key_conditions: list[tuple[str, str, list[DynamoType]]] | None = None,
    **filter_kwargs: Any,
) -> tuple[list[Item], int, dict[str, Any] | None]:
    """``Table.query``'s answer for an index Query, or ``Unhandled`` (see the module's docstring)."""
    if not index_name or filter_kwargs or limit == 0:
        raise Unhandled("table query, QueryFilter or Limit 0")
    index = {i.name: i for i in table.all_indexes()}.get(index_name)
    if index is None or (consistent_read and index in (table.global_indexes or [])):
        raise Unhandled("moto answers with its error")
    hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    ranges = [k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"]
    conditions = hash_key_conditions or []
    range_conditions = range_key_conditions or []
    if len(hashes) != 1 or len(ranges) != 1 or len(conditions) != 1 or conditions[0][0] != hashes[0]:
        raise Unhandled("index key shape")
    if len(range_conditions) > 1 or (range_conditions and range_conditions[0][0] != ranges[0]):
        raise Unhandled("range conditions")
    hash_attr, range_attr = hashes[0], ranges[0]
    matches_hash = _equals(conditions[0][1])

    partition: list[Item] = []
    for item in _items(table):
        value = item.attrs.get(hash_attr)
        if value is not None and item.attrs.get(range_attr) is not None and matches_hash(value):
            partition.append(item)
    if len({item.attrs[range_attr].type for item in partition}) > 1:
        raise Unhandled("mixed range key types")

    if range_comparison:
        compare = get_comparison_func(range_comparison)
        bounds = [obj.cast_value for obj in range_objs]
        matches = [item for item in partition if compare(item.attrs[range_attr].cast_value, *bounds)]
    else:
        matches = partition
    hash_attrs = [hash_attr, table.hash_key_attr]
    range_attrs: list[str | None] = [range_attr, table.range_key_attr]
    matches.sort(key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)  # moto's all_items order
    matches = table.sorted_items(hash_attrs, range_attrs, matches)
    if scan_index_forward is False:
        matches.reverse()

    results: list[Item] = []
    result_size = 0
    last_evaluated_key = None
    after_start = exclusive_start_key is None
    for item in matches:
        if not after_start:
            if table._item_comes_before_dct(item, exclusive_start_key, hash_attrs, range_attrs, scan_index_forward):  # type: ignore[arg-type]
                continue
            after_start = True
        if len(results) == limit:
            last_evaluated_key = table._get_last_evaluated_key(results[-1], index_name)
            break
        results.append(item)
        result_size += item.size()
    else:
        if results and len(results) == limit and len(matches) < len(partition):
            raise Unhandled("page ends at Limit on the last match, with other partition items")
    if result_size > RESULT_SIZE_LIMIT - MAX_ITEM_BYTES:
        raise Unhandled("page near the size limit")
    scanned_count = len(results)

    # moto's own tail of Table.query
    results = copy.deepcopy(results)
    results = [index.project(r) for r in results]
    if filter_expression is not None:
        results = [item for item in results if filter_expression.expr(item)]
    if projection_expressions:
        results = [r.project(projection_expressions) for r in results]
    return results, scanned_count, last_evaluated_key
