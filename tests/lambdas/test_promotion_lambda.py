"""Promotion: an approved model package is deployed once, blue/green with rollback alarms on updates."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from moto.core.responses import EmptyResult
from moto.sagemaker.responses import SageMakerResponse

import aws_env
from lambda_harness import BUCKET, load_handler_module

GROUP = "sav-router-models"
ALARMS = ["sav-router-endpoint-5xx", "sav-router-endpoint-latency-p99"]


@pytest.fixture
def updates(monkeypatch) -> list[dict]:
    """moto has no UpdateEndpoint: record the call and switch the endpoint's config, as SageMaker does once the update completes."""
    calls: list[dict] = []

    def update_endpoint(self):
        params = {k: self._get_param(k) for k in ("EndpointName", "EndpointConfigName", "DeploymentConfig")}
        calls.append(params)
        self.sagemaker_backend.endpoints[params["EndpointName"]].endpoint_config_name = params["EndpointConfigName"]
        return EmptyResult()

    monkeypatch.setattr(SageMakerResponse, "update_endpoint", update_endpoint, raising=False)
    return calls


@pytest.fixture
def created_models(monkeypatch) -> list[dict]:
    """moto does not keep EnableNetworkIsolation: record what CreateModel was asked for."""
    calls: list[dict] = []
    original = SageMakerResponse.create_model

    def create_model(self):
        calls.append({k: self._get_param(k) for k in ("ModelName", "EnableNetworkIsolation", "PrimaryContainer")})
        return original(self)

    monkeypatch.setattr(SageMakerResponse, "create_model", create_model)
    return calls


@pytest.fixture
def registry(monkeypatch):
    with mock_aws():
        sm, s3 = boto3.client("sagemaker"), boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.REGION})
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        for key, value in {
            "ENDPOINT_NAME": "sav-router", "SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{aws_env.ACCOUNT}:role/sagemaker",
            "KMS_KEY_ARN": f"arn:aws:kms:{aws_env.REGION}:{aws_env.ACCOUNT}:key/test", "INSTANCE_TYPE": "ml.c5.xlarge",
            "INSTANCE_COUNT": "2", "ROLLBACK_ALARMS": json.dumps(ALARMS), "ARTIFACTS_BUCKET": BUCKET, "BAKING_SECONDS": "600",
            "POWERTOOLS_SERVICE_NAME": "promotion",
        }.items():
            monkeypatch.setenv(key, value)
        yield {"sm": sm, "s3": s3, "handler": load_handler_module("promotion").handler}


def register(registry, version: str, *, status: str = "Approved", publish: bool = True) -> str:
    if publish:
        registry["s3"].put_object(Bucket=BUCKET, Key=f"models/manifests/{version}.json", Body=b"{}")
    return registry["sm"].create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status, CustomerMetadataProperties={"model_version": version},
        InferenceSpecification={"Containers": [{"Image": aws_env.IMAGE_URI, "ModelDataUrl": f"s3://{BUCKET}/models/training/{version}/model.tar.gz"}],
                                "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]


def approval_event(arn: str, status: str = "Approved") -> dict:
    return {"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change",
            "detail": {"ModelPackageArn": arn, "ModelPackageGroupName": GROUP, "ModelApprovalStatus": status}}


def test_first_approval_creates_the_encrypted_endpoint_and_a_repeat_does_nothing(registry, updates, created_models, context):
    # GIVEN an approved package whose thresholds are published
    arn = register(registry, "v-one")
    # WHEN the approval event arrives, twice
    first = registry["handler"](approval_event(arn), context)
    repeat = registry["handler"](approval_event(arn), context)
    # THEN the endpoint is created once, on a KMS-encrypted config, with a network-isolated model
    assert first["action"] == "created" and repeat == {"action": "none", "reason": "already deployed", "endpoint_config": "sav-router-v1", "model_version": "v-one"}
    sm = registry["sm"]
    assert sm.describe_endpoint(EndpointName="sav-router")["EndpointConfigName"] == "sav-router-v1"
    config = sm.describe_endpoint_config(EndpointConfigName="sav-router-v1")
    assert config["KmsKeyId"].endswith("key/test") and config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    (model,) = created_models
    assert model["ModelName"] == "sav-router-v1" and model["EnableNetworkIsolation"] is True
    assert model["PrimaryContainer"]["ModelDataUrl"].endswith("v-one/model.tar.gz")
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1 and updates == []


def test_a_later_approval_updates_blue_green_with_auto_rollback(registry, updates, context):
    # GIVEN version 1 in service and version 2 approved
    registry["handler"](approval_event(register(registry, "v-one")), context)
    arn = register(registry, "v-two")
    # WHEN the approval of version 2 arrives twice
    outcome = registry["handler"](approval_event(arn), context)
    registry["handler"](approval_event(arn), context)
    # THEN exactly one blue/green update: canary of one instance, then the rest, rolled back by the endpoint alarms
    assert outcome["action"] == "updated" and outcome["previous_config"] == "sav-router-v1"
    (update,) = updates
    assert update["EndpointConfigName"] == "sav-router-v2"
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "CANARY"
    assert policy["TrafficRoutingConfiguration"]["CanarySize"] == {"Type": "INSTANCE_COUNT", "Value": 1}
    assert [a["AlarmName"] for a in update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]] == ALARMS


def test_non_approved_or_unpublished_packages_are_not_deployed(registry, updates, context):
    # GIVEN a rejected package, and an approved one whose thresholds were never published
    rejected = register(registry, "v-bad", status="Rejected")
    unpublished = register(registry, "v-lost", publish=False)
    # WHEN their events arrive
    ignored = registry["handler"](approval_event(rejected, status="Rejected"), context)
    # THEN the rejected one is ignored, the unpublished one refused (the event is retried, then dead-lettered)
    assert ignored["action"] == "none"
    from sav_router.aws.promotion import NotDeployable

    with pytest.raises(NotDeployable, match="not published"):
        registry["handler"](approval_event(unpublished), context)
    assert registry["sm"].list_endpoints()["Endpoints"] == []


def from_approvals_queue(event: dict) -> dict:
    """The approval as the function receives it: one record of the FIFO approvals queue (EventBridge's event as body)."""
    return {"Records": [{"messageId": "m-1", "receiptHandle": "r-1", "body": json.dumps(event), "attributes": {"MessageGroupId": "approvals"},
                         "messageAttributes": {}, "eventSource": "aws:sqs"}]}


def test_an_approval_from_the_queue_is_deployed(registry, updates, context):
    outcome = registry["handler"](from_approvals_queue(approval_event(register(registry, "v-one"))), context)
    assert outcome["action"] == "created" and outcome["endpoint_config"] == "sav-router-v1"


def test_an_approval_during_an_update_fails_its_message_so_the_queue_redelivers_it(registry, updates, context):
    """Finding 8: the approval must survive a blue/green update (the queue redelivers it, for several updates' length)."""
    from sav_router.aws.promotion import DeploymentInProgress

    # GIVEN version 1 in service, the endpoint busy with an update, version 2 approved
    registry["handler"](approval_event(register(registry, "v-one")), context)
    arn = register(registry, "v-two")
    from moto.sagemaker.models import sagemaker_backends

    endpoint = sagemaker_backends[aws_env.ACCOUNT][aws_env.REGION].endpoints["sav-router"]
    endpoint.endpoint_status = "Updating"
    # WHEN the approval arrives from the queue
    with pytest.raises(DeploymentInProgress, match="Updating"):
        registry["handler"](from_approvals_queue(approval_event(arn)), context)
    # THEN nothing changed; WHEN the update is over and the queue redelivers the message, THEN it deploys
    assert updates == []
    endpoint.endpoint_status = "InService"
    outcome = registry["handler"](from_approvals_queue(approval_event(arn)), context)
    assert outcome["action"] == "updated" and [u["EndpointConfigName"] for u in updates] == ["sav-router-v2"]
