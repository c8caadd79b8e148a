"""Approval -> endpoint: EventBridge `SageMaker Model Package State Change` -> promotion Lambda.

Paired with `lambdas/promotion/handler.py` and `sav_router/aws/promotion.py`.
The endpoint alarms (5xx, latency) defined here are both operator alarms and
the auto-rollback alarms of every blue/green update.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import DeploymentConfig
from infra.lambda_function import ProjectFunction
from infra.policies import allow, read_prefix
from infra.queues import dead_letter_queue
from infra.shared import Shared
from sav_router.core import layout


class EndpointAlarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self.names = (f"{config.prefix}-endpoint-5xx", f"{config.prefix}-endpoint-latency-p99")
        dims = {"EndpointName": config.endpoint.name, "VariantName": "AllTraffic"}
        self.errors = cloudwatch.Alarm(
            self, "Errors5xx", alarm_name=self.names[0],
            metric=cloudwatch.Metric(namespace="AWS/SageMaker", metric_name="Invocation5XXErrors", dimensions_map=dims,
                                     statistic="Sum", period=Duration.minutes(1)),
            threshold=5, evaluation_periods=3, datapoints_to_alarm=2,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="Endpoint 5xx errors (also rolls back a blue/green update)",
        )
        self.latency = cloudwatch.Alarm(
            self, "LatencyP99", alarm_name=self.names[1],
            metric=cloudwatch.Metric(namespace="AWS/SageMaker", metric_name="ModelLatency", dimensions_map=dims,
                                     statistic="p99", period=Duration.minutes(1)),
            threshold=config.endpoint.latency_p99_ms * 1000,  # ModelLatency is in microseconds
            evaluation_periods=5, datapoints_to_alarm=3,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"Endpoint p99 model latency above {config.endpoint.latency_p99_ms} ms (also rolls back a blue/green update)",
        )
        self.alarms = (self.errors, self.latency)


class Promotion(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, shared: Shared, rollback_alarm_names: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        key, bucket, sagemaker_role = shared.key, shared.bucket, shared.sagemaker_role
        # Approval events that fail delivery or processing end here (EventBridge target DLQ and the function's async DLQ).
        self.failures = dead_letter_queue(self, "EventsDlq", key=key, purpose="approval events (EventBridge target and asynchronous invocations)")
        self.function = ProjectFunction(
            self, "Promotion", name="promotion", key=key, log_retention_days=config.log_retention_days,
            description="sav-router: deploy an approved model package to the endpoint (blue/green, auto rollback)",
            memory_mb=256, timeout=Duration.seconds(60), reserved_concurrency=1,  # one deployment decision at a time
            environment={
                "ENDPOINT_NAME": config.endpoint.name,
                "SAGEMAKER_ROLE_ARN": sagemaker_role.role_arn,
                "KMS_KEY_ARN": key.key_arn,
                "INSTANCE_TYPE": config.endpoint.instance_type,
                "INSTANCE_COUNT": str(config.endpoint.instance_count),
                "BAKING_SECONDS": str(config.endpoint.baking_seconds),
                "ROLLBACK_ALARMS": json.dumps(list(rollback_alarm_names)),
                "ARTIFACTS_BUCKET": bucket.bucket_name,
                "SUBNET_IDS": json.dumps(list(config.vpc.subnet_ids)),
                "SECURITY_GROUP_IDS": json.dumps(list(config.vpc.security_group_ids)),
            },
            dead_letter_queue=self.failures,
        )
        self.handler = self.function.function
        self.rule = events.Rule(
            self, "Approved",
            description="An approved sav-router model package is deployed to the endpoint",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": [shared.model_package_group_name], "ModelApprovalStatus": ["Approved"]},
            ),
            targets=[targets.LambdaFunction(self.handler, dead_letter_queue=self.failures, retry_attempts=8, max_event_age=Duration.hours(6))],
        )
        self._grant(stack, config, shared)

    def _grant(self, stack: Stack, config: DeploymentConfig, shared: Shared) -> None:
        arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        name, group = config.endpoint.name, shared.model_package_group_name
        fn, role, key = self.handler, self.function.role, shared.key
        allow(fn, role, ["sagemaker:DescribeModelPackage"], [f"{arn}:model-package/{group}/*"],
              wildcard_reason="model package versions of this deployment's group are numbered by SageMaker")
        allow(fn, role,
              ["sagemaker:DescribeModel", "sagemaker:CreateModel", "sagemaker:DescribeEndpointConfig", "sagemaker:CreateEndpointConfig",
               "sagemaker:DescribeEndpoint", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:AddTags"],
              [f"{arn}:model/{name}-v*", f"{arn}:endpoint-config/{name}-v*", f"{arn}:endpoint/{name}"],
              wildcard_reason="models and endpoint configs are named <endpoint>-v<package version>, one per approved package")
        allow(fn, role, ["iam:PassRole"], [shared.sagemaker_role.role_arn], conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
        # SageMaker creates grants on the key for the endpoint's encrypted volumes on the caller's behalf.
        fn.add_to_role_policy(iam.PolicyStatement(
            actions=["kms:CreateGrant", "kms:DescribeKey"], resources=[key.key_arn], conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ))
        read_prefix(fn, role, shared.bucket.bucket_arn, layout.MANIFESTS)
