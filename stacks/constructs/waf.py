"""A WAFv2 web ACL in front of the ALB: a request-rate limit per client IP, and optionally AWS managed rules.

The API authenticates every ``/v1`` request itself, but a flood of requests (with or without a key) still costs
ALB capacity, API tasks and autoscaling; the rate rule blocks one address once it passes ``waf_rate_limit``
requests in five minutes, before anything reaches a task. The AWS managed rule groups are an option: their
"common" group blocks any request body over 8 KB (``SizeRestrictions_BODY``), which is every image upload, so
that one rule only counts here.
"""

from __future__ import annotations

import json

from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks.config import DeployConfig

RATE_RULE = "rate-per-ip"
RATE_WINDOW_S = 300
RATE_LIMITED_BODY = "rate-limited"
# AWS managed rule groups and the rules of each that only count (they would refuse legitimate uploads).
MANAGED_RULE_GROUPS: dict[str, tuple[str, ...]] = {
    "AWSManagedRulesCommonRuleSet": ("SizeRestrictions_BODY",),
    "AWSManagedRulesKnownBadInputsRuleSet": (),
}


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )


def rate_limited_problem(config: DeployConfig) -> str:
    """The 429 body, in the shape of the API's own problems (docs/api.md), so clients branch on it the same way."""
    return json.dumps(
        {
            "type": "urn:segscale:problem:rate_limited",
            "title": "Too Many Requests",
            "status": 429,
            "detail": f"more than {config.waf_rate_limit} requests from your address in {RATE_WINDOW_S // 60} "
            "minutes; slow down and retry",
        },
        separators=(",", ":"),
    )


class ApiFirewall(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        load_balancer: elbv2.IApplicationLoadBalancer,
    ) -> None:
        super().__init__(scope, construct_id)
        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name=RATE_RULE,
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(
                    block=wafv2.CfnWebACL.BlockActionProperty(
                        custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                            response_code=429, custom_response_body_key=RATE_LIMITED_BODY
                        )
                    )
                ),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP", limit=config.waf_rate_limit, evaluation_window_sec=RATE_WINDOW_S
                    )
                ),
                visibility_config=_visibility(f"{config.stack_prefix}-{RATE_RULE}"),
            )
        ]
        if config.waf_managed_rules:
            for priority, (group, counted) in enumerate(MANAGED_RULE_GROUPS.items(), start=1):
                rules.append(
                    wafv2.CfnWebACL.RuleProperty(
                        name=group,
                        priority=priority,
                        override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                        statement=wafv2.CfnWebACL.StatementProperty(
                            managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                                vendor_name="AWS",
                                name=group,
                                rule_action_overrides=[
                                    wafv2.CfnWebACL.RuleActionOverrideProperty(
                                        name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                                    )
                                    for rule in counted
                                ]
                                or None,
                            )
                        ),
                        visibility_config=_visibility(f"{config.stack_prefix}-{group}"),
                    )
                )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            description=f"segscale {config.env_name} API: rate limit per client IP",
            rules=rules,
            custom_response_bodies={
                RATE_LIMITED_BODY: wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content=rate_limited_problem(config)
                )
            },
            visibility_config=_visibility(f"{config.stack_prefix}-api"),
        )
        wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=load_balancer.load_balancer_arn, web_acl_arn=self.web_acl.attr_arn
        )
