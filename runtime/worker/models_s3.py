"""Extra models from an S3 prefix (``SEGSCALE_MODELS_S3_URI``), fetched once when a worker process starts.

DESIGN D5 bakes models into the image because run-time downloads make a container depend on S3 and slow to
start; this is the opt-in escape hatch for users' own models, so the default model stays baked in and a baked
model always wins a name clash. Every failure here is confined to the model it concerns: the worker keeps
processing jobs for the other models, and a job for a broken S3 model fails with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.common.cards import CardError, ModelCard, load_card
from runtime.common.settings import Settings
from runtime.worker.models import ModelRegistry, card_problem

log = logging.getLogger(__name__)

# The card's name rule: an S3 folder that breaks it can never match its card, and is never used as a local path.
_FOLDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
CHUNK = 1 << 20


class ModelsUriError(ValueError):
    """``models_s3_uri`` is not of the form ``s3://bucket/prefix/``."""


@dataclass(frozen=True)
class S3Prefix:
    bucket: str
    prefix: str  # "" or ending in "/"

    def uri(self, rest: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{rest}"


def parse_uri(uri: str) -> S3Prefix:
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?", uri.strip())
    if not match:
        raise ModelsUriError(f"models S3 URI {uri!r} must look like s3://bucket/prefix/")
    prefix = (match.group(2) or "").strip("/")
    return S3Prefix(match.group(1), f"{prefix}/" if prefix else "")


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


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
        if not _FOLDER_NAME.fullmatch(name):
            log.error("ignoring S3 folder %s: a model folder name is lowercase letters, digits, '-' and '_'", where)
            return
        if self.registry.knows(name):
            log.warning("S3 model %s ignored: a baked-in model of the same name exists and wins", where)
            return
        if "card.json" not in files:
            self.broken(name, f"{where}card.json is missing")
            return
        folder = self.root / name
        folder.mkdir()
        card_path = folder / "card.json"
        try:
            _download(self.s3, self.where.bucket, f"{self.where.prefix}{name}/card.json", card_path)
            card = load_card(card_path)  # the same validator as for the models folder, folder-name rule included
        except CardError as exc:
            self.broken(name, str(exc).replace(str(card_path), f"{where}card.json"))
            return
        problem = card_problem(card, f"{where}card.json")
        if problem:
            self.broken(name, problem)
            return
        if card.runtime != "onnx":
            self.registry.add(card, None)
            log.info("added S3 model %s %s (%s)", name, card.version, card.runtime)
            return
        self.load_file(card, folder, files)

    def load_file(self, card: ModelCard, folder: Path, files: set[str]) -> None:
        name, file = card.name, card.file or "model.onnx"
        where = self.where.uri(f"{name}/{file}")
        if "/" in file or file in {".", ".."} or file == "card.json":
            self.broken(name, f"{self.where.uri(name)}/card.json: 'file' must be a plain file name, not {file!r}")
            return
        if file not in files:
            self.broken(name, f"{where} is missing")
            return
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
        where = parse_uri(uri)
    except ModelsUriError as exc:  # a configuration error: say so in every unknown-model failure
        registry.source_error = str(exc)
        log.error("no S3 models: %s", exc)
        return
    try:
        folders = _folders(s3, where)
    except (ClientError, BotoCoreError, ConnectionError, TimeoutError) as exc:
        registry.source_error = f"the models prefix {where.uri()} could not be listed: {exc}"
        log.error("no S3 models: %s", registry.source_error)
        return
    root = Path(tempfile.mkdtemp(prefix="segscale-models-", dir=tmp_root))  # /tmp: the root filesystem is read-only
    registry.temp_dirs.append(root)
    loader = _Loader(registry, s3, where, root)
    for name, files in sorted(folders.items()):
        try:
            loader.load(name, files)
        except ClientError as exc:
            if _is_missing(exc):  # deleted between listing and download
                loader.broken(name, f"{where.uri(name)}/ changed while it was read: {exc}")
            else:
                registry.unavailable[name] = f"{where.uri(name)}/: {exc}"
                log.error("S3 model %r unavailable: %s", name, exc)
        except (BotoCoreError, ConnectionError, TimeoutError, OSError) as exc:
            registry.unavailable[name] = f"{where.uri(name)}/: {exc}"
            log.error("S3 model %r unavailable: %s", name, exc)
        except Exception as exc:  # e.g. a card that is not UTF-8: this model is broken, the worker goes on
            loader.broken(name, f"{where.uri(name)}/ cannot be used: {type(exc).__name__}: {exc}")


def build_registry(settings: Settings, s3: Any, *, threads: int | None = None) -> ModelRegistry:
    """The worker's registry: the baked-in models folder, plus the S3 prefix when one is configured."""
    registry = ModelRegistry(settings.models_dir, threads=threads)
    if settings.models_s3_uri:
        add_s3_models(registry, s3, settings.models_s3_uri)
    return registry
