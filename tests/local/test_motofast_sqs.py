"""SQS counts through one clock reading (local/motofast/sqs_counts.py): the same counts as moto's own properties on
a queue holding visible, received (not visible) and delayed messages, and a send that no longer reads the clock
once per message already queued."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs import models

from local.motofast import sqs_counts


def _sqs(url: str) -> Any:
    return boto3.client(
        "sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )


def _queue(name: str) -> models.Queue:
    return models.sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues[name]


@pytest.fixture()
def mixed(servers: tuple[str, str]) -> Iterator[tuple[Any, str, str]]:
    """A queue with 4 visible messages, 2 received (in flight) and 3 delayed."""
    sqs = _sqs(servers[0])
    name = f"motofast-sqs-{id(sqs)}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"m{n}"} for n in range(6)])
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"d{n}", "DelaySeconds": 300} for n in range(3)]
    )
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=300)["Messages"]
    assert len(got) == 2
    yield sqs, url, name
    sqs.delete_queue(QueueUrl=url)


def test_counts_equal_motos_own_on_a_mixed_queue(mixed: tuple[Any, str, str]) -> None:
    sqs, url, name = mixed
    queue = _queue(name)
    assert type(queue).messages is sqs_counts.FAST["messages"]  # the server installed the fast path
    for prop in sqs_counts.FAST:
        fast = sqs_counts.FAST[prop].fget(queue)
        moto = sqs_counts.moto_property(prop).fget(queue)
        assert fast == moto, prop
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "4"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "2"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "3"
    bodies = {m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]}
    assert len(bodies) == 4 and all(body.startswith("m") for body in bodies)  # neither in-flight nor delayed ones


def _clock_reads_per_send(sqs: Any, url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    reads = [0]
    clock = models.unix_time_millis

    def counted(*args: Any) -> float:
        reads[0] += 1
        return clock(*args)

    monkeypatch.setattr(models, "unix_time_millis", counted)
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": f"x{n}"} for n in range(10)])
    monkeypatch.setattr(models, "unix_time_millis", clock)
    return reads[0]


def test_a_send_reads_the_clock_per_count_not_per_queued_message(
    servers: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs = _sqs(servers[0])
    url = sqs.create_queue(QueueName="motofast-sqs-deep")["QueueUrl"]
    for _ in range(30):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "MessageBody": "y"} for n in range(10)])
    fast_reads = _clock_reads_per_send(sqs, url, monkeypatch)
    for prop in sqs_counts.FAST:  # moto's own properties, for the comparison
        monkeypatch.setattr(models.Queue, prop, sqs_counts.moto_property(prop))
    moto_reads = _clock_reads_per_send(sqs, url, monkeypatch)
    monkeypatch.undo()
    assert type(_queue("motofast-sqs-deep")).messages is sqs_counts.FAST["messages"]
    assert fast_reads <= 10 * 4 + 10  # four counts per message sent, whatever the depth
    assert moto_reads > 10 * 300  # moto's: every queued message, for every message sent
    sqs.delete_queue(QueueUrl=url)
