"""Config validation: every bad value stops synth with a message naming the key and what it accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ConfigError, DeployConfig, known_models, load_config
from tests.cdk.conftest import CERT, ROOT, cdk_json_context, offline_env

pytestmark = pytest.mark.cdk

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"api_mn_count": 1}, "segscale.api_mn_count: unknown key (did you mean 'api_min_count'?)"),
    ({"env_name": "staging"}, "segscale.env_name: Input should be 'dev' or 'prod'"),
    ({"api_min_count": 0}, "segscale.api_min_count: Input should be greater than or equal to 1"),
    ({"nat_gateways": -1}, "segscale.nat_gateways: Input should be greater than or equal to 0"),
    ({"api_min_count": 5, "api_desired_count": 5, "api_max_count": 2}, "api_min_count (5) > api_max_count (2)"),
    (
        {"api_min_count": 2, "api_desired_count": 1},
        "api_desired_count (1) must lie between api_min_count (2) and api_max_count (10)",
    ),
    ({"default_model": "unicorn"}, "segscale.default_model: unknown model 'unicorn'"),
    ({"allowed_cidrs": ["10.0.0.1/8"]}, "'10.0.0.1/8' is not a valid CIDR: 10.0.0.1/8 has host bits set"),
    ({"allowed_cidrs": ["not-a-cidr"]}, "'not-a-cidr' is not a valid CIDR"),
    ({"allowed_cidrs": ["2001:db8::/32"]}, "only IPv4 CIDRs are supported"),
    ({"allowed_cidrs": []}, "segscale.allowed_cidrs: needs at least one CIDR"),
    ({"vpc_cidr": "8.8.0.0/16"}, "'8.8.0.0/16' must be a private IPv4 range from /16 to /24"),
    ({"worker_cpu": 3000}, "worker_cpu (3000) is not a Fargate CPU size"),
    (
        {"worker_memory_mib": 1000},
        "worker_memory_mib (1000) is not valid with worker_cpu 1024; Fargate allows 2048 to 8192 MiB in steps of 1024",
    ),
    ({"worker_capacity": "SPOT"}, "segscale.worker_capacity: Input should be 'FARGATE' or 'FARGATE_SPOT'"),
    ({"certificate_arn": "arn:aws:iam::123:cert"}, "is not an ACM certificate ARN"),
    ({"domain_name": "x.example.com"}, "domain_name is set but certificate_arn is not"),
    ({"alarm_email": "nobody"}, "segscale.alarm_email: 'nobody' is not an e-mail address"),
    ({"log_retention_days": 10}, "10 is not a CloudWatch Logs retention period"),
    ({"region": "mars-1"}, "'mars-1' is not an AWS region name"),
    ({"nat_gateways": 3, "max_azs": 2}, "nat_gateways (3) > max_azs (2)"),
    (
        {"env_name": "prod"},
        "env_name is 'prod' but certificate_arn is not set: the API would be plain HTTP and the API key would cross "
        "the network in clear text. Set segscale.certificate_arn to an ACM certificate ARN in the stack's region "
        "(HTTPS, with HTTP redirected to it), or set segscale.allow_http=true to accept plain HTTP knowingly",
    ),
    ({"waf_rate_limit": 5}, "segscale.waf_rate_limit: Input should be greater than or equal to 10"),
    ({"waf_enabled": "maybe"}, "segscale.waf_enabled: Input should be a valid boolean"),
    ({"api_docs": "sometimes"}, "segscale.api_docs: Input should be a valid boolean"),
    (
        {"lambda_reserved_concurrency": 0},
        "segscale.lambda_reserved_concurrency: Input should be greater than or equal to 1",
    ),
    ({"alarm_stuck_jobs": 0}, "segscale.alarm_stuck_jobs: Input should be greater than or equal to 1"),
    ({"batch_max_jobs": 0}, "segscale.batch_max_jobs: Input should be greater than or equal to 1"),
    ({"batch_window_s": -1}, "segscale.batch_window_s: Input should be greater than or equal to 0"),
    (
        {"reconcile_interval_minutes": 0},
        "segscale.reconcile_interval_minutes: Input should be greater than or equal to 1",
    ),
    ({"retention_days": -5}, "segscale.retention_days: Input should be greater than or equal to 1"),
    ({"api_mode": "k8s"}, "segscale.api_mode: Input should be 'fargate' or 'lambda'"),
    ({"event_archive_days": -1}, "segscale.event_archive_days: Input should be greater than or equal to 0"),
    ({"event_archive_days": "forever"}, "segscale.event_archive_days: Input should be a valid integer"),
    ({"email_batch_completed": True}, "email_batch_completed is true but alarm_email is not set"),
    ({"export_on_completion": "sometimes"}, "segscale.export_on_completion: Input should be a valid boolean"),
    ({"name": "Seg Scale"}, "segscale.name: must be 1-20 characters"),
    (
        {"models_s3_uri": "https://example.com/models"},
        "'https://example.com/models' must look like s3://bucket/prefix/",
    ),
    ({"ingest_sources": ["photos"]}, "segscale.ingest_sources: entry 0 'photos' must look like s3://bucket/prefix/"),
    ({"ingest_sources": [7]}, "segscale.ingest_sources: entry 0 must be a string s3://bucket/prefix/, got 7"),
    ({"ingest_sources": {"a": 1}}, "segscale.ingest_sources: must be a list of s3://bucket/prefix/ strings, got dict"),
    (
        {"ingest_sources": ["s3://cams/in/", "s3://cams/in"]},
        "segscale.ingest_sources: entry 1 's3://cams/in' repeats an earlier entry",
    ),
    (
        {"ingest_sources": ["s3://cams/a*/"]},
        "segscale.ingest_sources: entry 0 's3://cams/a*/' may not contain ',' or '*' (prefixes are literal)",
    ),
    (
        {"ingest_sources": [f"s3://cams/p{i}/" for i in range(21)]},
        "segscale.ingest_sources: at most 20 sources (got 21): use broader prefixes",
    ),
    ({"inbox_enabled": "perhaps"}, "segscale.inbox_enabled: Input should be a valid boolean"),
    ({"max_workers": 0}, "segscale.max_workers: Input should be greater than or equal to 1"),
    ({"max_workers": 5000}, "segscale.max_workers: Input should be less than or equal to 1000"),
    (
        {"max_workers": 250, "worker_cpu": 2048, "worker_memory_mib": 4096},
        "max_workers (250) x worker vCPU (2) = 500 vCPU exceeds fargate_vcpu_quota (400): lower max_workers or "
        "worker_cpu, or raise the Fargate vCPU quota in Service Quotas and set fargate_vcpu_quota to it",
    ),
    ({"fargate_vcpu_quota": 0}, "segscale.fargate_vcpu_quota: Input should be greater than or equal to 1"),
    ({"jobs_per_worker": 0}, "segscale.jobs_per_worker: Input should be greater than or equal to 1"),
    ({"worker_idle_exit_s": 1}, "segscale.worker_idle_exit_s: Input should be greater than or equal to 5"),
    ({"worker_idle_exit_s": 7200}, "segscale.worker_idle_exit_s: Input should be less than or equal to 3600"),
    ({"worker_max_lifetime_s": 60}, "segscale.worker_max_lifetime_s: Input should be greater than or equal to 600"),
    (
        {"worker_max_lifetime_s": 900, "worker_idle_exit_s": 600},
        "worker_max_lifetime_s (900) must be more than twice worker_idle_exit_s (600)",
    ),
    (
        {"alarm_no_worker_minutes": 2, "reconcile_interval_minutes": 5},
        "alarm_no_worker_minutes (2) must be at least reconcile_interval_minutes (5)",
    ),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[next(iter(o)) for o, _ in BAD_VALUES])
def test_bad_value_is_refused_with_a_precise_message(override: dict[str, Any], message: str) -> None:
    context = cdk_json_context()
    context["segscale"] = {**context["segscale"], **override}
    with pytest.raises(ConfigError) as err:
        load_config(context)
    assert message in str(err.value)
    assert str(err.value).startswith("invalid segscale configuration")


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"segscale": {"api_cpu": 3, "env_name": "qa", "typo": 1}})
    text = str(err.value)
    assert "segscale.env_name" in text and "segscale.typo: unknown key" in text


def test_context_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match="context key 'segscale' must be an object"):
        load_config({"segscale": [1, 2]})


def test_cdk_json_defaults_are_valid() -> None:
    config = load_config(cdk_json_context())
    assert config.env_name == "dev" and not config.retain_data
    assert config.default_model in known_models()


def test_command_line_overrides_are_parsed_as_json() -> None:
    """`-c segscale.x=...` arrives as a string: numbers, lists and booleans must still validate."""
    config = load_config(
        {
            "segscale": {"env_name": "dev"},
            "segscale.env_name": "prod",
            "segscale.allow_http": "true",
            "segscale.nat_gateways": "2",
            "segscale.allowed_cidrs": '["10.1.0.0/16"]',
            "segscale.bucket_versioned": "true",
        }
    )
    assert config.retain_data and config.nat_gateways == 2
    assert config.allowed_cidrs == ("10.1.0.0/16",) and config.bucket_versioned is True


PROD_HTTPS = {"env_name": "prod", "certificate_arn": CERT}


def test_prod_accepts_a_certificate_or_explicit_http_and_lambda_mode_needs_neither() -> None:
    assert load_config({"segscale": PROD_HTTPS}).https
    assert not load_config({"segscale": {"env_name": "prod", "allow_http": True}}).https
    assert load_config({"segscale": {"env_name": "prod", "api_mode": "lambda"}}).retain_data  # HTTPS Function URL
    assert not load_config({"segscale": {"allow_http": False}}).https  # dev may stay on plain HTTP


@pytest.mark.parametrize(
    ("values", "nat"),
    [
        ({}, 1),
        (PROD_HTTPS, 2),
        ({**PROD_HTTPS, "max_azs": 3}, 3),
        ({**PROD_HTTPS, "nat_gateways": 1}, 1),  # an explicit choice wins
        ({**PROD_HTTPS, "nat_gateways": 0}, 0),
    ],
)
def test_nat_gateways_default_to_one_per_az_in_prod(values: dict[str, Any], nat: int) -> None:
    assert load_config({"segscale": values}).nat_gateways == nat


@pytest.mark.parametrize(
    ("values", "enabled"),
    [({}, True), (PROD_HTTPS, False), ({**PROD_HTTPS, "api_docs": True}, True), ({"api_docs": False}, False)],
)
def test_api_docs_are_off_in_prod_unless_asked_for(values: dict[str, Any], enabled: bool) -> None:
    assert load_config({"segscale": values}).api_docs_enabled is enabled


def test_command_line_value_that_is_not_json_is_kept_as_text() -> None:
    config = load_config({"segscale.alarm_email": "ops@example.com"})
    assert config.alarm_email == "ops@example.com"


def test_models_uri_is_normalised_like_the_worker_does() -> None:
    config = load_config({"segscale": {"models_s3_uri": "s3://my-models/team/extra"}})
    assert config.models_s3_uri == "s3://my-models/team/extra/"
    assert config.models_location == ("my-models", "team/extra/")
    assert load_config({"segscale": {"models_s3_uri": "s3://my-models"}}).models_location == ("my-models", "")


def test_config_is_immutable() -> None:
    config = DeployConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.env_name = "prod"  # type: ignore[misc]


def test_cli_refuses_a_bad_config_with_the_message(tmp_path: Path) -> None:
    """`python app.py` with a bad context value exits 2 and says which key is wrong (no Node traceback)."""
    env = offline_env(tmp_path)
    env["CDK_CONTEXT_JSON"] = json.dumps({"segscale.nat_gateways": -1})
    env["CDK_OUTDIR"] = str(tmp_path / "out")
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "segscale.nat_gateways: Input should be greater than or equal to 0" in result.stderr
