"""One flat export row per job, with columns fixed before the first row is read.

A CSV header must be written before any row, and we stream rows as DynamoDB pages arrive, so the per-class
columns cannot be discovered from the data. The rule: the classes of every model card (models sorted by name,
classes by id) plus any ``--classes`` the caller names. A class a row has but the columns lack (a model added
after the cards were read, a card missing from the image) is not dropped: it goes, with any unknown timing,
into the ``extra`` column as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from runtime.common.cards import CardError, load_cards
from runtime.common.jobs import Job

BASE_COLUMNS: tuple[str, ...] = (
    "job_id",
    "batch_id",
    "file_name",
    "status",
    "size_bytes",
    "image_format",
    "width",
    "height",
    "model",
    "model_version",
    "mm_per_pixel",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "wait_ms",
    "turnaround_ms",
)
CLASS_FIELDS: tuple[str, ...] = ("pixels", "fraction", "components", "area_mm2")
# The stages the worker times (runtime/worker/process.py writes result.timings_ms with these keys).
TIMING_FIELDS: tuple[str, ...] = ("download", "decode", "preprocess", "inference", "postprocess", "upload", "total")
# ``source_uri``: where an ingested image was read (docs/ingestion.md); empty for uploads.
TAIL_COLUMNS: tuple[str, ...] = ("source_uri", "error_class", "error", "extra")


def card_classes(models_dir: Path) -> list[str]:
    """Class names from the model cards, in a stable order; none when the folder is absent (the rule still holds)."""
    try:
        cards = load_cards(models_dir)
    except CardError:
        if models_dir.is_dir():
            raise  # a broken card is an error worth seeing; a missing folder just means "no card columns"
        return []
    names: list[str] = []
    for name in sorted(cards):
        for spec in sorted(cards[name].classes, key=lambda c: c.id):
            if spec.name not in names:
                names.append(spec.name)
    return names


class RowFormat:
    """The column list for one export and the function that turns a job item into a row."""

    def __init__(self, classes: Iterable[str]) -> None:
        self.classes: tuple[str, ...] = tuple(dict.fromkeys(classes))
        self.columns: tuple[str, ...] = (
            BASE_COLUMNS
            + tuple(f"{c}_{f}" for c in self.classes for f in CLASS_FIELDS)
            + tuple(f"{t}_ms" for t in TIMING_FIELDS)
            + TAIL_COLUMNS
        )

    def row(self, job: Job) -> dict[str, Any]:
        result: dict[str, Any] = job.get("result") or {}
        row: dict[str, Any] = {c: None for c in self.columns}
        stored: Mapping[str, Any] = job  # the columns named like attributes, by name
        for c in BASE_COLUMNS:
            if c in stored:
                row[c] = stored[c]
        row["model"] = job.get("model") or result.get("model")
        row["model_version"] = result.get("model_version")
        if row["mm_per_pixel"] is None:
            row["mm_per_pixel"] = result.get("mm_per_pixel")
        created, started, finished = job.get("created_at"), job.get("started_at"), job.get("finished_at")
        if created is not None and started is not None:
            row["wait_ms"] = started - created
        if created is not None and finished is not None:
            row["turnaround_ms"] = finished - created
        extra: dict[str, Any] = {}
        for name, measures in (result.get("classes") or {}).items():
            if name in self.classes:
                for f in CLASS_FIELDS:
                    row[f"{name}_{f}"] = measures.get(f)
            else:
                extra.setdefault("classes", {})[name] = {f: measures.get(f) for f in CLASS_FIELDS if f in measures}
        for stage, ms in (result.get("timings_ms") or {}).items():
            if stage in TIMING_FIELDS:
                row[f"{stage}_ms"] = ms
            else:
                extra.setdefault("timings_ms", {})[stage] = ms
        if job.get("input_bucket"):
            row["source_uri"] = f"s3://{job['input_bucket']}/{job['input_key']}"
        row["error_class"] = job.get("error_class")
        row["error"] = job.get("error")
        row["extra"] = extra or None
        return row
