"""What a synthesized deployment gives each container: its role's policies and its ``SEGSCALE_*`` settings.

The templates hold CloudFormation expressions (``Fn::ImportValue``, ``Ref``, ``Fn::GetAtt``, ``Fn::Join``); a policy
evaluator needs plain ARNs. ``Deployment.resolve`` turns every expression into the string AWS would produce for a
stand-in account (physical names made from logical ids), the same way for the role's policies and for the
container's settings, so a bucket name in the environment and the bucket ARN in a policy name the same bucket.

Containers are found in the template, not listed here: every ECS container whose name is a runtime container
(``api``, ``worker``, ``results``) with its task role, and every Lambda function whose command is a handler in
``runtime.<container>``, with its role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from runtime.common.awscalls import CONTAINERS
from runtime.common.settings import ENV_PREFIX, Settings

ACCOUNT = "123456789012"
PARTITION = "aws"


@dataclass
class Policy:
    """One identity policy attached to a role (inline or ``AWS::IAM::Policy``), resolved."""

    name: str
    document: dict[str, Any]


@dataclass(eq=False)  # hashed by identity: one object per container per deployment
class ContainerRole:
    """A container as deployed in one variant: the role its code runs with, and the settings CDK gives it."""

    variant: str
    container: str
    kind: str  # "ecs" or "lambda"
    role_id: str  # logical id
    role_path: str  # construct path, for messages
    role_arn: str
    policies: list[Policy]
    settings: dict[str, str]  # setting field -> resolved value (secrets injected by ECS: "<secret>")
    managed_policy_arns: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.container} ({self.variant}, {self.kind}) role {self.role_path}"


class Deployment:
    """Both stacks of one synthesized variant, with an expression resolver."""

    def __init__(self, variant: str, data: dict[str, Any], pipeline: dict[str, Any], region: str) -> None:
        self.variant = variant
        self.stacks = {"data": data, "pipeline": pipeline}
        self.region = region
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, template in self.stacks.items():
            for output in template.get("Outputs", {}).values():
                if "Export" in output:
                    self.exports[output["Export"]["Name"]] = (stack, output["Value"])

    # --- resolution ------------------------------------------------------------------------------------
    def resolve(self, value: Any, stack: str = "pipeline") -> Any:
        if isinstance(value, list):
            return [self.resolve(v, stack) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (fn, arg), *_ = value.items()
            if fn == "Ref":
                return self._ref(arg, stack)
            if fn == "Fn::GetAtt":
                return self._attr(arg[0], arg[1], stack)
            if fn == "Fn::Join":
                return arg[0].join(str(self.resolve(p, stack)) for p in arg[1])
            if fn == "Fn::ImportValue":
                name = self.resolve(arg, stack)
                if name not in self.exports:
                    raise KeyError(f"{self.variant}: no stack exports {name!r}")
                other, exported = self.exports[name]
                return self.resolve(exported, other)
            if fn == "Fn::Select":
                return self.resolve(arg[1], stack)[int(arg[0])]
            if fn == "Fn::Split":
                return str(self.resolve(arg[1], stack)).split(arg[0])
            if fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return re.sub(
                    r"\$\{([^}]+)\}",
                    lambda m: str(self.resolve(names[m[1]], stack) if m[1] in names else self._ref(m[1], stack)),
                    text,
                )
        return {k: self.resolve(v, stack) for k, v in value.items()}

    def _resource(self, logical_id: str, stack: str) -> dict[str, Any]:
        resources = self.stacks[stack]["Resources"]
        if logical_id not in resources:
            raise KeyError(f"{self.variant}/{stack}: no resource {logical_id}")
        return dict(resources[logical_id])

    def _ref(self, name: str, stack: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"{self.variant}-{stack}",
            "AWS::NoValue": "",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.stacks[stack].get("Parameters", {}):
            return f"<parameter {name}>"
        kind = self._resource(name, stack)["Type"]
        return self._physical(kind, name, "Ref")

    def _attr(self, logical_id: str, attribute: str, stack: str) -> str:
        kind = self._resource(logical_id, stack)["Type"]
        return self._physical(kind, logical_id, attribute)

    def _physical(self, kind: str, logical_id: str, attribute: str) -> str:
        """What AWS would call the resource: names from logical ids, ARNs in each service's format."""
        name = logical_id.lower()
        r, a, p = self.region, ACCOUNT, PARTITION
        arns = {
            "AWS::S3::Bucket": f"arn:{p}:s3:::{name}",
            "AWS::DynamoDB::GlobalTable": f"arn:{p}:dynamodb:{r}:{a}:table/{name}",
            "AWS::DynamoDB::Table": f"arn:{p}:dynamodb:{r}:{a}:table/{name}",
            "AWS::SQS::Queue": f"arn:{p}:sqs:{r}:{a}:{name}",
            "AWS::SecretsManager::Secret": f"arn:{p}:secretsmanager:{r}:{a}:secret:{name}-AbCdEf",
            "AWS::IAM::Role": f"arn:{p}:iam::{a}:role/{name}",
            "AWS::Logs::LogGroup": f"arn:{p}:logs:{r}:{a}:log-group:{name}:*",
            "AWS::ECS::Cluster": f"arn:{p}:ecs:{r}:{a}:cluster/{name}",
            "AWS::ECS::TaskDefinition": f"arn:{p}:ecs:{r}:{a}:task-definition/{name}:1",
            "AWS::Lambda::Function": f"arn:{p}:lambda:{r}:{a}:function:{name}",
            "AWS::KMS::Key": f"arn:{p}:kms:{r}:{a}:key/{name}",
            "AWS::SNS::Topic": f"arn:{p}:sns:{r}:{a}:{name}",
            "AWS::Events::EventBus": f"arn:{p}:events:{r}:{a}:event-bus/{name}",
        }
        arn = arns.get(kind, f"arn:{p}:{kind.split('::')[1].lower()}:{r}:{a}:{name}")
        if attribute == "Arn":
            return arn
        if kind == "AWS::SQS::Queue":
            url = f"https://sqs.{r}.amazonaws.com/{a}/{name}"
            return {"Ref": url, "QueueUrl": url, "QueueName": name}.get(attribute, arn)
        named_by_arn = ("AWS::SecretsManager::Secret", "AWS::ECS::TaskDefinition", "AWS::SNS::Topic")
        if kind in named_by_arn and attribute == "Ref":
            return arn
        return name

    # --- containers --------------------------------------------------------------------------------------
    def container_roles(self) -> list[ContainerRole]:
        template = self.stacks["pipeline"]
        found: list[ContainerRole] = []
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::ECS::TaskDefinition" and "TaskRoleArn" in props:
                for c in props["ContainerDefinitions"]:
                    if c["Name"] in CONTAINERS:
                        env = {e["Name"]: e["Value"] for e in c.get("Environment", [])}
                        env.update({s["Name"]: "<secret>" for s in c.get("Secrets", [])})
                        found.append(self._container(c["Name"], "ecs", props["TaskRoleArn"], env))
            if resource["Type"] == "AWS::Lambda::Function":
                command = props.get("ImageConfig", {}).get("Command", [""])[0]
                parts = command.split(".")
                if parts[0] == "runtime" and len(parts) > 1 and parts[1] in CONTAINERS:
                    env = props.get("Environment", {}).get("Variables", {})
                    found.append(self._container(parts[1], "lambda", props["Role"], env))
        return found

    def _container(self, container: str, kind: str, role_ref: dict[str, Any], env: dict[str, Any]) -> ContainerRole:
        template = self.stacks["pipeline"]
        role_id = role_ref["Fn::GetAtt"][0]
        role = template["Resources"][role_id]
        policies = [
            Policy(p["PolicyName"], self.resolve(p["PolicyDocument"])) for p in role["Properties"].get("Policies", [])
        ]
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
                policies.append(Policy(logical_id, self.resolve(resource["Properties"]["PolicyDocument"])))
        fields = set(Settings.model_fields)
        settings = {
            name[len(ENV_PREFIX) :].lower(): str(self.resolve(value))
            for name, value in env.items()
            if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :].lower() in fields
        }
        return ContainerRole(
            variant=self.variant,
            container=container,
            kind=kind,
            role_id=role_id,
            role_path=role.get("Metadata", {}).get("aws:cdk:path", role_id),
            role_arn=self._attr(role_id, "Arn", "pipeline"),
            policies=policies,
            settings=settings,
            managed_policy_arns=[str(self.resolve(m)) for m in role["Properties"].get("ManagedPolicyArns", [])],
        )

    def resource_policies(self) -> dict[str, dict[str, Any]]:
        """Bucket and queue policies by the ARN of the resource they guard (bucket ARN, queue ARN)."""
        out: dict[str, dict[str, Any]] = {}
        for stack, template in self.stacks.items():
            for resource in template["Resources"].values():
                props = resource.get("Properties", {})
                if resource["Type"] == "AWS::S3::BucketPolicy":
                    out[f"arn:{PARTITION}:s3:::{self.resolve(props['Bucket'], stack)}"] = self.resolve(
                        props["PolicyDocument"], stack
                    )
                if resource["Type"] == "AWS::SQS::QueuePolicy":
                    for queue in props["Queues"]:
                        out[queue_arn(self.resolve(queue, stack))] = self.resolve(props["PolicyDocument"], stack)
        return out


def queue_arn(url: str) -> str:
    """``https://sqs.<region>.amazonaws.com/<account>/<name>`` (or a moto URL) -> the queue's ARN."""
    m = re.match(r"https?://sqs\.([^.]+)\.[^/]+/(\d+)/([^/?]+)$", url)
    if m:
        return f"arn:{PARTITION}:sqs:{m[1]}:{m[2]}:{m[3]}"
    raise ValueError(f"not an SQS queue URL: {url}")
