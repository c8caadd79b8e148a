"""Intake -> routing Lambda (`lambdas/routing/`) -> team queues or the human-review queue.

Paired with `lambdas/routing/handler.py` and `sav_router/aws/routing.py`.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.config import DeploymentConfig
from infra.lambda_function import ProjectFunction
from infra.policies import acknowledge, allow, read_prefix, send_to, use_key, write_prefix
from infra.queues import dead_letter_queue, encrypted_queue, queue_with_dlq
from infra.shared import Shared, overrides_parameter_name
from sav_router.aws import metrics as metric_names
from sav_router.aws.settings import RoutingSettings, endpoint_call_limits
from sav_router.core import layout
from sav_router.core.defaults import REVIEW_LEASE_SECONDS


def function_timeout(config: DeploymentConfig) -> Duration:
    """Long enough for the endpoint calls of its kind (sav_router.aws.settings.endpoint_call_limits): 60 s for instances."""
    return Duration.seconds(endpoint_call_limits(config.endpoint.kind).function_timeout_seconds)


def intake_visibility(config: DeploymentConfig) -> Duration:
    return Duration.seconds(endpoint_call_limits(config.endpoint.kind).visibility_timeout_seconds)


class RoutingService(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, shared: Shared) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        key, bucket = shared.key, shared.bucket
        # Visibility timeout 6x the function timeout (AWS guidance for SQS event sources).
        self.intake, self.intake_dlq = queue_with_dlq(self, "Intake", key=key, max_receive_count=5, visibility_timeout=intake_visibility(config))
        # A received request stays hidden from other reviewers for the lease (the console renews it while shown).
        self.review, self.review_dlq = queue_with_dlq(self, "HumanReview", key=key, max_receive_count=10,
                                                      visibility_timeout=Duration.seconds(REVIEW_LEASE_SECONDS))
        self.team_dlq = dead_letter_queue(self, "TeamsDlq", key=key, purpose="the team queues")
        self.team_queues = {team: encrypted_queue(self, f"Team-{team}", key=key, dead_letter=self.team_dlq, max_receive_count=10) for team in config.teams}
        self.idempotency = dynamodb.TableV2(
            self, "Idempotency", partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration", encryption=dynamodb.TableEncryptionV2.customer_managed_key(key),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.overrides = ssm.StringParameter(
            self, "Overrides", parameter_name=overrides_parameter_name(config), string_value="{}",
            description="Operator overrides that tighten routing without a redeploy: JSON {threshold, margin, ood_threshold}; {\"threshold\": 1.01} stops routing",
        )
        self.endpoint_arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:endpoint/{config.endpoint.name}"
        self.function = ProjectFunction(
            self, "Routing", name=metric_names.ROUTING_SERVICE, key=key, log_retention_days=config.log_retention_days,
            description="sav-router: intake batch -> endpoint -> policy -> team queue or human review",
            memory_mb=512, timeout=function_timeout(config),
            # Bounds the endpoint's load; the event source's MaximumConcurrency equals it, so SQS is never throttled.
            reserved_concurrency=config.routing_concurrency,
            environment=RoutingSettings(
                endpoint_name=config.endpoint.name,
                endpoint_kind=config.endpoint.kind,
                artifacts_bucket=bucket.bucket_name,
                overrides_parameter=self.overrides.parameter_name,
                team_queues={team: queue.queue_url for team, queue in self.team_queues.items()},
                review_queue_url=self.review.queue_url,
                intake_dlq_url=self.intake_dlq.queue_url,
                idempotency_table=self.idempotency.table_name,
                audit_share=config.audit_share,
            ).to_environment(dumps=stack.to_json_string),
        )
        self.handler = self.function.function
        acknowledge(self.handler, "Serverless-LambdaDLQ", "invoked by an SQS event source: failed messages are redriven to the intake queue's DLQ")
        acknowledge(self.handler, "Serverless-LambdaEventSourceMappingDestination",
                    "SQS event sources take no on-failure destination; the intake queue's redrive policy is the failure path")
        self.handler.add_event_source(sources.SqsEventSource(
            self.intake, batch_size=25, max_batching_window=Duration.seconds(1), report_batch_item_failures=True,
            max_concurrency=config.routing_concurrency,
        ))
        self._grant(shared)

    def _grant(self, shared: Shared) -> None:
        fn, role = self.handler, self.function.role
        allow(fn, role, ["sagemaker:InvokeEndpoint"], [self.endpoint_arn])
        send_to(fn, [*self.team_queues.values(), self.review, self.intake_dlq])
        allow(fn, role, ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"], [self.idempotency.table_arn])
        use_key(fn, shared.key)
        read_prefix(fn, role, shared.bucket.bucket_arn, layout.MANIFESTS)
        write_prefix(fn, role, shared.bucket.bucket_arn, layout.TRAFFIC)
        allow(fn, role, ["ssm:GetParameter"], [self.overrides.parameter_arn])
