"""Lambda mode holds no API key in the function's configuration: only the secret's ARN and read access to it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runtime.common.settings import env_name
from tests.cdk.conftest import Synth, by_path
from tests.cdk.test_wiring import as_list, statements

pytestmark = pytest.mark.cdk


def function(s: Synth) -> tuple[str, dict[str, Any]]:
    return by_path(s.pipeline, "/Api/Function/Resource", "AWS::Lambda::Function")


def test_the_function_gets_the_secrets_arn_not_its_value(lambda_mode: Synth) -> None:
    _, fn = function(lambda_mode)
    secret_id, _ = by_path(lambda_mode.pipeline, "/ApiKey/", "AWS::SecretsManager::Secret")
    variables = fn["Properties"]["Environment"]["Variables"]
    assert env_name("api_key") not in variables
    assert variables[env_name("api_key_secret_arn")] == {"Ref": secret_id}  # a Secret's Ref is its ARN
    # No dynamic reference anywhere in the stack: it would copy the value into a configuration at deploy time.
    assert "resolve:secretsmanager" not in json.dumps(lambda_mode.pipeline)


def test_the_function_role_can_read_only_that_secret(lambda_mode: Synth) -> None:
    _, fn = function(lambda_mode)
    secret_id, _ = by_path(lambda_mode.pipeline, "/ApiKey/", "AWS::SecretsManager::Secret")
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    secret_statements = [
        s
        for s in statements(lambda_mode.pipeline, role_id)
        if any(a == "*" or a.startswith("secretsmanager:") for a in as_list(s["Action"]))
    ]
    assert secret_statements, "the function cannot read the API key secret"
    for s in secret_statements:
        assert s["Effect"] == "Allow" and as_list(s["Resource"]) == [{"Ref": secret_id}], s
        assert set(as_list(s["Action"])) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}, s
    granted = {a for s in secret_statements for a in as_list(s["Action"])}
    assert "secretsmanager:GetSecretValue" in granted


def test_fargate_still_injects_the_key_and_grants_the_task_nothing(dev: Synth) -> None:
    """The Fargate API keeps ECS's injection: its task role needs no Secrets Manager access of its own."""
    _, task = by_path(dev.pipeline, "/Api/Task/Resource", "AWS::ECS::TaskDefinition")
    (c,) = task["Properties"]["ContainerDefinitions"]
    assert env_name("api_key_secret_arn") not in {e["Name"] for e in c["Environment"]}
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    actions = {a for s in statements(dev.pipeline, role_id) for a in as_list(s["Action"])}
    assert not {a for a in actions if a == "*" or a.startswith("secretsmanager:")}
