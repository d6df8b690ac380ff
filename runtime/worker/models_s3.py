"""Extra models from an S3 prefix (``SEGSCALE_MODELS_S3_URI``), fetched once when a worker process starts.

docs/architecture.md D5 bakes models into the image because run-time downloads make a container depend on S3 and slow to
start; this is the opt-in escape hatch for users' own models, so the default model stays baked in and a baked
model always wins a name clash. Every failure here is confined to the model it concerns: the worker keeps
processing jobs for the other models, and a job for a broken S3 model fails with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.cards import CardError, ModelCard, file_problem, is_model_name, mask_problem, parse_card
from runtime.common.errortext import aws_error_summary
from runtime.common.s3cards import is_missing, read_card_bytes
from runtime.common.s3uri import S3Prefix, S3UriError, parse_s3_prefix
from runtime.common.settings import Settings
from runtime.worker.models import ModelRegistry

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def _folders(s3: Any, where: S3Prefix) -> dict[str, set[str]]:
    """Model folder name -> the file names directly in it (deeper keys are not part of the layout)."""
    folders: dict[str, set[str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=where.prefix):
        for item in page.get("Contents", []):
            parts = item["Key"][len(where.prefix) :].split("/")
            if len(parts) == 2 and parts[0] and parts[1]:
                folders.setdefault(parts[0], set()).add(parts[1])
    return folders


def _download(s3: Any, bucket: str, key: str, dest: Path) -> str:
    """Stream an object to ``dest`` (models can be hundreds of MB) and return its sha256."""
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with dest.open("wb") as fh:
        for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
            fh.write(chunk)
    return digest.hexdigest()


class _Loader:
    def __init__(self, registry: ModelRegistry, s3: Any, where: S3Prefix, root: Path) -> None:
        self.registry = registry
        self.s3 = s3
        self.where = where
        self.root = root

    def broken(self, name: str, reason: str) -> None:
        self.registry.broken[name] = reason
        log.error("ignoring S3 model %r: %s", name, reason)

    def load(self, name: str, files: set[str]) -> None:
        where = self.where.uri(f"{name}/")
        if not is_model_name(name):
            log.error("ignoring S3 folder %s: a model folder name is lowercase letters, digits, '-' and '_'", where)
            return
        if self.registry.knows(name):
            log.warning("S3 model %s ignored: a baked-in model of the same name exists and wins", where)
            return
        if "card.json" not in files:
            self.broken(name, f"{where}card.json is missing")
            return
        try:  # the same card rules as the API (runtime/common/cards.py), folder-name rule included
            card = parse_card(self.read_card(name, where), source=f"{where}card.json", folder=name)
        except CardError as exc:
            self.broken(name, str(exc))
            return
        problem = mask_problem(card, f"{where}card.json") or file_problem(card, where, files)
        if problem:
            self.broken(name, problem)
            return
        if card.runtime != "onnx":
            self.registry.add(card, None)
            log.info("added S3 model %s %s (%s)", name, card.version, card.runtime)
            return
        self.load_file(card, files)

    def read_card(self, name: str, where: str) -> bytes:
        """The card's bytes, refused unread when the object is too big to be a card."""
        return read_card_bytes(self.s3, self.where.bucket, f"{self.where.prefix}{name}/card.json", where=where)

    def load_file(self, card: ModelCard, files: set[str]) -> None:
        """Download the weights (``file_problem`` has checked the name) and check them against the card."""
        name, file = card.name, card.file or "model.onnx"
        where = self.where.uri(f"{name}/{file}")
        folder = self.root / name
        folder.mkdir()
        path = folder / file
        digest = _download(self.s3, self.where.bucket, f"{self.where.prefix}{name}/{file}", path)
        if card.sha256 and digest != card.sha256.lower():
            path.unlink()
            self.broken(name, f"{where} does not match the sha256 in its card (got {digest})")
            return
        self.registry.add(card, path)
        log.info("added S3 model %s %s (%d bytes)", name, card.version, path.stat().st_size)


def add_s3_models(registry: ModelRegistry, s3: Any, uri: str, *, tmp_root: Path | None = None) -> None:
    """Add the models under ``uri`` to ``registry``; problems are recorded per model and logged, never raised."""
    try:
        where = parse_s3_prefix(uri)
    except S3UriError as exc:  # a configuration error: say so in every unknown-model failure
        registry.source_error = str(exc)
        log.error("no S3 models: %s", exc)
        return
    try:
        folders = _folders(s3, where)
    except (ClientError, BotoCoreError, ConnectionError, TimeoutError) as exc:
        registry.source_error = f"the models prefix {where.uri()} could not be listed ({aws_error_summary(exc)})"
        log.error("no S3 models: %s: %s", registry.source_error, exc)
        return
    root = Path(tempfile.mkdtemp(prefix="segscale-models-", dir=tmp_root))  # /tmp: the root filesystem is read-only
    registry.temp_dirs.append(root)
    loader = _Loader(registry, s3, where, root)
    for name, files in sorted(folders.items()):
        try:
            loader.load(name, files)
        except ClientError as exc:
            if is_missing(exc):  # deleted between listing and download
                loader.broken(name, f"{where.uri(name)}/ changed while it was read ({aws_error_summary(exc)})")
            else:
                registry.unavailable[name] = f"{where.uri(name)}/ ({aws_error_summary(exc)})"
                log.error("S3 model %r unavailable: %s", name, exc)
        except (BotoCoreError, ConnectionError, TimeoutError, OSError) as exc:
            registry.unavailable[name] = f"{where.uri(name)}/ ({aws_error_summary(exc)})"
            log.error("S3 model %r unavailable: %s", name, exc)
        except Exception as exc:  # a bug or a surprise in one model must not stop the others
            log.exception("S3 model %r cannot be used", name)
            loader.broken(name, f"{where.uri(name)}/ cannot be used ({type(exc).__name__}; see the worker log)")


def build_registry(settings: Settings, s3: Any, *, threads: int | None = None) -> ModelRegistry:
    """The worker's registry: the baked-in models folder, plus the S3 prefix when one is configured."""
    registry = ModelRegistry(settings.models_dir, threads=threads)
    if settings.models_s3_uri:
        add_s3_models(registry, s3, settings.models_s3_uri)
    return registry
