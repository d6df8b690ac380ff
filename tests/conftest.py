"""Shared fixtures: a real moto server over HTTP (one per test session) and fresh resources per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from local.motoserver import MotoServer
from local.procs import free_port as free_port  # one copy; kept importable from here
from local.resources import LocalResources, create_resources
from runtime.common.aws import client
from runtime.common.jobs import JobStore
from runtime.common.settings import Settings
from tests.contract import recording

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "1")


def pytest_configure(config: pytest.Config) -> None:
    """Record every AWS call the containers' code makes in this run, for the least-privilege contract test."""
    recording.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    recording.finish()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    recording.contract_tests_last(items)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port, shared by the whole session (tests use unique resource names).

    Its DynamoDB writes are atomic (local/motoserver.py), so race tests prove what real DynamoDB guarantees.
    """
    server = MotoServer().start()
    yield server.url
    server.stop()


@pytest.fixture()
def resources(moto_endpoint: str) -> LocalResources:
    """A fresh bucket, table, queue and DLQ for this test."""
    return create_resources(moto_endpoint, prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture()
def settings(resources: LocalResources) -> Settings:
    return resources.settings(api_key="test-key")


@pytest.fixture()
def store(settings: Settings) -> JobStore:
    return JobStore.from_settings(settings, client("dynamodb", settings))
