"""boto3 clients built from settings, so the endpoint (moto locally, AWS otherwise) is chosen in one place."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from runtime.common import awscalls
from runtime.common.settings import Settings

_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32)

if awscalls.enabled():  # only under the contract tests (SEGSCALE_AWS_CALL_LOG); never set in AWS
    awscalls.install()


def endpoint_for(service: str, settings: Settings) -> str | None:
    """The local endpoint of ``service`` (None on AWS): DynamoDB may live on a moto server of its own."""
    if service == "dynamodb" and settings.dynamodb_endpoint_url:
        return settings.dynamodb_endpoint_url
    return settings.endpoint_url


def client(service: str, settings: Settings) -> Any:
    awscalls.note_settings(settings)
    return boto3.client(
        service, region_name=settings.region, endpoint_url=endpoint_for(service, settings), config=_CONFIG
    )


def resource(service: str, settings: Settings) -> Any:
    awscalls.note_settings(settings)
    return boto3.resource(
        service, region_name=settings.region, endpoint_url=endpoint_for(service, settings), config=_CONFIG
    )
