"""cdk-nag AwsSolutions: zero unacknowledged findings, and every acknowledgement is specific, needed, explained."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from stacks import nag
from stacks.build import build
from tests.cdk.conftest import Synth, SynthFn, context_for

pytestmark = pytest.mark.cdk

ACK_KEY = Validations.ACKNOWLEDGED_RULES_METADATA_KEY


def acknowledgements(root: IConstruct) -> dict[tuple[str, str], str]:
    """(construct path, rule id) -> reason, for every cdk-nag acknowledgement in the tree."""
    out = {}
    for c in root.node.find_all():
        for m in c.node.metadata:
            if m.type == ACK_KEY:
                for qualified, reason in m.data.items():
                    rule = qualified.split("::", 1)[-1]
                    if rule.startswith(nag.PACK):
                        out[(c.node.path, rule)] = reason
    return out


def findings(root: IConstruct) -> set[tuple[str, str]]:
    report = AwsSolutionsChecks().validate_scope(root)
    return {(r.construct_path, v.rule_name) for v in report.violations for r in v.violating_resources}


@pytest.mark.parametrize("variant", ["dev", "prod", "lambda"])
def test_no_unacknowledged_findings(synth: SynthFn, variant: str) -> None:
    """Synthesis would have raised on a finding; a direct run of the pack over the tree must find none either."""
    s = synth(variant)
    for stack in (s.app.data, s.app.pipeline):
        assert findings(stack) == set()
    assert not [r for r in s.validation["pluginReports"] if r["violations"]]


@pytest.mark.parametrize("variant", ["dev", "prod", "lambda"])
def test_acknowledgements_are_specific_and_explained(synth: SynthFn, variant: str) -> None:
    s = synth(variant)
    stacks = {s.app.data.node.path, s.app.pipeline.node.path}
    acks = acknowledgements(s.app.pipeline) | acknowledgements(s.app.data)
    assert acks, "expected the known, explained findings (ECS2, SMG4, IAM5 prefixes)"
    for (path, rule), reason in acks.items():
        assert path not in stacks, f"{rule} acknowledged on a whole stack"
        assert len(reason) >= 60, f"{rule} at {path}: reason too thin: {reason!r}"
        if rule.startswith(f"{nag.PACK}-IAM5"):
            assert "[" in rule, f"blanket IAM5 acknowledgement at {path}"


def test_every_acknowledgement_matches_a_real_finding(tmp_path: Path, dev: Synth) -> None:
    """Build the same app without cdk-nag, run the pack over it: its findings are exactly what dev acknowledges."""
    app = App(outdir=str(tmp_path), context=context_for({}), analytics_reporting=False)
    bare = build(app, checks=False)
    app.synth()
    found = findings(bare.data) | findings(bare.pipeline)
    acked = set(acknowledgements(dev.app.data) | acknowledgements(dev.app.pipeline))
    assert found == acked


def test_open_ingress_is_acknowledged_only_when_configured(dev: Synth, prod: Synth) -> None:
    def rules(s: Synth) -> set[str]:
        return {rule for _, rule in acknowledgements(s.app.pipeline)}

    assert f"{nag.PACK}-EC23" in rules(dev)  # allowed_cidrs = 0.0.0.0/0
    assert f"{nag.PACK}-EC23" not in rules(prod)  # narrowed: nothing to acknowledge


def test_nag_fails_synth_on_an_insecure_resource(tmp_path: Path) -> None:
    """The plugin is really active: an unencrypted, unlogged bucket with no TLS policy stops synthesis."""
    app = App(outdir=str(tmp_path), analytics_reporting=False)
    stack = Stack(app, "Insecure")
    s3.CfnBucket(stack, "Bare")
    nag.register(app)
    with pytest.raises(RuntimeError, match="AwsSolutions-S1"):
        app.synth()
