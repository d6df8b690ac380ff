"""Client keys, for the admin (the bootstrap key) only: ``/v1/admin/keys`` (``segscale admin keys ...``).

Through the API rather than straight to DynamoDB, so the same command works against the local stack and any
deployment with nothing but the endpoint and the admin key, and the operator needs no AWS credentials. A new key
is in the answer that makes it, once; the store keeps only its hash (runtime/common/clients.py).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from runtime.api.callers import Caller
from runtime.api.deps import CallerDep, ServicesDep
from runtime.api.problems import ApiProblem, problem_responses
from runtime.common.clients import CLIENT_PATTERN, KEY_ID_PATTERN, ClientKey, ClientKeyError, is_key_id

router = APIRouter(tags=["admin"])
log = logging.getLogger("segscale.api.admin")
MAX_GRACE_S = 30 * 24 * 3600
DEFAULT_GRACE_S = 3600


def require_admin(caller: CallerDep) -> Caller:
    if not caller.is_admin:
        raise ApiProblem(403, "admin_only", "only the deployment's admin key may manage client keys")
    return caller


AdminDep = Annotated[Caller, Depends(require_admin)]
KeyIdPath = Annotated[
    str, Path(description="a key id (12 lowercase hex)", json_schema_extra={"pattern": KEY_ID_PATTERN})
]


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client: str = Field(pattern=CLIENT_PATTERN, description="the client's name (not `admin`); many keys may share it")


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_s: int = Field(
        default=DEFAULT_GRACE_S,
        ge=0,
        le=MAX_GRACE_S,
        description="how long the old key keeps working, so the client can switch (0: it stops at once)",
    )


class KeyView(BaseModel):
    key_id: str = Field(description="the key's public id: the part of the key after `sgk_`, and what logs name")
    client: str
    state: str = Field(description="`active`; `expiring` (rotated: valid until `revoked_at`); `revoked`")
    created_at: int = Field(description="epoch ms")
    revoked_at: int | None = Field(description="epoch ms from which the key is refused (null: never)")
    replaced_by: str | None = Field(description="the key id a rotation issued in its place")

    @classmethod
    def of(cls, record: ClientKey, now: int) -> KeyView:
        return cls(
            key_id=record.key_id,
            client=record.client,
            state=record.state(now),
            created_at=record.created_at,
            revoked_at=record.revoked_at,
            replaced_by=record.replaced_by,
        )


class NewKeyView(KeyView):
    key: str = Field(description="the key itself: shown this once, never stored (only its SHA-256 is)")
    replaces: KeyView | None = Field(default=None, description="rotate: the old key, now expiring")


class KeyList(BaseModel):
    keys: list[KeyView]


def _audit(event: str, record: ClientKey) -> None:
    """Every change to a key is logged with its id and client (never the key)."""
    log.info(event, extra={"event": event, "client": record.client, "key_id": record.key_id})


def _not_found(key_id: str) -> ApiProblem:
    return ApiProblem(404, "key_not_found", f"no key {key_id[:64]!r}")


@router.post(
    "/v1/admin/keys",
    status_code=201,
    response_model=NewKeyView,
    summary="Create a client key (admin)",
    description="A new key for the named client; the answer holds the key, shown only this once.",
    responses=problem_responses(401, 403, 422, 503),
)
def create_key(body: CreateKey, services: ServicesDep, _admin: AdminDep) -> NewKeyView:
    try:
        issued = services.client_keys.issue(body.client)
    except ClientKeyError as exc:
        raise ApiProblem(422, "invalid_client", str(exc)) from None
    _audit("key_created", issued.record)
    now = services.client_keys.clock()
    return NewKeyView(**KeyView.of(issued.record, now).model_dump(), key=issued.key)


@router.get(
    "/v1/admin/keys",
    response_model=KeyList,
    summary="List client keys (admin)",
    description="Every key (of `client`, if given), oldest first, with its state; never the keys themselves.",
    responses=problem_responses(401, 403, 422, 503),
)
def list_keys(
    services: ServicesDep,
    _admin: AdminDep,
    client: Annotated[str | None, Query(pattern=CLIENT_PATTERN)] = None,
) -> KeyList:
    now = services.client_keys.clock()
    return KeyList(keys=[KeyView.of(k, now) for k in services.client_keys.keys(client)])


@router.post(
    "/v1/admin/keys/{key_id}/revoke",
    response_model=KeyView,
    summary="Revoke a client key (admin)",
    description="The key is refused (401 `revoked_api_key`) from the next request on. Revoking again is harmless.",
    responses=problem_responses(401, 403, 404, 503),
)
def revoke_key(key_id: KeyIdPath, services: ServicesDep, _admin: AdminDep) -> KeyView:
    if not is_key_id(key_id):
        raise _not_found(key_id)
    try:
        record = services.client_keys.revoke(key_id)
    except ClientKeyError:
        raise _not_found(key_id) from None
    _audit("key_revoked", record)
    return KeyView.of(record, services.client_keys.clock())


@router.post(
    "/v1/admin/keys/{key_id}/rotate",
    status_code=201,
    response_model=NewKeyView,
    summary="Rotate a client key (admin)",
    description="A new key for the same client (shown this once); the old one keeps working for `grace_s`. "
    "A revoked key cannot be rotated (409): create a new key for its client.",
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
def rotate_key(key_id: KeyIdPath, services: ServicesDep, _admin: AdminDep, body: RotateKey | None = None) -> NewKeyView:
    store = services.client_keys
    old = store.get(key_id) if is_key_id(key_id) else None
    if old is None:
        raise _not_found(key_id)
    try:
        new, replaced = store.rotate(key_id, grace_ms=(body or RotateKey()).grace_s * 1000)
    except ClientKeyError as exc:
        raise ApiProblem(409, "key_revoked", str(exc)) from None
    _audit("key_rotated", replaced)
    _audit("key_created", new.record)
    now = store.clock()
    return NewKeyView(**KeyView.of(new.record, now).model_dump(), key=new.key, replaces=KeyView.of(replaced, now))
