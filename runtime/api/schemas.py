"""Request and response bodies of the HTTP API (the shapes in docs/contracts.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from runtime.api.validation import ID_PATTERN, MM_PER_PIXEL_MAX, MM_PER_PIXEL_MIN
from runtime.common.jobs import Job
from runtime.common.sources import MANIFEST_SUFFIXES
from runtime.common.webhooks import MAX_URL_CHARS

MAX_FILE_NAME_CHARS = 255
MAX_MODEL_NAME_CHARS = 64  # the card's name rule (runtime/common/cards.py)

# A webhook URL as the document states it: a URI of bounded length. What JSON Schema cannot say (https only, a
# public address, resolved when the batch is created) is in the description, and refused with 422
# ``invalid_notify_url`` (runtime/common/webhooks.py).
NOTIFY_URL_SCHEMA: dict[str, Any] = {"format": "uri", "maxLength": MAX_URL_CHARS}
NOTIFY_URL_RULES = (
    "https, to a public address only (no credentials, no fragment, ASCII: percent-encode the rest); the host is "
    "resolved when the batch is created and again before every delivery (docs/notifications.md)"
)
NotifyUrl = Annotated[str, Field(max_length=MAX_URL_CHARS, json_schema_extra={"format": "uri"})]


class AcceptedJob(BaseModel):
    job_id: str
    file_name: str
    status: str
    status_url: str


class Accepted(BaseModel):
    """Answer of ``POST /v1/images`` and ``POST /v1/batches/{id}/submit``."""

    batch_id: str
    jobs: list[AcceptedJob]
    sealed: bool = Field(
        default=False,
        description="true when this request sealed the batch (`seal=true`); if it asked and this is false, the "
        "seal could not be recorded: call POST /v1/batches/{id}/seal",
    )


class UploadFileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_name: str = Field(min_length=1, max_length=1000)
    size_bytes: int | None = Field(default=None, ge=1)


class UploadRequest(BaseModel):
    """Body of ``POST /v1/uploads``."""

    model_config = ConfigDict(extra="forbid")
    files: list[UploadFileSpec] = Field(min_length=1)
    model: str | None = Field(
        default=None, min_length=1, max_length=MAX_MODEL_NAME_CHARS, description="model name; default from config"
    )
    mm_per_pixel: float | None = Field(
        default=None,
        ge=MM_PER_PIXEL_MIN,
        le=MM_PER_PIXEL_MAX,
        allow_inf_nan=False,
        description="calibration: millimetres per pixel, for areas in mm²",
    )
    batch_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="join this batch (32 lowercase hex, chosen by the client); default: a new batch",
    )
    notify_url: NotifyUrl | None = Field(
        default=None,
        description=f"a new batch's webhook: {NOTIFY_URL_RULES}; a batch keeps the URL it was created with (409)",
    )


class PresignedJob(BaseModel):
    """One file's presigned S3 POST: a multipart/form-data POST to ``upload_url`` with every ``fields`` entry as a
    form field, then the file as the last field, named ``file``. S3 refuses a file over the size limit."""

    job_id: str
    file_name: str
    upload_url: str
    method: str = "POST"
    fields: dict[str, str]


class PresignedBatch(BaseModel):
    """Answer of ``POST /v1/uploads``: POST each file to its URL with its fields, then POST ``submit_url``."""

    batch_id: str
    jobs: list[PresignedJob]
    submit_url: str
    expires_in_s: int


class JobView(BaseModel):
    """One job as ``GET /v1/jobs/{id}`` shows it (times are epoch milliseconds)."""

    job_id: str
    batch_id: str
    status: str
    file_name: str
    model: str
    attempts: int
    created_at: int
    updated_at: int
    started_at: int | None = None
    finished_at: int | None = None
    image_format: str | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None
    mm_per_pixel: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    error_class: str | None = None
    mask_url: str | None = None
    overlay_url: str | None = None
    owner: str | None = Field(default=None, description="the client whose key made the job (null: made before clients)")

    @classmethod
    def from_item(cls, item: Job) -> JobView:
        job_id = item["job_id"]
        return cls(
            job_id=job_id,
            batch_id=item["batch_id"],
            status=item["status"],
            file_name=item.get("file_name", ""),
            model=item.get("model", ""),
            attempts=int(item.get("attempts", 0)),
            created_at=int(item.get("created_at", 0)),
            updated_at=int(item.get("updated_at", 0)),
            started_at=item.get("started_at"),
            finished_at=item.get("finished_at"),
            image_format=item.get("image_format"),
            width=item.get("width"),
            height=item.get("height"),
            size_bytes=item.get("size_bytes") or None,
            mm_per_pixel=item.get("mm_per_pixel"),
            result=item.get("result"),
            error=item.get("error"),
            error_class=item.get("error_class"),
            mask_url=f"/v1/jobs/{job_id}/mask" if item.get("mask_key") else None,
            overlay_url=f"/v1/jobs/{job_id}/overlay" if item.get("overlay_key") else None,
            owner=item.get("owner"),
        )


# The fields that only mean something with a ``source``: sent without one they are a 422 (not silently ignored),
# and the OpenAPI document says so (``IngestRequest``'s ``anyOf``), so a schema-valid request is never refused.
SOURCE_ONLY_FIELDS = ("manifest", "model", "mm_per_pixel", "suffixes", "max_bytes")
# What runtime/common/sources.py accepts as a source, stated for clients: a prefix, or a manifest's key with a
# manifest suffix (in any case).
_BUCKET = r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
_PREFIX_SOURCE = rf"^\s*{_BUCKET}(/.*)?\s*$"
_MANIFEST_SOURCE = (
    rf"^\s*{_BUCKET}/.*("
    + "|".join(
        "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in suffix)
        for suffix in MANIFEST_SUFFIXES
    )
    + r")\s*$"
)


class IngestRequest(BaseModel):
    """The S3 source part of ``POST /v1/batches`` (docs/ingestion.md): where the images are and what to make of
    them. The images are read in place; the batch is INGESTING until every object is a job, then SEALED."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["source"],
                    "properties": {
                        "source": {"type": "string", "pattern": _PREFIX_SOURCE},
                        "manifest": {"const": False},
                    },
                },
                {
                    "required": ["source", "manifest"],
                    "properties": {
                        "source": {"type": "string", "pattern": _MANIFEST_SOURCE},
                        "manifest": {"const": True},
                    },
                },
                {"properties": {name: {"not": {}} for name in SOURCE_ONLY_FIELDS}},
            ]
        }
    )

    # The pattern is stated for clients only: runtime/common/sources.py checks it, with a precise message.
    source: Annotated[str, Field(json_schema_extra={"pattern": _PREFIX_SOURCE})] | None = Field(
        default=None,
        max_length=1100,
        description="`s3://bucket/prefix/` (every object under it) or, with `manifest`, `s3://bucket/key` of a "
        "manifest (`.txt`/`.lst`: a key per line, `.jsonl`: objects with `key` or `uri`, `.csv`: a `key` column). "
        "It must lie under one of the deployment's allowed sources (403 `source_not_allowed` names them)",
    )
    manifest: bool = Field(default=False, description="`source` is a manifest object, not a prefix")
    model: str | None = Field(default=None, max_length=MAX_MODEL_NAME_CHARS, description="default: the default model")
    mm_per_pixel: float | None = Field(default=None, ge=MM_PER_PIXEL_MIN, le=MM_PER_PIXEL_MAX)
    suffixes: list[Annotated[str, Field(pattern=r"^\.[A-Za-z0-9]{1,10}$")]] | None = Field(
        default=None,
        max_length=20,
        description='object names to ingest from a prefix, e.g. `[".jpg"]` (default: common image suffixes); '
        "other objects are skipped and counted",
    )
    max_bytes: int | None = Field(
        default=None, ge=1, description="objects over this become FAILED jobs (default and most: the upload limit)"
    )


class IngestView(BaseModel):
    source: str
    kind: str = Field(description="prefix or manifest")
    listed: int = Field(description="objects (or manifest lines) read so far")
    skipped: int = Field(description="objects left out: not images by name, or repeated in the manifest")
    note: str | None = Field(default=None, description="why the batch holds fewer images than expected, if it does")
    inbox_name: str | None = Field(default=None, description="the drop folder inbox/<name>/ this batch came from")


class CreateBatch(IngestRequest):
    """Body of ``POST /v1/batches``; with a ``source``, the batch is ingested from S3 (202)."""

    model_config = ConfigDict(extra="forbid")
    batch_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description="the id to give it (32 lowercase hex); default: a new one"
    )
    notify_url: NotifyUrl | None = Field(
        default=None, description=f"webhook called, signed, when the batch completes: {NOTIFY_URL_RULES}"
    )


class WebhookAttemptView(BaseModel):
    n: int = Field(description="1 for the first attempt")
    at: int = Field(description="epoch ms")
    ok: bool
    status: int | None = Field(description="the receiver's HTTP status; null when it did not answer")
    error: str | None = Field(description="why the attempt failed")
    ms: int = Field(description="how long the attempt took")


class WebhookView(BaseModel):
    state: str = Field(description="pending, delivered or gave_up")
    attempt_count: int
    next_attempt_at: int | None = None
    last_attempt_at: int | None = None
    delivered_at: int | None = None
    attempts: list[WebhookAttemptView] = Field(description="the last 50 attempts, oldest first")

    @classmethod
    def from_record(cls, webhook: dict[str, Any] | None) -> WebhookView | None:
        if not webhook:
            return None
        return cls.model_validate({"attempt_count": 0, "attempts": [], **webhook})


class BatchProgressView(BaseModel):
    """The batch record's counters: jobs accepted into the batch, and how many of them finished."""

    total: int
    done: int
    succeeded: int
    failed: int


class BatchView(BaseModel):
    batch_id: str
    total: int = Field(description="jobs of the batch in the job table")
    counts: dict[str, int] = Field(description="those jobs by status")
    jobs: list[JobView]
    next_cursor: str | None
    state: str | None = Field(
        default=None,
        description="INGESTING, OPEN, SEALED or COMPLETED (null: a batch made before batches had a lifecycle)",
    )
    sealed: bool = False
    completed: bool = False
    opened_at: int | None = None
    sealed_at: int | None = None
    completed_at: int | None = None
    progress: BatchProgressView | None = None
    notify_url: str | None = None
    event_id: str | None = Field(default=None, description="the Batch Completed event's id (webhooks carry it too)")
    export_key: str | None = Field(default=None, description="S3 key of the CSV export written on completion")
    report_key: str | None = Field(default=None, description="S3 key of the HTML report written on completion")
    webhook: WebhookView | None = Field(default=None, description="the webhook's delivery, with every attempt")
    ingest: IngestView | None = Field(default=None, description="an S3 source's ingestion (docs/ingestion.md)")
    owner: str | None = Field(default=None, description="the client whose key made the batch")


class S3ModelsView(BaseModel):
    """Where the S3 models come from and how fresh the list is (present only when a prefix is configured)."""

    uri: str
    read_at: int | None = Field(description="epoch ms of the last successful read of the prefix; null: never")
    error: str | None = Field(description="why the last read failed (the S3 models listed are from the last good read)")
    rejected: dict[str, str] = Field(description="S3 model folders that are not usable, and why")


class ModelsView(BaseModel):
    default: str
    models: list[dict[str, Any]] = Field(description="card.public() plus 'origin': 'baked_in' or 's3'")
    s3: S3ModelsView | None = None


class Health(BaseModel):
    status: str = "ok"
