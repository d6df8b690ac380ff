"""The OpenAPI document: every constraint the API enforces and every status it can answer, stated where a client
(or a schema-driven fuzzer) reads them.

FastAPI documents what the routes declare. Three things it cannot see are added here:
- the statuses every ``/v1`` route can answer before the route runs (``gate`` and ``guard``: 401, 408, 413, 503,
  and 500);
- the limits that come from settings (files per request, bytes per file), so the document matches the deployment;
- the model names this deployment serves right now (baked-in cards, plus the S3 cards of the last read), as an
  ``enum``: a name outside it is a 422, and the document says so.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from runtime.api import problems
from runtime.api.services import Services

# Answered by the gate and the guard for any /v1 request (runtime/api/gate.py, runtime/api/guard.py).
BEFORE_ROUTE_STATUSES = (401, 408, 413, 503)
# Routes whose JSON body FastAPI decodes: a body that is not UTF-8 is a 400 there.
JSON_BODY_ROUTES = {
    ("post", "/v1/uploads"),
    ("post", "/v1/batches"),
    ("post", "/v1/admin/keys"),
    ("post", "/v1/admin/keys/{key_id}/rotate"),
}
MULTIPART = "multipart/form-data"
JSON = "application/json"


def _base(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    problem = problems.Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            codes = [*BEFORE_ROUTE_STATUSES, 500] if path.startswith("/v1/") else [500]
            if (method, path) in JSON_BODY_ROUTES:
                codes.append(400)
            for code in codes:
                responses.setdefault(str(code), problems.problem_response_doc(code))
            for status in ("422", "503"):  # FastAPI's own 422 shape is never sent: every error is a Problem
                if status in responses:
                    responses[status] = problems.problem_response_doc(int(status))
            operation["responses"] = dict(sorted(responses.items()))
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema


def model_names(services: Services) -> list[str]:
    """Baked-in models and the S3 models of the last read (never a new read: this runs on the event loop)."""
    try:
        names = set(services.cards())
    except problems.ApiProblem:
        names = set()
    if services.s3_cards is not None and (listing := services.s3_cards.last()) is not None:
        names |= set(listing.cards)
    return sorted(names)


def _apply_settings(schema: dict[str, Any], services: Services) -> None:
    settings = services.settings
    components = schema["components"]["schemas"]
    models = model_names(services)
    upload = components["UploadRequest"]["properties"]
    upload["files"]["maxItems"] = settings.max_files_per_request
    components["UploadFileSpec"]["properties"]["size_bytes"]["anyOf"][0]["maximum"] = settings.max_upload_bytes
    if models:
        upload["model"]["anyOf"][0]["enum"] = models
    form = schema["paths"]["/v1/images"]["post"]["requestBody"]["content"][MULTIPART]["schema"]["properties"]
    form["file"]["maxItems"] = settings.max_files_per_request
    if models:
        form["model"]["enum"] = models


def install(app: FastAPI, services: Services) -> None:
    """``app.openapi``: the static document built once, the settings and model names applied on each call."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if "base" not in cache:
            cache["base"] = _base(app)
        schema = copy.deepcopy(cache["base"])
        _apply_settings(schema, services)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
