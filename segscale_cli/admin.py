"""``segscale admin keys create | list | revoke | rotate``: client keys, with the deployment's admin key.

The commands call the API's admin routes (``/v1/admin/keys``), so they work the same against the local stack and
any deployment: endpoint and admin key as for every command (flags, environment, or ``make dev``'s state file).
A new key goes to stdout, alone on its line, and is never shown again; everything else goes to stderr, except
``list``'s table.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import IO, Any

from segscale_cli.client import ApiClient

DEFAULT_GRACE_S = 3600


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _issued(answer: dict[str, Any], out: IO[str]) -> None:
    print(answer["key"], file=out, flush=True)
    print(
        f"key {answer['key_id']} for client {answer['client']!r}: store it now, it is not shown again "
        f"(send it as the X-Api-Key header)",
        file=sys.stderr,
    )


def cmd_create(api: ApiClient, args: argparse.Namespace, out: IO[str] | None = None) -> int:
    _issued(dict(api.request("POST", "/v1/admin/keys", json={"client": args.client})), out or sys.stdout)
    return 0


def cmd_list(api: ApiClient, args: argparse.Namespace, out: IO[str] | None = None) -> int:
    params = {"client": args.client} if args.client else {}
    found = list(api.request("GET", "/v1/admin/keys", params=params)["keys"])
    if not args.all:
        found = [k for k in found if k["state"] != "revoked"]
    out = out or sys.stdout
    if args.json:
        print(json.dumps(found, indent=2), file=out)
        return 0
    rows = [("KEY_ID", "CLIENT", "STATE", "CREATED", "REVOKED_AT")]
    rows += [(k["key_id"], k["client"], k["state"], _when(k["created_at"]), _when(k["revoked_at"])) for k in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
    return 0


def cmd_revoke(api: ApiClient, args: argparse.Namespace, out: IO[str] | None = None) -> int:
    for key_id in args.key_ids:
        # Revoking is idempotent, so it is retried like an upload (the key only unlocks the client's retries).
        view = api.request("POST", f"/v1/admin/keys/{key_id}/revoke", idempotency_key=uuid.uuid4().hex)
        print(
            f"key {key_id} of client {view['client']!r}: {view['state']} from {_when(view['revoked_at'])}",
            file=sys.stderr,
        )
    return 0


def cmd_rotate(api: ApiClient, args: argparse.Namespace, out: IO[str] | None = None) -> int:
    answer = dict(api.request("POST", f"/v1/admin/keys/{args.key_id}/rotate", json={"grace_s": args.grace}))
    _issued(answer, out or sys.stdout)
    old = answer["replaces"]
    print(f"the old key {old['key_id']} works until {_when(old['revoked_at'])}", file=sys.stderr)
    return 0


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    admin = sub.add_parser("admin", parents=[common], help="deployment administration (needs the admin key)")
    groups = admin.add_subparsers(dest="admin_command", required=True)
    keys = groups.add_parser("keys", parents=[common], help="client API keys: create, list, revoke, rotate")
    verbs = keys.add_subparsers(dest="keys_command", required=True)

    create = verbs.add_parser("create", parents=[common], help="a new key for a client; prints the key once")
    create.add_argument("client", help="the client's name: lowercase letters, digits, '.', '_', '-'")
    create.set_defaults(func=cmd_create)

    listing = verbs.add_parser("list", parents=[common], help="keys with their client and state (never the keys)")
    listing.add_argument("--client", default=None, help="only this client's keys")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(func=cmd_list)

    revoke = verbs.add_parser("revoke", parents=[common], help="refuse these keys from the next request on")
    revoke.add_argument("key_ids", nargs="+", metavar="KEY_ID")
    revoke.set_defaults(func=cmd_revoke)

    rotate = verbs.add_parser("rotate", parents=[common], help="a new key for the same client; prints it once")
    rotate.add_argument("key_id", metavar="KEY_ID")
    rotate.add_argument(
        "--grace",
        type=int,
        default=DEFAULT_GRACE_S,
        metavar="SECONDS",
        help=f"how long the old key keeps working (default {DEFAULT_GRACE_S}; 0: it stops at once)",
    )
    rotate.set_defaults(func=cmd_rotate)
