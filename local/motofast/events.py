"""EventBridge deliveries without building a new JSONPath parser for every event.

moto renders each event for each target through ``EventTemplateParser.parse``, which calls
``jsonpath_ng.ext.parse`` for every input path (seven of them with the default template), and that builds a new
PLY parser, tables included, every time. In the local stack every job's events go through it: it was a quarter of
the S3/SQS/EventBridge server's CPU during uploads. A parsed path is a pure function of its text and ``find`` does
not change it, so parses are memoized by text: the same expressions, found the same way, built once.

The memo is process-wide (moto imports the function at call time from ``jsonpath_ng.ext``), so in a process that
serves a stock server beside a fast one both use it; it changes CPU only.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonpath_ng.ext

_parse = jsonpath_ng.ext.parse


@lru_cache(maxsize=512)
def cached_parse(path: str, debug: bool | None = None) -> Any:
    return _parse(path, debug)


def install() -> None:
    """Route ``jsonpath_ng.ext.parse`` (as moto's events code looks it up) through the memo."""
    jsonpath_ng.ext.parse = cached_parse
