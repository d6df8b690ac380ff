"""The event bus and its wiring: archive, who may put events, the signing secret, the notify and e-mail rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.common.events import BATCH_COMPLETED, INTERNAL_SOURCE, NOTIFY_DUE, SOURCE
from runtime.common.settings import env_name
from tests.cdk.conftest import Synth, SynthFn, by_path, one, resources
from tests.cdk.test_wiring import allowed, container, statements, task_logical_id

pytestmark = pytest.mark.cdk


def roles_allowed(template: dict[str, Any], action: str) -> dict[str, list[Any]]:
    """Every role of the template that may call ``action``, with the resources it may call it on."""
    out: dict[str, list[Any]] = {}
    for role_id in resources(template, "AWS::IAM::Role"):
        found = allowed(statements(template, role_id), action)
        if found:
            out[role_id] = found
    return out


def task_role(template: dict[str, Any], task_path: str) -> str:
    task = template["Resources"][task_logical_id(template, task_path)]
    return str(task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0])


def env(template: dict[str, Any], task_path: str) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container(template, task_path).get("Environment", [])}


@pytest.mark.parametrize(("variant", "name"), [("dev", "segscale-dev"), ("prod", "segscale-prod")])
def test_the_stack_creates_the_bus_segscale_env(synth: SynthFn, variant: str, name: str) -> None:
    _, bus = one(synth(variant).pipeline, "AWS::Events::EventBus")
    assert bus["Properties"]["Name"] == name


@pytest.mark.parametrize(("variant", "days"), [("dev", 30), ("prod", 400), ("lambda", 0)])
def test_the_archive_keeps_public_events_for_the_configured_days(synth: SynthFn, variant: str, days: int) -> None:
    template = synth(variant).pipeline
    archives = resources(template, "AWS::Events::Archive")
    if days == 0:
        assert archives == {}
        return
    ((_, archive),) = archives.items()
    bus_id, _ = one(template, "AWS::Events::EventBus")
    assert archive["Properties"]["RetentionDays"] == days
    assert archive["Properties"]["SourceArn"] == {"Fn::GetAtt": [bus_id, "Arn"]}
    assert archive["Properties"]["EventPattern"] == {"source": [SOURCE]}


@pytest.mark.parametrize("variant", ["dev", "lambda"])
def test_only_the_worker_and_results_roles_may_put_events_and_only_on_the_bus(synth: SynthFn, variant: str) -> None:
    template = synth(variant).pipeline
    bus_id, _ = one(template, "AWS::Events::EventBus")
    putters = roles_allowed(template, "events:PutEvents")
    unconditioned = {
        role
        for role in putters
        if not any(s.get("Condition") for s in statements(template, role) if s["Action"] == "events:PutEvents")
    }
    assert unconditioned == {task_role(template, "Worker/Task"), task_role(template, "Results/Task")}
    assert all(found == [{"Fn::GetAtt": [bus_id, "Arn"]}] for found in putters.values())
    # The API (its task role, or the function's) may put one internal event only: the ingester's start (D10).
    (api_role,) = set(putters) - unconditioned
    (grant,) = [s for s in statements(template, api_role) if s["Action"] == "events:PutEvents"]
    assert grant["Condition"] == {
        "ForAllValues:StringEquals": {
            "events:detail-type": ["Batch Ingest Due"],
            "events:source": ["segscale.internal"],
        },
        "Null": {"events:detail-type": "false", "events:source": "false"},
    }


def test_the_signing_secret_is_generated_and_only_the_results_task_reads_it(dev: Synth) -> None:
    template = dev.pipeline
    secret_id, secret = by_path(template, "/Notifications/WebhookSecret/", "AWS::SecretsManager::Secret")
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 64
    readers = {
        role: found
        for role, found in roles_allowed(template, "secretsmanager:GetSecretValue").items()
        if {"Ref": secret_id} in found
    }
    assert set(readers) == {task_role(template, "Results/Task")}


def test_containers_get_the_notification_settings_they_need_and_no_more(dev: Synth) -> None:
    template = dev.pipeline
    bus_id, _ = one(template, "AWS::Events::EventBus")
    bus, secret = env_name("event_bus"), env_name("webhook_secret_arn")
    worker, results, api = env(template, "Worker/Task"), env(template, "Results/Task"), env(template, "Api/Task")
    assert worker[bus] == results[bus] == {"Ref": bus_id}
    assert secret not in worker and results[secret]["Ref"].startswith("NotificationsWebhookSecret")
    assert results[env_name("export_on_completion")] == "true"
    assert bus not in api and secret not in api  # the API sends no events and signs nothing
    assert env_name("webhook_local_http") not in {**worker, **results, **api}  # local mode only


def test_a_completed_batch_starts_the_results_tasks_notify(dev: Synth) -> None:
    template = dev.pipeline
    _, rule = by_path(template, "/Notifications/NotifyRule", "AWS::Events::Rule")
    props = rule["Properties"]
    bus_id, _ = one(template, "AWS::Events::EventBus")
    assert props["EventBusName"] == {"Ref": bus_id}
    assert props["EventPattern"] == {"source": [INTERNAL_SOURCE], "detail-type": [NOTIFY_DUE]}
    (target,) = props["Targets"]
    results_task = task_logical_id(template, "Results/Task")
    assert target["EcsParameters"]["TaskDefinitionArn"] == {"Ref": results_task}
    assert target["EcsParameters"]["LaunchType"] == "FARGATE"
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {"batch": "$.detail.batch_id"}
    filled = json.loads(transformer["InputTemplate"].replace("<batch>", '"' + "a" * 32 + '"'))
    assert filled == {"containerOverrides": [{"name": "results", "command": ["notify", "--batch", "a" * 32]}]}
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    stmts = statements(template, role_id)
    assert allowed(stmts, "ecs:RunTask") == [{"Ref": results_task}]
    assert {a for s in stmts for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == {
        "ecs:RunTask",
        "iam:PassRole",
    }


@pytest.mark.parametrize(("variant", "wanted"), [("dev", False), ("prod", True)])
def test_batch_completed_is_e_mailed_only_when_configured(synth: SynthFn, variant: str, wanted: bool) -> None:
    template = synth(variant).pipeline
    rules = {
        k: v
        for k, v in resources(template, "AWS::Events::Rule").items()
        if v["Properties"].get("EventPattern", {}).get("detail-type") == [BATCH_COMPLETED]
    }
    assert bool(rules) == wanted
    if not wanted:
        return
    ((_, rule),) = rules.items()
    (target,) = rule["Properties"]["Targets"]
    topic_id, _ = one(template, "AWS::SNS::Topic")
    assert target["Arn"] == {"Ref": topic_id}
    assert "completed" in json.dumps(target["InputTransformer"])
    _, key = one(template, "AWS::KMS::Key")
    principals = json.dumps(key["Properties"]["KeyPolicy"])
    assert "events.amazonaws.com" in principals  # EventBridge may use the topic's key


def test_outputs_name_the_bus_and_how_to_read_the_secret(dev: Synth) -> None:
    outputs = dev.pipeline["Outputs"]
    assert "EventBusName" in outputs
    command = json.dumps(outputs["WebhookSecretCommand"]["Value"])
    assert "secretsmanager get-secret-value" in command and "NotificationsWebhookSecret" in command
