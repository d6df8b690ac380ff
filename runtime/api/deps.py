"""FastAPI dependencies (``Annotated`` aliases): the app's services and the API key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from runtime.api.problems import ApiProblem
from runtime.api.services import Services
from runtime.common.settings import Settings

API_KEY_HEADER = "X-Api-Key"
_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the deployment's API key")


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def require_api_key(services: ServicesDep, key: Annotated[str | None, Security(_api_key_header)] = None) -> None:
    """Constant-time compare; with auth enabled and no key configured or readable, every request is refused."""
    if not services.settings.auth_enabled:
        return
    check = services.api_keys
    if not check.configured:
        raise ApiProblem(503, "auth_not_configured", "the server has no API key configured; ask the operator")
    check.ensure_available()  # the key in Secrets Manager (Lambda mode) cannot be read: 503, not 401
    if key is None:
        raise ApiProblem(401, "missing_api_key", f"send the API key in the {API_KEY_HEADER} header")
    if not check.matches(key):
        raise ApiProblem(401, "wrong_api_key", "the API key is not valid")


def add_job_ids(request: Request, job_ids: list[str], batch_id: str | None = None) -> None:
    """Job ids for the request's log line (``reqlog``)."""
    request.state.job_ids = [*getattr(request.state, "job_ids", []), *job_ids]
    if batch_id:
        request.state.batch_id = batch_id
