"""Lambda mode's API key: read from a Secrets Manager secret on the moto server, never from the environment."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runtime.api.apikey import ApiKeyUnavailable, SecretApiKey
from runtime.api.lambda_handler import make_handler
from runtime.api.main import create_app
from runtime.api.problems import PROBLEM_MEDIA_TYPE
from runtime.common.aws import client
from runtime.common.settings import Settings
from tests.api.test_lambda import _context, _event

OLD, NEW = "first-key-0123456789", "second-key-9876543210"


class CountingSecrets:
    """A real boto3 Secrets Manager client that counts ``GetSecretValue`` calls."""

    def __init__(self, settings: Settings) -> None:
        self._client = client("secretsmanager", settings)
        self.reads = 0

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        self.reads += 1
        return self._client.get_secret_value(**kwargs)  # type: ignore[no-any-return]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def sm(settings: Settings) -> Any:
    return client("secretsmanager", settings)


@pytest.fixture()
def secret_arn(sm: Any) -> str:
    return str(sm.create_secret(Name=f"segscale-test-{uuid.uuid4().hex[:8]}", SecretString=OLD)["ARN"])


@pytest.fixture()
def secret_settings(api_settings: Settings, secret_arn: str) -> Settings:
    """What the Lambda function gets: the ARN, no key."""
    return api_settings.model_copy(update={"api_key": None, "api_key_secret_arn": secret_arn})


def missing_arn(secret_arn: str) -> str:
    return secret_arn.rsplit(":", 1)[0] + ":segscale-nothing-here-AbCdEf"


@pytest.fixture()
def api(secret_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(secret_settings)) as c:
        yield c


def models(api: TestClient, key: str | None) -> Any:
    return api.get("/v1/models", headers={"X-Api-Key": key} if key is not None else {})


def test_the_secrets_key_passes_and_others_are_refused(api: TestClient) -> None:
    assert models(api, OLD).status_code == 200
    wrong = models(api, "not-" + OLD)
    assert wrong.status_code == 401 and wrong.json()["type"].endswith("wrong_api_key")
    assert models(api, None).status_code == 401
    assert models(api, "").status_code == 401


def test_a_rotated_key_works_without_a_new_process(api: TestClient, sm: Any, secret_arn: str) -> None:
    assert models(api, OLD).status_code == 200  # cached from here on
    sm.put_secret_value(SecretId=secret_arn, SecretString=NEW)
    assert models(api, NEW).status_code == 200  # the mismatch re-read the secret
    assert models(api, OLD).status_code == 401  # and the old key is gone


def test_the_secret_is_read_once_per_process(settings: Settings, secret_arn: str) -> None:
    counting = CountingSecrets(settings)
    source = SecretApiKey(settings, secret_arn, secretsmanager=counting)
    assert counting.reads == 0  # nothing is read before a key is checked
    assert all(source.matches(OLD) for _ in range(5))
    assert counting.reads == 1


def test_wrong_keys_re_read_at_most_once_per_interval(settings: Settings, sm: Any, secret_arn: str) -> None:
    counting, clock = CountingSecrets(settings), Clock()
    source = SecretApiKey(settings, secret_arn, secretsmanager=counting, refresh_interval_s=30, clock=clock)
    assert not any(source.matches(f"guess-{i}") for i in range(20))
    assert counting.reads == 2  # the first read, then one refresh for the whole burst
    sm.put_secret_value(SecretId=secret_arn, SecretString=NEW)
    clock.now += 10
    assert not source.matches(NEW)  # within the interval: still the cached key, no call
    assert counting.reads == 2 and source.matches(OLD)
    clock.now += 21
    assert source.matches(NEW) and counting.reads == 3
    assert not source.matches(OLD)


def test_an_unreadable_secret_is_503_for_every_key(api_settings: Settings, secret_arn: str) -> None:
    settings = api_settings.model_copy(update={"api_key": None, "api_key_secret_arn": missing_arn(secret_arn)})
    with TestClient(create_app(settings)) as api:
        for key in (OLD, "anything", None):
            r = models(api, key)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
            assert r.json()["type"].endswith("api_key_unavailable") and int(r.headers["Retry-After"]) >= 1
            assert secret_arn.split(":")[4] not in r.text  # the account (and the ARN) stay in the log


def test_a_secret_that_becomes_readable_is_used_after_the_retry_wait(
    settings: Settings, sm: Any, secret_arn: str
) -> None:
    sm.delete_secret(SecretId=secret_arn, RecoveryWindowInDays=7)  # deleted secrets cannot be read
    counting, clock = CountingSecrets(settings), Clock()
    source = SecretApiKey(settings, secret_arn, secretsmanager=counting, retry_after_failure_s=5, clock=clock)
    with pytest.raises(ApiKeyUnavailable):
        source.matches(OLD)
    sm.restore_secret(SecretId=secret_arn)
    clock.now += 2
    with pytest.raises(ApiKeyUnavailable) as waiting:
        source.matches(OLD)  # no call while waiting: a broken secret is not hammered by every request
    assert counting.reads == 1 and waiting.value.headers == {"Retry-After": "3"}
    clock.now += 3
    assert source.matches(OLD) and counting.reads == 2


def test_a_failed_refresh_keeps_the_cached_key(settings: Settings, sm: Any, secret_arn: str) -> None:
    source = SecretApiKey(settings, secret_arn, secretsmanager=CountingSecrets(settings), refresh_interval_s=0)
    assert source.matches(OLD)
    sm.delete_secret(SecretId=secret_arn, RecoveryWindowInDays=7)
    assert not source.matches("wrong")  # the refresh failed: a wrong key stays wrong, not a 503 or an error
    assert source.matches(OLD)


@pytest.mark.parametrize("value", [{"SecretBinary": b"\x00key"}, {}], ids=["binary", "no-value-yet"])
def test_a_secret_without_text_is_unavailable(settings: Settings, sm: Any, value: dict[str, Any]) -> None:
    arn = sm.create_secret(Name=f"segscale-test-{uuid.uuid4().hex[:8]}", **value)["ARN"]
    with pytest.raises(ApiKeyUnavailable):
        SecretApiKey(settings, arn).matches("")


def test_auth_disabled_never_reads_the_secret(api_settings: Settings, secret_arn: str) -> None:
    settings = api_settings.model_copy(
        update={"api_key": None, "api_key_secret_arn": missing_arn(secret_arn), "auth_enabled": False}
    )
    with TestClient(create_app(settings)) as api:
        assert models(api, None).status_code == 200


def test_a_static_key_wins_over_the_secret(api_settings: Settings, secret_arn: str) -> None:
    settings = api_settings.model_copy(update={"api_key_secret_arn": missing_arn(secret_arn)})
    with TestClient(create_app(settings)) as api:
        assert models(api, "test-key").status_code == 200
        assert models(api, OLD).status_code == 401


def test_through_mangum(secret_settings: Settings, secret_arn: str) -> None:
    handler = make_handler(secret_settings)
    ok = handler(_event("function-url", "GET", "/v1/models", {"x-api-key": OLD}, None), _context())
    assert ok["statusCode"] == 200, ok
    broken = make_handler(secret_settings.model_copy(update={"api_key_secret_arn": missing_arn(secret_arn)}))
    out = broken(_event("function-url", "GET", "/v1/models", {"x-api-key": OLD}, None), _context())
    assert out["statusCode"] == 503 and not out["isBase64Encoded"]
    assert json.loads(out["body"])["type"].endswith("api_key_unavailable")
