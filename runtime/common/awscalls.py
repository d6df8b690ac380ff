"""Record every AWS call a container's code makes, for the least-privilege contract test (tests/contract).

moto accepts any request, so the local stack and the tests cannot notice a call that the container's IAM role
does not allow. With ``SEGSCALE_AWS_CALL_LOG=<file>`` in the environment, ``runtime.common.aws`` installs this
recorder: every signed request (real calls, presigned URLs, presigned POSTs) of every boto3 client in the process
becomes one JSON line in that file, with the container whose code made it, the operation and the parameters that
name its resource. The contract test turns those lines into IAM requests and evaluates them against the roles CDK
synthesizes. Off (the default, and always in AWS), nothing is installed and nothing is written.

Which container made a call is read from the Python stack: the outermost frame in ``runtime.<service>`` (api,
worker, results), the entry point's package even when it runs another package's code. Calls made only by shared
code, the local emulators or test code are the test harness's and are not written. Which deployed resource a name
stands for comes from the ``Settings`` on the call's stack (``note_settings`` writes each configuration once):
the bucket, table or queue a call names is the value of one setting, and CDK sets that same setting on the
container.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

LOG_ENV = "SEGSCALE_AWS_CALL_LOG"
CONTAINERS = ("api", "worker", "results")
_PARAM_MARK = "segscale.call_params"
_OWNER = "segscale_aws_calls_owner"

# Per service, the request parameters that say which resource a call touches (and, for S3 listings, the condition
# keys). A service not listed here is recorded with its parameter names only, and the contract test fails on it
# with a message asking for an entry: better than evaluating a call against the wrong resource.
IDENTIFYING_PARAMS: dict[str, tuple[str, ...]] = {
    "s3": ("Bucket", "Key", "Prefix", "Delimiter", "MaxKeys", "CopySource", "HttpMethod"),
    "dynamodb": ("TableName", "IndexName"),
    "sqs": ("QueueUrl", "QueueName"),
    "secretsmanager": ("SecretId",),
    "events": (),  # PutEvents names its bus in each entry (see _identifying)
}

_lock = threading.Lock()
_installed_on: set[int] = set()
_noted: set[str] = set()
_seen_objects: dict[int, tuple[Any, str]] = {}


def enabled() -> bool:
    return bool(os.environ.get(LOG_ENV))


def _write(record: dict[str, Any]) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = (json.dumps(record, default=str, sort_keys=True) + "\n").encode()
    # O_APPEND: lines from many processes interleave whole, never mixed.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _settings_near(frame: Any, settings_type: type) -> Iterator[Any]:
    """Settings a frame holds: as a local, or as ``.settings``/``._settings`` of a local object (``self``).

    Attributes are read from the instance ``__dict__`` only: ``getattr`` would run ``__getattr__`` hooks (boto3
    clients emit events, pydantic models search their extras), which made every recorded call 10 ms slower.
    """
    for value in frame.f_locals.values():
        if isinstance(value, settings_type):
            yield value
            continue
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict):
            for name in ("settings", "_settings"):
                if isinstance(attrs.get(name), settings_type):
                    yield attrs[name]


def scan_stack() -> tuple[str | None, list[Any]]:
    """The container whose code is running (the outermost ``runtime.<container>`` frame) and the settings on
    the stack: the resource names a call uses come from them, even when a test built the client itself."""
    from runtime.common.settings import Settings

    container = None
    settings: dict[int, Any] = {}
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith("runtime."):
            part = module.split(".")[1]
            if part in CONTAINERS:
                container = part  # the outermost wins: the API runs the results export's code for a batch's CSV
            settings.update((id(found), found) for found in _settings_near(frame, Settings))
        frame = frame.f_back  # type: ignore[assignment]
    owner = getattr(threading.current_thread(), _OWNER, None)
    if container is None and owner is not None:  # a background thread working for a container (``inherit``)
        container = owner[0]
        settings.update((id(found), found) for found in owner[1])
    return container, list(settings.values())


def inherit(thread: threading.Thread) -> threading.Thread:
    """Mark a thread that makes AWS calls on behalf of the code starting it (a background event sender): its calls
    are recorded as that code's container's, with the settings on the starter's stack. A no-op unless recording."""
    if enabled():
        setattr(thread, _OWNER, scan_stack())
    return thread


def _identifying(service: str, params: dict[str, Any]) -> dict[str, Any]:
    names = IDENTIFYING_PARAMS.get(service)
    if names is None:
        return {"unknown_service_params": sorted(params)}
    out: dict[str, Any] = {k: params[k] for k in names if isinstance(params.get(k), str | int)}
    if service == "dynamodb":
        if isinstance(params.get("RequestItems"), dict):  # BatchGetItem / BatchWriteItem
            out["RequestItems"] = sorted(params["RequestItems"])
        if isinstance(params.get("TransactItems"), list):  # [{"Update": {"TableName": ...}}, ...]
            out["TransactItems"] = [
                [kind, body.get("TableName")] for item in params["TransactItems"] for kind, body in item.items()
            ]
    if service == "events" and isinstance(params.get("Entries"), list):  # PutEvents: one bus per entry
        buses = sorted({str(e.get("EventBusName") or "default") for e in params["Entries"] if isinstance(e, dict)})
        out["EventBusName"] = buses[0] if len(buses) == 1 else buses
        kinds = sorted({f"{e.get('Source')}|{e.get('DetailType')}" for e in params["Entries"] if isinstance(e, dict)})
        out["DetailTypes"] = kinds  # the condition keys events:source and events:detail-type (one pair per entry)
    if service == "s3" and isinstance(params.get("Delete"), dict):  # DeleteObjects
        out["DeleteKeys"] = [o.get("Key") for o in params["Delete"].get("Objects", [])]
    return out


def _on_parameters(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
    """``before-parameter-build``: keep the caller's parameters where ``before-sign`` will find them."""
    context[_PARAM_MARK] = dict(params)


def _on_sign(operation_name: str, request: Any, **kwargs: Any) -> None:
    """``before-sign``: one line per signed request (retries sign again; the contract test deduplicates)."""
    container, settings = scan_stack()
    if container is None:
        return
    digests = sorted({note_settings(found) for found in settings} - {""})
    context = getattr(request, "context", {}) or {}
    service = kwargs.get("signing_name")  # the IAM prefix: "secretsmanager", not the service id "secrets-manager"
    params = dict(context.get(_PARAM_MARK) or {})
    presign = None
    if "s3-presign-post-fields" in context:  # generate_presigned_post: the form uploads to fields["key"]
        presign = "post"
        params["Key"] = context["s3-presign-post-fields"].get("key")
    elif context.get("is_presign_request"):
        presign = "url"
    _write(
        {
            "kind": "call",
            "container": container,
            "service": service,
            "operation": operation_name,
            "params": _identifying(str(service), params),
            "presign": presign,
            "settings": digests,  # the configurations on the call's stack (empty: see the process's)
            "pid": os.getpid(),
            "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        }
    )


def install_on(events: Any) -> None:
    """Register the recorder on a botocore event emitter (a session's, inherited by clients created after)."""
    with _lock:
        if id(events) in _installed_on:
            return
        _installed_on.add(id(events))
    events.register("before-parameter-build", _on_parameters, unique_id="segscale-awscalls-params")
    events.register("before-sign", _on_sign, unique_id="segscale-awscalls-sign")


def install() -> None:
    """Record every client made from boto3's default session from now on (what ``boto3.client`` uses)."""
    import boto3

    session = boto3._get_default_session()
    install_on(session._session.get_component("event_emitter"))


def note_settings(settings: Any) -> str:
    """Write the settings' resource names once per process; returns their digest ("" when not recording).

    Calls name the configurations on their stack by digest, so the contract test maps each call's bucket, table
    or queue to the setting that holds it in that configuration, never by guessing from names.
    """
    if not enabled():
        return ""
    known = _seen_objects.get(id(settings))
    if known is not None and known[0] is settings:
        return known[1]
    values = {k: v for k, v in settings.model_dump().items() if isinstance(v, str) and v}
    key = json.dumps(values, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    _seen_objects[id(settings)] = (settings, digest)  # kept alive, so the id stays this object's
    with _lock:
        if digest in _noted:
            return digest
        _noted.add(digest)
    _write({"kind": "settings", "digest": digest, "values": values, "pid": os.getpid()})
    return digest
