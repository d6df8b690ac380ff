"""Events and webhooks on the local stack: the moto EventBridge bus, what AWS's rules do, and the signing secret.

In AWS the stack creates the bus ``segscale-<env>``, a rule that starts the results task's ``notify`` when a
batch completes, and the webhook signing secret (docs/architecture.md D9). Locally the same bus lives in the moto
server, and two rules send to SQS queues instead (moto delivers to SQS targets):

- ``tap``: every public event (source ``segscale``) -> a queue that ``EventTap`` drains into
  ``bus-events.jsonl`` (``make dev`` prints how to follow it) and that the tests read;
- ``notify``: ``Batch Notify Due`` -> a queue that ``NotifyEmulator`` reads, running the results task's
  ``notify`` for the batch in this process (as the scheduler emulator runs reconcile).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import boto3

from local.procs import log_event
from runtime.common.events import INGEST_DUE, INTERNAL_SOURCE, NOTIFY_DUE, SOURCE
from runtime.common.settings import Settings, env_name


@dataclass(frozen=True)
class LocalNotifications:
    bus: str
    bus_arn: str
    tap_queue_url: str
    notify_queue_url: str
    secret_arn: str
    ingest_queue_url: str = ""

    def fields(self) -> dict[str, Any]:
        """The settings CDK gives the worker and the results task, by field name (the API gets the last only)."""
        return {"event_bus": self.bus, "webhook_secret_arn": self.secret_arn, "webhook_local_http": True}

    def env(self) -> dict[str, str]:
        return {env_name(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.fields().items()}

    def settings(self, base: Settings, **fields: Any) -> Settings:
        """``base`` pointed at this bus and secret, plus ``fields`` (what the tests run notify and workers with)."""
        return base.model_copy(update={**self.fields(), **fields})


def _clients(endpoint_url: str, region: str) -> tuple[Any, Any, Any]:
    kw = {
        "endpoint_url": endpoint_url,
        "region_name": region,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return boto3.client("events", **kw), boto3.client("sqs", **kw), boto3.client("secretsmanager", **kw)


def _queue_to(events: Any, sqs: Any, bus: str, rule: str, pattern: dict[str, Any]) -> str:
    url = sqs.create_queue(QueueName=f"{bus}-{rule}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=f"{bus}-{rule}", EventBusName=bus, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=f"{bus}-{rule}", EventBusName=bus, Targets=[{"Id": rule, "Arn": arn}])
    return str(url)


def create_notifications(
    endpoint_url: str, *, prefix: str = "segscale", region: str = "us-east-1"
) -> LocalNotifications:
    """The bus, its two rules and queues, and a freshly generated signing secret."""
    events, sqs, secretsmanager = _clients(endpoint_url, region)
    bus = f"{prefix}-local"
    bus_arn = events.create_event_bus(Name=bus)["EventBusArn"]
    tap = _queue_to(events, sqs, bus, "tap", {"source": [SOURCE]})
    notify = _queue_to(events, sqs, bus, "notify", {"source": [INTERNAL_SOURCE], "detail-type": [NOTIFY_DUE]})
    ingest = _queue_to(events, sqs, bus, "ingest", {"source": [INTERNAL_SOURCE], "detail-type": [INGEST_DUE]})
    secret = secretsmanager.create_secret(
        Name=f"{prefix}-webhook-signing", SecretString=secrets.token_urlsafe(48), Description="webhook signing"
    )
    return LocalNotifications(bus, bus_arn, tap, notify, str(secret["ARN"]), ingest)


class _QueueReader:
    """A thread that long-polls one queue and hands each message body to ``handle``, then deletes it."""

    def __init__(self, sqs: Any, queue_url: str, name: str, log: IO[str] | None) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> _QueueReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def handle(self, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            except Exception as exc:  # moto stopping at shutdown
                if not self._stop.is_set():
                    log_event(self.log, "event_queue_error", error=repr(exc))
                    time.sleep(0.5)
                continue
            for message in out.get("Messages", []):
                try:
                    self.handle(json.loads(message["Body"]))
                except Exception as exc:
                    log_event(self.log, "event_handler_error", error=repr(exc))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


class EventTap(_QueueReader):
    """Every public event on the bus, in arrival order: kept in ``events`` and appended to ``path`` as JSON lines."""

    def __init__(self, sqs: Any, queue_url: str, *, path: Path | None = None, log: IO[str] | None = None) -> None:
        super().__init__(sqs, queue_url, "event-tap", log)
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def handle(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(body)
        if self.path is not None:
            with self.path.open("a") as out:
                out.write(json.dumps(body, sort_keys=True) + "\n")

    def of_type(self, detail_type: str, batch_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("detail-type") == detail_type and (batch_id is None or e["detail"].get("batch_id") == batch_id)
            ]


class NotifyEmulator(_QueueReader):
    """What a bus rule does in AWS (run the results task's ``notify --batch <id>``, or ``ingest``), in this process."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        action: Callable[[str], Any],
        *,
        log: IO[str] | None = None,
        name: str = "notify",
    ) -> None:
        super().__init__(sqs, queue_url, f"{name}-emulator", log)
        self.action = action
        self.name = name
        self.runs = 0

    def handle(self, body: dict[str, Any]) -> None:
        batch_id = body["detail"]["batch_id"]
        result = self.action(batch_id)
        self.runs += 1
        log_event(self.log, f"{self.name}_run", batch_id=batch_id, result=getattr(result, "to_dict", lambda: result)())


def ingest_action(settings: Any) -> Callable[[str], Any]:
    def run(batch_id: str) -> Any:
        from runtime.results.ingest.run import ingest_batch

        return ingest_batch(settings, batch_id)

    return run


def notify_action(settings: Any) -> Callable[[str], Any]:
    def run(batch_id: str) -> Any:
        from runtime.results.notify import notify_batch

        return notify_batch(settings, batch_id)

    return run
