#!/usr/bin/env python3
"""The segscale CDK app: ``npx cdk synth`` (or ``python app.py``) writes both stacks' templates to cdk.out/.

Stacks carry the configured region but no account unless ``CDK_DEFAULT_ACCOUNT`` is set (``cdk deploy`` sets it),
so synth needs no AWS credentials.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from aws_cdk import App

from stacks.build import build
from stacks.config import ConfigError

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def cli_less_context() -> dict[str, Any] | None:
    """Run as plain ``python app.py``, nobody passes cdk.json's context (the CLI does): read it here, so both
    ways synthesize the same templates with the same feature flags.
    """
    if "CDK_CONTEXT_JSON" in os.environ or "CDK_CONTEXT_FILE" in os.environ:
        return None
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


def main() -> int:
    app = App(context=cli_less_context())
    try:
        build(app, account=os.environ.get("CDK_DEFAULT_ACCOUNT"))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
