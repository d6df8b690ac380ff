"""boto3 clients built from settings, so the endpoint (moto locally, AWS otherwise) is chosen in one place."""

from __future__ import annotations

from typing import Any

import boto3
import botocore.session
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


def _as_text(value: str) -> str:
    return value


def listing_client(settings: Settings) -> Any:
    """An S3 client for listing large prefixes whose timestamps stay text: botocore otherwise parses every key's
    ``LastModified`` with dateutil, about a sixth of the S3 ingester's CPU (py-spy), and it never reads them."""
    awscalls.note_settings(settings)
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_as_text)
    if awscalls.enabled():
        awscalls.install_on(session.get_component("event_emitter"))
    return boto3.Session(botocore_session=session).client(
        "s3", region_name=settings.region, endpoint_url=endpoint_for("s3", settings), config=_CONFIG
    )
