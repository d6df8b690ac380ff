"""moto's per-service Flask apps, with the fast handlers in place of moto's own where a fast path is on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from moto.core.utils import convert_to_flask_response
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import create_backend_app
from moto.s3.responses import S3Response

from local.motofast import DYNAMODB, S3_LIST
from local.motofast.dynamodb import FastDynamoHandler
from local.motofast.s3_list import FastS3Response

# backend name -> (fast path, moto's handler class, its stand-in)
_STAND_INS: dict[str, tuple[str, type, type]] = {
    "dynamodb": (DYNAMODB, DynamoHandler, FastDynamoHandler),
    "s3": (S3_LIST, S3Response, FastS3Response),
}


def use_stand_in(app: Flask, moto_class: type, stand_in: type) -> int:
    """Point every view of ``app`` that dispatches to ``moto_class`` at the same classmethod of ``stand_in``."""
    swapped = 0
    for endpoint, view in list(app.view_functions.items()):
        callback: Any = getattr(view, "callback", None)
        if callback is not None and getattr(callback, "__self__", None) is moto_class:
            app.view_functions[endpoint] = convert_to_flask_response(getattr(stand_in, callback.__name__))
            swapped += 1
    return swapped


def app_factory(paths: frozenset[str]) -> Callable[[Any], Flask]:
    """A ``create_app`` for moto's dispatcher that builds moto's app and swaps in the enabled fast handlers."""

    def create_app(service: Any) -> Flask:
        app = create_backend_app(service)
        stand_in = _STAND_INS.get(str(service))
        if stand_in is not None and stand_in[0] in paths and not use_stand_in(app, stand_in[1], stand_in[2]):
            raise RuntimeError(f"moto's {service} app has no view dispatching to {stand_in[1].__name__}")
        return app

    return create_app
