"""Export jobs as CSV or JSON Lines to S3 (always) and to a local stream (optionally), one row per job.

Rows are written as DynamoDB pages arrive and the S3 copy is uploaded part by part (``S3TextStream``), so
memory holds one page of items and one part of text however many jobs there are.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal

from runtime.common import keys
from runtime.common.aws import client
from runtime.common.csvsafe import neutralise_row
from runtime.common.jobs import Job, JobStatus, JobStore
from runtime.common.settings import Settings
from runtime.results.rows import RowFormat, card_classes
from runtime.results.s3stream import DEFAULT_PART_SIZE, S3TextStream

Format = Literal["csv", "jsonl"]
CONTENT_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
PAGE_SIZE = 500


@dataclass
class ExportSummary:
    """What an export wrote; printed as JSON by the CLI."""

    name: str
    s3_uri: str
    format: str
    rows: int = 0
    bytes: int = 0
    parts: int = 0
    columns: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def range_name(since_ms: int, until_ms: int) -> str:
    return f"range-{since_ms}-{until_ms}"


def jobs_in_range(store: JobStore, since_ms: int, until_ms: int, *, page_size: int = PAGE_SIZE) -> Iterator[Job]:
    """Jobs whose last state change (``updated_at``) is in [since, until], one status after another."""
    if since_ms > until_ms:
        raise ValueError(f"--since ({since_ms}) is after --until ({until_ms})")
    for status in JobStatus:
        yield from store.iter_status(status, updated_from=since_ms, updated_to=until_ms, page_size=page_size)


class RowWriter:
    """CSV or JSON Lines rows on any text stream (the S3 export, and the API's CSV of a batch)."""

    def __init__(self, stream: IO[str] | S3TextStream, fmt: Format, columns: Iterable[str]) -> None:
        self.fmt = fmt
        self.stream = stream
        if fmt == "csv":
            # RFC 4180 line ends: with them the writer also quotes a cell holding a bare CR, which "\n" would not.
            self.csv = csv.DictWriter(stream, fieldnames=list(columns), lineterminator="\r\n")
            self.csv.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        row = neutralise_row(row)  # client-chosen names must not become spreadsheet formulas (both formats)
        if self.fmt == "csv":
            if row.get("extra") is not None:
                row = {**row, "extra": json.dumps(row["extra"], separators=(",", ":"), sort_keys=True)}
            self.csv.writerow(row)
        else:
            self.stream.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")


def export_jobs(
    settings: Settings,
    *,
    batch_id: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    fmt: Format = "csv",
    out: IO[str] | None = None,
    classes: Iterable[str] = (),
    store: JobStore | None = None,
    s3: Any | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    page_size: int = PAGE_SIZE,
) -> ExportSummary:
    """Export one batch (``batch_id``) or a time range (``since_ms``/``until_ms``) to ``reports/<name>/jobs.<fmt>``."""
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")
    if (batch_id is None) == (since_ms is None and until_ms is None):
        raise ValueError("export needs either a batch id or a time range (since/until), not both")
    store = store or JobStore.from_settings(settings)
    s3 = s3 or client("s3", settings)
    if batch_id is not None:
        name = batch_id
        jobs: Iterator[Job] = store.iter_batch(batch_id, page_size=page_size)
    else:
        since = since_ms if since_ms is not None else 0
        until = until_ms if until_ms is not None else store.clock()
        name = range_name(since, until)
        jobs = jobs_in_range(store, since, until, page_size=page_size)
    try:
        key = keys.report_prefix(name) + f"jobs.{fmt}"
    except ValueError as exc:
        raise ValueError(f"{name!r} is not a batch id we could have issued") from exc
    row_format = RowFormat([*card_classes(settings.models_dir), *classes])
    summary = ExportSummary(
        name=name, s3_uri=f"s3://{settings.bucket}/{key}", format=fmt, columns=len(row_format.columns)
    )
    counts: Counter[str] = Counter()
    with S3TextStream(
        s3, settings.bucket, key, content_type=CONTENT_TYPES[fmt], part_size=part_size, tee=out
    ) as stream:
        writer = RowWriter(stream, fmt, row_format.columns)
        for job in jobs:
            writer.write(row_format.row(job))
            counts[str(job.get("status"))] += 1
    summary.rows = sum(counts.values())
    summary.bytes = stream.bytes_written
    summary.parts = stream.parts_uploaded
    summary.counts = dict(sorted(counts.items()))
    return summary
