"""DynamoDB item-operation requests read without moto's generic request parser.

moto 5.2 parses every DynamoDB request by walking the operation's botocore input shape through a handler looked up
by name for every value, attribute values included. This module compiles each input shape once into plain functions
with the same rules (members by their JSON name, ``null`` members left out, other keys dropped, blobs
base64-decoded, numbers converted, structures in the shape's member order) and ``Unhandled`` for anything else
(a list where an object belongs, a ``null`` inside a list), which sends the request through moto's parser, so any
error is moto's own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from moto.core.parse import default_timestamp_parser

from local.motofast.shapes import PerOperation, ShapeCompiler, Unhandled, identity

Parse = Callable[[Any], Any]


class InputCompiler(ShapeCompiler[Parse]):
    """Turns input shapes into parse functions."""

    def _scalar(self, kind: str, shape: Any) -> Parse:
        if kind == "blob":
            return base64.b64decode
        if kind in ("integer", "long", "byte", "short"):
            return int
        if kind in ("float", "double"):
            return float
        if kind == "timestamp":
            return default_timestamp_parser
        return identity  # strings and booleans stay as JSON gave them

    def _structure(self, shape: Any) -> Parse:
        by_json_name: dict[str, tuple[str, Parse]] = {}
        order = list(shape.members)
        # Members read as JSON gave them under their own name (an attribute value's S, N, BOOL, NULL): a structure
        # holding just one of them, the commonest value of all, is that same one-key object.
        as_given: set[str] = set()

        def parse(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not dict:
                raise Unhandled(shape.name)
            if len(value) == 1:
                for json_name, item in value.items():
                    if json_name in as_given and item is not None:
                        return {json_name: item}
            out = {}
            for json_name, item in value.items():
                member = by_json_name.get(json_name)
                if member is not None and item is not None:
                    out[member[0]] = member[1](item)
            if len(out) > 1:
                out = {name: out[name] for name in order if name in out}
            return out

        self.named[shape.name] = parse
        for name, member in shape.members.items():
            json_name = member.serialization.get("name", name)
            by_json_name[json_name] = (name, self.compile(member))
            if json_name == name and by_json_name[json_name][1] is identity:
                as_given.add(name)
        return parse

    def _list(self, shape: Any) -> Parse:
        item_parse: list[Parse] = []

        def parse(value: Any) -> Any:
            if type(value) is not list or None in value:
                raise Unhandled(shape.name)
            each = item_parse[0]
            return [each(item) for item in value]

        self.named[shape.name] = parse
        item_parse.append(self.compile(shape.member))
        return parse

    def _map(self, shape: Any) -> Parse:
        value_parse: list[Parse] = []
        key_parse: list[Parse] = []

        def parse(value: Any) -> Any:
            if type(value) is not dict:
                raise Unhandled(shape.name)
            each, key = value_parse[0], key_parse[0]
            out = {}
            for k, item in value.items():
                if item is None:
                    raise Unhandled(shape.name)
                out[key(k)] = each(item)
            return out

        self.named[shape.name] = parse
        key_parse.append(self.compile(shape.key))
        value_parse.append(self.compile(shape.value))
        return parse


PARSERS: PerOperation[Parse] = PerOperation("dynamodb", InputCompiler().compile, output=False)


def parse_item_request(operation: str, body: bytes) -> dict[str, Any]:
    """The parameters moto's JSON parser reads from this item operation's body (or ``Unhandled``)."""
    if not body:
        raise Unhandled("empty body")
    try:
        document = json.loads(body)
        return PARSERS[operation](document)
    except Unhandled:
        raise
    except Exception as error:  # moto's parser fails (or falls back) its own way on the same input
        raise Unhandled(str(error)) from error
