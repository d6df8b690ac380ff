"""Every input has bounds that DynamoDB, S3 and the worker can hold, the OpenAPI document states them, and a value
outside them is a 422 problem with nothing stored (never a 500, a 503, or a job that fails later)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from runtime.api.validation import MM_PER_PIXEL_MAX, MM_PER_PIXEL_MIN
from runtime.common.settings import Settings
from tests.api.helpers import assert_nothing_stored, image_bytes, post_images, stored

# Values that once answered 500 (outside DynamoDB's number range), 503, or were accepted and failed the job.
OUT_OF_RANGE = ["5e-324", "1e-300", "1e200", "1.9e129", "1e-131", "1e100", "1e-10", "1000001"]


def test_mm_per_pixel_out_of_range_is_422_in_a_form(api: TestClient, api_settings: Settings) -> None:
    for value in OUT_OF_RANGE:
        r = post_images(api, image_bytes(), mm_per_pixel=value)
        assert r.status_code == 422 and r.json()["type"].endswith("invalid_mm_per_pixel"), (value, r.text)
        assert "1e-09 to 1e+06" in r.json()["detail"]
    assert_nothing_stored(api_settings)


def test_mm_per_pixel_out_of_range_is_422_in_json(api: TestClient, api_settings: Settings) -> None:
    for value in OUT_OF_RANGE:
        body = '{"files": [{"file_name": "a.jpg"}], "mm_per_pixel": ' + value + "}"
        r = api.post("/v1/uploads", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["type"].endswith("invalid_request"), (value, r.text)
        assert "mm_per_pixel" in r.json()["detail"]
    assert_nothing_stored(api_settings)


@pytest.mark.parametrize("value", [MM_PER_PIXEL_MIN, MM_PER_PIXEL_MAX])
def test_mm_per_pixel_at_the_bounds_is_stored_exactly(api: TestClient, api_settings: Settings, value: float) -> None:
    r = post_images(api, image_bytes(), mm_per_pixel=repr(value))
    assert r.status_code == 202, r.text
    r = api.post("/v1/uploads", json={"files": [{"file_name": "a.jpg"}], "mm_per_pixel": value})
    assert r.status_code == 201, r.text
    values = {float(j["mm_per_pixel"]["N"]) for j in stored(api_settings)["jobs"].values()}
    assert values == {value}


def test_json_fields_out_of_bounds_are_422(api: TestClient, api_settings: Settings) -> None:
    cases = [
        ({"files": [{"file_name": "a.jpg"}], "model": ""}, "model"),
        ({"files": [{"file_name": "a.jpg"}], "model": "m" * 65}, "model"),
        ({"files": [{"file_name": ""}]}, "file_name"),
        ({"files": [{"file_name": "a" * 1001}]}, "file_name"),
        ({"files": [{"file_name": "a.jpg", "size_bytes": 0}]}, "size_bytes"),
        ({"files": [{"file_name": "a.jpg"}], "batch_id": "A" * 32}, "batch_id"),
    ]
    for body, field in cases:
        r = api.post("/v1/uploads", json=body)
        assert r.status_code == 422 and field in r.json()["detail"], (body, r.text)
    assert_nothing_stored(api_settings)


def test_a_model_named_empty_in_a_form_is_unknown(api: TestClient, api_settings: Settings) -> None:
    r = post_images(api, image_bytes(), model="")
    assert r.status_code == 422 and r.json()["type"].endswith("unknown_model"), r.text
    assert_nothing_stored(api_settings)


def _schema(api: TestClient) -> dict[str, Any]:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def test_openapi_states_the_limits(api: TestClient, api_settings: Settings) -> None:
    doc = _schema(api)
    form = doc["paths"]["/v1/images"]["post"]["requestBody"]["content"]["multipart/form-data"]
    props = form["schema"]["properties"]
    assert form["schema"]["additionalProperties"] is False
    assert props["file"]["minItems"] == 1 and props["file"]["maxItems"] == api_settings.max_files_per_request
    assert form["encoding"]["file"]["contentType"].split(", ")[0] == "image/jpeg"
    assert (props["mm_per_pixel"]["minimum"], props["mm_per_pixel"]["maximum"]) == (1e-9, 1e6)
    assert props["model"]["enum"] == ["person", "text"]  # this deployment's models
    assert props["batch_id"]["pattern"] == "^[0-9a-f]{32}$"
    schemas = doc["components"]["schemas"]
    upload = schemas["UploadRequest"]["properties"]
    assert upload["files"]["minItems"] == 1 and upload["files"]["maxItems"] == api_settings.max_files_per_request
    assert upload["mm_per_pixel"]["anyOf"][0] == {"type": "number", "minimum": 1e-9, "maximum": 1e6}
    assert upload["model"]["anyOf"][0]["enum"] == ["person", "text"]
    size = schemas["UploadFileSpec"]["properties"]["size_bytes"]["anyOf"][0]
    assert (size["minimum"], size["maximum"]) == (1, api_settings.max_upload_bytes)
    params = {p["name"]: p["schema"] for p in doc["paths"]["/v1/batches/{batch_id}"]["get"]["parameters"]}
    assert params["batch_id"]["pattern"] == "^[0-9a-f]{32}$" and "pattern" in params["cursor"]["anyOf"][0]
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 1000)
    headers = {p["name"]: p["schema"] for p in doc["paths"]["/v1/images"]["post"]["parameters"]}
    assert headers["Idempotency-Key"]["pattern"] == r"^[\x21-\x7e]{1,255}$"


def test_openapi_states_every_status(api: TestClient) -> None:
    """Each /v1 operation lists what the gate and the guard can answer before it runs, and 500; every error is a
    Problem (FastAPI's own validation shape is never sent)."""
    doc = _schema(api)
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            codes = set(op["responses"])
            assert "500" in codes, (method, path)
            if path.startswith("/v1/"):
                assert {"401", "408", "413", "503"} <= codes, (method, path, codes)
                assert op["responses"]["503"]["headers"]["Retry-After"]
            for code, response in op["responses"].items():
                if int(code) >= 400:
                    assert response["content"] == {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }, (method, path, code)
    assert "400" in doc["paths"]["/v1/uploads"]["post"]["responses"]


def test_non_utf8_json_is_a_documented_400_problem(api: TestClient, api_settings: Settings) -> None:
    r = api.post(
        "/v1/uploads", content=b'{"files": [{"file_name": "\xff\xfe"}]}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["type"].endswith("malformed_body"), r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert_nothing_stored(api_settings)
