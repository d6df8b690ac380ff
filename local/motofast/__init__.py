"""Fast paths for the local moto server: the same answers as moto's own code, at a fraction of the CPU.

The local stack, the e2e tests and the benchmarks all run one moto process, and moto's per-request overhead
(routing every request from scratch, serializing every attribute value through the botocore shape walker, walking
and sorting a whole bucket for every ListObjectsV2 page, sorting a whole table for every index Query, building a
JSONPath parser for every EventBridge delivery, walking a whole queue, reading the clock for every message in it,
for every message sent) made it the bottleneck of everything local. Each fast path
handles the common case itself and hands anything it does not recognise back to moto, so a fast path can only
change speed, never an answer (tests/local/test_motofast.py compares both on the same requests).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

ROUTING = "routing"
DYNAMODB = "dynamodb"
S3_LIST = "s3-list"
EVENTS = "events"
SQS = "sqs"
ALL = frozenset({ROUTING, DYNAMODB, S3_LIST, EVENTS, SQS})
ENV = "SEGSCALE_MOTO_FAST"
# How many responses each fast path wrote itself (not handed back to moto): the equivalence tests check that the
# requests they compare really took the fast path.
SERVED: Counter[str] = Counter()


def fast_paths(choice: bool | Iterable[str] | None = None) -> frozenset[str]:
    """Which fast paths to run: ``True``/``False``, a list of names, or (``None``) ``$SEGSCALE_MOTO_FAST``.

    The variable is ``1`` (all, the default), ``0`` (none: stock moto) or a comma-separated list of names.
    """
    if choice is None:
        raw = os.environ.get(ENV, "1").strip()
        if raw in ("", "1", "true", "all"):
            return ALL
        if raw in ("0", "false", "none"):
            return frozenset()
        choice = [part.strip() for part in raw.split(",") if part.strip()]
    if choice is True:
        return ALL
    if choice is False:
        return frozenset()
    chosen = frozenset(choice)
    unknown = chosen - ALL
    if unknown:
        raise ValueError(f"unknown moto fast path(s) {sorted(unknown)}; known: {sorted(ALL)}")
    return chosen
