"""Test helper: read a queue empty."""

from __future__ import annotations

from typing import Any


def drain_bodies(sqs: Any, queue_url: str) -> list[str]:
    """Every message body now in the queue, each message deleted once read."""
    found = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return found
        for m in got:
            found.append(m["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
