"""Issue 21, "scale to zero": the endpoint as SageMaker Serverless Inference next to today's provisioned instances.

Configuration (`endpoint.kind`, `endpoint.serverless`), the stacks synthesized for that kind, the promotion path on moto,
and the routing function's endpoint timeouts following the kind from one place (sav_router.aws.settings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from moto.core.responses import EmptyResult
from moto.sagemaker.responses import SageMakerResponse

import aws_env
from template_helpers import REPO, policy_statements, resources, synth_context

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas"))
from lambda_harness import BUCKET, FakeLambdaContext, load_handler_module  # noqa: E402

SERVERLESS = {"name": "sav-router", "kind": "serverless", "serverless": {"memorySizeMb": 2048, "maxConcurrency": 10, "provisionedConcurrency": 2},
              "bakingSeconds": 600, "latencyP99Ms": 1000}


def cdk_json_config() -> dict:
    return json.loads((REPO / "cdk.json").read_text())["context"]["sav-router"]


def with_endpoint(endpoint: dict, **more) -> dict:
    return {**cdk_json_config(), "endpoint": endpoint, **more}


# --- configuration -----------------------------------------------------------------------------------------------------

def test_the_committed_cdk_json_stays_provisioned():
    from infra.config import from_context

    endpoint = from_context(cdk_json_config()).endpoint
    assert endpoint.kind == "provisioned" and not endpoint.is_serverless and endpoint.instance_type == "ml.c5.xlarge"


def test_a_serverless_endpoint_parses_into_the_variant_serverless_config():
    from infra.config import from_context

    # GIVEN endpoint.kind serverless with its sizing
    endpoint = from_context(with_endpoint(SERVERLESS)).endpoint
    # THEN the production variant's ServerlessConfig is what CreateEndpointConfig takes
    assert endpoint.is_serverless
    assert endpoint.serverless.api() == {"MemorySizeInMB": 2048, "MaxConcurrency": 10, "ProvisionedConcurrency": 2}
    # and without provisioned concurrency it scales to zero (the key is left out, not sent as null)
    bare = from_context(with_endpoint({"kind": "serverless", "serverless": {"memorySizeMb": 1024, "maxConcurrency": 5}})).endpoint
    assert bare.serverless.api() == {"MemorySizeInMB": 1024, "MaxConcurrency": 5}


@pytest.mark.parametrize("endpoint, more, message", [
    ({"kind": "lambda"}, {}, r"endpoint\.kind must be one of \['provisioned', 'serverless'\]"),
    ({"kind": "serverless", "serverless": {"memorySizeMb": 1500}}, {}, r"memorySizeMb must be one of \[1024, 2048, 3072, 4096, 5120, 6144\]"),
    ({"kind": "serverless", "serverless": {"memorySizeMb": 8192}}, {}, r"memorySizeMb must be one of"),
    ({"kind": "serverless", "serverless": {"maxConcurrency": 0}}, {}, r"maxConcurrency must be within \[1, 200\]"),
    ({"kind": "serverless", "serverless": {"maxConcurrency": 201}}, {}, r"maxConcurrency must be within \[1, 200\]"),
    ({"kind": "serverless", "serverless": {"maxConcurrency": 10, "provisionedConcurrency": 11}}, {}, r"provisionedConcurrency must be within \[1, maxConcurrency=10\]"),
    ({"kind": "serverless", "serverless": {"provisionedConcurrency": 0}}, {}, r"provisionedConcurrency must be within"),
    ({"kind": "serverless", "serverless": {"maxConcurrency": "10"}}, {}, r"endpoint\.serverless\.maxConcurrency: expected int, got str"),
    ({"kind": "serverless", "serverless": {"memory": 2048}}, {}, r"unknown configuration keys \['memory'\] in endpoint\.serverless"),
    # instance fields mean nothing to a serverless endpoint: refused, never silently ignored
    ({"kind": "serverless", "instanceType": "ml.c5.xlarge"}, {}, r"serverless takes no \['instanceType'\]"),
    ({"kind": "serverless", "instanceCount": 2}, {}, r"serverless takes no \['instanceCount'\]"),
    # and the serverless block means nothing to instances
    ({"serverless": {"memorySizeMb": 2048}}, {}, r"endpoint\.serverless is set but endpoint\.kind is 'provisioned'"),
    # Serverless Inference supports neither VPC configuration nor network isolation
    ({"kind": "serverless"}, {"vpc": {"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]}}, r"serverless cannot run in the vpc"),
    # fewer concurrent endpoint invocations than concurrent routing invocations: throttled
    ({"kind": "serverless", "serverless": {"maxConcurrency": 4}}, {"routingConcurrency": 5}, r"maxConcurrency \(4\) is below routingConcurrency \(5\)"),
])
def test_invalid_serverless_settings_are_refused_with_the_key_named(endpoint, more, message):
    from infra.config import ConfigError, from_context

    with pytest.raises(ConfigError, match=message):
        from_context(with_endpoint(endpoint, **more))


# --- the routing function's timeouts follow the endpoint kind --------------------------------------------------------

def test_endpoint_call_limits_cover_a_serverless_invocation_and_keep_the_provisioned_values():
    from sav_router.aws.settings import endpoint_call_limits

    provisioned, serverless = endpoint_call_limits("provisioned"), endpoint_call_limits("serverless")
    # today's values, unchanged: 10 s read timeout, 3 attempts, 60 s function, 360 s visibility
    assert (provisioned.read_timeout, provisioned.max_attempts, provisioned.function_timeout_seconds, provisioned.visibility_timeout_seconds) == (10, 3, 60, 360)
    # a serverless endpoint has up to 60 s to answer /invocations, after a cold start: one attempt waits longer than that
    assert serverless.read_timeout > 60
    # the function outlives every attempt, and the queue hides a batch for 6x the function
    assert serverless.function_timeout_seconds > serverless.worst_call_seconds == serverless.max_attempts * (serverless.connect_timeout + serverless.read_timeout)
    assert serverless.visibility_timeout_seconds == 6 * serverless.function_timeout_seconds <= 12 * 3600


@pytest.mark.parametrize("kind", ["provisioned", "serverless"])
def test_the_routing_handler_builds_its_endpoint_client_from_its_settings(kind, monkeypatch):
    from sav_router.aws.settings import endpoint_call_limits

    # GIVEN the routing function's environment for an endpoint of this kind
    for key, value in {"ENDPOINT_NAME": "sav-router", "ENDPOINT_KIND": kind, "ARTIFACTS_BUCKET": BUCKET, "TEAM_QUEUES": "{}",
                       "REVIEW_QUEUE_URL": "https://q/review", "INTAKE_DLQ_URL": "https://q/dlq", "IDEMPOTENCY_TABLE": "t",
                       "POWERTOOLS_SERVICE_NAME": "routing"}.items():
        monkeypatch.setenv(key, value)
    # WHEN the handler module starts
    handler = load_handler_module("routing")
    # THEN its sagemaker-runtime client waits and retries as the kind's limits say
    limits, config = endpoint_call_limits(kind), handler.runtime.meta.config
    assert (config.read_timeout, config.connect_timeout, config.retries["total_max_attempts"]) == (limits.read_timeout, limits.connect_timeout, limits.max_attempts)


def test_an_unknown_endpoint_kind_stops_the_routing_function_at_start():
    from sav_router.aws.settings import RoutingSettings, SettingsError

    with pytest.raises(SettingsError, match="endpoint kind must be one of"):
        RoutingSettings(endpoint_name="e", endpoint_kind="lambda", artifacts_bucket="b", team_queues={}, review_queue_url="r",
                        intake_dlq_url="d", idempotency_table="t")


# --- the stacks synthesized with a serverless endpoint -----------------------------------------------------------------

@pytest.fixture(scope="module")
def serverless_stacks(tmp_path_factory):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from infra.config import from_context
    from infra.stacks import build

    context = synth_context()
    context["sav-router"] = {**context["sav-router"], "endpoint": SERVERLESS}
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("serverless-cdk.out")), context=context)
    config = from_context(context["sav-router"])
    stacks = build(app, config, env=cdk.Environment(account=aws_env.ACCOUNT, region=aws_env.REGION))
    return {key: Template.from_stack(stack).to_json() for key, stack in stacks.items()}


def function_by_service(raw: dict, service: str) -> dict:
    (fn,) = [f["Properties"] for f in resources(raw, "AWS::Lambda::Function").values()
             if f["Properties"].get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == service]
    return fn


def test_serverless_routing_function_and_intake_queue_are_sized_for_cold_starts(serverless_stacks, synthesized):
    from sav_router.aws.settings import endpoint_call_limits

    limits = endpoint_call_limits("serverless")
    raw = serverless_stacks["serving"]
    routing = function_by_service(raw, "routing")
    # THEN the function's timeout and the kind it reads come from the same limits
    assert routing["Timeout"] == limits.function_timeout_seconds
    assert routing["Environment"]["Variables"]["ENDPOINT_KIND"] == "serverless"
    intake = [q["Properties"] for q in resources(raw, "AWS::SQS::Queue").values()
              if q["Properties"].get("RedrivePolicy", {}).get("maxReceiveCount") == 5]
    assert len(intake) == 1 and intake[0]["VisibilityTimeout"] == limits.visibility_timeout_seconds == 6 * routing["Timeout"]
    # and the provisioned synthesis (cdk.json as committed) keeps today's 60 s function
    assert function_by_service(synthesized.raw["serving"], "routing")["Timeout"] == 60


def test_serverless_promotion_settings_carry_the_serverless_config_and_no_instances(serverless_stacks):
    variables = function_by_service(serverless_stacks["serving"], "promotion")["Environment"]["Variables"]
    assert variables["ENDPOINT_KIND"] == "serverless"
    assert json.loads(variables["SERVERLESS_CONFIG"]) == {"MemorySizeInMB": 2048, "MaxConcurrency": 10, "ProvisionedConcurrency": 2}
    assert "INSTANCE_TYPE" not in variables


def test_serverless_promotion_may_not_create_kms_grants(serverless_stacks, synthesized):
    def grants(raw: dict) -> list[dict]:
        return [s for s in policy_statements(raw) if "kms:CreateGrant" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]

    # GIVEN the provisioned promotion function may create grants for the endpoint's volume key
    assert grants(synthesized.raw["serving"])
    # THEN the serverless one, whose endpoint config has no KmsKeyId, may not (least privilege)
    assert grants(serverless_stacks["serving"]) == []


def test_the_rollback_alarms_watch_metrics_serverless_endpoints_publish(serverless_stacks):
    # Invocation5XXErrors and ModelLatency are published for serverless endpoints
    # (https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-monitoring.html)
    alarms = resources(serverless_stacks["serving"], "AWS::CloudWatch::Alarm").values()
    watched = {(a["Properties"].get("Namespace"), a["Properties"].get("MetricName")) for a in alarms}
    assert {("AWS/SageMaker", "Invocation5XXErrors"), ("AWS/SageMaker", "ModelLatency")} <= watched
    assert not [r for r in serverless_stacks["serving"]["Resources"].values() if r["Type"].startswith("AWS::ApplicationAutoScaling::")]


def test_app_with_a_serverless_endpoint_passes_cdk_nag(tmp_path):
    # GIVEN `python app.py` with -c sav-router='{"endpoint": {...serverless...}}' (one level of keys overrides cdk.json's)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(CDK_OUTDIR=str(tmp_path), CDK_CONTEXT_JSON=json.dumps({"aws:cdk:bundling-stacks": [], "sav-router": json.dumps({"endpoint": SERVERLESS})}),
               SAV_ROUTER_IMAGE_URI=aws_env.IMAGE_URI, JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CDK_DISABLE_CLI_TELEMETRY="true")
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    # THEN it synthesizes with zero unacknowledged AwsSolutions / Serverless findings
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "validation-report.json").read_text())["pluginReports"] == []
    serving = json.loads((tmp_path / "SavRouterServing.template.json").read_text())
    assert function_by_service(serving, "promotion")["Environment"]["Variables"]["ENDPOINT_KIND"] == "serverless"


# --- the promotion path on moto -----------------------------------------------------------------------------------------

GROUP = "sav-router-models"
ALARMS = ["sav-router-endpoint-5xx", "sav-router-endpoint-latency-p99"]
SERVERLESS_CONFIG = {"MemorySizeInMB": 2048, "MaxConcurrency": 10, "ProvisionedConcurrency": 2}


@pytest.fixture
def calls(monkeypatch) -> dict[str, list[dict]]:
    """moto has no UpdateEndpoint and does not keep EnableNetworkIsolation / VpcConfig: record what was asked."""
    recorded: dict[str, list[dict]] = {"update": [], "model": []}
    original_create_model = SageMakerResponse.create_model

    def update_endpoint(self):
        params = {k: self._get_param(k) for k in ("EndpointName", "EndpointConfigName", "DeploymentConfig")}
        recorded["update"].append(params)
        self.sagemaker_backend.endpoints[params["EndpointName"]].endpoint_config_name = params["EndpointConfigName"]
        return EmptyResult()

    def create_model(self):
        recorded["model"].append({k: self._get_param(k) for k in ("ModelName", "EnableNetworkIsolation", "VpcConfig")})
        return original_create_model(self)

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
    monkeypatch.setattr(SageMakerResponse, "create_model", create_model)
    return recorded


def promotion_env(kind: str) -> dict[str, str]:
    from infra.config import from_context
    from sav_router.aws.settings import PromotionSettings

    endpoint = from_context(with_endpoint(SERVERLESS if kind == "serverless" else cdk_json_config()["endpoint"])).endpoint
    # what infra/promotion.py writes for this kind (same expressions), VPC ids included to show they are not used
    return PromotionSettings(
        endpoint_name="sav-router", sagemaker_role_arn=f"arn:aws:iam::{aws_env.ACCOUNT}:role/sagemaker",
        kms_key_arn=f"arn:aws:kms:{aws_env.REGION}:{aws_env.ACCOUNT}:key/test", endpoint_kind=endpoint.kind,
        instance_type=None if endpoint.is_serverless else endpoint.instance_type, instance_count=1,
        serverless_config=endpoint.serverless.api() if endpoint.is_serverless else None,
        rollback_alarms=ALARMS, artifacts_bucket=BUCKET, baking_seconds=600,
        subnet_ids=["subnet-1"], security_group_ids=["sg-1"],
    ).to_environment() | {"POWERTOOLS_SERVICE_NAME": "promotion"}


@pytest.fixture
def registry(monkeypatch):
    with mock_aws():
        sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.REGION})
        sm.create_model_package_group(ModelPackageGroupName=GROUP)

        def handler(kind: str):
            for key in ("INSTANCE_TYPE", "SERVERLESS_CONFIG"):
                monkeypatch.delenv(key, raising=False)
            for key, value in promotion_env(kind).items():
                monkeypatch.setenv(key, value)
            return load_handler_module("promotion").handler

        yield {"sm": sm, "s3": s3, "handler": handler}


def register(registry, version: str) -> str:
    registry["s3"].put_object(Bucket=BUCKET, Key=f"models/manifests/{version}.json", Body=b"{}")
    return registry["sm"].create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved", CustomerMetadataProperties={"model_version": version},
        InferenceSpecification={"Containers": [{"Image": aws_env.IMAGE_URI, "ModelDataUrl": f"s3://{BUCKET}/models/training/{version}/model.tar.gz"}],
                                "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]


def approval(arn: str) -> dict:
    return {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change",
            "detail": {"ModelPackageArn": arn, "ModelPackageGroupName": GROUP, "ModelApprovalStatus": "Approved"}}


def test_first_serverless_approval_creates_the_endpoint_with_a_serverless_variant(registry, calls):
    context, promote = FakeLambdaContext(), registry["handler"]("serverless")
    # GIVEN an approved package whose thresholds are published, and a serverless deployment
    arn = register(registry, "v-one")
    # WHEN its approval arrives, twice
    first, repeat = promote(approval(arn), context), promote(approval(arn), context)
    # THEN the endpoint is created once, on an endpoint config whose variant is serverless (no instances, no KMS key)
    assert first["action"] == "created" and first["endpoint_config"] == "sav-router-v1-serverless"
    assert repeat["action"] == "none" and repeat["reason"] == "already deployed"
    sm = registry["sm"]
    config = sm.describe_endpoint_config(EndpointConfigName="sav-router-v1-serverless")
    (variant,) = config["ProductionVariants"]
    assert variant["ServerlessConfig"] == SERVERLESS_CONFIG  # what moto records, as SageMaker would describe it
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant and "KmsKeyId" not in config
    endpoint = sm.describe_endpoint(EndpointName="sav-router")
    assert endpoint["ProductionVariants"][0]["CurrentServerlessConfig"] == SERVERLESS_CONFIG
    # and its model runs without network isolation or VPC placement (neither is supported by Serverless Inference)
    (model,) = calls["model"]
    assert model == {"ModelName": "sav-router-v1-serverless", "EnableNetworkIsolation": False, "VpcConfig": None}
    assert calls["update"] == []


def test_serverless_updates_are_blue_green_all_at_once_with_the_rollback_alarms_and_a_reapproval_rolls_back(registry, calls):
    context, promote = FakeLambdaContext(), registry["handler"]("serverless")
    # GIVEN version 1 in service
    v1 = register(registry, "v-one")
    promote(approval(v1), context)
    # WHEN version 2 is approved (twice: the queue may redeliver)
    v2 = register(registry, "v-two")
    outcome = promote(approval(v2), context)
    promote(approval(v2), context)
    # THEN one update: all at once (no instance canary on a serverless endpoint), baked, rolled back by the endpoint alarms
    assert outcome["action"] == "updated" and outcome["previous_config"] == "sav-router-v1-serverless"
    (update,) = calls["update"]
    assert update["EndpointConfigName"] == "sav-router-v2-serverless"
    assert update["DeploymentConfig"]["BlueGreenUpdatePolicy"] == {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}, "TerminationWaitInSeconds": 600}
    assert [a["AlarmName"] for a in update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]] == ALARMS
    # WHEN an operator rolls back by approving version 1 again
    rollback = promote(approval(v1), context)
    # THEN the endpoint goes back to version 1's existing config and model: nothing new is created
    assert rollback["action"] == "updated" and rollback["endpoint_config"] == "sav-router-v1-serverless"
    assert registry["sm"].describe_endpoint(EndpointName="sav-router")["EndpointConfigName"] == "sav-router-v1-serverless"
    assert len(calls["model"]) == 2 and len(registry["sm"].list_endpoint_configs()["EndpointConfigs"]) == 2


def test_an_instance_endpoint_is_not_converted_to_serverless(registry, calls):
    from sav_router.aws.promotion import NotDeployable

    context = FakeLambdaContext()
    # GIVEN an endpoint created on instances
    registry["handler"]("provisioned")(approval(register(registry, "v-one")), context)
    # WHEN the deployment is switched to serverless and a package is approved
    promote = registry["handler"]("serverless")
    # THEN it is refused with what to do (SageMaker refuses the conversion; every retry would fail the same way)
    with pytest.raises(NotDeployable, match="cannot convert it to serverless: delete the endpoint"):
        promote(approval(register(registry, "v-two")), context)
    assert calls["update"] == [] and registry["sm"].describe_endpoint(EndpointName="sav-router")["EndpointConfigName"] == "sav-router-v1"


def test_the_teardown_removes_serverless_versions_and_never_takes_them_for_run_models():
    from sav_router.aws.teardown import serving_versions

    versions = serving_versions("sav-router")
    assert versions.match("sav-router-v3") and versions.match("sav-router-v3-serverless")
    assert not versions.match("sav-router-v3-other")
