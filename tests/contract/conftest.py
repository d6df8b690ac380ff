"""Fixtures of the contract tests: the run's recorded calls, the synthesized deployments, the evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cdk.conftest import synthesized
from tests.contract import recording
from tests.contract.calls import Recording
from tests.contract.check import Contract
from tests.contract.deployment import Deployment

# dev: Fargate API; lambda: the API as a function (reads its key from Secrets Manager); prod: S3 models configured.
VARIANTS = ("dev", "lambda", "prod")


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    """This run's calls, plus those of the source suites it did not run (recorded now, in a child pytest)."""
    extra = tmp_path_factory.mktemp("contract") / "calls.jsonl"
    recording.record_missing(extra)
    yield Recording.load([recording.session_log(), extra])


@pytest.fixture(scope="session")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> list[Deployment]:
    out = []
    for variant in VARIANTS:
        s = synthesized(variant, tmp_path_factory)
        out.append(Deployment(variant, s.data, s.pipeline, s.app.config.region))
    return out


@pytest.fixture(scope="session")
def contract(recorded: Recording, deployments: list[Deployment]) -> Contract:
    policies = {arn: doc for d in deployments for arn, doc in d.resource_policies().items()}
    return Contract(recorded, [r for d in deployments for r in d.container_roles()], policies)
