"""The FastAPI app: ``uvicorn runtime.api.main:app`` (Fargate) or through Mangum (``lambda_handler``).

``create_app`` takes settings and, optionally, AWS clients, so tests run the real app against a moto server (or a
client made to fail) without patching anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from runtime.api import console, gate, guard, openapi, problems, reqlog
from runtime.api.deps import require_api_key
from runtime.api.routers import admin, batches, exports, images, jobs, limits, meta, uploads
from runtime.api.services import Services, build_services
from runtime.common import logs
from runtime.common.settings import Settings, get_settings

API_VERSION = "1.0.0"


def create_app(settings: Settings | None = None, *, s3: Any = None, dynamodb: Any = None, sqs: Any = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    services: Services = build_services(settings, s3=s3, dynamodb=dynamodb, sqs=sqs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        services.batcher.close()  # flush on shutdown: jobs in the buffer go out before the process ends

    docs = settings.api_docs_enabled  # unauthenticated routes: off in prod unless configured (stacks/config.py)
    app = FastAPI(
        title="segscale",
        version=API_VERSION,
        description="Upload images, get segmentation masks and measurements. Errors are RFC 9457 "
        "`application/problem+json`. Authenticate with the `X-Api-Key` header.",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.services = services
    problems.install(app)
    auth = [Depends(require_api_key)]
    for router in (
        images.router,
        uploads.router,
        jobs.router,
        batches.router,
        exports.router,
        meta.router,
        limits.router,
        admin.router,
    ):
        app.include_router(router, dependencies=auth)
    app.include_router(meta.health_router)
    app.include_router(console.router)  # the web console at /: static files, no key needed to load them
    # Outermost last: the request log sees every answer, the guard every answer but the log's, the gate runs
    # before any route reads a body.
    app.add_middleware(gate.RequestGate, services=services)
    app.add_middleware(guard.ConnectionGuard, body_timeout_s=settings.request_body_timeout_s)
    app.add_middleware(reqlog.RequestLogMiddleware)
    openapi.install(app, services)
    return app


app = create_app()
