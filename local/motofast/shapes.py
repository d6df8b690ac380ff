"""What the DynamoDB request and response fast paths share: compiling one function per operation from its
botocore shape, and the signal that hands a request back to moto."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from moto.core.model import Shape
from moto.core.utils import get_service_model

F = TypeVar("F", bound=Callable[[Any], Any])


class Unhandled(Exception):
    """The value is not in the shape a fast path expects: moto's own parser or serializer must handle it."""


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
