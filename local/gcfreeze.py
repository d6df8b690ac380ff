"""Keep a long-lived moto server's store out of the garbage collector's way.

A moto server's state only grows: every job item, attribute value and S3 object it holds is a Python object that
lives until the process ends. CPython's cyclic collector walks every tracked object on each full (generation 2)
collection, so with a few hundred thousand items stored a full collection takes tenths of a second, and the
DynamoDB server runs it while holding the lock that serializes its requests (D6): every writer waits. Such
collections come the more often the more a request allocates, so they fall hardest on the big writes (a page of
25 job items), which is where a py-spy profile of the server found them.

``install`` moves the survivors of each full collection into the permanent generation (``gc.freeze``), which the
collector no longer walks: the next full collection only looks at what was allocated since. Objects are still
freed by reference counting as before; what freezing can delay is the freeing of a garbage *cycle* among frozen
objects (a request's frame caught mid-collection, say), so every ``thaw_every``-th full collection first thaws
everything (``gc.unfreeze``) and walks the whole heap once, bounding that to a few collections' worth. Process-wide
and CPU only: the server's answers are untouched. ``SEGSCALE_MOTO_GC_FREEZE=0`` leaves the collector as CPython
sets it.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

ENV = "SEGSCALE_MOTO_GC_FREEZE"
THAW_EVERY = 8


@dataclass
class FreezeAfterFullCollections:
    """A ``gc.callbacks`` entry: freeze after each full collection, thaw before every ``thaw_every``-th."""

    thaw_every: int = THAW_EVERY
    full_collections: int = 0
    thawed: int = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        self.full_collections += 1
        if self.full_collections % self.thaw_every == 0:
            # The next full collection walks everything again (frozen garbage cycles are found there).
            gc.unfreeze()
            self.thawed += 1
        else:
            gc.freeze()


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def install(thaw_every: int = THAW_EVERY) -> FreezeAfterFullCollections | None:
    """Freeze what has been imported so far, then after every full collection (``None`` when turned off)."""
    if not enabled():
        return None
    callback = FreezeAfterFullCollections(thaw_every)
    gc.collect()
    gc.freeze()  # moto's modules and botocore's service models: never garbage
    gc.callbacks.append(callback)
    return callback
