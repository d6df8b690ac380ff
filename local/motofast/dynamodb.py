"""DynamoDB item operations answered without moto's generic response serializer.

moto 5.2 renders every response by walking the operation's botocore output shape, value by value, through an
attribute picker that builds a context object and tries several aliases per member: 2-3 ms per item of a large
Query page. The handler's ``DynamoResult`` already holds the response as DynamoDB wire JSON, so for the item
operations this module compiles each output shape once into plain functions with the same rules (members outside
the shape dropped, ``None`` members left out, blobs base64-encoded, integers ``int``, doubles ``float``) and dumps the
result. Anything those functions do not expect (an object instead of a dict, an aliased key, an error) raises
``Unhandled`` and the response goes through moto's serializer instead.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from enum import Enum
from typing import Any

from botocore import xform_name
from moto import settings
from moto.core.model import Shape
from moto.core.responses import ActionResult
from moto.core.serialize import TimestampSerializer
from moto.dynamodb.responses import DynamoHandler, DynamoResult

from local.motofast import DYNAMODB, SERVED, dynamodb_query, dynamodb_requests
from local.motofast.shapes import PerOperation, ShapeCompiler, Unhandled, identity

ITEM_OPERATIONS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "TransactGetItems",
    }
)
CONTENT_TYPE = "application/x-amz-json-1.0"

Render = Callable[[Any], Any]


def _string(value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, Enum):
        value = value.value
    return str(value) if value not in [None, {}, []] else value


def _blob(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return base64.b64encode(value).strip().decode("utf-8")


def _timestamp(shape: Shape) -> Render:
    serializer = TimestampSerializer(TimestampSerializer.TIMESTAMP_FORMAT_UNIX)

    def render(value: Any) -> Any:
        out: dict[str, Any] = {}
        serializer.serialize(out, value, shape, "v")
        return out["v"]

    return render


def member_aliases(key: str, member: Shape, parent: Any) -> set[str]:
    """The other keys moto's attribute picker would look up for this member of a dict (see ``XFormedAttributePicker``).

    With none of them in the dict, the member's value is ``dict[key]``, as rendered here.
    """
    candidates = []
    if member.type_name in ("list", "structure") and member.name not in parent.members and key != member.name:
        candidates.append(member.name)
    if key.lower().startswith(parent.name.lower()) and key[len(parent.name) :] not in parent.members:
        candidates.append(key[len(parent.name) :])
    if key.lower().startswith("dict"):
        candidates.append(key[len("dict") :])
    candidates.append(member.serialization.get("name", key))
    return ({xform_name(c) for c in candidates} | set(candidates) | {xform_name(key)}) - {key}


class OutputCompiler(ShapeCompiler[Render]):
    """Turns output shapes into render functions."""

    def _scalar(self, kind: str, shape: Any) -> Render:
        if kind == "string":
            return _string
        if kind == "blob":
            return _blob
        if kind in ("integer", "long"):
            return int
        if kind in ("float", "double"):
            return float
        if kind == "timestamp":
            return _timestamp(shape)
        return identity  # boolean and anything else moto passes through unchanged

    def _structure(self, shape: Any) -> Render:
        members: dict[str, tuple[str, Render]] = {}
        aliases = frozenset().union(*(member_aliases(key, member, shape) for key, member in shape.members.items()))

        def render(value: Any) -> Any:
            if type(value) is not dict or not aliases.isdisjoint(value):
                raise Unhandled(shape.name)
            out = {}
            for key, item in value.items():
                member = members.get(key)
                if member is not None and item is not None:  # moto never picks a key outside the shape
                    out[member[0]] = member[1](item)
            return out

        self.named[shape.name] = render  # before the members: a member may be this very shape
        for key, member in shape.members.items():
            members[key] = (member.serialization.get("name", key), self.compile(member))
        return render

    def _list(self, shape: Any) -> Render:
        item_render: list[Render] = []

        def render(value: Any) -> Any:
            if isinstance(value, (dict, str, bytes)):
                raise Unhandled(shape.name)
            each = item_render[0]
            return [None if item is None else each(item) for item in value]

        self.named[shape.name] = render
        item_render.append(self.compile(shape.member))
        return render

    def _map(self, shape: Any) -> Render:
        value_render: list[Render] = []

        def render(value: Any) -> Any:
            if type(value) is not dict:
                raise Unhandled(shape.name)
            each = value_render[0]
            out = {}
            for key, item in value.items():
                if item is None:
                    raise Unhandled(shape.name)
                out[key] = each(item)
            return out

        self.named[shape.name] = render
        value_render.append(self.compile(shape.value))
        return render


RENDERERS: PerOperation[Render] = PerOperation("dynamodb", OutputCompiler().compile, output=True)


def render_item_result(operation: str, result: Any) -> str:
    """The JSON body moto's serializer would write for this item operation's result (or ``Unhandled``)."""
    return json.dumps(RENDERERS[operation](result))


class FastDynamoHandler(DynamoHandler):
    """moto's DynamoDB handler, with item operations' requests read by ``parse_item_request`` and their results
    rendered by ``render_item_result``, and index Queries answered from the queried partition
    (local/motofast/dynamodb_query.py)."""

    def query(self) -> ActionResult:
        with dynamodb_query.fast_queries():
            return super().query()

    def parse_parameters(self, request: Any) -> None:
        operation = self._get_action()
        if operation in ITEM_OPERATIONS and request.content_type == CONTENT_TYPE:
            try:
                self.params = dynamodb_requests.parse_item_request(operation, request.data)
                return
            except Unhandled:
                pass
        super().parse_parameters(request)

    def serialized(self, action_result: ActionResult) -> Any:
        operation = self._get_action()
        if (
            type(action_result) in (DynamoResult, ActionResult)
            and operation in ITEM_OPERATIONS
            and not settings.PRETTIFY_RESPONSES
            and not isinstance(action_result.result, Exception)
        ):
            try:
                body = render_item_result(operation, action_result.result)
            except Unhandled:
                return super().serialized(action_result)
            SERVED[DYNAMODB] += 1
            headers = {"Content-Type": CONTENT_TYPE}
            headers.update(self.response_headers)
            return 200, headers, body
        return super().serialized(action_result)
