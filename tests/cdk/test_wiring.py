"""Fine-grained assertions on the wiring that matters (the deployment's acceptance list), read from the templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.common import batches, clients, idempotency, jobs, keys, metrics, schema, workers
from runtime.common.settings import JOB_BATCH_ENV, WAKE_MESSAGE_ENV, env_name
from runtime.results import orphans, reconcile
from stacks.exports import export_name
from tests.cdk.conftest import VARIANTS, Synth, SynthFn, by_path, one, resources, synthesize

# Which declared groups of table actions each container's code uses (the stores declare them next to their calls).
DECLARED_TABLE_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "api": (jobs.INTAKE_ACTIONS, idempotency.ACTIONS, batches.INTAKE_ACTIONS, clients.ACTIONS, workers.SLOT_ACTIONS),
    "worker": (jobs.WORKER_ACTIONS, batches.PROGRESS_ACTIONS, workers.SLOT_ACTIONS),
    "results": (
        jobs.RECONCILE_ACTIONS,
        batches.PROGRESS_ACTIONS,
        batches.SETTLE_ACTIONS,
        workers.SLOT_ACTIONS,
        reconcile.COUNT_ACTIONS,
        orphans.ACTIONS,
        jobs.INGEST_ACTIONS,
        batches.INGEST_ACTIONS,
    ),
}

pytestmark = pytest.mark.cdk


# --- helpers -----------------------------------------------------------------------------------------------


def statements(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of every policy attached to the role (inline policies and AWS::IAM::Policy)."""
    out: list[dict[str, Any]] = []
    role = template["Resources"][role_logical_id]
    for policy in role["Properties"].get("Policies", []):
        out += policy["PolicyDocument"]["Statement"]
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(stmts: list[dict[str, Any]], action: str) -> list[Any]:
    """Resources of every Allow statement that grants ``action`` (exactly or by a wildcard)."""
    out: list[Any] = []
    for s in stmts:
        actions = as_list(s["Action"])
        service = action.split(":")[0]
        if s["Effect"] == "Allow" and (action in actions or f"{service}:*" in actions or "*" in actions):
            out += as_list(s["Resource"])
    return out


def container(template: dict[str, Any], task_path: str) -> dict[str, Any]:
    _, task = by_path(template, f"/{task_path}/Resource", "AWS::ECS::TaskDefinition")
    (c,) = task["Properties"]["ContainerDefinitions"]
    return c


def task_logical_id(template: dict[str, Any], task_path: str) -> str:
    return by_path(template, f"/{task_path}/Resource", "AWS::ECS::TaskDefinition")[0]


def export_of(data: dict[str, Any], config_key: str, synth: Synth) -> Any:
    """The value the data stack exports under the named export."""
    name = export_name(synth.app.config, config_key)
    (value,) = [o["Value"] for o in data["Outputs"].values() if o.get("Export", {}).get("Name") == name]
    return value


def import_of(synth: Synth, key: str) -> dict[str, str]:
    return {"Fn::ImportValue": export_name(synth.app.config, key)}


# --- the pipe ----------------------------------------------------------------------------------------------


def test_pipe_reads_the_wake_queue(dev: Synth) -> None:
    _, pipe = one(dev.pipeline, "AWS::Pipes::Pipe")
    props = pipe["Properties"]
    assert props["Source"] == import_of(dev, "wake-queue-arn")
    wake_queue_id, _ = by_path(dev.data, "/Queues/Wake/Resource", "AWS::SQS::Queue")
    assert export_of(dev.data, "wake-queue-arn", dev) == {"Fn::GetAtt": [wake_queue_id, "Arn"]}
    assert props["SourceParameters"]["SqsQueueParameters"]["BatchSize"] == 1  # one wake message = one task (D8)
    assert props["LogConfiguration"]["Level"] == "ERROR"


def test_pipe_runs_the_worker_task_on_the_cluster_with_the_batch_override(dev: Synth) -> None:
    _, pipe = one(dev.pipeline, "AWS::Pipes::Pipe")
    cluster_id, _ = one(dev.pipeline, "AWS::ECS::Cluster")
    assert pipe["Properties"]["Target"] == {"Fn::GetAtt": [cluster_id, "Arn"]}
    ecs_params = pipe["Properties"]["TargetParameters"]["EcsTaskParameters"]
    assert ecs_params["TaskDefinitionArn"] == {"Ref": task_logical_id(dev.pipeline, "Worker/Task")}
    assert ecs_params["TaskCount"] == 1
    worker = container(dev.pipeline, "Worker/Task")
    (override,) = ecs_params["Overrides"]["ContainerOverrides"]
    assert override["Name"] == worker["Name"]
    assert override["Environment"] == [{"Name": WAKE_MESSAGE_ENV, "Value": "$.body"}]
    # The wake reaches the worker only through the override; no batch is ever baked into the task definition.
    assert {WAKE_MESSAGE_ENV, JOB_BATCH_ENV}.isdisjoint({e["Name"] for e in worker.get("Environment", [])})


def test_pipe_network_uses_the_private_task_subnets(dev: Synth) -> None:
    _, pipe = one(dev.pipeline, "AWS::Pipes::Pipe")
    awsvpc = pipe["Properties"]["TargetParameters"]["EcsTaskParameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    private = {k for k in resources(dev.pipeline, "AWS::EC2::Subnet") if "private" in k}
    assert len(private) == 2
    assert {s["Ref"] for s in awsvpc["Subnets"]} == private
    assert awsvpc["AssignPublicIp"] == "DISABLED"
    sg_id = by_path(dev.pipeline, "/Network/TaskSecurityGroup/Resource")[0]
    assert awsvpc["SecurityGroups"] == [{"Fn::GetAtt": [sg_id, "GroupId"]}]


def test_without_nat_tasks_run_in_public_subnets_with_public_ips(lambda_mode: Synth) -> None:
    _, pipe = one(lambda_mode.pipeline, "AWS::Pipes::Pipe")
    awsvpc = pipe["Properties"]["TargetParameters"]["EcsTaskParameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert awsvpc["AssignPublicIp"] == "ENABLED"
    assert all("public" in s["Ref"] for s in awsvpc["Subnets"])
    assert not resources(lambda_mode.pipeline, "AWS::EC2::NatGateway")


@pytest.mark.parametrize(("variant", "spot"), [("dev", True), ("prod", False)])
def test_worker_capacity_follows_config(synth: SynthFn, variant: str, spot: bool) -> None:
    s = synth(variant)
    _, pipe = one(s.pipeline, "AWS::Pipes::Pipe")
    ecs_params = pipe["Properties"]["TargetParameters"]["EcsTaskParameters"]
    if spot:
        assert ecs_params["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]
        assert "LaunchType" not in ecs_params
        _, cluster_cp = one(s.pipeline, "AWS::ECS::ClusterCapacityProviderAssociations")
        assert "FARGATE_SPOT" in cluster_cp["Properties"]["CapacityProviders"]
    else:
        assert ecs_params["LaunchType"] == "FARGATE" and "CapacityProviderStrategy" not in ecs_params


def test_pipe_role_is_least_privilege(dev: Synth) -> None:
    t = dev.pipeline
    role_id = by_path(t, "/Worker/Role/Resource", "AWS::IAM::Role")[0]
    role = t["Resources"][role_id]["Properties"]
    (principal,) = [s["Principal"]["Service"] for s in role["AssumeRolePolicyDocument"]["Statement"]]
    assert principal == "pipes.amazonaws.com"
    stmts = statements(t, role_id)
    worker_td = task_logical_id(t, "Worker/Task")
    assert allowed(stmts, "ecs:RunTask") == [{"Ref": worker_td}]
    task_props = t["Resources"][worker_td]["Properties"]
    assert sorted(allowed(stmts, "iam:PassRole"), key=json.dumps) == sorted(
        [task_props["TaskRoleArn"], task_props["ExecutionRoleArn"]], key=json.dumps
    )
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert allowed(stmts, action) == [import_of(dev, "wake-queue-arn")]  # never the jobs queue
    everything = [a for s in stmts for a in as_list(s["Action"])]
    assert not [a for a in everything if a.endswith("*")], "no wildcard actions on the pipe role"
    assert set(everything) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "ecs:RunTask",
        "iam:PassRole",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


def _task_role(t: dict[str, Any], path: str) -> str:
    return t["Resources"][task_logical_id(t, path)]["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]


def sqs_grants(t: dict[str, Any], role_id: str) -> dict[str, set[str]]:
    """SQS action -> the export keys of the queues it is allowed on (every queue ARN is a named import)."""
    out: dict[str, set[str]] = {}
    for stmt in statements(t, role_id):
        for action in as_list(stmt["Action"]):
            if action.startswith("sqs:"):
                out.setdefault(action, set()).update(r["Fn::ImportValue"] for r in as_list(stmt["Resource"]))
    return out


@pytest.mark.parametrize("variant", ["dev", "lambda"])
def test_the_worker_drains_the_jobs_queue_and_everyone_else_only_sends(synth: SynthFn, variant: str) -> None:
    """The worker receives, extends and deletes jobs-queue messages and sends wakes; the API and the results task
    send on both queues and read neither; nobody but the pipe reads the wake queue."""
    s = synth(variant)
    t = s.pipeline

    def name(key: str) -> str:
        return export_name(s.app.config, key)

    jobs, wake = name("queue-arn"), name("wake-queue-arn")
    worker = sqs_grants(t, _task_role(t, "Worker/Task"))
    assert worker == {
        "sqs:ReceiveMessage": {jobs},
        "sqs:ChangeMessageVisibility": {jobs},
        "sqs:DeleteMessage": {jobs},
        "sqs:GetQueueAttributes": {jobs},
        "sqs:SendMessage": {jobs, wake},
    }
    api_role = _task_role(t, "Api/Task") if variant == "dev" else by_path(t, "/Api/Role/Resource", "AWS::IAM::Role")[0]
    assert sqs_grants(t, api_role) == {"sqs:SendMessage": {jobs, wake}}
    results = _task_role(t, "Results/Task")  # reconcile also reads the jobs queue's depth (a backlog is not lost)
    inbox = {"sqs:ReceiveMessage": {name("inbox-queue-arn")}, "sqs:DeleteMessage": {name("inbox-queue-arn")}}
    assert sqs_grants(t, results) == {
        "sqs:SendMessage": {jobs, wake},
        "sqs:GetQueueAttributes": {jobs},
        **(inbox if s.app.config.inbox_enabled else {}),  # the ingester drains the drop folder's queue (D10)
    }


# --- queues and table --------------------------------------------------------------------------------------


def test_jobs_queue_redrives_to_the_dlq(dev: Synth) -> None:
    _, jobs = by_path(dev.data, "/Queues/Jobs/Resource", "AWS::SQS::Queue")
    dlq_id, dlq = by_path(dev.data, "/Queues/DeadLetters/Resource", "AWS::SQS::Queue")
    redrive = jobs["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_id, "Arn"]}
    assert redrive["maxReceiveCount"] == schema.DLQ_MAX_RECEIVE_COUNT >= 5
    assert jobs["Properties"]["VisibilityTimeout"] == schema.JOBS_QUEUE_VISIBILITY_TIMEOUT_S
    assert jobs["Properties"]["MessageRetentionPeriod"] == schema.JOBS_QUEUE_RETENTION_S
    assert dlq["Properties"]["MessageRetentionPeriod"] == schema.DLQ_RETENTION_S
    for q in (jobs, dlq):
        assert q["Properties"]["SqsManagedSseEnabled"] is True
    for path in ("/Inbox/Sqs/Queue/Resource", "/Inbox/Sqs/DeadLetters/Resource"):  # the drop folder's (D10)
        assert by_path(dev.data, path, "AWS::SQS::Queue")[1]["Properties"]["SqsManagedSseEnabled"] is True


def test_wake_queue_redrives_to_its_own_dlq(dev: Synth) -> None:
    _, wake = by_path(dev.data, "/Queues/Wake/Resource", "AWS::SQS::Queue")
    dlq_id, dlq = by_path(dev.data, "/Queues/WakeDeadLetters/Resource", "AWS::SQS::Queue")
    props = wake["Properties"]
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": schema.WAKE_DLQ_MAX_RECEIVE_COUNT,
    }
    assert props["VisibilityTimeout"] == schema.WAKE_QUEUE_VISIBILITY_TIMEOUT_S
    assert props["MessageRetentionPeriod"] == schema.WAKE_QUEUE_RETENTION_S
    assert props["SqsManagedSseEnabled"] is True and dlq["Properties"]["SqsManagedSseEnabled"] is True


def test_queues_refuse_plain_http(dev: Synth) -> None:
    policies = resources(dev.data, "AWS::SQS::QueuePolicy").values()
    denied = [
        s
        for p in policies
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(denied) == 6  # jobs, wake and inbox queues, each with its dead-letter queue


def test_table_matches_the_shared_schema(dev: Synth) -> None:
    _, table = one(dev.data, "AWS::DynamoDB::GlobalTable")
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": schema.TABLE_PARTITION_KEY, "KeyType": "HASH"}]
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == schema.ATTRIBUTE_TYPES
    gsis = {
        g["IndexName"]: ([k["AttributeName"] for k in g["KeySchema"]], g["Projection"]["ProjectionType"])
        for g in props["GlobalSecondaryIndexes"]
    }
    expected = {
        g["name"]: ([g["partition_key"], g["sort_key"]], g["projection"]) for g in schema.GLOBAL_SECONDARY_INDEXES
    }
    assert gsis == expected and expected[schema.BY_WORK_INDEX][1] == "KEYS_ONLY"  # counter writes skip it
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": schema.TTL_ATTRIBUTE, "Enabled": True}
    (replica,) = props["Replicas"]
    assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


# --- bucket ------------------------------------------------------------------------------------------------


def test_bucket_is_private_encrypted_logged_and_expires_by_retention(dev: Synth) -> None:
    _, bucket = by_path(dev.data, "/Storage/Images/Resource", "AWS::S3::Bucket")
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    logs_id = by_path(dev.data, "/Storage/AccessLogs/Resource", "AWS::S3::Bucket")[0]
    assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
    days = dev.app.config.retention_days
    expiring = {r["Prefix"]: r["ExpirationInDays"] for r in props["LifecycleConfiguration"]["Rules"] if "Prefix" in r}
    assert expiring == {keys.UPLOADS_PREFIX: days, keys.RESULTS_PREFIX: days, keys.REPORTS_PREFIX: days}
    assert "VersioningConfiguration" not in props


def test_bucket_policy_denies_plain_http(dev: Synth) -> None:
    bucket_id = by_path(dev.data, "/Storage/Images/Resource", "AWS::S3::Bucket")[0]
    (policy,) = [
        p
        for p in resources(dev.data, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    (deny,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and deny["Action"] == "s3:*"


def test_versioning_follows_config(prod: Synth) -> None:
    _, bucket = by_path(prod.data, "/Storage/Images/Resource", "AWS::S3::Bucket")
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


# --- removal policies --------------------------------------------------------------------------------------

STATEFUL = ("AWS::S3::Bucket", "AWS::DynamoDB::GlobalTable", "AWS::SQS::Queue")


@pytest.mark.parametrize(("variant", "policy"), [("dev", "Delete"), ("prod", "Retain")])
def test_data_removal_policy_follows_env(synth: SynthFn, variant: str, policy: str) -> None:
    s = synth(variant)
    stateful = {k: v for k, v in s.data["Resources"].items() if v["Type"] in STATEFUL}
    assert len(stateful) == 9  # images + access logs, table, jobs, wake and inbox queues + their DLQs
    assert {v["DeletionPolicy"] for v in stateful.values()} == {policy}
    assert {v["UpdateReplacePolicy"] for v in stateful.values()} == {policy}
    _, table = one(s.data, "AWS::DynamoDB::GlobalTable")
    (replica,) = table["Properties"]["Replicas"]
    assert replica.get("DeletionProtectionEnabled", False) is (policy == "Retain")
    # Dev buckets are emptied on delete so `cdk destroy` succeeds; prod buckets never are.
    auto_delete = resources(s.data, "Custom::S3AutoDeleteObjects")
    assert (len(auto_delete) == 2) is (policy == "Delete")


# --- API ---------------------------------------------------------------------------------------------------


def test_api_gets_its_key_from_secrets_manager(dev: Synth) -> None:
    api = container(dev.pipeline, "Api/Task")
    secret_id, secret = by_path(dev.pipeline, "/ApiKey/", "AWS::SecretsManager::Secret")
    assert "GenerateSecretString" in secret["Properties"]
    assert api["Secrets"] == [{"Name": env_name("api_key"), "ValueFrom": {"Ref": secret_id}}]
    assert env_name("api_key") not in {e["Name"] for e in api["Environment"]}
    # Nor does any other container see it.
    for path in ("Worker/Task", "Results/Task"):
        c = container(dev.pipeline, path)
        assert "Secrets" not in c and env_name("api_key") not in {e["Name"] for e in c["Environment"]}


def test_containers_get_the_runtime_settings(dev: Synth) -> None:
    config = dev.app.config
    expected = {
        env_name("max_upload_bytes"): str(config.max_upload_bytes),
        env_name("max_pixels"): str(config.max_pixels),
        env_name("batch_max_jobs"): str(config.batch_max_jobs),
        env_name("batch_window_s"): str(config.batch_window_s),
        env_name("default_model"): config.default_model,
        env_name("retention_days"): str(config.retention_days),
        env_name("auth_enabled"): "true",
        env_name("region"): config.region,
        env_name("max_workers"): str(config.max_workers),
        env_name("jobs_per_worker"): str(config.jobs_per_worker),
        env_name("worker_idle_exit_s"): str(config.worker_idle_exit_s),
        env_name("worker_max_lifetime_s"): str(config.worker_max_lifetime_s),
    }
    for path in ("Api/Task", "Worker/Task", "Results/Task"):
        env = {e["Name"]: e["Value"] for e in container(dev.pipeline, path)["Environment"]}
        assert {k: env.get(k) for k in expected} == expected
        assert env[env_name("bucket")] == import_of(dev, "bucket-name")
        assert env[env_name("table")] == import_of(dev, "table-name")
        assert env[env_name("queue_url")] == import_of(dev, "queue-url")
        assert env[env_name("wake_queue_url")] == import_of(dev, "wake-queue-url")


@pytest.mark.parametrize("path", ["Api/Task", "Worker/Task", "Results/Task"])
def test_containers_are_hardened(dev: Synth, path: str) -> None:
    c = container(dev.pipeline, path)
    assert c["ReadonlyRootFilesystem"] is True
    assert c["User"] == "10001"
    assert c["MountPoints"] == [{"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"}]
    assert c["LogConfiguration"]["LogDriver"] == "awslogs"
    group = c["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
    assert dev.pipeline["Resources"][group]["Properties"]["RetentionInDays"] == dev.app.config.log_retention_days


def test_api_health_check_and_port(dev: Synth) -> None:
    api = container(dev.pipeline, "Api/Task")
    assert api["PortMappings"] == [{"ContainerPort": 8000, "Protocol": "tcp"}]
    assert "/healthz" in api["HealthCheck"]["Command"][1]
    tg_id, tg = one(dev.pipeline, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert tg["Properties"]["HealthCheckPath"] == "/healthz"
    _, service = one(dev.pipeline, "AWS::ECS::Service")
    (lb,) = service["Properties"]["LoadBalancers"]
    assert lb == {"ContainerName": api["Name"], "ContainerPort": 8000, "TargetGroupArn": {"Ref": tg_id}}


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_api_scaling_policies_and_bounds(synth: SynthFn, variant: str) -> None:
    s = synth(variant)
    config = s.app.config
    target_id, target = one(s.pipeline, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (
        config.api_min_count,
        config.api_max_count,
    )
    _, service = one(s.pipeline, "AWS::ECS::Service")
    assert service["Properties"]["DesiredCount"] == config.api_desired_count
    policies = {
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]: p["Properties"]
        for p in resources(s.pipeline, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    }
    assert set(policies) == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}
    for p in policies.values():
        assert p["ScalingTargetId"] == {"Ref": target_id}
    cpu = policies["ECSServiceAverageCPUUtilization"]["TargetTrackingScalingPolicyConfiguration"]
    assert cpu["TargetValue"] == config.api_target_cpu_percent
    requests = policies["ALBRequestCountPerTarget"]["TargetTrackingScalingPolicyConfiguration"]
    assert requests["TargetValue"] == config.api_requests_per_target
    assert "ResourceLabel" in requests["PredefinedMetricSpecification"]


def test_http_only_without_certificate_and_warns(dev: Synth) -> None:
    listeners = [x["Properties"] for x in resources(dev.pipeline, "AWS::ElasticLoadBalancingV2::Listener").values()]
    assert [(x["Port"], x["Protocol"]) for x in listeners] == [(80, "HTTP")]
    assert any("No certificate_arn configured" in w for w in dev.warnings)


def test_https_with_certificate_redirects_http_and_limits_ingress(prod: Synth) -> None:
    listeners = {
        x["Properties"]["Port"]: x["Properties"]
        for x in resources(prod.pipeline, "AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert set(listeners) == {80, 443}
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": VARIANTS["prod"]["certificate_arn"]}]
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    assert not any("No certificate_arn configured" in w for w in prod.warnings)
    _, lb_sg = by_path(prod.pipeline, "/Api/Service/LB/SecurityGroup/Resource", "AWS::EC2::SecurityGroup")
    cidrs = {r["CidrIp"] for r in lb_sg["Properties"]["SecurityGroupIngress"]}
    assert cidrs == set(VARIANTS["prod"]["allowed_cidrs"])


def test_alb_writes_access_logs(dev: Synth) -> None:
    _, lb = one(dev.pipeline, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    attrs = {a["Key"]: a["Value"] for a in lb["Properties"]["LoadBalancerAttributes"]}
    assert attrs["access_logs.s3.enabled"] == "true"
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_lambda_mode_replaces_the_alb_with_a_function_url(lambda_mode: Synth) -> None:
    t = lambda_mode.pipeline
    assert not resources(t, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert not [k for k in resources(t, "AWS::ECS::TaskDefinition") if k.startswith("Api")]
    _, url = one(t, "AWS::Lambda::Url")
    assert url["Properties"]["AuthType"] == "NONE"
    _, fn = by_path(t, "/Api/Function/Resource", "AWS::Lambda::Function")
    env = fn["Properties"]["Environment"]["Variables"]
    assert env[env_name("batch_window_s")] == "0"
    assert int(env[env_name("max_upload_bytes")]) <= 6 * 1024 * 1024
    assert fn["Properties"]["PackageType"] == "Image"
    assert fn["Properties"]["ImageConfig"]["Command"] == ["runtime.api.lambda_handler.handler"]


@pytest.mark.parametrize("variant", ["dev", "lambda"])
def test_task_roles_reach_only_their_prefixes(synth: SynthFn, variant: str) -> None:
    """The worker cannot overwrite uploads, the API cannot write results, nobody lists or deletes elsewhere."""
    s = synth(variant)
    t = s.pipeline
    bucket_arn = export_name(s.app.config, "bucket-arn")

    def prefixes(role_id: str, action: str) -> set[str]:
        out = set()
        for r in allowed(statements(t, role_id), action):
            parts = r["Fn::Join"][1]
            assert parts[0] == {"Fn::ImportValue": bucket_arn}
            out.add(parts[1])
        return out

    def task_role(path: str) -> str:
        return t["Resources"][task_logical_id(t, path)]["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]

    roles = {"worker": task_role("Worker/Task"), "results": task_role("Results/Task")}
    if variant == "dev":
        roles["api"] = task_role("Api/Task")
    else:
        roles["api"] = by_path(t, "/Api/Role/Resource", "AWS::IAM::Role")[0]
    assert prefixes(roles["worker"], "s3:PutObject") == {"/results/*"}
    assert prefixes(roles["worker"], "s3:GetObject") == {"/uploads/*", "/inbox/*"}  # the drop folder, read in place
    assert prefixes(roles["api"], "s3:PutObject") == {"/uploads/*"}
    assert prefixes(roles["api"], "s3:GetObject") == {"/uploads/*", "/results/*", "/reports/*"}
    assert prefixes(roles["results"], "s3:PutObject") == {"/reports/*"}
    # Deleting uploads that have no job: the results task may delete under uploads/, the others may not.
    assert prefixes(roles["results"], "s3:DeleteObject") == {"/uploads/*"}
    assert prefixes(roles["worker"], "s3:DeleteObject") == set()
    # Listing, only prefixes where the code needs it: whether a batch's HTML report exists (API), which uploads
    # have no job and the drop folder's catch-up at its seal (results).
    listed = {"api": ["reports/*"], "results": ["inbox/*", "uploads/*"]}
    for name, role in roles.items():
        listings = [s_ for s_ in statements(t, role) if "s3:ListBucket" in as_list(s_["Action"])]
        if name in listed:
            assert sorted(p for s_ in listings for p in s_["Condition"]["StringLike"]["s3:prefix"]) == listed[name]
            assert all(s_["Resource"] == {"Fn::ImportValue": bucket_arn} for s_ in listings)
        else:
            assert not listings
        actions = [a for s_ in statements(t, role) for a in as_list(s_["Action"])]
        assert "dynamodb:Scan" not in actions
        # Only the API deletes items (the jobs of an intake that failed leave the client's batch).
        assert ("dynamodb:DeleteItem" in actions) == (name == "api")
        # The table actions are exactly those the stores declare next to their calls, for the groups each
        # container's code uses: nothing granted that no declaration names, nothing declared left out.
        table_actions = {a for a in actions if a.startswith("dynamodb:")}
        assert table_actions == {a for group in DECLARED_TABLE_GROUPS[name] for a in group}, name


# --- results and schedule ----------------------------------------------------------------------------------


def test_schedule_runs_reconcile_in_the_results_task(dev: Synth) -> None:
    t = dev.pipeline
    _, schedule = one(t, "AWS::Scheduler::Schedule")
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == f"rate({dev.app.config.reconcile_interval_minutes} minutes)"
    target = props["Target"]
    cluster_id, _ = one(t, "AWS::ECS::Cluster")
    results_td = task_logical_id(t, "Results/Task")
    assert target["Arn"] == {"Fn::GetAtt": [cluster_id, "Arn"]}
    assert target["EcsParameters"]["TaskDefinitionArn"] == {"Ref": results_td}
    assert target["EcsParameters"]["LaunchType"] == "FARGATE"
    results = container(t, "Results/Task")
    assert json.loads(target["Input"]) == {"containerOverrides": [{"name": results["Name"], "command": ["reconcile"]}]}
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    assert allowed(statements(t, role_id), "ecs:RunTask") == [{"Ref": results_td}]
    td = t["Resources"][results_td]["Properties"]
    assert sorted(allowed(statements(t, role_id), "iam:PassRole"), key=json.dumps) == sorted(
        [td["TaskRoleArn"], td["ExecutionRoleArn"]], key=json.dumps
    )


def test_export_command_output_runs_an_export(dev: Synth) -> None:
    parts = dev.pipeline["Outputs"]["ExportCommand"]["Value"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else "<token>" for p in parts)
    assert text.startswith("aws ecs run-task --region us-east-1 --cluster <token> --task-definition <token>")
    overrides = json.loads(text.split("--overrides '")[1].rstrip("'"))
    assert overrides == {"containerOverrides": [{"name": "results", "command": ["export", "--batch", "<batch-id>"]}]}
    assert {"Ref": task_logical_id(dev.pipeline, "Results/Task")} in parts


# --- network, cluster, outputs, alarms ---------------------------------------------------------------------


def test_vpc_has_gateway_endpoints_and_flow_logs(dev: Synth) -> None:
    endpoints = resources(dev.pipeline, "AWS::EC2::VPCEndpoint").values()
    services = {json.dumps(e["Properties"]["ServiceName"]) for e in endpoints}
    assert len(services) == 2 and any(".s3" in s for s in services) and any(".dynamodb" in s for s in services)
    assert all(e["Properties"]["VpcEndpointType"] == "Gateway" for e in endpoints)
    _, flow = one(dev.pipeline, "AWS::EC2::FlowLog")
    assert flow["Properties"]["TrafficType"] == "ALL"
    assert len(resources(dev.pipeline, "AWS::EC2::NatGateway")) == dev.app.config.nat_gateways


def test_cluster_has_container_insights(dev: Synth) -> None:
    _, cluster = one(dev.pipeline, "AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"]["ClusterSettings"]


def test_outputs(dev: Synth, lambda_mode: Synth) -> None:
    for s in (dev, lambda_mode):
        outputs = s.pipeline["Outputs"]
        for name in ("ApiUrl", "CurlExample", "ApiKeySecretArn", "ApiKeyCommand", "DashboardUrl", "ExportCommand"):
            assert name in outputs, name
        assert {"BucketName", "TableName", "QueueUrl", "DeadLetterQueueUrl", "WakeQueueUrl"} <= set(s.data["Outputs"])
    curl = "".join(
        p if isinstance(p, str) else "<t>" for p in dev.pipeline["Outputs"]["CurlExample"]["Value"]["Fn::Join"][1]
    )
    assert curl.startswith('curl -H "X-Api-Key: $(aws secretsmanager get-secret-value --secret-id <t>')
    assert curl.endswith("-F file=@photo.jpg http://<t>/v1/images")


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_alarms_notify_an_encrypted_topic(synth: SynthFn, variant: str) -> None:
    s = synth(variant)
    topic_id, topic = one(s.pipeline, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]
    alarms = resources(s.pipeline, "AWS::CloudWatch::Alarm")
    names = (
        "DeadLettersNotEmpty",
        "WakeDeadLettersNotEmpty",
        "WorkQueuedNoLiveWorker",
        "OldestMessageTooOld",
        "Api5xxRate",
        "PipeFailures",
        "JobFailureRate",
        "ReconcileScheduleFailures",
        "StuckJobs",
    )
    assert len(alarms) == len(names)
    for name in names:
        by_path(s.pipeline, f"/Monitoring/{name}/Resource", "AWS::CloudWatch::Alarm")
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    subs = resources(s.pipeline, "AWS::SNS::Subscription")
    if s.app.config.alarm_email:
        (sub,) = subs.values()
        assert sub["Properties"]["Endpoint"] == s.app.config.alarm_email
    else:
        assert not subs


def test_dlq_alarm_watches_the_dlq(dev: Synth) -> None:
    _, alarm = by_path(dev.pipeline, "/Monitoring/DeadLettersNotEmpty/Resource", "AWS::CloudWatch::Alarm")
    props = alarm["Properties"]
    assert props["Namespace"] == "AWS/SQS" and props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": import_of(dev, "dlq-name")}]
    assert props["Threshold"] == 1


def test_lambda_mode_warns_about_alb_only_settings(lambda_mode: Synth, tmp_path: Path) -> None:
    assert not any("only apply to the ALB" in w for w in lambda_mode.warnings)
    narrowed = synthesize(tmp_path, {**VARIANTS["lambda"], "allowed_cidrs": ["203.0.113.0/24"]})
    assert any("allowed_cidrs only apply to the ALB and are ignored" in w for w in narrowed.warnings)


def test_models_prefix_is_readable_by_api_and_worker_only(prod: Synth, dev: Synth) -> None:
    t = prod.pipeline
    assert prod.app.config.models_location == ("segscale-models-example", "extra/")
    for path in ("Api/Task", "Worker/Task"):
        env = {e["Name"]: e["Value"] for e in container(t, path)["Environment"]}
        assert env[env_name("models_s3_uri")] == "s3://segscale-models-example/extra/"
        role = t["Resources"][task_logical_id(t, path)]["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
        stmts = statements(t, role)
        (listing,) = [s for s in stmts if s["Action"] == "s3:ListBucket" and "Fn::Join" in s["Resource"]]
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["extra/*"]}}
        assert listing["Resource"] == {
            "Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::segscale-models-example"]]
        }
        model_objects = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::segscale-models-example/extra/*"]]}
        assert model_objects in allowed(stmts, "s3:GetObject")
    results_role = t["Resources"][task_logical_id(t, "Results/Task")]["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    results_lists = allowed(statements(t, results_role), "s3:ListBucket")
    assert "segscale-models-example" not in json.dumps(results_lists)  # its own bucket and the ingest sources
    # Not configured: no variable, no grant.
    worker = container(dev.pipeline, "Worker/Task")
    assert env_name("models_s3_uri") not in {e["Name"] for e in worker["Environment"]}


# --- security: WAF, throttling, docs switch, HTTPS redirect ------------------------------------------------


@pytest.mark.parametrize(("variant", "managed"), [("dev", False), ("prod", True)])
def test_waf_rate_limits_each_client_ip_on_the_alb(synth: SynthFn, variant: str, managed: bool) -> None:
    s = synth(variant)
    acl_id, acl = one(s.pipeline, "AWS::WAFv2::WebACL")
    props = acl["Properties"]
    assert props["Scope"] == "REGIONAL" and props["DefaultAction"] == {"Allow": {}}
    rules = {r["Name"]: r for r in props["Rules"]}
    rate = rules["rate-per-ip"]["Statement"]["RateBasedStatement"]
    assert rate == {"AggregateKeyType": "IP", "Limit": s.app.config.waf_rate_limit, "EvaluationWindowSec": 300}
    block = rules["rate-per-ip"]["Action"]["Block"]["CustomResponse"]
    assert block["ResponseCode"] == 429
    body = json.loads(props["CustomResponseBodies"][block["CustomResponseBodyKey"]]["Content"])
    assert body["type"] == "urn:segscale:problem:rate_limited" and body["status"] == 429
    groups = {n: r for n, r in rules.items() if "ManagedRuleGroupStatement" in r["Statement"]}
    assert bool(groups) is managed
    if managed:
        common = groups["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
        # The 8 KB body rule would refuse every image upload: it only counts.
        assert common["RuleActionOverrides"] == [{"ActionToUse": {"Count": {}}, "Name": "SizeRestrictions_BODY"}]
        assert "AWSManagedRulesKnownBadInputsRuleSet" in groups
    _, assoc = one(s.pipeline, "AWS::WAFv2::WebACLAssociation")
    lb_id, _ = one(s.pipeline, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert assoc["Properties"] == {"ResourceArn": {"Ref": lb_id}, "WebACLArn": {"Fn::GetAtt": [acl_id, "Arn"]}}


def test_waf_can_be_switched_off(tmp_path: Path) -> None:
    s = synthesize(tmp_path, {"waf_enabled": False})
    assert not resources(s.pipeline, "AWS::WAFv2::WebACL")


def test_lambda_api_has_reserved_concurrency_and_no_waf(lambda_mode: Synth) -> None:
    _, fn = by_path(lambda_mode.pipeline, "/Api/Function/Resource", "AWS::Lambda::Function")
    assert fn["Properties"]["ReservedConcurrentExecutions"] == lambda_mode.app.config.lambda_reserved_concurrency
    assert not resources(lambda_mode.pipeline, "AWS::WAFv2::WebACL")  # WAF cannot front a Function URL
    env = fn["Properties"]["Environment"]["Variables"]
    assert env[env_name("api_docs_enabled")] == "true"


@pytest.mark.parametrize(("variant", "docs"), [("dev", "true"), ("prod", "false")])
def test_only_the_api_gets_the_docs_switch(synth: SynthFn, variant: str, docs: str) -> None:
    s = synth(variant)
    api = {e["Name"]: e["Value"] for e in container(s.pipeline, "Api/Task")["Environment"]}
    assert api[env_name("api_docs_enabled")] == docs
    for path in ("Worker/Task", "Results/Task"):
        assert env_name("api_docs_enabled") not in {e["Name"] for e in container(s.pipeline, path)["Environment"]}


def test_http_redirects_permanently_to_https(prod: Synth) -> None:
    (http,) = [
        x["Properties"]
        for x in resources(prod.pipeline, "AWS::ElasticLoadBalancingV2::Listener").values()
        if x["Properties"]["Port"] == 80
    ]
    (action,) = http["DefaultActions"]
    assert action["RedirectConfig"] == {"Port": "443", "Protocol": "HTTPS", "StatusCode": "HTTP_301"}


def test_prod_has_one_nat_gateway_per_az_by_default(prod: Synth) -> None:
    assert "nat_gateways" not in VARIANTS["prod"]
    assert len(resources(prod.pipeline, "AWS::EC2::NatGateway")) == prod.app.config.max_azs == 2


# --- delivery alarms: reconcile schedule, results task, stuck jobs ------------------------------------------


def alarm_props(template: dict[str, Any], name: str) -> dict[str, Any]:
    return by_path(template, f"/Monitoring/{name}/Resource", "AWS::CloudWatch::Alarm")[1]["Properties"]


def test_reconcile_schedule_failures_alarm_watches_its_own_group(dev: Synth) -> None:
    t = dev.pipeline
    group_id, group = one(t, "AWS::Scheduler::ScheduleGroup")
    _, schedule = one(t, "AWS::Scheduler::Schedule")
    assert schedule["Properties"]["GroupName"] == {"Ref": group_id}
    props = alarm_props(t, "ReconcileScheduleFailures")
    stats = [q["MetricStat"]["Metric"] for q in props["Metrics"] if "MetricStat" in q]
    assert {m["MetricName"] for m in stats} == {"TargetErrorCount", "InvocationDroppedCount"}
    for m in stats:
        assert m["Namespace"] == "AWS/Scheduler"
        assert m["Dimensions"] == [{"Name": "ScheduleGroup", "Value": group["Properties"]["Name"]}]
    assert props["Threshold"] == 0 and props["AlarmActions"]
    assert group["Properties"]["Name"] == dev.app.config.stack_prefix


def test_stuck_jobs_alarm_reads_the_reconcilers_metric(dev: Synth) -> None:
    props = alarm_props(dev.pipeline, "StuckJobs")
    assert props["MetricName"] == "JobsQueuedTooLong" and props["Namespace"] == "Segscale"
    assert props["Dimensions"] == [{"Name": "Service", "Value": "results"}]
    assert props["Threshold"] == dev.app.config.alarm_stuck_jobs - 1  # at least alarm_stuck_jobs
    assert props["Period"] == 2 * 60 * dev.app.config.reconcile_interval_minutes
    assert props["ComparisonOperator"] == "GreaterThanThreshold" and props["AlarmActions"]


def test_failed_results_tasks_are_published_to_the_alarm_topic(dev: Synth) -> None:
    t = dev.pipeline
    _, rule = by_path(t, "/Monitoring/ResultsTaskFailed/Resource", "AWS::Events::Rule")
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.ecs"] and pattern["detail-type"] == ["ECS Task State Change"]
    detail = pattern["detail"]
    assert detail["taskDefinitionArn"] == [{"Ref": task_logical_id(t, "Results/Task")}]
    assert detail["lastStatus"] == ["STOPPED"]
    assert {"stopCode": ["TaskFailedToStart"]} in detail["$or"]
    assert {"containers": {"exitCode": [{"anything-but": 0}]}} in detail["$or"]
    topic_id, _ = one(t, "AWS::SNS::Topic")
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": topic_id}
    assert "$.detail.stoppedReason" in target["InputTransformer"]["InputPathsMap"].values()
    # EventBridge may use the topic's key.
    _, key = one(t, "AWS::KMS::Key")
    principals = [as_list(s_.get("Principal", {}).get("Service")) for s_ in key["Properties"]["KeyPolicy"]["Statement"]]
    assert any("events.amazonaws.com" in p for p in principals)


def test_ingest_sources_are_read_where_configured_and_listed_by_the_results_task_only(prod: Synth, dev: Synth) -> None:
    t = prod.pipeline
    sources = {
        "camera/": ":s3:::segscale-photos-example/camera/*",
        "manifests/": ":s3:::segscale-photos-example/manifests/*",
    }
    objects = [{"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, arn]]} for arn in sources.values()]
    bucket = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::segscale-photos-example"]]}
    for path in ("Api/Task", "Worker/Task", "Results/Task"):
        env = {e["Name"]: e["Value"] for e in container(t, path)["Environment"]}
        assert env[env_name("ingest_sources")] == ",".join(prod.app.config.ingest_sources)
        role = t["Resources"][task_logical_id(t, path)]["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
        stmts = statements(t, role)
        assert all(o in allowed(stmts, "s3:GetObject") for o in objects), path
        listings = [s for s in stmts if s["Action"] == "s3:ListBucket" and s["Resource"] == bucket]
        if path == "Results/Task":
            assert sorted(c for s in listings for c in s["Condition"]["StringLike"]["s3:prefix"]) == [
                "camera/*", "manifests/*",
            ]  # fmt: skip
        else:
            assert listings == [], path
    # Not configured (dev): no variable and no grant outside our own bucket but the models'.
    assert env_name("ingest_sources") not in {e["Name"] for e in container(dev.pipeline, "Worker/Task")["Environment"]}
    assert "segscale-photos-example" not in json.dumps(dev.pipeline)


def test_no_worker_alarm_watches_queued_work_against_live_workers(dev: Synth) -> None:
    """Work waiting in the jobs queue while the reconcile passes count no live worker, for alarm_no_worker_minutes."""
    _, alarm = by_path(dev.pipeline, "/Monitoring/WorkQueuedNoLiveWorker/Resource", "AWS::CloudWatch::Alarm")
    props = alarm["Properties"]
    config = dev.app.config
    assert props["EvaluationPeriods"] == -(-config.alarm_no_worker_minutes // config.reconcile_interval_minutes)
    queries = {q["Id"]: q for q in props["Metrics"]}
    assert queries[next(k for k, q in queries.items() if "Expression" in q)]["Expression"] == (
        "IF(queued > 0 AND live == 0, 1, 0)"
    )
    live = queries["live"]["MetricStat"]
    assert live["Metric"]["MetricName"] == metrics.LIVE_WORKERS and live["Stat"] == "Maximum"
    assert live["Metric"]["Dimensions"] == [{"Name": metrics.SERVICE_DIMENSION, "Value": metrics.RESULTS_SERVICE}]
    queued = queries["queued"]["MetricStat"]["Metric"]
    assert queued["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert queued["Dimensions"] == [{"Name": "QueueName", "Value": import_of(dev, "queue-name")}]
