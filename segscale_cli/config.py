"""Where the CLI sends requests: flags beat environment variables, which beat the local stack's state file.

The state file (``.segscale/dev.json``, written by ``make dev``) is looked up from the current folder upwards,
so inside a checkout the CLI talks to the local stack with no flags at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENDPOINT_ENV = "SEGSCALE_ENDPOINT"
API_KEY_ENV = "SEGSCALE_API_KEY"
STATE_FILE_ENV = "SEGSCALE_STATE_FILE"
STATE_FILE = Path(".segscale") / "dev.json"


class ConfigError(ValueError):
    """No usable endpoint; the message says how to give one."""


@dataclass(frozen=True)
class Target:
    endpoint: str
    api_key: str | None
    source: str  # "flags", "environment" or the state file's path: shown when a request fails


def find_state_file(start: Path, environ: Mapping[str, str]) -> Path | None:
    if environ.get(STATE_FILE_ENV):
        return Path(environ[STATE_FILE_ENV])
    for folder in (start, *start.parents):
        candidate = folder / STATE_FILE
        if candidate.is_file():
            return candidate
    return None


def resolve(
    endpoint: str | None,
    api_key: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Target:
    env = os.environ if environ is None else environ
    endpoint = endpoint or env.get(ENDPOINT_ENV) or None
    api_key = api_key or env.get(API_KEY_ENV) or None
    source = "flags/environment"
    if endpoint is None or api_key is None:
        state_path = find_state_file(cwd or Path.cwd(), env)
        if state_path is not None:
            try:
                state = json.loads(state_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"cannot read {state_path}: {exc}") from exc
            if endpoint is None:
                endpoint, source = state.get("endpoint"), str(state_path)
                api_key = api_key or state.get("api_key")
    if not endpoint:
        raise ConfigError(
            f"no API endpoint: pass --endpoint URL, set {ENDPOINT_ENV}, or start the local stack with `make dev`"
        )
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"endpoint {endpoint!r} must start with http:// or https://")
    return Target(endpoint.rstrip("/"), api_key, source)
