"""What the routes need, built once per app: settings, AWS clients, the job and idempotency stores, the
micro-batcher, the cards.

Tests build the app with their own clients (e.g. a boto3 client wrapped to fail on the Nth call) through
``build_services``; nothing here is patched.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from runtime.api.apikey import ApiKeyCheck
from runtime.api.batcher import MicroBatcher
from runtime.api.problems import ApiProblem
from runtime.api.s3models import S3Cards, S3Listing
from runtime.common import metrics
from runtime.common.aws import client
from runtime.common.batches import BatchStore
from runtime.common.cards import CardError, ModelCard, load_cards
from runtime.common.clients import ClientKeyStore
from runtime.common.idempotency import IdempotencyStore
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from runtime.common.workers import Waker


@dataclass
class Services:
    settings: Settings
    s3: Any
    presigner: Any  # an S3 client that signs with SigV4 (the only signature S3 accepts everywhere)
    store: JobStore
    batcher: MicroBatcher
    batches: BatchStore
    idempotency: IdempotencyStore
    _cards: dict[str, ModelCard] | None = None
    _cards_lock: threading.Lock = field(default_factory=threading.Lock)
    s3_cards: S3Cards | None = None  # set when ``models_s3_uri`` is configured
    api_keys: ApiKeyCheck = field(init=False)  # from settings: a static key, or the secret it names (Lambda)
    client_keys: ClientKeyStore = field(init=False)  # the clients' keys, in the job table

    def __post_init__(self) -> None:
        self.api_keys = ApiKeyCheck(self.settings)
        self.client_keys = ClientKeyStore(self.store.client, self.settings.table)

    def s3_listing(self) -> S3Listing | None:
        """The S3 models (cached, possibly stale), or None when no prefix is configured."""
        return self.s3_cards.listing() if self.s3_cards is not None else None

    def cards(self) -> dict[str, ModelCard]:
        """The model cards, read once; a broken models folder is a 503 (not cached, so a fix is picked up)."""
        with self._cards_lock:
            if self._cards is None:
                try:
                    self._cards = load_cards(self.settings.models_dir)
                except CardError as exc:
                    raise ApiProblem(503, "models_unavailable", f"the model cards cannot be read: {exc}") from exc
            return self._cards

    def resolve_model(self, name: str | None) -> str:
        """A baked-in model never waits for S3; any other name is looked up in the (cached) S3 listing."""
        chosen = self.settings.default_model if name is None else name.strip()
        cards = self.cards()
        if chosen in cards:
            return chosen
        s3 = self.s3_listing()
        if s3 is not None and chosen in s3.cards:
            return chosen
        known = ", ".join(sorted({*cards, *(s3.cards if s3 else {})})) or "none installed"
        if s3 is not None and s3.error is not None:
            raise ApiProblem(
                503,
                "models_unavailable",
                f"model {chosen[:64]!r} is not built in and the S3 models cannot be read right now; retry later"
                f" (available now: {known}; {s3.error})",
                headers={"Retry-After": "10"},
            )
        why = f" ({s3.rejected[chosen]})" if s3 is not None and chosen in s3.rejected else ""
        raise ApiProblem(422, "unknown_model", f"unknown model {chosen[:64]!r}; available: {known}{why}")


def build_services(settings: Settings, *, s3: Any = None, dynamodb: Any = None, sqs: Any = None) -> Services:
    dynamodb = dynamodb or client("dynamodb", settings)
    sqs = sqs or client("sqs", settings)
    # The API makes a job terminal only when it refuses the request that wrote it; such a job never counts in its
    # batch (runtime/api/batchrecord.py takes the request's reservation back), and the API sends no events.
    store = JobStore.from_settings(settings, dynamodb, on_terminal=lambda job: None)
    batcher = MicroBatcher(
        sqs,
        settings.queue_url,
        max_jobs=settings.batch_max_jobs,
        window_s=settings.batch_window_s,
        mark_unsent=store.mark_unsent,
        # Wake metrics go to stderr as EMF, apart from the JSON request log on stdout (CloudWatch reads both).
        waker=Waker.from_settings(
            settings, by="api", service=metrics.API_SERVICE, sqs=sqs, dynamodb=dynamodb, metrics_stream=sys.stderr
        ),
    )
    presigner = boto3.client(
        "s3",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=Config(signature_version="s3v4"),
    )
    s3 = s3 or client("s3", settings)
    s3_cards = None
    if settings.models_s3_uri:
        s3_cards = S3Cards(s3, settings.models_s3_uri, ttl_s=settings.models_s3_cache_s)
    return Services(
        settings=settings,
        s3=s3,
        presigner=presigner,
        store=store,
        batcher=batcher,
        batches=BatchStore(dynamodb, settings.table),
        idempotency=IdempotencyStore(dynamodb, settings.table),
        s3_cards=s3_cards,
    )
