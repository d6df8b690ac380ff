"""``GET /v1/models`` and ``GET /healthz``."""

from __future__ import annotations

from fastapi import APIRouter

from runtime.api.deps import ServicesDep
from runtime.api.problems import problem_responses
from runtime.api.schemas import Health, ModelsView

router = APIRouter(tags=["meta"])
health_router = APIRouter(tags=["meta"])


@router.get("/v1/models", response_model=ModelsView, responses=problem_responses(401, 503))
def list_models(services: ServicesDep) -> ModelsView:
    """The cards of the models the worker image carries (name, version, licence, input/output, classes)."""
    cards = services.cards()
    return ModelsView(default=services.settings.default_model, models=[cards[n].public() for n in sorted(cards)])


@health_router.get("/healthz", response_model=Health, responses=problem_responses())
def healthz() -> Health:
    """Liveness for the load balancer: no AWS calls, no auth."""
    return Health()
