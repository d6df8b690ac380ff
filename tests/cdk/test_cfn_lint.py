"""cfn-lint on every synthesized template: no errors or warnings, except W3005 (DependsOn that CDK writes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cdk.conftest import VARIANTS, Synth, SynthFn

pytestmark = pytest.mark.cdk

CFN_LINT = Path(sys.executable).parent / "cfn-lint"


def lint(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CFN_LINT), "--ignore-checks", "W3005", "--format", "parseable", "--", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_template_is_clean(synth: SynthFn, tmp_path: Path) -> None:
    paths = []
    for variant in sorted(VARIANTS):
        for stack, template in synth(variant).templates.items():
            path = tmp_path / f"{variant}-{stack}.template.json"
            path.write_text(json.dumps(template))
            paths.append(path)
    result = lint(paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_would_catch_a_broken_template(dev: Synth, tmp_path: Path) -> None:
    """The check can fail: a queue with an out-of-range visibility timeout is reported."""
    template = json.loads(json.dumps(dev.data))
    queue = next(r for r in template["Resources"].values() if r["Type"] == "AWS::SQS::Queue")
    queue["Properties"]["VisibilityTimeout"] = 999_999
    path = tmp_path / "broken.template.json"
    path.write_text(json.dumps(template))
    result = lint([path])
    assert result.returncode != 0 and "999999 is greater than the maximum of 43200" in result.stdout
