"""Deploy an approved model package to the endpoint, once, with blue/green guardrails.

Two endpoint kinds (`PromotionSettings.endpoint_kind`): provisioned instances, or SageMaker Serverless Inference.
A serverless variant carries a `ServerlessConfig` instead of an instance type and count, and its model runs without
network isolation, VPC placement or a volume KMS key: Serverless Inference supports none of them ("Feature exclusions",
https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html). Its updates keep the blue/green guardrails
that page and the guardrails' own exclusions allow: all at once (no canary: a serverless endpoint has no instances to
count), a baking period and the auto-rollback alarms; only rolling deployments exclude serverless endpoints
(https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-exclusions.html).

Names are derived from the package version (`<endpoint>-v<N>`), so a repeated
approval event finds its model, endpoint config and endpoint already in place
and does nothing. An update while the endpoint is still changing raises
`DeploymentInProgress`; the approval message is redelivered by its queue later
(for several update durations) and then either deploys or finds the work done.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sav_router.aws.approval import APPROVED
from sav_router.aws.instances import has_instance_storage
from sav_router.aws.settings import SERVERLESS_NAME_SUFFIX, PromotionSettings
from sav_router.core import layout

BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed", "Deleting")
FAILED = "Failed"


class DeploymentInProgress(RuntimeError):
    """The endpoint is changing; retry the event later."""


class NotDeployable(ValueError):
    """The package is not approved, or its thresholds are not published for the routing Lambda."""


def approval_events(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The EventBridge events in an invocation: SQS records from the approvals queue, or one event invoked directly."""
    if "Records" in event:
        return [json.loads(record["body"]) for record in event["Records"]]
    return [dict(event)]


def deployment_config(settings: PromotionSettings) -> dict[str, Any]:
    """Blue/green: a new fleet, a canary (all at once for a single instance or a serverless endpoint), alarms watched,
    auto rollback."""
    if not settings.serverless and settings.instance_count > 1:
        routing = {"Type": "CANARY", "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}, "WaitIntervalInSeconds": settings.baking_seconds}
    else:
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": settings.baking_seconds}
    return {
        "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": settings.baking_seconds},
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in settings.rollback_alarms]},
    }


def resource_name(settings: PromotionSettings, package_version: int) -> str:
    """The model and endpoint config of a package version: `<endpoint>-v<N>`, with `-serverless` for that kind, so that a
    deployment switched between kinds never reuses the other kind's model or endpoint config (re-approving an old package
    included)."""
    return f"{settings.endpoint_name}-v{package_version}" + (SERVERLESS_NAME_SUFFIX if settings.serverless else "")


def is_serverless(endpoint: Mapping[str, Any]) -> bool:
    """Whether a DescribeEndpoint answer is a serverless endpoint (its variants report a serverless config)."""
    return any("CurrentServerlessConfig" in v or "DesiredServerlessConfig" in v for v in endpoint.get("ProductionVariants", []))


class Promoter:
    def __init__(self, sagemaker: Any, s3: Any, settings: PromotionSettings) -> None:
        self.sm, self.s3, self.settings = sagemaker, s3, settings

    def promote(self, model_package_arn: str) -> dict[str, Any]:
        package = self.sm.describe_model_package(ModelPackageName=model_package_arn)
        if package.get("ModelApprovalStatus") != APPROVED:
            raise NotDeployable(f"{model_package_arn} is {package.get('ModelApprovalStatus')}, not {APPROVED}")
        version = package.get("CustomerMetadataProperties", {}).get("model_version")
        if not version:
            raise NotDeployable(f"{model_package_arn} has no model_version metadata")
        try:
            self.s3.head_object(Bucket=self.settings.artifacts_bucket, Key=layout.manifest_key(version))
        except Exception as exc:  # noqa: BLE001 - without thresholds the routing Lambda would escalate everything
            raise NotDeployable(f"thresholds of model {version} are not published at {layout.manifest_key(version)}") from exc
        name = resource_name(self.settings, package["ModelPackageVersion"])
        endpoint = self._endpoint()
        if endpoint is not None and endpoint["EndpointStatus"] == FAILED:
            # A Failed endpoint (its creation failed: capacity, image, quota) cannot be updated, only deleted. Delete it
            # and let the approval's queue redeliver this message: once the deletion is done, it creates the endpoint anew.
            self.sm.delete_endpoint(EndpointName=self.settings.endpoint_name)
            raise DeploymentInProgress(f"endpoint {self.settings.endpoint_name} was Failed ({endpoint.get('FailureReason', 'no reason given')}): "
                                       "deleted; this approval is retried to create it again")
        if endpoint is not None and endpoint["EndpointConfigName"] == name:
            return {"action": "none", "reason": "already deployed", "endpoint_config": name, "model_version": version}
        if endpoint is not None and endpoint["EndpointStatus"] in BUSY:
            raise DeploymentInProgress(f"endpoint {self.settings.endpoint_name} is {endpoint['EndpointStatus']}")
        if endpoint is not None and self.settings.serverless and not is_serverless(endpoint):
            # SageMaker refuses to update an instance-based endpoint to serverless (ValidationError), and so would every retry.
            raise NotDeployable(f"endpoint {self.settings.endpoint_name} runs on instances and SageMaker cannot convert it to serverless: "
                                "delete the endpoint, then approve the package again to create it serverless")
        self._ensure_model(name, package["InferenceSpecification"]["Containers"][0])
        self._ensure_endpoint_config(name)
        tags = [{"Key": "model_version", "Value": version}]
        if endpoint is None:
            self.sm.create_endpoint(EndpointName=self.settings.endpoint_name, EndpointConfigName=name, Tags=tags)
            return {"action": "created", "endpoint_config": name, "model_version": version}
        self.sm.update_endpoint(
            EndpointName=self.settings.endpoint_name,
            EndpointConfigName=name,
            DeploymentConfig=deployment_config(self.settings),
            RetainAllVariantProperties=False,
        )
        return {"action": "updated", "endpoint_config": name, "previous_config": endpoint["EndpointConfigName"], "model_version": version}

    def _endpoint(self) -> dict[str, Any] | None:
        try:
            return self.sm.describe_endpoint(EndpointName=self.settings.endpoint_name)
        except self.sm.exceptions.ClientError as exc:
            if "Could not find endpoint" in str(exc):
                return None
            raise

    def _ensure_model(self, name: str, container: dict[str, Any]) -> None:
        try:
            self.sm.describe_model(ModelName=name)
            return
        except self.sm.exceptions.ClientError as exc:
            if "Could not find model" not in str(exc):
                raise
        spec: dict[str, Any] = {
            "ModelName": name,
            "PrimaryContainer": {"Image": container["Image"], "ModelDataUrl": container["ModelDataUrl"]},
            "ExecutionRoleArn": self.settings.sagemaker_role_arn,
            # Serverless Inference supports neither network isolation nor a VPC configuration (module docstring): the
            # container keeps network access there. infra/config.py refuses a serverless endpoint in a VPC.
            "EnableNetworkIsolation": not self.settings.serverless,
        }
        if self.settings.subnet_ids and not self.settings.serverless:
            spec["VpcConfig"] = {"Subnets": list(self.settings.subnet_ids), "SecurityGroupIds": list(self.settings.security_group_ids)}
        self.sm.create_model(**spec)

    def _ensure_endpoint_config(self, name: str) -> None:
        try:
            self.sm.describe_endpoint_config(EndpointConfigName=name)
            return
        except self.sm.exceptions.ClientError as exc:
            if "Could not find endpoint configuration" not in str(exc) and "Could not find endpoint config" not in str(exc):
                raise
        variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": name}
        if self.settings.serverless:
            # No KmsKeyId: there is no instance storage volume to encrypt, and the serverless feature exclusions have listed
            # KMS keys (module docstring); SageMaker encrypts what it stores for the endpoint with an AWS owned key.
            key: dict[str, str] = {}
            variant["ServerlessConfig"] = dict(self.settings.serverless_config or {})
        else:
            # No KmsKeyId for a type with NVMe instance storage: SageMaker refuses it there (AWS encrypts that storage).
            key = {} if has_instance_storage(self.settings.instance_type) else {"KmsKeyId": self.settings.kms_key_arn}
            variant.update(InitialInstanceCount=self.settings.instance_count, InstanceType=self.settings.instance_type, InitialVariantWeight=1.0)
        self.sm.create_endpoint_config(EndpointConfigName=name, **key, ProductionVariants=[variant])
