"""What the routes need, built once per app: settings, AWS clients, the job store, the micro-batcher, the cards.

Tests build the app with their own clients (e.g. a boto3 client wrapped to fail on the Nth call) through
``build_services``; nothing here is patched.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from runtime.api.batcher import MicroBatcher
from runtime.api.problems import ApiProblem
from runtime.common.aws import client
from runtime.common.cards import CardError, ModelCard, load_cards
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings


@dataclass
class Services:
    settings: Settings
    s3: Any
    presigner: Any  # an S3 client that signs with SigV4 (the only signature S3 accepts everywhere)
    store: JobStore
    batcher: MicroBatcher
    _cards: dict[str, ModelCard] | None = None
    _cards_lock: threading.Lock = field(default_factory=threading.Lock)

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
        chosen = (name or "").strip() or self.settings.default_model
        cards = self.cards()
        if chosen not in cards:
            known = ", ".join(sorted(cards)) or "none installed"
            raise ApiProblem(422, "unknown_model", f"unknown model {chosen[:64]!r}; available: {known}")
        return chosen


def build_services(settings: Settings, *, s3: Any = None, dynamodb: Any = None, sqs: Any = None) -> Services:
    store = JobStore.from_settings(settings, dynamodb or client("dynamodb", settings))
    batcher = MicroBatcher(
        sqs or client("sqs", settings),
        settings.queue_url,
        max_jobs=settings.batch_max_jobs,
        window_s=settings.batch_window_s,
        mark_enqueued=store.mark_enqueued,
    )
    presigner = boto3.client(
        "s3",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=Config(signature_version="s3v4"),
    )
    return Services(
        settings=settings, s3=s3 or client("s3", settings), presigner=presigner, store=store, batcher=batcher
    )
