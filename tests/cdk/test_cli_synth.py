"""`npx cdk synth` works offline, quietly, with no AWS credentials: the pinned CLI reads what the app writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cdk.conftest import ROOT, offline_env

pytestmark = [pytest.mark.cdk, pytest.mark.slow]


@pytest.mark.skipif(shutil.which("npx") is None, reason="Node is part of the README set-up")
def test_npx_cdk_synth_offline_without_credentials(tmp_path: Path) -> None:
    assert (ROOT / "node_modules" / "aws-cdk").is_dir(), "run `make install` (npm ci) first"
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "--output", str(out)],
        cwd=ROOT,
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    manifest = json.loads((out / "manifest.json").read_text())
    stacks = {k for k, v in manifest["artifacts"].items() if v["type"] == "aws:cloudformation:stack"}
    assert stacks == {"segscale-dev-data", "segscale-dev-pipeline"}
    assert "schema version mismatch" not in result.stderr.lower()
    # Quiet means no template dump on stdout.
    assert "Resources:" not in result.stdout
