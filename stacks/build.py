"""Builds the whole app from its context, shared by ``app.py`` and the tests so both synthesize the same thing."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Environment, Tags

from stacks import nag
from stacks.config import DeployConfig, load_config
from stacks.data_stack import DataStack
from stacks.pipeline_stack import PipelineStack


@dataclass(frozen=True)
class Segscale:
    config: DeployConfig
    data: DataStack
    pipeline: PipelineStack


def build(app: App, *, account: str | None = None, checks: bool = True) -> Segscale:
    """Add both stacks to ``app``; ``account`` stays unresolved (synth without credentials) unless given.

    ``checks=False`` leaves out cdk-nag and its acknowledgements: only the test that proves every
    acknowledgement matches a real finding uses it.
    """
    config = load_config(app.node.get_all_context())
    env = Environment(account=account, region=config.region)
    data = DataStack(
        app,
        f"{config.stack_prefix}-data",
        config=config,
        env=env,
        description="segscale: bucket, job table and queues (stateful)",
        termination_protection=config.retain_data,
    )
    pipeline = PipelineStack(
        app,
        f"{config.stack_prefix}-pipeline",
        config=config,
        env=env,
        description="segscale: network, API, worker pipe, results schedule, monitoring (stateless)",
    )
    pipeline.add_stack_dependency(data)
    for stack in (data, pipeline):
        Tags.of(stack).add("project", "segscale")
        Tags.of(stack).add("environment", config.env_name)
    if checks:
        nag.register(app)
        nag.acknowledge(data, pipeline, config)
    return Segscale(config=config, data=data, pipeline=pipeline)
