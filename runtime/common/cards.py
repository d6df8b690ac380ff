"""Model cards (docs/architecture.md D5): a model is a file plus a JSON card, and processing code reads only the card.

A models folder holds one sub-folder per model: ``<name>/card.json`` (+ ``model.onnx`` for ONNX models).
The API reads the cards (for ``GET /v1/models`` and to refuse unknown models); the worker loads the models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class CardError(ValueError):
    """A card is missing, unreadable or invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    name: str | None = None  # ONNX input tensor name; None = the model's first input
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    size: tuple[int, int] | None = None  # fixed (height, width)
    short_side: int | None = Field(default=None, gt=0)  # or: resize the short side to this...
    multiple_of: int = Field(default=1, gt=0)  # ...and round both sides to a multiple of this
    max_side: int | None = Field(default=None, gt=0)
    color_order: Literal["RGB", "BGR", "GRAY"] = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: Literal["stretch", "keep_aspect"] = "stretch"
    dtype: Literal["float32"] = "float32"

    @model_validator(mode="after")
    def _size_rule(self) -> InputSpec:
        if self.size is None and self.short_side is None and self.multiple_of == 1:
            raise ValueError("input needs a fixed 'size' [h, w] or a size rule ('short_side' and/or 'multiple_of')")
        if self.size is not None and min(self.size) <= 0:
            raise ValueError("input.size must be positive")
        if any(s == 0 for s in self.std):
            raise ValueError("input.std must not contain 0")
        return self


class OutputSpec(_Strict):
    name: str | None = None
    activation: Literal["none", "sigmoid", "softmax"] = "none"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    channel: int = Field(default=0, ge=0)  # for single-map outputs: which channel is the foreground


class ClassSpec(_Strict):
    id: int = Field(ge=0)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    color: tuple[int, int, int] = (255, 0, 0)


class ModelCard(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: str = Field(min_length=1)
    title: str = ""
    description: str = ""
    license: str = Field(min_length=1)
    source: str = Field(min_length=1)
    runtime: Literal["onnx", "opencv"] = "onnx"
    file: str | None = "model.onnx"
    sha256: str | None = None
    processor: str | None = None  # for runtime "opencv": the name of the classical processor
    # The processor needs every pixel of the image (a per-pixel threshold, say). Otherwise the worker may give
    # it a JPEG decoded at 1/2 to 1/8 scale, as long as that still covers the model's input and the overlay.
    full_resolution: bool = False
    input: InputSpec | None = None
    output: OutputSpec | None = None
    classes: tuple[ClassSpec, ...] = Field(min_length=1)

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, v: tuple[ClassSpec, ...]) -> tuple[ClassSpec, ...]:
        names = [c.name for c in v]
        if len(set(names)) != len(names) or len({c.id for c in v}) != len(v):
            raise ValueError("class ids and names must be unique")
        return v

    @model_validator(mode="after")
    def _runtime_fields(self) -> ModelCard:
        if self.runtime == "onnx" and (self.file is None or self.input is None or self.output is None):
            raise ValueError("an onnx card needs 'file', 'input' and 'output'")
        if self.runtime == "opencv" and not self.processor:
            raise ValueError("an opencv card needs 'processor'")
        return self

    def public(self) -> dict[str, Any]:
        """What ``GET /v1/models`` shows."""
        return self.model_dump(mode="json", exclude={"file", "sha256"})


def parse_card(data: bytes, *, source: str, folder: str) -> ModelCard:
    """Validate a card's bytes wherever they came from (a file, an S3 object); errors name ``source``.

    ``folder`` is the name of the model folder the card sits in, which must equal the card's ``name``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CardError(f"{source}: cannot read the card as UTF-8 text: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CardError(f"{source}: not valid JSON: {exc}") from exc
    try:
        card = ModelCard.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}" for e in exc.errors())
        raise CardError(f"{source}: {problems}") from exc
    if card.name != folder:
        raise CardError(f"{source}: card name {card.name!r} must match its folder name {folder!r}")
    return card


def mask_problem(card: ModelCard, where: str) -> str | None:
    """A rule beyond the schema: masks are 8-bit PNGs, so class ids above 255 cannot be written.

    The worker applies it to every card it loads; the API applies it to S3 cards so that it does not accept jobs
    for a model every worker would refuse.
    """
    if any(c.id > 255 for c in card.classes):
        return f"{where}: class ids must be at most 255 (masks are 8-bit PNG)"
    return None


# A card is a few KB; a bigger object in a models prefix is refused before it is read into memory.
MAX_CARD_BYTES = 256 * 1024
_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def is_model_name(folder: str) -> bool:
    """Whether ``folder`` obeys the card's name rule: a folder that breaks it can never match its card, so a
    models prefix skips it (and never uses it as a local path)."""
    return _MODEL_NAME.fullmatch(folder) is not None


def file_problem(card: ModelCard, where: str, files: Collection[str]) -> str | None:
    """The checks on an S3 model's ``file`` that need no download; ``where`` is the folder's URI ending in "/".

    The worker and the API both call this, so the API never accepts a job for a model the worker will refuse for
    its file name; only the worker checks the sha256, because only it downloads the weights.
    """
    if card.runtime != "onnx":
        return None
    file = card.file or "model.onnx"
    if "/" in file or file in {".", "..", "card.json"}:
        return f"{where}card.json: 'file' must be a plain file name, not {file!r}"
    if file not in files:
        return f"{where}{file} is missing"
    return None


def load_card(path: Path) -> ModelCard:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise CardError(f"{path}: card not found") from exc
    except OSError as exc:
        raise CardError(f"{path}: cannot read the card as UTF-8 text: {exc}") from exc
    return parse_card(data, source=str(path), folder=path.parent.name)


def load_cards(models_dir: Path) -> dict[str, ModelCard]:
    """Every card under ``models_dir`` (one folder per model), by name."""
    if not models_dir.is_dir():
        raise CardError(f"models folder {models_dir} does not exist")
    cards = {}
    for card_path in sorted(models_dir.glob("*/card.json")):
        card = load_card(card_path)
        cards[card.name] = card
    return cards
