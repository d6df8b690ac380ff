"""FastAPI dependencies (``Annotated`` aliases): the app's services and the API key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Query, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import BeforeValidator

from runtime.api.callers import Caller
from runtime.api.gate import API_KEY_HEADER, authenticate
from runtime.api.services import Services
from runtime.api.validation import ID_PATTERN, strict_boolean
from runtime.common.settings import Settings

_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the deployment's API key")


# Ids in paths: the pattern is stated in the OpenAPI document, but any other string is simply an id that does not
# exist (404), which is what the routes answer, so FastAPI does not validate it (that would be a 422).
JobIdPath = Annotated[str, Path(description="a job id (32 lowercase hex)", json_schema_extra={"pattern": ID_PATTERN})]
BatchIdPath = Annotated[
    str, Path(description="a batch id (32 lowercase hex)", json_schema_extra={"pattern": ID_PATTERN})
]

# ``?seal=true``: a query boolean spelled as the document spells it (anything else is a 422).
SealQuery = Annotated[
    bool,
    BeforeValidator(strict_boolean),
    Query(description="`true`: seal the batch once its files are queued (docs/notifications.md)"),
]


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_api_key(
    request: Request, services: ServicesDep, key: Annotated[str | None, Security(_api_key_header)] = None
) -> Caller:
    """Declares the key in the OpenAPI document. The gate checks it for every ``/v1`` request before the body is
    read (``runtime/api/gate.py``); a route outside the gate's prefix that depends on this is checked here."""
    caller = getattr(request.state, "caller", None)
    if caller is None:
        caller = request.state.caller = authenticate(services, key)
    return caller


CallerDep = Annotated[Caller, Depends(require_api_key)]


def add_job_ids(request: Request, job_ids: list[str], batch_id: str | None = None) -> None:
    """Job ids for the request's log line (``reqlog``)."""
    request.state.job_ids = [*getattr(request.state, "job_ids", []), *job_ids]
    if batch_id:
        request.state.batch_id = batch_id
