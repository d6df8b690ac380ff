"""Synthesizes each deployment variant once per test session; every CDK test reads these results.

Synthesis is slow (one Node process, several seconds per stack), so tests share a session-scoped cache keyed
by variant, and each variant is synthesized only when a test first asks for it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, cx_api

from stacks.build import Segscale, build

ROOT = Path(__file__).resolve().parents[2]
CERT = "arn:aws:acm:eu-west-1:123456789012:certificate/0123abcd-4567-89ef-0123-456789abcdef"

# Context overrides per variant, on top of cdk.json's own context.
VARIANTS: dict[str, dict[str, Any]] = {
    "dev": {},
    "prod": {
        "env_name": "prod",
        "region": "eu-west-1",
        "certificate_arn": CERT,
        "domain_name": "segscale.example.com",
        "allowed_cidrs": ["203.0.113.0/24", "198.51.100.0/24"],
        "worker_capacity": "FARGATE",
        "waf_managed_rules": True,
        "bucket_versioned": True,
        "alarm_email": "ops@example.com",
        "models_s3_uri": "s3://segscale-models-example/extra",
        "ingest_sources": ["s3://segscale-photos-example/camera/", "s3://segscale-photos-example/manifests/"],
        "api_min_count": 3,
        "api_desired_count": 3,
        "api_max_count": 20,
        "email_batch_completed": True,
        "event_archive_days": 400,
    },
    "lambda": {"api_mode": "lambda", "nat_gateways": 0, "event_archive_days": 0, "export_on_completion": False},
}
ASSET_HASH = re.compile(r"[0-9a-f]{64}")


def cdk_json_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def context_for(overrides: dict[str, Any]) -> dict[str, Any]:
    context = cdk_json_context()
    context["segscale"] = {**context["segscale"], **overrides}
    # What the CDK CLI sets: each resource records its construct path, which the tests use to find it.
    context["aws:cdk:enable-path-metadata"] = True
    return context


def mask(template: dict[str, Any]) -> dict[str, Any]:
    """Asset hashes change with every edit under runtime/; the snapshot must not."""
    return json.loads(ASSET_HASH.sub("<asset-hash>", json.dumps(template)))


@dataclass
class Synth:
    """One synthesized variant: the built app plus its templates and validation report."""

    app: Segscale
    outdir: Path
    templates: dict[str, dict[str, Any]]  # "data" / "pipeline" -> template
    validation: dict[str, Any]
    warnings: list[str]  # synth-time warning annotations of both stacks

    @property
    def data(self) -> dict[str, Any]:
        return self.templates["data"]

    @property
    def pipeline(self) -> dict[str, Any]:
        return self.templates["pipeline"]


def synthesize(outdir: Path, overrides: dict[str, Any]) -> Synth:
    app = App(outdir=str(outdir), context=context_for(overrides), analytics_reporting=False)
    built = build(app)
    assembly = app.synth()
    templates = {
        "data": assembly.get_stack_by_name(built.data.stack_name).template,
        "pipeline": assembly.get_stack_by_name(built.pipeline.stack_name).template,
    }
    report = outdir / "validation-report.json"
    validation = json.loads(report.read_text()) if report.exists() else {"pluginReports": []}
    warnings = [
        str(m.entry.data)
        for name in (built.data.stack_name, built.pipeline.stack_name)
        for m in assembly.get_stack_by_name(name).messages
        if m.level == cx_api.SynthesisMessageLevel.WARNING
    ]
    return Synth(app=built, outdir=outdir, templates=templates, validation=validation, warnings=warnings)


SynthFn = Callable[[str], Synth]


_SYNTHESIZED: dict[str, Synth] = {}  # per process: the CDK and the contract tests share one synthesis per variant


def synthesized(variant: str, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    if variant not in _SYNTHESIZED:
        _SYNTHESIZED[variant] = synthesize(tmp_path_factory.mktemp(f"cdk-{variant}"), VARIANTS[variant])
    return _SYNTHESIZED[variant]


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthFn:
    """``synth("dev")``: the variant's synthesis, done at most once per session."""
    return lambda variant: synthesized(variant, tmp_path_factory)


@pytest.fixture(scope="session")
def dev(synth: SynthFn) -> Synth:
    return synth("dev")


@pytest.fixture(scope="session")
def prod(synth: SynthFn) -> Synth:
    return synth("prod")


@pytest.fixture(scope="session")
def lambda_mode(synth: SynthFn) -> Synth:
    return synth("lambda")


def offline_env(home: Path) -> dict[str, str]:
    """A child environment with no AWS credentials or profile, the venv first on PATH, and CDK kept quiet."""
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


# --- template helpers ------------------------------------------------------------------------------------


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def one(template: dict[str, Any], type_: str) -> tuple[str, dict[str, Any]]:
    found = resources(template, type_)
    assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
    return next(iter(found.items()))


def by_path(template: dict[str, Any], path_part: str, type_: str | None = None) -> tuple[str, dict[str, Any]]:
    """The one resource whose construct path contains ``path_part``."""
    found = {
        k: v
        for k, v in template["Resources"].items()
        if path_part in v.get("Metadata", {}).get("aws:cdk:path", "") and (type_ is None or v["Type"] == type_)
    }
    assert len(found) == 1, f"expected one resource at {path_part!r} ({type_}), found {sorted(found)}"
    return next(iter(found.items()))
