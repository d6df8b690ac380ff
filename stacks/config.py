"""The deployment's one typed configuration object, read from ``cdk.json`` context and validated at synth.

A bad value must stop ``cdk synth`` with a message that names the key and says what is allowed, before
CloudFormation ever sees it: a typo'd key silently falling back to a default is how a "prod" deployment ends up
with dev removal policies.

Sources, later wins: the ``segscale`` object in ``cdk.json``'s context, then single keys given as
``-c segscale.<key>=<value>`` on the command line (values are parsed as JSON when they parse, else kept as text).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runtime.common.s3uri import parse_s3_prefix
from runtime.common.settings import DEFAULT_MODELS_DIR, Settings

CONTEXT_KEY = "segscale"

# Fargate's valid CPU units and, for each, the memory (MiB) it accepts.
FARGATE_MEMORY: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
_CERT_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


class ConfigError(ValueError):
    """The cdk.json context is invalid; the message lists every bad key with what it accepts."""


def known_models(models_dir: Path = DEFAULT_MODELS_DIR) -> set[str]:
    """Model names the worker image ships: every ``<name>/card.json`` plus the contract's default model.

    The default (``Settings.default_model``) is part of the contract the worker engineer must honour, so it is
    accepted even while its card is still being written.
    """
    names = {p.parent.name for p in models_dir.glob("*/card.json")}
    names.add(str(Settings.model_fields["default_model"].default))
    return names


class DeployConfig(BaseModel):
    """Everything a deployment can choose. Field docs are the reference for ``cdk.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- identity ---
    env_name: Literal["dev", "prod"] = "dev"  # dev: data destroyed with the stack; prod: data retained
    name: str = "segscale"  # prefix of stack names: <name>-<env_name>-data / -pipeline
    region: str = "us-east-1"  # stacks need a region (ALB access logs); the account stays unresolved at synth

    # --- API ---
    api_mode: Literal["fargate", "lambda"] = "fargate"
    api_desired_count: int = Field(default=2, ge=1)
    api_min_count: int = Field(default=2, ge=1)
    api_max_count: int = Field(default=10, ge=1)
    api_cpu: int = 512
    api_memory_mib: int = 1024
    api_target_cpu_percent: int = Field(default=60, ge=10, le=95)
    api_requests_per_target: int = Field(default=500, ge=1)
    lambda_memory_mib: int = Field(default=2048, ge=128, le=10240)
    lambda_timeout_s: int = Field(default=60, ge=3, le=900)
    certificate_arn: str | None = None  # HTTPS on the ALB (HTTP redirects to it) when given; plain HTTP otherwise
    # prod refuses plain HTTP (the API key would cross the network in clear) unless this says it is meant.
    allow_http: bool = False
    domain_name: str | None = None  # the name the certificate is for; only used for the URL outputs
    allowed_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    # /docs, /redoc and /openapi.json are served without a key; None: on in dev, off in prod.
    api_docs: bool | None = None
    # WAFv2 web ACL on the ALB (Fargate mode): a rate limit per client IP, and optionally AWS managed rules.
    waf_enabled: bool = True
    waf_rate_limit: int = Field(default=2000, ge=10, le=2_000_000_000)  # requests per IP per 5 minutes
    waf_managed_rules: bool = False  # AWS common + known-bad-inputs rule groups (docs/deploy.md: what they block)
    # Lambda mode's throttle (WAF cannot front a Function URL); None: the account's unreserved pool, no cap.
    lambda_reserved_concurrency: int | None = Field(default=50, ge=1)

    # --- worker and results ---
    # 1 vCPU / 2 GB: warm workers scale out by tasks, and at low volume one worker is alive all day, so its size
    # is the bill (docs/cost.md, docs/architecture.md D8). 2 GB holds one 64 MP image while it is processed.
    worker_cpu: int = 1024
    worker_memory_mib: int = 2048
    worker_capacity: Literal["FARGATE", "FARGATE_SPOT"] = "FARGATE_SPOT"
    results_cpu: int = 512
    results_memory_mib: int = 1024
    reconcile_interval_minutes: int = Field(default=5, ge=1, le=1440)

    # --- warm workers (docs/architecture.md D8) ---
    max_workers: int = Field(default=20, ge=1, le=1000)  # worker tasks at once: the guard on the Fargate quota
    fargate_vcpu_quota: int = Field(default=400, ge=1)  # this account's Fargate vCPU quota here (Service Quotas)
    jobs_per_worker: int = Field(default=400, ge=1)  # one more worker per this many jobs waiting
    worker_idle_exit_s: int = Field(default=60, ge=5, le=3600)  # a worker leaves after this long with no work
    worker_max_lifetime_s: int = Field(default=4 * 3600, ge=600, le=7 * 24 * 3600)  # then hands over to a new task

    # --- runtime settings passed as SEGSCALE_* ---
    batch_max_jobs: int = Field(default=100, ge=1, le=500)
    batch_window_s: float = Field(default=1.0, ge=0, le=60)
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_pixels: int = Field(default=64_000_000, ge=1)
    default_model: str = "person"
    models_s3_uri: str | None = None  # extra models the worker downloads at start (docs/models.md), s3://bucket/prefix/
    retention_days: int = Field(default=30, ge=1)

    # --- S3 ingestion (docs/ingestion.md) ---
    # Buckets and prefixes batches may be ingested from ("s3://bucket/prefix/"): the worker reads, and the results
    # task lists, under exactly these (and the API reads manifests there); nothing else outside our bucket.
    ingest_sources: tuple[str, ...] = ()
    inbox_enabled: bool = True  # the drop folder inbox/<name>/ in our bucket (S3 notifications to the inbox queue)

    # --- notifications (docs/notifications.md) ---
    event_archive_days: int = Field(default=30, ge=0, le=3650)  # keep events this long for replay; 0: no archive
    email_batch_completed: bool = False  # e-mail each Batch Completed to alarm_email
    export_on_completion: bool = True  # write a completed batch's CSV export and HTML report

    # --- data ---
    bucket_versioned: bool = False

    # --- network ---
    max_azs: int = Field(default=2, ge=2, le=6)
    nat_gateways: int = Field(default=1, ge=0)  # default: 1 in dev, one per AZ (max_azs) in prod
    vpc_cidr: str = "10.20.0.0/16"

    # --- operations ---
    log_retention_days: int = 30
    alarm_email: str | None = None
    alarm_oldest_message_s: int = Field(default=900, ge=60)
    alarm_api_5xx_percent: float = Field(default=5.0, gt=0, le=100)
    alarm_job_failure_percent: float = Field(default=10.0, gt=0, le=100)
    # QUEUED jobs older than the reconciler's stuck_after_s, as counted by its last pass.
    alarm_stuck_jobs: int = Field(default=1, ge=1)
    alarm_no_worker_minutes: int = Field(default=15, ge=1, le=1440)  # work queued, no live worker, this long

    @model_validator(mode="before")
    @classmethod
    def _defaults_by_env(cls, values: Any) -> Any:
        """prod's NAT default is one per AZ: with one, a zone failure cuts every task's outbound access."""
        if isinstance(values, Mapping) and "nat_gateways" not in values and values.get("env_name") == "prod":
            azs = values.get("max_azs", cls.model_fields["max_azs"].default)
            return {**values, "nat_gateways": azs} if isinstance(azs, int) else values
        return values

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("must be 1-20 characters: lower-case letters, digits and '-', starting with a letter")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError(f"{v!r} is not an AWS region name such as 'us-east-1'")
        return v

    @field_validator("certificate_arn")
    @classmethod
    def _certificate(cls, v: str | None) -> str | None:
        if v is not None and not _CERT_ARN.match(v):
            raise ValueError(f"{v!r} is not an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)")
        return v

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.match(v):
            raise ValueError(f"{v!r} is not an e-mail address")
        return v

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("needs at least one CIDR (use ['0.0.0.0/0'] for a public API)")
        for cidr in v:
            try:
                net = ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a valid CIDR: {exc}") from None
            if net.version != 4:
                raise ValueError(f"{cidr!r}: only IPv4 CIDRs are supported (the VPC and ALB are IPv4)")
        if len(set(v)) != len(v):
            raise ValueError("contains duplicates")
        return v

    @field_validator("vpc_cidr")
    @classmethod
    def _vpc_cidr(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a valid CIDR: {exc}") from None
        if net.version != 4 or not 16 <= net.prefixlen <= 24 or not net.is_private:
            raise ValueError(f"{v!r} must be a private IPv4 range from /16 to /24")
        return v

    @field_validator("log_retention_days")
    @classmethod
    def _log_retention(cls, v: int) -> int:
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(f"{v} is not a CloudWatch Logs retention period; use one of {list(LOG_RETENTION_DAYS)}")
        return v

    @field_validator("models_s3_uri")
    @classmethod
    def _models_uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        return parse_s3_prefix(v).uri()  # the rule the worker and the API read it with (runtime/common/s3uri.py)

    @field_validator("ingest_sources", mode="before")
    @classmethod
    def _ingest_sources(cls, v: Any) -> Any:
        if isinstance(v, str):  # -c segscale.ingest_sources=s3://a/p/ (one source given as text)
            v = [v]
        if not isinstance(v, list | tuple):
            raise ValueError(f"must be a list of s3://bucket/prefix/ strings, got {type(v).__name__}")
        out: list[str] = []
        for i, entry in enumerate(v):
            if not isinstance(entry, str):
                raise ValueError(f"entry {i} must be a string s3://bucket/prefix/, got {entry!r}")
            uri = parse_s3_prefix(entry, what=f"entry {i}").uri()
            if "," in uri or "*" in uri:
                raise ValueError(f"entry {i} {entry!r} may not contain ',' or '*' (prefixes are literal)")
            if uri in out:
                raise ValueError(f"entry {i} {entry!r} repeats an earlier entry")
            out.append(uri)
        if len(out) > 20:
            raise ValueError(f"at most 20 sources (got {len(out)}): use broader prefixes")
        return tuple(out)

    @property
    def ingest_locations(self) -> tuple[tuple[str, str], ...]:
        """(bucket, prefix) of each allowed ingestion source."""
        return tuple((p.bucket, p.prefix) for p in (parse_s3_prefix(uri) for uri in self.ingest_sources))

    @property
    def models_location(self) -> tuple[str, str] | None:
        """(bucket, prefix ending in "/" or empty) of ``models_s3_uri``."""
        if self.models_s3_uri is None:
            return None
        where = parse_s3_prefix(self.models_s3_uri)
        return where.bucket, where.prefix

    @field_validator("default_model")
    @classmethod
    def _model(cls, v: str) -> str:
        models = known_models()
        if v not in models:
            raise ValueError(f"unknown model {v!r}; the worker image ships {sorted(models)}")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> DeployConfig:
        if self.api_min_count > self.api_max_count:
            raise ValueError(f"api_min_count ({self.api_min_count}) > api_max_count ({self.api_max_count})")
        if not self.api_min_count <= self.api_desired_count <= self.api_max_count:
            raise ValueError(
                f"api_desired_count ({self.api_desired_count}) must lie between api_min_count "
                f"({self.api_min_count}) and api_max_count ({self.api_max_count})"
            )
        for role in ("api", "worker", "results"):
            _check_fargate_size(role, getattr(self, f"{role}_cpu"), getattr(self, f"{role}_memory_mib"))
        worker_vcpu = self.max_workers * self.worker_cpu / 1024
        if worker_vcpu > self.fargate_vcpu_quota:
            raise ValueError(
                f"max_workers ({self.max_workers}) x worker vCPU ({self.worker_cpu / 1024:g}) = {worker_vcpu:g} vCPU "
                f"exceeds fargate_vcpu_quota ({self.fargate_vcpu_quota}): lower max_workers or worker_cpu, or raise "
                "the Fargate vCPU quota in Service Quotas and set fargate_vcpu_quota to it"
            )
        if self.worker_max_lifetime_s <= 2 * self.worker_idle_exit_s:
            raise ValueError(
                f"worker_max_lifetime_s ({self.worker_max_lifetime_s}) must be more than twice worker_idle_exit_s "
                f"({self.worker_idle_exit_s}), or workers would rarely go idle before being replaced"
            )
        if self.alarm_no_worker_minutes < self.reconcile_interval_minutes:
            raise ValueError(
                f"alarm_no_worker_minutes ({self.alarm_no_worker_minutes}) must be at least reconcile_interval_minutes "
                f"({self.reconcile_interval_minutes}): the live-worker count arrives once per reconcile pass"
            )
        if self.nat_gateways > self.max_azs:
            raise ValueError(f"nat_gateways ({self.nat_gateways}) > max_azs ({self.max_azs}): one NAT per AZ at most")
        if self.email_batch_completed and not self.alarm_email:
            raise ValueError("email_batch_completed is true but alarm_email is not set: the rule needs an address")
        if self.domain_name and not self.certificate_arn:
            raise ValueError("domain_name is set but certificate_arn is not: a domain needs a certificate for HTTPS")
        if self.env_name == "prod" and self.api_mode == "fargate" and not self.certificate_arn and not self.allow_http:
            raise ValueError(
                "env_name is 'prod' but certificate_arn is not set: the API would be plain HTTP and the API key "
                "would cross the network in clear text. Set segscale.certificate_arn to an ACM certificate ARN in "
                "the stack's region (HTTPS, with HTTP redirected to it), or set segscale.allow_http=true to accept "
                "plain HTTP knowingly"
            )
        return self

    # --- derived values the stacks use ---
    @property
    def retain_data(self) -> bool:
        """Production keeps the bucket, table and queues when a stack is deleted; dev throws them away."""
        return self.env_name == "prod"

    @property
    def stack_prefix(self) -> str:
        return f"{self.name}-{self.env_name}"

    @property
    def https(self) -> bool:
        return self.certificate_arn is not None

    @property
    def api_docs_enabled(self) -> bool:
        """Whether the API serves its docs routes: as configured, else on in dev and off in prod."""
        return self.api_docs if self.api_docs is not None else self.env_name != "prod"


def _check_fargate_size(role: str, cpu: int, memory: int) -> None:
    if cpu not in FARGATE_MEMORY:
        raise ValueError(f"{role}_cpu ({cpu}) is not a Fargate CPU size; use one of {sorted(FARGATE_MEMORY)}")
    allowed = FARGATE_MEMORY[cpu]
    if memory not in allowed:
        raise ValueError(
            f"{role}_memory_mib ({memory}) is not valid with {role}_cpu {cpu}; "
            f"Fargate allows {allowed[0]} to {allowed[-1]} MiB in steps of {allowed[1] - allowed[0]}"
            if len(allowed) > 1
            else f"{role}_memory_mib ({memory}) is not valid with {role}_cpu {cpu}; Fargate allows {list(allowed)}"
        )


def _parse_cli_value(value: Any) -> Any:
    """``-c segscale.x=5`` arrives as the string "5": JSON-decode it when that works, else keep the text."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _format(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][0]), DeployConfig.model_fields, n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        where = f"{CONTEXT_KEY}.{loc}" if loc else CONTEXT_KEY
        lines.append(f"  {where}: {msg}")
    return "invalid segscale configuration in cdk.json context:\n" + "\n".join(lines)


def load_config(context: Mapping[str, Any]) -> DeployConfig:
    """Build the config from a CDK context mapping; raises ``ConfigError`` naming every bad key."""
    base = context.get(CONTEXT_KEY, {})
    if isinstance(base, str):  # `-c segscale={...}` on the command line
        base = _parse_cli_value(base)
    if not isinstance(base, Mapping):
        raise ConfigError(f"invalid segscale configuration: context key {CONTEXT_KEY!r} must be an object")
    values = dict(base)
    for key, value in context.items():
        if key.startswith(CONTEXT_KEY + "."):
            values[key[len(CONTEXT_KEY) + 1 :]] = _parse_cli_value(value)
    try:
        return DeployConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None
