"""boto3 clients built from settings, so the endpoint (moto locally, AWS otherwise) is chosen in one place."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from runtime.common.settings import Settings

_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=32)


def client(service: str, settings: Settings) -> Any:
    return boto3.client(service, region_name=settings.region, endpoint_url=settings.endpoint_url, config=_CONFIG)


def resource(service: str, settings: Settings) -> Any:
    return boto3.resource(service, region_name=settings.region, endpoint_url=settings.endpoint_url, config=_CONFIG)
