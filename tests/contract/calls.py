"""Recorded AWS calls -> the IAM requests AWS would authorize for them in a given deployment.

A recorded call names local resources (a test's bucket, table, queue). The settings lines of the same log say which
setting holds each name (``bucket``, ``table``, ``queue_url``, ``models_s3_uri``, ``api_key_secret_arn``, ...);
the deployment gives the container that same setting with a deployed value. So a call is translated by setting,
never by a list of expected calls: a new call on a new setting is checked as soon as a test makes it.

Operations map to IAM actions by the rule ``<service>:<Operation>``; the exceptions (S3 reads and lists,
multipart uploads, batch and transaction APIs) are the tables below. The simulator refuses an action IAM does
not know, so a wrong mapping fails loudly instead of passing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.contract.deployment import PARTITION, ContainerRole, queue_arn

# S3 operations whose IAM action is not "s3:<Operation>".
S3_ACTIONS: dict[str, str] = {
    "HeadObject": "s3:GetObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "CopyObject": "s3:PutObject",
    "ListParts": "s3:ListMultipartUploadParts",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObjects": "s3:DeleteObject",  # authorized per key
}
S3_BUCKET_OPERATIONS = {"ListObjectsV2", "ListObjects", "HeadBucket", "ListMultipartUploads", "GetBucketLocation"}
# DynamoDB transactions are authorized per item, with the single-item action.
DYNAMODB_TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
SQS_ACTIONS = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# Global condition keys every request from a container carries (boto3 always uses TLS in AWS).
BASE_CONTEXT = {"aws:SecureTransport": "true"}


@dataclass(frozen=True)
class Call:
    container: str
    service: str
    operation: str
    params: tuple[tuple[str, Any], ...]
    presign: str | None
    configs: frozenset[str]  # digests of the settings the call ran under (empty: unknown)

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)

    def describe(self) -> str:
        how = {"url": " (presigned URL)", "post": " (presigned POST)"}.get(self.presign or "", "")
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"{self.container}: {self.service}.{self.operation}({shown}){how}"


@dataclass
class Recording:
    """A call log: the distinct calls (with a test that made each) and the configurations they ran under.

    A call is tied to the settings found on its stack; failing that, to its process's settings when the process
    had exactly one configuration (a container started by the tests). A call tied to none (library code called
    by a test with names of its own) cannot be placed in a deployment and is reported, not evaluated.
    """

    calls: dict[Call, str] = field(default_factory=dict)  # call -> first test seen making it
    configs: dict[str, dict[str, str]] = field(default_factory=dict)  # digest -> setting values

    @classmethod
    def load(cls, paths: Iterable[Path]) -> Recording:
        rec = cls()
        records = [json.loads(line) for path in paths if path.exists() for line in path.read_text().splitlines()]
        by_pid: dict[int, set[str]] = {}
        for record in records:
            if record["kind"] == "settings":
                rec.configs[record["digest"]] = record["values"]
                by_pid.setdefault(record["pid"], set()).add(record["digest"])
        for record in records:
            if record["kind"] != "call":
                continue
            configs = set(record.get("settings") or ())
            process = by_pid.get(record["pid"], set())
            if not configs and len(process) == 1:
                configs = process
            params = tuple(sorted((k, _freeze(v)) for k, v in record["params"].items()))
            call = Call(
                record["container"], record["service"], record["operation"], params, record["presign"],
                frozenset(configs),
            )  # fmt: skip
            rec.calls.setdefault(call, record.get("test") or "?")
        return rec

    def containers(self) -> set[str]:
        return {c.container for c in self.calls}

    def names(self, call: Call) -> dict[str, set[str]]:
        """Resource name -> the settings holding it, in the call's configurations."""
        out: dict[str, set[str]] = {}
        for digest in call.configs:
            for setting, value in self.configs.get(digest, {}).items():
                if not value.startswith("s3://"):
                    out.setdefault(value, set()).add(setting)
        return out

    def s3_prefixes(self, call: Call) -> dict[tuple[str, str], set[str]]:
        """(bucket, prefix) -> the ``s3://`` settings naming it, in the call's configurations. A setting that lists
        several (``ingest_sources``: comma-separated) names its i-th entry ``<setting>#<i>``."""
        out: dict[tuple[str, str], set[str]] = {}
        for digest in call.configs:
            for setting, value in self.configs.get(digest, {}).items():
                if not value.startswith("s3://"):
                    continue
                entries = value.split(",")
                for i, entry in enumerate(entries):
                    bucket, _, prefix = entry.strip()[5:].partition("/")
                    out.setdefault((bucket, prefix), set()).add(setting if len(entries) == 1 else f"{setting}#{i}")
        return out


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Target:
    """A resource as the code named it: by the setting that holds its name, plus what lies under it."""

    setting: str
    kind: str  # "s3-object", "s3-bucket", "table", "index", "queue", "secret", "event-bus", "any"
    rest: str = ""  # object key / list prefix relative to the setting / index name


@dataclass(frozen=True)
class Need:
    """One IAM request a call needs, before it is placed in a deployment."""

    action: str
    target: Target | None  # None: the resource is not named by any setting (reported, not evaluated)
    raw: str  # the resource as the call named it, for messages


@dataclass(frozen=True)
class IamRequest:
    action: str
    resource: str
    context: tuple[tuple[str, str | tuple[str, ...]], ...]

    def describe(self) -> str:
        ctx = f" with {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{ctx}"


def needs(call: Call, rec: Recording) -> list[Need]:
    """The IAM actions and resources a call needs, resources named by setting."""
    p = call.p
    if "unknown_service_params" in p:
        raise ValueError(
            f"{call.describe()}: the recorder does not know which parameters of {call.service} name a resource; "
            "add the service to runtime.common.awscalls.IDENTIFYING_PARAMS"
        )
    if call.service == "s3":
        return _s3_needs(call, rec)
    if call.service == "dynamodb":
        tables: list[tuple[str, str]]
        if "TransactItems" in p:
            tables = [(DYNAMODB_TRANSACT_ITEM_ACTIONS[kind], t) for kind, t in p["TransactItems"]]
        elif "RequestItems" in p:
            tables = [(f"dynamodb:{call.operation}", t) for t in p["RequestItems"]]
        else:
            tables = [(f"dynamodb:{call.operation}", p.get("TableName", ""))]
        out = []
        for action, table in tables:
            for target in _by_name(table, "table", call, rec):
                if target and "IndexName" in p:
                    target = Target(target.setting, "index", p["IndexName"])
                out.append(Need(action, target, table))
        return out
    if call.service == "sqs":
        action = SQS_ACTIONS.get(call.operation, f"sqs:{call.operation}")
        name = p.get("QueueUrl") or p.get("QueueName", "")
        return [Need(action, t, name) for t in _by_name(name, "queue", call, rec)]
    if call.service == "events":
        name = p.get("EventBusName", "")
        kinds = p.get("DetailTypes") or ("",)  # each entry is authorized with its own source and detail type
        return [
            Need(f"events:{call.operation}", Target(t.setting, t.kind, kind) if t else None, str(name))
            for t in _by_name(str(name), "event-bus", call, rec)
            for kind in kinds
        ]
    if call.service == "secretsmanager":
        name = p.get("SecretId", "")
        return [Need(f"secretsmanager:{call.operation}", t, name) for t in _by_name(name, "secret", call, rec)]
    identifiers = [str(v) for v in p.values()]
    raw = identifiers[0] if identifiers else "*"
    return [Need(f"{call.service}:{call.operation}", t, raw) for t in _by_name(raw, "any", call, rec)]


def _by_name(name: str, kind: str, call: Call, rec: Recording) -> list[Target | None]:
    settings = sorted(rec.names(call).get(name, ()))
    return [Target(s, kind) for s in settings] or [None]


def _s3_needs(call: Call, rec: Recording) -> list[Need]:
    p = call.p
    bucket = str(p.get("Bucket", ""))
    action = S3_ACTIONS.get(call.operation, f"s3:{call.operation}")
    if call.operation in S3_BUCKET_OPERATIONS:
        prefix = str(p.get("Prefix", ""))
        return [
            Need(action, t, f"{bucket} prefix {prefix!r}") for t in _s3_targets(bucket, prefix, "s3-bucket", call, rec)
        ]
    keys = [str(k) for k in p.get("DeleteKeys", ())] if call.operation == "DeleteObjects" else [str(p.get("Key", ""))]
    out = [Need(action, t, f"{bucket}/{key}") for key in keys for t in _s3_targets(bucket, key, "s3-object", call, rec)]
    if call.operation == "CopyObject" and "CopySource" in p:  # reads the source too
        src_bucket, _, src_key = str(p["CopySource"]).lstrip("/").partition("/")
        out += [
            Need("s3:GetObject", t, f"{src_bucket}/{src_key}")
            for t in _s3_targets(src_bucket, src_key, "s3-object", call, rec)
        ]
    return out


def _s3_targets(bucket: str, key: str, kind: str, call: Call, rec: Recording) -> list[Target | None]:
    """A key under an ``s3://`` setting (the longest matching prefix) belongs to it; else to the bucket setting."""
    under = [(prefix, s) for (b, prefix), ss in rec.s3_prefixes(call).items() if b == bucket for s in ss]
    matching = [(prefix, s) for prefix, s in under if key.startswith(prefix)]
    if matching:
        longest = max(len(prefix) for prefix, _ in matching)
        return [Target(s, kind, key[longest:]) for prefix, s in sorted(matching) if len(prefix) == longest]
    return [Target(s, kind, key) for s in sorted(rec.names(call).get(bucket, ()))] or [None]


_LONG_HEX = re.compile(r"[0-9a-f]{16,}")


def representative(text: str) -> str:
    """Ids (job, batch, message: 16+ hex digits) replaced by one fixed id, so calls of one shape evaluate once."""
    return _LONG_HEX.sub(lambda m: "f" * len(m[0]), text)


def place(need: Need, role: ContainerRole) -> Iterator[IamRequest]:
    """The need as a request in ``role``'s deployment; nothing when the container there lacks the setting."""
    target = need.target
    if target is None:
        return
    value = setting_value(role.settings, target.setting)
    if value is None:
        return
    context: dict[str, Any] = dict(BASE_CONTEXT)
    if target.kind in ("s3-object", "s3-bucket"):
        if value.startswith("s3://"):
            bucket, _, prefix = value[5:].partition("/")
        else:
            bucket, prefix = value, ""
        if target.kind == "s3-bucket":
            context["s3:prefix"] = prefix + target.rest
            resource = f"arn:{PARTITION}:s3:::{bucket}"
        else:
            resource = f"arn:{PARTITION}:s3:::{bucket}/{prefix}{target.rest}"
    elif target.kind == "table":
        resource = _table_arn(value, role)
    elif target.kind == "index":
        resource = f"{_table_arn(value, role)}/index/{target.rest}"
    elif target.kind == "queue":
        resource = queue_arn(value) if value.startswith("http") else value
    elif target.kind == "event-bus":
        if target.rest:  # multi-valued keys (one value per entry): each call here carries one entry's pair
            source, _, detail_type = target.rest.partition("|")
            context["events:source"], context["events:detail-type"] = (source,), (detail_type,)
        region, account = role.settings.get("region", "us-east-1"), role.role_arn.split(":")[4]
        resource = value if value.startswith("arn:") else f"arn:{PARTITION}:events:{region}:{account}:event-bus/{value}"
    else:  # secret ARNs and anything else named by its ARN
        resource = value
    yield IamRequest(need.action, representative(resource), tuple(sorted(context.items())))


def setting_value(settings: dict[str, str], name: str) -> str | None:
    """A deployed setting's value; ``<setting>#<i>``: the i-th entry of a comma-separated one (None: absent)."""
    base, _, index = name.partition("#")
    value = settings.get(base)
    if value is None or not index:
        return value
    entries = value.split(",")
    return entries[int(index)].strip() if int(index) < len(entries) else None


def _table_arn(name: str, role: ContainerRole) -> str:
    if name.startswith("arn:"):
        return name
    region = role.settings.get("region", "us-east-1")
    account = role.role_arn.split(":")[4]
    return f"arn:{PARTITION}:dynamodb:{region}:{account}:table/{name}"
