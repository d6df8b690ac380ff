"""``GET /v1/models`` and ``GET /healthz``."""

from __future__ import annotations

from fastapi import APIRouter

from runtime.api.deps import ServicesDep
from runtime.api.problems import problem_responses
from runtime.api.schemas import Health, ModelsView, S3ModelsView

router = APIRouter(tags=["meta"])
health_router = APIRouter(tags=["meta"])


@router.get("/v1/models", response_model=ModelsView, responses=problem_responses(401, 503))
def list_models(services: ServicesDep) -> ModelsView:
    """The cards of the models the worker image carries and, when configured, of those under the S3 prefix.

    A baked-in model wins a name clash (as in the worker); the S3 model of that name is listed under
    ``s3.rejected``. If S3 cannot be read, the S3 models of the last good read are listed and ``s3.error`` says why.
    """
    cards = services.cards()
    models = {name: {**card.public(), "origin": "baked_in"} for name, card in cards.items()}
    s3 = services.s3_listing()
    if s3 is None:
        return ModelsView(default=services.settings.default_model, models=[models[n] for n in sorted(models)])
    rejected = dict(s3.rejected)
    for name, card in s3.cards.items():
        if name in models:
            rejected[name] = f"{s3.uri.rstrip('/')}/{name}/: ignored, a baked-in model of the same name wins"
        else:
            models[name] = {**card.public(), "origin": "s3"}
    view = S3ModelsView(
        uri=s3.uri,
        read_at=int(s3.read_at * 1000) if s3.read_at is not None else None,
        error=s3.error,
        rejected={n: rejected[n] for n in sorted(rejected)},
    )
    return ModelsView(default=services.settings.default_model, models=[models[n] for n in sorted(models)], s3=view)


@health_router.get("/healthz", response_model=Health, responses=problem_responses())
def healthz() -> Health:
    """Liveness for the load balancer: no AWS calls, no auth."""
    return Health()
