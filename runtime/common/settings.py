"""One typed settings object for every container, read from ``SEGSCALE_*`` environment variables.

The CDK stacks set exactly these variables (see ``ENV`` below for the names) and the local stack writes the
same ones, so runtime code never branches on "local or AWS": only ``endpoint_url`` differs.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SEGSCALE_"
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class Settings(BaseSettings):
    """Runtime configuration. Field ``x`` is read from ``SEGSCALE_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    bucket: str = "segscale-local"
    table: str = "segscale-jobs"
    queue_url: str = ""
    # The small queue whose messages start worker tasks (one wake message = one task, docs/architecture.md D8).
    wake_queue_url: str = ""
    # Only set for local mode (moto server); on AWS boto3 finds the regional endpoints itself.
    endpoint_url: str | None = None
    # Local mode only: DynamoDB on a moto server of its own (the local stack runs two, so the table's writes do
    # not queue behind S3 and SQS on one interpreter); None: DynamoDB is at ``endpoint_url`` too.
    dynamodb_endpoint_url: str | None = None
    region: str = "us-east-1"

    # Auth: the key arrives as an ECS secret (Secrets Manager) in AWS, or from the local stack's state file.
    api_key: SecretStr | None = None
    # Lambda mode: the key is read from this Secrets Manager secret at run time, so no value sits in the
    # function's environment (runtime/api/apikey.py). Ignored when ``api_key`` is set.
    api_key_secret_arn: str | None = None
    auth_enabled: bool = True
    # /docs, /redoc and /openapi.json: served without a key, so a deployment can switch them off (prod does).
    api_docs_enabled: bool = True

    # API limits and micro-batching (docs/architecture.md D3).
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=64_000_000, gt=0)
    max_files_per_request: int = Field(default=50, gt=0)
    batch_max_jobs: int = Field(default=100, gt=0)
    batch_window_s: float = Field(default=1.0, ge=0)
    presign_expiry_s: int = Field(default=900, gt=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, gt=0)
    # A request body that sends nothing for this long is answered 408 and its connection closed.
    request_body_timeout_s: float = Field(default=20.0, gt=0)

    # Models (docs/architecture.md D5).
    default_model: str = "person"
    models_dir: Path = DEFAULT_MODELS_DIR
    # Optional extra models, e.g. "s3://bucket/models/": fetched by the worker at start (docs/models.md).
    models_s3_uri: str | None = None
    # How long the API keeps the S3 cards before reading the prefix again (a new S3 model is usable after this).
    models_s3_cache_s: float = Field(default=60.0, ge=0)

    # Job state machine (the job state machine, docs/architecture.md).
    lease_seconds: int = Field(default=300, gt=0)
    max_attempts: int = Field(default=3, gt=0)
    worker_io_threads: int = Field(default=8, gt=0)
    # Jobs queued but not enqueued for this long (or enqueued and not claimed) are re-driven by reconcile.
    stuck_after_s: int = Field(default=600, gt=0)
    # ...but an enqueued job is re-driven only once the jobs queue is empty, or after this long behind a backlog.
    backlog_grace_s: int = Field(default=6 * 3600, gt=0)
    # A QUEUED job older than this is FAILED ("expired"): far above any normal queueing, so only a job that truly
    # cannot be processed (for example its worker tasks never start) ends this way.
    job_max_age_s: int = Field(default=24 * 3600, gt=0)
    retention_days: int = Field(default=30, gt=0)
    # An object under uploads/ with no job this much after it was written is an orphan; reconcile deletes it.
    orphan_grace_s: int = Field(default=3600, gt=0)

    # Notifications (docs/notifications.md). The EventBridge bus for job and batch events; unset: no events. CDK
    # gives it to the worker and results task only (the API never sends events).
    event_bus: str | None = None
    # The Secrets Manager secret whose value signs webhook deliveries (results task only).
    webhook_secret_arn: str | None = None
    # Local mode only: a notify_url may be http:// and on a loopback address (the local webhook receiver).
    webhook_local_http: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # Failed deliveries are retried with exponential backoff for this long after completion, then given up.
    webhook_retry_s: int = Field(default=24 * 3600, gt=0)
    # Write the batch's CSV export and HTML report when it completes; the Batch Completed event carries their keys.
    export_on_completion: bool = True

    # S3 ingestion (docs/ingestion.md). Allowed sources: "s3://bucket/prefix/" entries separated by commas; CDK
    # grants reads under exactly these. Empty: no outside source can be ingested (the drop folder still works).
    ingest_sources: str = ""
    # The bus the API puts ``Batch Ingest Due`` on (the only event it may put), so ingestion starts at once.
    ingest_bus: str | None = None
    # The queue our bucket's S3 notifications for inbox/ go to (the drop folder); unset: no drop folder.
    inbox_queue_url: str | None = None
    ingest_max_objects: int = Field(default=1_000_000, gt=0)  # per batch; the rest is left out with a note
    ingest_manifest_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    # Warm workers (docs/architecture.md D8). At most ``max_workers`` worker tasks hold a slot at once; one more is
    # woken per ``jobs_per_worker`` jobs waiting in the queue. A worker drains the queue until it has been idle
    # ``worker_idle_exit_s`` or has lived ``worker_max_lifetime_s``. A live worker renews its slot (and the
    # visibility of the message it works on) every third of ``worker_slot_lease_s``; a woken slot whose task has
    # not started within ``worker_start_timeout_s`` is free again. Wake decisions for more workers are taken at
    # most once per ``worker_scale_interval_s`` across the whole fleet.
    max_workers: int = Field(default=20, gt=0)
    jobs_per_worker: int = Field(default=400, gt=0)
    worker_idle_exit_s: float = Field(default=60.0, ge=0)
    worker_max_lifetime_s: float = Field(default=4 * 3600.0, gt=0)
    worker_slot_lease_s: int = Field(default=60, ge=2)
    worker_start_timeout_s: int = Field(default=300, gt=0)
    worker_scale_interval_s: float = Field(default=15.0, gt=0)

    metrics_namespace: str = "Segscale"
    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings; tests build their own ``Settings(...)`` instead of patching this."""
    return Settings()


def env_name(field: str) -> str:
    """The environment variable that sets ``field``: what CDK and the local stack write."""
    if field not in Settings.model_fields:
        raise KeyError(f"unknown setting {field!r}")
    return ENV_PREFIX + field.upper()


# The variable the pipe (and the local pipe emulator) fills with the wake message body (docs/architecture.md D8).
WAKE_MESSAGE_ENV = "WAKE_MESSAGE"
# A batch message given to ``python -m runtime.worker`` directly: it runs that one batch and exits (benchmarks,
# manual runs); the pipe never sets it.
JOB_BATCH_ENV = "JOB_BATCH"
