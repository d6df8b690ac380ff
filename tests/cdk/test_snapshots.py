"""Snapshots of every stack's template in every variant, asset hashes masked.

A snapshot diff is how a reviewer sees what a change does to the deployed infrastructure. To accept a change,
rewrite them: ``SEGSCALE_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/cdk -m cdk -k snapshot``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cdk.conftest import VARIANTS, Synth, SynthFn, mask

pytestmark = pytest.mark.cdk

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("SEGSCALE_UPDATE_SNAPSHOTS") == "1"


@pytest.mark.parametrize("stack", ["data", "pipeline"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_snapshot(synth: SynthFn, variant: str, stack: str) -> None:
    template = mask(synth(variant).templates[stack])
    path = SNAPSHOTS / f"{variant}-{stack}.json"
    text = json.dumps(template, indent=1, sort_keys=True) + "\n"
    if UPDATE or not path.exists():
        path.write_text(text)
        if not UPDATE:
            pytest.fail(f"{path.name} did not exist and was written; review and commit it")
    assert json.loads(path.read_text()) == template, (
        f"{variant} {stack} template changed; if intended, rerun with SEGSCALE_UPDATE_SNAPSHOTS=1 and commit"
    )


def test_masking_hides_asset_hashes_only(dev: Synth) -> None:
    raw = json.dumps(dev.pipeline)
    masked = json.dumps(mask(dev.pipeline))
    assert "<asset-hash>" in masked and "<asset-hash>" not in raw
    assert masked.count("segscale-dev-jobs-to-worker") == raw.count("segscale-dev-jobs-to-worker")
