#!/usr/bin/env python3
"""The segscale CDK app: ``npx cdk synth`` (or ``python app.py``) writes both stacks' templates to cdk.out/.

Stacks carry the configured region but no account unless ``CDK_DEFAULT_ACCOUNT`` is set (``cdk deploy`` sets it),
so synth needs no AWS credentials.
"""

from __future__ import annotations

import os
import sys

from aws_cdk import App

from stacks.build import build
from stacks.config import ConfigError


def main() -> int:
    app = App()
    try:
        build(app, account=os.environ.get("CDK_DEFAULT_ACCOUNT"))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
