"""Approval -> endpoint: EventBridge `SageMaker Model Package State Change` -> FIFO queue -> promotion Lambda.

Paired with `lambdas/promotion/handler.py` and `sav_router/aws/promotion.py`.
The endpoint alarms (5xx, latency) defined here are both operator alarms and
the auto-rollback alarms of every blue/green update.

Why a queue: an approval that arrives while the endpoint is updating raises
`DeploymentInProgress`, and a blue/green update lasts a new fleet plus two
bake periods. Lambda's own asynchronous retries give up after about three
minutes; a message redelivered every visibility timeout keeps the approval
for `retry_window` (several updates long), then dead-letters it (alarmed).
One message group: approvals are deployed one at a time, in the order given.
"""

from __future__ import annotations

import math

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from infra.config import DeploymentConfig
from infra.lambda_function import ProjectFunction
from infra.event_targets import QueueTarget
from infra.policies import acknowledge, allow, read_prefix, use_key
from infra.queues import dead_letter_queue, encrypted_queue
from infra.shared import Shared, rollback_alarm_names
from sav_router.aws.approval import APPROVED
from sav_router.aws.settings import PromotionSettings
from sav_router.core import layout


class EndpointAlarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self.names = rollback_alarm_names(config)
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


FUNCTION_TIMEOUT = Duration.seconds(60)
VISIBILITY = Duration.seconds(FUNCTION_TIMEOUT.to_seconds() * 6)  # AWS guidance for SQS event sources
FLEET_PROVISIONING_SECONDS = 15 * 60  # a new blue/green fleet, before the first bake starts


def update_seconds(config: DeploymentConfig) -> int:
    """How long one blue/green update keeps the endpoint busy: the new fleet, the canary bake, the termination wait."""
    return FLEET_PROVISIONING_SECONDS + 2 * config.endpoint.baking_seconds


def retry_window_seconds(config: DeploymentConfig) -> int:
    """How long an approval is retried while the endpoint is busy: three updates' worth, at least an hour."""
    return max(3600, 3 * update_seconds(config))


def max_receive_count(config: DeploymentConfig) -> int:
    return math.ceil(retry_window_seconds(config) / VISIBILITY.to_seconds())


class Promotion(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, shared: Shared, rollback_alarms: tuple[str, ...],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        key, bucket, sagemaker_role = shared.key, shared.bucket, shared.sagemaker_role
        # Approval events EventBridge cannot deliver end here (the target's DLQ must be a standard queue).
        self.failures = dead_letter_queue(self, "EventsDlq", key=key, purpose="approval events EventBridge could not deliver")
        acknowledge(self.failures, "AwsSolutions-SQS3", "the approval rule's EventBridge target dead-letter queue (DeadLetterConfig), which cdk-nag does not trace")
        # Approvals still not deployed after the retry window end here.
        self.retries_dlq = dead_letter_queue(self, "ApprovalsDlq", key=key, purpose="approvals not deployed within the retry window", fifo=True)
        self.approvals = encrypted_queue(self, "Approvals", key=key, fifo=True, dead_letter=self.retries_dlq,
                                         max_receive_count=max_receive_count(config), visibility_timeout=VISIBILITY)
        self.function = ProjectFunction(
            self, "Promotion", name="promotion", key=key, log_retention_days=config.log_retention_days,
            description="sav-router: deploy an approved model package to the endpoint (blue/green, auto rollback)",
            memory_mb=256, timeout=FUNCTION_TIMEOUT,  # one at a time: a single FIFO message group, no reserved concurrency needed
            environment=PromotionSettings(
                endpoint_name=config.endpoint.name,
                sagemaker_role_arn=sagemaker_role.role_arn,
                kms_key_arn=key.key_arn,
                endpoint_kind=config.endpoint.kind,
                # each kind writes its own sizing only: instances, or the serverless variant's ServerlessConfig
                instance_type=None if config.endpoint.is_serverless else config.endpoint.instance_type,
                instance_count=1 if config.endpoint.is_serverless else config.endpoint.instance_count,
                serverless_config=config.endpoint.serverless.api() if config.endpoint.is_serverless else None,
                baking_seconds=config.endpoint.baking_seconds,
                rollback_alarms=list(rollback_alarms),
                artifacts_bucket=bucket.bucket_name,
                subnet_ids=list(config.vpc.subnet_ids),
                security_group_ids=list(config.vpc.security_group_ids),
            ).to_environment(),
        )
        self.handler = self.function.function
        acknowledge(self.handler, "Serverless-LambdaDLQ", "invoked by an SQS event source only: the approvals queue's redrive policy is the failure path")
        acknowledge(self.handler, "Serverless-LambdaEventSourceMappingDestination",
                    "SQS event sources take no on-failure destination; the approvals queue's redrive policy is the failure path")
        self.handler.add_event_source(sources.SqsEventSource(self.approvals, batch_size=1))
        self.rule = events.Rule(
            self, "Approved",
            description="An approved sav-router model package is deployed to the endpoint",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Model Package State Change"],
                detail={"ModelPackageGroupName": [shared.model_package_group_name], "ModelApprovalStatus": [APPROVED]},
            ),
            targets=[QueueTarget(self.approvals, dead_letter_queue=self.failures, retry_attempts=8, max_event_age=Duration.hours(6),
                                 message_group_id="approvals")],
        )
        self._grant(stack, config, shared)

    def _grant(self, stack: Stack, config: DeploymentConfig, shared: Shared) -> None:
        arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        name, group = config.endpoint.name, shared.model_package_group_name
        fn, role, key = self.handler, self.function.role, shared.key
        use_key(fn, key)  # the approvals queue and its dead-letter queue are encrypted with the foundation's key
        # UpdateEndpoint with AutoRollbackConfiguration: the caller must be able to read the rollback alarms.
        alarm_arn = f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm"
        allow(fn, role, ["cloudwatch:DescribeAlarms"], [f"{alarm_arn}:{name}" for name in rollback_alarm_names(config)])
        allow(fn, role, ["sagemaker:DescribeModelPackage"], [f"{arn}:model-package/{group}/*"],
              wildcard_reason="model package versions of this deployment's group are numbered by SageMaker")
        allow(fn, role,
              ["sagemaker:DescribeModel", "sagemaker:CreateModel", "sagemaker:DescribeEndpointConfig", "sagemaker:CreateEndpointConfig",
               "sagemaker:DescribeEndpoint", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:AddTags",
               "sagemaker:DeleteEndpoint"],  # only to recover an endpoint whose creation Failed (sav_router.aws.promotion)
              [f"{arn}:model/{name}-v*", f"{arn}:endpoint-config/{name}-v*", f"{arn}:endpoint/{name}"],
              wildcard_reason="models and endpoint configs are named <endpoint>-v<package version>, one per approved package")
        allow(fn, role, ["iam:PassRole"], [shared.sagemaker_role.role_arn], conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
        if not config.endpoint.is_serverless:
            # SageMaker creates grants on the key for the endpoint's encrypted volumes on the caller's behalf. A serverless
            # endpoint config carries no KmsKeyId (sav_router.aws.promotion): no grant is needed, none is allowed.
            fn.add_to_role_policy(iam.PolicyStatement(
                actions=["kms:CreateGrant", "kms:DescribeKey"], resources=[key.key_arn], conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ))
        read_prefix(fn, role, shared.bucket.bucket_arn, layout.MANIFESTS)
