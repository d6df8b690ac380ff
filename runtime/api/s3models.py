"""The cards of the models under ``models_s3_uri``, as the API sees them: read (cards only), checked, cached.

The worker downloads S3 models when it starts (``runtime/worker/models_s3.py``); the API only needs the cards, to
list the models and to refuse names no worker can run. Reading the prefix on every upload would put an S3 round
trip (and S3's availability) in front of every job, so the result is cached for ``models_s3_cache_s`` seconds: a
newly uploaded model becomes usable within that time without a redeploy. Cards are re-read only when their ETag
changes. When the prefix cannot be read, the last good listing is kept (stale, logged) and baked-in models are
not affected at all: they never wait for S3.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.cards import CardError, ModelCard, file_problem, is_model_name, mask_problem, parse_card
from runtime.common.errortext import aws_error_summary
from runtime.common.s3cards import is_missing, read_card_bytes
from runtime.common.s3uri import S3Prefix, S3UriError, parse_s3_prefix

log = logging.getLogger("segscale.api.models")

S3_ERRORS = (ClientError, BotoCoreError, ConnectionError, TimeoutError)
RETRY_AFTER_FAILURE_S = 10.0  # a failed read is retried sooner than the normal cache time, but not per request


@dataclass(frozen=True)
class S3Listing:
    """One read of the prefix. After a failed read, ``cards`` and ``rejected`` are the last good read's."""

    uri: str
    cards: dict[str, ModelCard] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # folder name -> why it is not usable
    error: str | None = None  # why the last read failed; None when it succeeded
    read_at: float | None = None  # epoch seconds of the last good read (None: never read)
    checked: float = 0.0  # monotonic time of the last attempt, for the cache


@dataclass(frozen=True)
class _Seen:
    etag: str
    files: frozenset[str]
    card: ModelCard | None
    problem: str | None


class S3Cards:
    """Thread-safe cache of the S3 model cards; one per app."""

    def __init__(self, s3: Any, uri: str, *, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._s3 = s3
        self._uri = uri
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._listing: S3Listing | None = None
        self._seen: dict[str, _Seen] = {}  # by folder name: cards already read, re-read when the ETag changes
        try:
            self._where: S3Prefix | None = parse_s3_prefix(uri)
            self._uri_error: str | None = None
        except S3UriError as exc:  # a configuration error: baked-in models still work, and the listing says why
            self._where, self._uri_error = None, str(exc)
            log.error("no S3 models: %s", exc)

    def last(self) -> S3Listing | None:
        """The last read as it is, without reading again (None before the first read)."""
        return self._listing

    def listing(self) -> S3Listing:
        """The cached listing, refreshed when older than the cache time.

        While one thread refreshes, the others get the previous listing instead of waiting for S3.
        """
        current = self._listing
        if current is not None and self._fresh(current):
            return current
        if current is not None and not self._lock.acquire(blocking=False):
            return current  # another thread is reading S3: only the very first read makes callers wait
        if current is None:
            self._lock.acquire()
        try:
            current = self._listing
            if current is None or not self._fresh(current):
                current = self._listing = self._read(current)
            return current
        finally:
            self._lock.release()

    def _fresh(self, listing: S3Listing) -> bool:
        wait = self._ttl_s if listing.error is None else min(self._ttl_s, RETRY_AFTER_FAILURE_S)
        return self._clock() - listing.checked < wait

    def _read(self, previous: S3Listing | None) -> S3Listing:
        now = self._clock()
        if self._where is None:
            return S3Listing(uri=self._uri, error=self._uri_error, checked=now)
        try:
            bucket, prefix = self._where.bucket, self._where.prefix
            folders = self._folders(bucket, prefix)
            seen = {name: self._card(bucket, prefix, name, files) for name, files in sorted(folders.items())}
        except S3_ERRORS as exc:
            # The listing is shown by GET /v1/models: the AWS error code only, the raw text to the log.
            error = f"the models prefix {self._uri} could not be read ({aws_error_summary(exc)})"
            log.error("S3 models served from the last good read: %s: %s", error, exc)
            old = previous or S3Listing(uri=self._uri)
            return S3Listing(self._uri, old.cards, old.rejected, error, old.read_at, now)
        self._seen = seen
        cards = {n: s.card for n, s in seen.items() if s.card is not None}
        rejected = {n: s.problem for n, s in seen.items() if s.problem is not None}
        return S3Listing(self._uri, cards, rejected, None, time.time(), now)

    def _folders(self, bucket: str, prefix: str) -> dict[str, dict[str, str]]:
        """Model folder name -> {file name: ETag} for the keys directly in it (deeper keys are not the layout)."""
        folders: dict[str, dict[str, str]] = {}
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            page = self._s3.list_objects_v2(**kwargs)
            for item in page.get("Contents", []):
                parts = item["Key"][len(prefix) :].split("/")
                if len(parts) == 2 and parts[0] and parts[1] and is_model_name(parts[0]):
                    folders.setdefault(parts[0], {})[parts[1]] = str(item.get("ETag", ""))
            if not page.get("IsTruncated"):
                return folders
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _card(self, bucket: str, prefix: str, name: str, files: dict[str, str]) -> _Seen:
        """Read and check one folder's card (only ``card.json``, never the weights); reuse it if unchanged."""
        where = f"s3://{bucket}/{prefix}{name}/"  # the canonical form, as in the worker's messages
        names = frozenset(files)
        etag = files.get("card.json")
        if etag is None:
            return _Seen("", names, None, f"{where}card.json is missing")
        old = self._seen.get(name)
        if old is not None and old.etag == etag and old.files == names:
            return old
        card, problem = self._parse(bucket, f"{prefix}{name}/card.json", name, where)
        if card is not None:
            problem = mask_problem(card, f"{where}card.json") or file_problem(card, where, names)
            if problem is not None:
                card = None
        if problem is not None:
            log.warning("S3 model %r not usable: %s", name, problem)
        return _Seen(etag, names, card, problem)

    def _parse(self, bucket: str, key: str, name: str, where: str) -> tuple[ModelCard | None, str | None]:
        try:
            return parse_card(
                read_card_bytes(self._s3, bucket, key, where=where), source=f"{where}card.json", folder=name
            ), None
        except ClientError as exc:
            if is_missing(exc):  # deleted since the listing
                return None, f"{where}card.json is missing"
            raise
        except CardError as exc:
            return None, str(exc)
