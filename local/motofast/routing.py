"""Routing cache: send each request straight to the backend's Flask app moto chose for requests like it.

moto's ``DomainDispatcherApplication`` works the backend out from scratch for every request (including an
``os.listdir`` over its own package), about a tenth of its CPU. For a SigV4-signed request the backend depends only
on the credential scope (service, region), the ``X-Amz-Target`` header and, for a few services, the path or host;
so the first request of each kind is routed by moto and the app it picked is remembered for the next ones.
Everything else (unsigned requests, ``/moto-api``, services routed by path) always goes through moto's dispatcher.

Inside the backend, moto then lists every function of the handler class (``inspect.getmembers``) to check that the
action is one of them, on every request: about 5% of the DynamoDB server's CPU. A class's functions do not change
while the server runs, so ``memoize_action_lookup`` keeps each class's list (process-wide: it changes CPU only).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import moto.core.responses
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from local.motofast import ROUTING, SERVED

# Services whose backend moto picks from the path, the host or the body as well as the credential scope.
_ROUTED_BY_MORE = frozenset(
    {"s3", "sagemaker", "ses", "bedrock", "bedrock-agentcore", "mediastore", "execute-api", "iot", "apigateway"}
)
_MOTO_OWN_PATHS = ("/moto-api", "/favicon.ico", "/latest/meta-data/", "/latest/api/")


_method_names_from_class = moto.core.responses.method_names_from_class
_ACTION_NAMES: dict[type, list[str]] = {}


def cached_method_names(clazz: Any) -> list[str]:
    """moto's ``method_names_from_class``, once per class."""
    names = _ACTION_NAMES.get(clazz)
    if names is None:
        names = _ACTION_NAMES[clazz] = _method_names_from_class(clazz)
    return names


def memoize_action_lookup() -> None:
    """Route moto's per-request action check (``BaseResponse.call_action``) through ``cached_method_names``."""
    moto.core.responses.method_names_from_class = cached_method_names


def route_key(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """What decides the backend of a signed request, or ``None`` when moto's dispatcher must decide."""
    auth = environ.get("HTTP_AUTHORIZATION")
    if not auth or not auth.startswith("AWS4-"):
        return None
    path = environ.get("PATH_INFO", "")
    if path.startswith(_MOTO_OWN_PATHS):
        return None
    try:
        _, _, region, service, _ = auth.split(",", 1)[0].split()[1].split("/")
    except (IndexError, ValueError):
        return None
    service = service.lower()
    s3_control = path.startswith("/v20180820/") or "s3-control" in environ.get("HTTP_HOST", "")
    if service in _ROUTED_BY_MORE and (service != "s3" or s3_control):
        return None
    return service, region, environ.get("HTTP_X_AMZ_TARGET", "")


class CachedRouter:
    """WSGI app: moto's dispatcher with a cache of its routing decisions for signed requests."""

    def __init__(self, dispatcher: DomainDispatcherApplication) -> None:
        self.dispatcher = dispatcher
        self.apps: dict[tuple[str, str, str], Any] = {}
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        key = route_key(environ)
        if key is None:
            return self.dispatcher(environ, start_response)
        app = self.apps.get(key)
        if app is None:
            app = self.dispatcher.get_application(environ)
            with self.lock:
                self.apps[key] = app
        else:
            SERVED[ROUTING] += 1
        return app(environ, start_response)
