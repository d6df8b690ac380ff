"""`npx cdk synth` works offline, quietly, with no AWS credentials: the pinned CLI reads what the app writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cdk.conftest import ROOT

pytestmark = [pytest.mark.cdk, pytest.mark.slow]


def offline_env(home: Path) -> dict[str, str]:
    keep = {"PATH", "LANG", "LC_ALL", "TMPDIR", "NODE_OPTIONS"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "HOME": str(home),  # no ~/.aws: no credentials, no profile
            "CDK_DISABLE_CLI_TELEMETRY": "1",
            "CDK_DISABLE_VERSION_CHECK": "1",
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "AWS_EC2_METADATA_DISABLED": "true",
            "npm_config_offline": "true",
        }
    )
    return env


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


def test_cli_refuses_a_bad_config_with_the_message(tmp_path: Path) -> None:
    """`python app.py` with a bad context value exits 2 and says which key is wrong (no Node traceback)."""
    env = offline_env(tmp_path)
    env["CDK_CONTEXT_JSON"] = json.dumps({"segscale.nat_gateways": -1})
    env["CDK_OUTDIR"] = str(tmp_path / "out")
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "segscale.nat_gateways: Input should be greater than or equal to 0" in result.stderr
