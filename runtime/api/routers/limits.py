"""``GET /v1/limits``: what the API will refuse, so clients (the web console) check before they send."""

from __future__ import annotations

from fastapi import APIRouter, Request

from runtime.api.deps import SettingsDep
from runtime.api.limits import Limits, limits
from runtime.api.problems import problem_responses

router = APIRouter(tags=["meta"])


@router.get("/v1/limits", response_model=Limits, responses=problem_responses(401, 503))
def get_limits(request: Request, settings: SettingsDep) -> Limits:
    """Per-file and per-request limits; in Lambda mode (Mangum puts the event in the scope) the payload cap too."""
    return limits(settings, lambda_mode="aws.event" in request.scope)
