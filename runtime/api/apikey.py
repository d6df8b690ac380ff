"""Where the API's expected key comes from: a plain setting, or a Secrets Manager secret read at run time.

On Fargate ECS injects the secret's value as ``SEGSCALE_API_KEY``. In Lambda mode nothing injects secrets, and a
deploy-time reference would copy the value into the function's configuration for anyone allowed to read it; so
the function gets only the secret's ARN (``SEGSCALE_API_KEY_SECRET_ARN``) and reads the value here, once per
process. A key that does not match triggers one re-read (so a rotated secret works without a redeploy), at most
once per ``refresh_interval_s``, so wrong keys cannot turn into a flood of Secrets Manager calls. When the secret
cannot be read, requests are refused with 503: never a 500, never open access.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.problems import ApiProblem
from runtime.common.aws import client
from runtime.common.settings import Settings

log = logging.getLogger("segscale.api")

# A rotated key is picked up at most this long after the first request that presents it.
REFRESH_INTERVAL_S = 30.0
# After a failed read, requests get 503 without calling Secrets Manager again for this long.
RETRY_AFTER_FAILURE_S = 5.0
# The reason goes to the log, not to the client: it may name the account, the role or the secret.
UNAVAILABLE = "the server cannot read its API key right now; retry later or ask the operator"


class ApiKeyUnavailable(ApiProblem):
    """The secret could not be read: the server cannot tell a right key from a wrong one."""

    def __init__(self, detail: str, retry_after_s: float) -> None:
        super().__init__(
            503,
            "api_key_unavailable",
            detail,
            headers={"Retry-After": str(max(1, round(retry_after_s)))},
        )


def _matches(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), expected.encode())


class SecretApiKey:
    """The key held in one Secrets Manager secret, cached per process and re-read (bounded) on a mismatch."""

    def __init__(
        self,
        settings: Settings,
        secret_arn: str,
        *,
        secretsmanager: Any = None,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        retry_after_failure_s: float = RETRY_AFTER_FAILURE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._arn = secret_arn
        self._client = secretsmanager  # built on first use: a process that never checks a key never needs it
        self._refresh_interval_s = refresh_interval_s
        self._retry_after_failure_s = retry_after_failure_s
        self._clock = clock
        self._lock = threading.Lock()
        self._key: str | None = None
        self._refreshed_at: float | None = None  # the last re-read after a mismatch (the first read is not one)
        self._failed_at: float | None = None
        self._error = ""

    def matches(self, presented: str) -> bool:
        """True when ``presented`` is the secret's current key; raises ``ApiKeyUnavailable`` if it cannot be read."""
        key = self.load()
        if _matches(presented, key):
            return True
        with self._lock:
            now = self._clock()
            if self._refreshed_at is not None and now - self._refreshed_at < self._refresh_interval_s:
                return _matches(presented, self._key or key)
            self._refreshed_at = now
            try:
                key = self._read()
            except ApiKeyUnavailable:
                # Keep the key we have: a wrong key stays wrong, and the right one keeps working.
                log.warning("re-reading the API key secret failed; keeping the cached key: %s", self._error)
                return False
            self._key = key
        return _matches(presented, key)

    def load(self) -> str:
        """The cached key, read on first use; raises ``ApiKeyUnavailable`` if it cannot be read."""
        return self._key if self._key is not None else self._load()

    def _load(self) -> str:
        with self._lock:
            if self._key is not None:  # another thread read it while this one waited
                return self._key
            if self._failed_at is not None:
                wait = self._retry_after_failure_s - (self._clock() - self._failed_at)
                if wait > 0:
                    raise ApiKeyUnavailable(UNAVAILABLE, wait)
            self._key = self._read()
            return self._key

    def _read(self) -> str:
        try:
            if self._client is None:
                self._client = client("secretsmanager", self._settings)
            value = self._client.get_secret_value(SecretId=self._arn).get("SecretString")
            if not isinstance(value, str) or not value:
                raise ValueError("the secret has no text value")
        except (BotoCoreError, ClientError, ValueError) as exc:
            self._failed_at = self._clock()
            self._error = f"{type(exc).__name__}: {exc}"
            log.error("cannot read the API key secret %s: %s", self._arn, self._error)
            raise ApiKeyUnavailable(UNAVAILABLE, self._retry_after_failure_s) from exc
        self._failed_at = None
        return value


class ApiKeyCheck:
    """The configured key source: a static ``api_key``, else the ``api_key_secret_arn`` secret, else none."""

    def __init__(self, settings: Settings, *, secretsmanager: Any = None) -> None:
        self._static = settings.api_key.get_secret_value() if settings.api_key else ""
        self._secret: SecretApiKey | None = None
        if not self._static and settings.api_key_secret_arn:
            self._secret = SecretApiKey(settings, settings.api_key_secret_arn, secretsmanager=secretsmanager)

    @property
    def configured(self) -> bool:
        return bool(self._static) or self._secret is not None

    def matches(self, presented: str) -> bool:
        if self._static:
            return _matches(presented, self._static)
        if self._secret is None:
            return False
        return self._secret.matches(presented)

    def ensure_available(self) -> None:
        """Raise ``ApiKeyUnavailable`` when the secret cannot be read (answer 503 before 401, as when unset)."""
        if self._secret is not None:
            self._secret.load()
