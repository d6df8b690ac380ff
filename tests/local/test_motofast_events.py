"""EventBridge deliveries through the memoized JSONPath parser (local/motofast/events.py) carry the events moto
renders without it: the memo serves moto's own deliveries, and each memoized path finds what a fresh parse finds."""

from __future__ import annotations

import json
from typing import Any

import boto3
from moto.events.utils import EventTemplateParser

from local.motofast.events import _parse, cached_parse


def _client(service: str, url: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x"
    )


def test_events_reach_their_target_whole_through_the_memo(servers: tuple[str, str]) -> None:
    fast_url, _ = servers
    events, sqs = _client("events", fast_url), _client("sqs", fast_url)
    queue = sqs.create_queue(QueueName="motofast-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.create_event_bus(Name="motofast-bus")
    pattern = {"source": ["segscale.test"]}
    events.put_rule(Name="all", EventBusName="motofast-bus", EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule="all", EventBusName="motofast-bus", Targets=[{"Id": "q", "Arn": arn}])
    hits = cached_parse.cache_info().hits
    details = [{"job_id": f"j{n}", "nested": {"list": [n, "x"], "n": n / 3}, "text": 'a "quoted" ü'} for n in range(3)]
    entries = [
        {
            "EventBusName": "motofast-bus",
            "Source": "segscale.test",
            "DetailType": "Job Succeeded",
            "Detail": json.dumps(d),
        }
        for d in details
    ]
    assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    bodies: list[dict[str, Any]] = []
    while len(bodies) < len(details):
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        assert got, bodies
        bodies += [json.loads(m["Body"]) for m in got]
    assert sorted((b["detail"] for b in bodies), key=lambda d: d["job_id"]) == details
    assert {b["detail-type"] for b in bodies} == {"Job Succeeded"} and {b["source"] for b in bodies} == {
        "segscale.test"
    }
    assert cached_parse.cache_info().hits > hits  # moto's deliveries went through the memo


def test_a_memoized_path_finds_what_a_fresh_parse_finds() -> None:
    event = {"id": "e1", "time": "2026-12-01T00:00:00Z", "detail": {"a": [1, {"b": None}]}, "resources": [], "x": 2}
    paths = [*EventTemplateParser.DEFAULT_EVENT_INPUT_PATHS_MAP.values(), "$.detail.a[1].b", "$.missing"]
    for _ in range(2):  # the second round is served from the memo
        for path in paths:
            assert cached_parse(path) is cached_parse(path)
            assert [m.value for m in cached_parse(path).find(event)] == [m.value for m in _parse(path).find(event)]
