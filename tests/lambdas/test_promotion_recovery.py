"""Issue 19 items 7 and 8: a first endpoint that ended Failed is recovered by the next delivery of the approval;
a type with NVMe instance storage gets no volume KMS key (SageMaker refuses one there)."""

from __future__ import annotations

import json

import pytest
from moto.sagemaker.models import sagemaker_backends

import aws_env
from lambda_harness import load_handler_module
from test_promotion_lambda import register, registry  # noqa: F401 - fixture
from sav_router.aws.instances import has_instance_storage, volume_key
from sav_router.aws.promotion import DeploymentInProgress


def approval(arn: str) -> dict:
    return {"Records": [{"body": json.dumps({"detail": {"ModelApprovalStatus": "Approved", "ModelPackageArn": arn}})}]}


def test_a_failed_first_endpoint_is_deleted_then_created_again(registry, context):  # noqa: F811
    sm, handler = registry["sm"], registry["handler"]
    arn = register(registry, "v-one")
    assert handler(approval(arn), context)["action"] == "created"
    # GIVEN the endpoint's creation failed (no capacity, say)
    endpoint = sagemaker_backends[aws_env.ACCOUNT][aws_env.REGION].endpoints["sav-router"]
    endpoint.endpoint_status, endpoint.failure_reason = "Failed", "InsufficientInstanceCapacity"
    # WHEN the approval is delivered: the Failed endpoint is deleted and the message retried (queue redelivery)
    with pytest.raises(DeploymentInProgress, match="was Failed .InsufficientInstanceCapacity.: deleted"):
        handler(approval(arn), context)
    assert sm.list_endpoints()["Endpoints"] == []
    # THEN the redelivered approval creates the endpoint again, with the existing model and config
    assert handler(approval(arn), context)["action"] == "created"
    assert sm.describe_endpoint(EndpointName="sav-router")["EndpointStatus"] == "InService"


def test_an_endpoint_on_nvme_storage_gets_no_volume_key(registry, context, monkeypatch):  # noqa: F811
    monkeypatch.setenv("INSTANCE_TYPE", "ml.g4dn.xlarge")  # (moto knows no g5)
    handler = load_handler_module("promotion").handler
    assert handler(approval(register(registry, "v-gpu")), context)["action"] == "created"
    config = registry["sm"].describe_endpoint_config(EndpointConfigName="sav-router-v1")
    assert "KmsKeyId" not in config and config["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.xlarge"


@pytest.mark.parametrize("instance_type, nvme", [
    ("ml.m5.2xlarge", False), ("ml.c5.xlarge", False), ("ml.p3.2xlarge", False), ("ml.inf2.xlarge", False), ("ml.m7i.large", False),
    ("ml.g5.xlarge", True), ("ml.g4dn.xlarge", True), ("ml.c5d.xlarge", True), ("ml.p4d.24xlarge", True), ("ml.m6id.large", True),
    ("ml.g6.2xlarge", True), ("ml.r5ad.large", True), ("ml.trn1.2xlarge", True),
])
def test_instance_storage_types_are_known(instance_type, nvme):
    assert has_instance_storage(instance_type) is nvme
    assert volume_key(instance_type, "k") == ({} if nvme else {"VolumeKmsKeyId": "k"})
