"""checkov on every synthesized template (dev, prod, Lambda mode): every failed check is one stacks/checkov.py
accepts for that resource, with a reason, and every acceptance still matches a real finding.

checkov runs once for all templates (it takes tens of seconds to start), from its own venv (``make checkov``),
offline (``--skip-download``). A deliberately insecure template is scanned in the same run, to prove the scan
reports what it should.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stacks.checkov import ACCEPTED
from tests.cdk.conftest import ROOT, VARIANTS, SynthFn

pytestmark = pytest.mark.cdk

CHECKOV = ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"
CANARY = "canary.template.json"
# A world-readable, unlogged, unversioned bucket: checkov must report it.
CANARY_TEMPLATE = {"Resources": {"Open": {"Type": "AWS::S3::Bucket", "Properties": {"AccessControl": "PublicRead"}}}}


def failed_checks(report: Any) -> Iterator[dict[str, Any]]:
    for framework in report if isinstance(report, list) else [report]:
        yield from framework.get("results", {}).get("failed_checks", [])


@pytest.fixture(scope="module")
def findings(synth: SynthFn, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[str, str]]]:
    """File name -> [(check id, resource)] of every failed check, for every template plus the canary."""
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `make checkov` (make test does)")
    folder = tmp_path_factory.mktemp("checkov")
    for variant in sorted(VARIANTS):
        for stack, template in synth(variant).templates.items():
            (folder / f"{variant}-{stack}.template.json").write_text(json.dumps(template))
    (folder / CANARY).write_text(json.dumps(CANARY_TEMPLATE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BC_", "PRISMA_"))}
    result = subprocess.run(
        [str(CHECKOV), "-d", str(folder), "--framework", "cloudformation", "-o", "json", "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "HOME": str(folder)},  # no ~/.checkov or credentials from the developer's home
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: some check failed
    out: dict[str, list[tuple[str, str]]] = {}
    for check in failed_checks(json.loads(result.stdout)):
        out.setdefault(Path(check["file_path"]).name, []).append((check["check_id"], check["resource"]))
    return out


def accepted(check_id: str, resource: str) -> bool:
    entry = ACCEPTED.get(check_id)
    return entry is not None and any(fnmatch.fnmatchcase(resource, p) for p in entry.resources)


def test_every_failed_check_is_accepted_with_a_reason(findings: dict[str, list[tuple[str, str]]]) -> None:
    templates = {f"{v}-{s}.template.json" for v in VARIANTS for s in ("data", "pipeline")}
    unexplained = sorted(
        f"{name}: {check_id} on {resource}"
        for name, found in findings.items()
        if name in templates
        for check_id, resource in found
        if not accepted(check_id, resource)
    )
    assert not unexplained, "checkov findings without a reason in stacks/checkov.py:\n" + "\n".join(unexplained)


def test_every_acceptance_matches_a_real_finding(findings: dict[str, list[tuple[str, str]]]) -> None:
    seen = [(c, r) for name, found in findings.items() if name != CANARY for c, r in found]
    stale = sorted(
        f"{check_id}: {pattern}"
        for check_id, entry in ACCEPTED.items()
        for pattern in entry.resources
        if not any(c == check_id and fnmatch.fnmatchcase(r, pattern) for c, r in seen)
    )
    assert not stale, "accepted in stacks/checkov.py but no longer found:\n" + "\n".join(stale)
    for check_id, entry in ACCEPTED.items():
        assert len(entry.reason) >= 60, f"{check_id}: reason too thin: {entry.reason!r}"


def test_the_scan_reports_an_insecure_template(findings: dict[str, list[tuple[str, str]]]) -> None:
    canary = findings.get(CANARY, [])
    assert ("CKV_AWS_20", "AWS::S3::Bucket.Open") in canary  # readable by anyone
    assert not [f for f in canary if accepted(*f)]  # nothing accepted there: the patterns name our resources only
