"""A moto server whose DynamoDB writes are atomic, as in DynamoDB.

moto checks a ``ConditionExpression`` and applies the write as two steps without a lock, so two concurrent
conditional updates of one item can both "win" (two workers claiming one job: seen 17 times in 200 tries).
Every invariant of the job table (D7c) rests on those writes being atomic, so the local stack, the tests
and the benchmarks all run this server: DynamoDB requests are served one at a time, everything else (S3, SQS long
polls) concurrently, as before.

Its fast paths (local/motofast) answer as moto does at a fraction of the CPU; ``SEGSCALE_MOTO_FAST=0`` turns them
off. As a process of its own it keeps its store out of the garbage collector's full walks (local/gcfreeze.py;
``SEGSCALE_MOTO_GC_FREEZE=0`` turns that off). Run it as a process with
``python -m local.motoserver -H 127.0.0.1 -p PORT``, or in-process with ``serve``.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler
from werkzeug.serving import BaseWSGIServer, make_server

from local import gcfreeze
from local.motofast import (
    DYNAMODB,
    EVENTS,
    ROUTING,
    SQS,
    dynamodb_item,
    dynamodb_query,
    events,
    fast_paths,
    sqs_counts,
)
from local.motofast.apps import app_factory
from local.motofast.routing import CachedRouter, memoize_action_lookup


class AtomicDynamoDB:
    """WSGI middleware: one DynamoDB request at a time (all of them carry ``X-Amz-Target: DynamoDB_...``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return self.inner(environ, start_response)
        with self.lock:
            return list(self.inner(environ, start_response))


def make_app(fast: bool | Iterable[str] | None = None) -> AtomicDynamoDB:
    """moto's WSGI app with the chosen fast paths (local/motofast: same answers, less CPU; ``False``: stock moto)."""
    paths = fast_paths(fast)
    if EVENTS in paths:
        events.install()
    if SQS in paths:
        sqs_counts.install()
    if DYNAMODB in paths:
        dynamodb_query.install()  # answers only requests of a server with this path (a thread-local switch)
        dynamodb_item.install()
    app: Any = DomainDispatcherApplication(app_factory(paths))
    if ROUTING in paths:
        memoize_action_lookup()
        app = CachedRouter(app)
    return AtomicDynamoDB(app)


def make_moto_server(
    host: str = "127.0.0.1", port: int = 0, fast: bool | Iterable[str] | None = None
) -> BaseWSGIServer:
    return make_server(host, port, make_app(fast), threaded=True, request_handler=MotoRequestHandler)


class MotoServer:
    """In-process server on a background thread; ``port=0`` picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, fast: bool | Iterable[str] | None = None) -> None:
        self.server = make_moto_server(host, port, fast)
        self.thread = threading.Thread(target=self.server.serve_forever, name="moto-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MotoServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    parser.add_argument("--verbose", action="store_true", help="log every request (werkzeug's access log)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
    server = make_moto_server(args.host, args.port)
    gcfreeze.install()  # a process of its own: its store need not be walked by every full collection
    server.serve_forever()


if __name__ == "__main__":
    main()
