"""What the DynamoDB request and response fast paths share: compiling one function per operation from its
botocore shape (the walk over a shape's kinds), and the signal that hands a request back to moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from moto.core.model import Shape
from moto.core.utils import get_service_model

F = TypeVar("F", bound=Callable[[Any], Any])


class Unhandled(Exception):
    """The value is not in the shape a fast path expects: moto's own parser or serializer must handle it."""


def identity(value: Any) -> Any:
    return value


class ShapeCompiler(Generic[F]):
    """Turns shapes into functions, named shapes once each (so recursive shapes terminate). The walk over a shape's
    kinds is shared; what a structure, list, map or scalar becomes is the subclass's (reading or writing)."""

    def __init__(self) -> None:
        self.named: dict[str, F] = {}

    def compile(self, shape: Shape) -> F:
        if shape.name in self.named:
            return self.named[shape.name]
        kind = shape.type_name
        if kind == "structure":
            if getattr(shape, "is_document_type", False):
                return identity  # type: ignore[return-value]
            return self._structure(shape)
        if kind == "list":
            return self._list(shape)
        if kind == "map":
            return self._map(shape)
        return self._scalar(kind, shape)

    def _structure(self, shape: Any) -> F:
        raise NotImplementedError

    def _list(self, shape: Any) -> F:
        raise NotImplementedError

    def _map(self, shape: Any) -> F:
        raise NotImplementedError

    def _scalar(self, kind: str, shape: Any) -> F:
        raise NotImplementedError


class PerOperation(Generic[F]):
    """One compiled function per operation of a service, built on first use from its input or output shape."""

    def __init__(self, service: str, compile_shape: Callable[[Shape], F], *, output: bool) -> None:
        self.compile_shape = compile_shape
        self.output = output
        self.service_model = get_service_model(service)
        self.by_operation: dict[str, F] = {}

    def __getitem__(self, operation: str) -> F:
        compiled = self.by_operation.get(operation)
        if compiled is None:
            model = self.service_model.operation_model(operation)
            compiled = self.compile_shape(model.output_shape if self.output else model.input_shape)
            self.by_operation[operation] = compiled
        return compiled
