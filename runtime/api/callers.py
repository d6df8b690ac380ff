"""Who is calling: the client a request's key belongs to, and what it may see.

Every job and batch records the client that made it (``owner``). A client sees and adds to only its own; another
client's ids are answered exactly like ids that do not exist (404), so a key cannot even learn which ids are in use.
The bootstrap key (``api_key``, from Secrets Manager in AWS) is the admin client: it sees everything, and records
made before owners existed (no ``owner``) are the admin's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.problems import ApiProblem
from runtime.common.clients import ADMIN_CLIENT, ClientKeyStore, parse_key

log = logging.getLogger("segscale.api")
KEY_STORE_RETRY_S = 5


@dataclass(frozen=True)
class Caller:
    client: str
    key_id: str | None = None  # the stored key's public id; None for the bootstrap key

    @property
    def is_admin(self) -> bool:
        return self.client == ADMIN_CLIENT

    def owns(self, owner: str | None) -> bool:
        """May this caller see a record made by ``owner`` (None: made before owners existed, the admin's)?"""
        return self.is_admin or owner == self.client

    def log_fields(self) -> dict[str, str]:
        """What the request log names: the client and the key id, never the key."""
        return {"client": self.client, **({"key_id": self.key_id} if self.key_id else {})}


ADMIN = Caller(ADMIN_CLIENT)


def client_caller(keys: ClientKeyStore, presented: str) -> Caller | None:
    """The caller of a stored client key; 401 when that key is revoked; None when ``presented`` is not one."""
    if parse_key(presented) is None:
        return None
    try:
        record = keys.lookup(presented)
    except (BotoCoreError, ClientError) as exc:
        log.error(
            "cannot read client keys", extra={"event": "key_store_error", "error": f"{type(exc).__name__}: {exc}"}
        )
        raise ApiProblem(
            503,
            "api_key_unavailable",
            "the server cannot check API keys right now; retry later",
            headers={"Retry-After": str(KEY_STORE_RETRY_S)},
        ) from exc
    if record is None:
        return None
    if not record.valid_at(keys.clock()):
        log.info(
            "revoked key refused", extra={"event": "revoked_key", "client": record.client, "key_id": record.key_id}
        )
        raise ApiProblem(401, "revoked_api_key", f"API key {record.key_id} is revoked; ask the operator for a new one")
    return Caller(record.client, record.key_id)
