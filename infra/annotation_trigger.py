"""Annotation drops -> training: EventBridge `Object Created` under annotations/ -> SQS -> gate Lambda.

Paired with `lambdas/annotation_trigger/handler.py` and
`sav_router/aws/annotation_gate.py`. The SQS buffer debounces bursts (events
are delivered in batches every few minutes), the event source runs at most two
batches at once (its MaximumConcurrency: the gate's ledger writes are
conditional, so concurrent decisions are safe), and an hourly schedule re-checks the gate so a run deferred because another
was in flight starts later.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import DeploymentConfig
from infra.event_targets import QueueTarget
from infra.lambda_function import ProjectFunction
from infra.policies import acknowledge, allow, read_prefix, use_key
from infra.queues import dead_letter_queue, queue_with_dlq
from infra.shared import Shared
from sav_router.core import layout
from sav_router.aws.settings import GateSettings

DEBOUNCE = Duration.minutes(5)
FUNCTION_TIMEOUT = Duration.seconds(120)


class AnnotationTrigger(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, shared: Shared, state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        key, bucket = shared.key, shared.bucket
        self.events, self.events_dlq = queue_with_dlq(self, "Drops", key=key, max_receive_count=5, visibility_timeout=Duration.seconds(FUNCTION_TIMEOUT.to_seconds() * 6))
        self.ledger = dynamodb.TableV2(
            self, "Ledger", partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            encryption=dynamodb.TableEncryptionV2.customer_managed_key(key),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(point_in_time_recovery_enabled=True),
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        self.schedule_dlq = dead_letter_queue(self, "ScheduleDlq", key=key, purpose="the gate function's scheduled invocations")
        self.function = ProjectFunction(
            self, "Gate", name="annotation_trigger", key=key, log_retention_days=config.log_retention_days,
            description="sav-router: count new annotation drops once, start training when enough are pending",
            # No reserved concurrency: under an SQS source, throttled invocations burn receive counts and push drops to the
            # DLQ. The event source's MaximumConcurrency bounds the pollers instead.
            memory_mb=256, timeout=FUNCTION_TIMEOUT,
            environment=GateSettings(ledger_table=self.ledger.table_name, state_machine_arn=state_machine.state_machine_arn,
                                     min_new_rows=config.min_new_annotations).to_environment(),
            dead_letter_queue=self.schedule_dlq,  # scheduled (asynchronous) invocations that keep failing
        )
        self.handler = self.function.function
        acknowledge(self.handler, "Serverless-LambdaEventSourceMappingDestination",
                    "SQS event sources take no on-failure destination; the drops queue's redrive policy is the failure path")
        self.handler.add_event_source(sources.SqsEventSource(self.events, batch_size=100, max_batching_window=DEBOUNCE, max_concurrency=2))
        self.rule = events.Rule(
            self, "AnnotationDropped", description=f"A file lands under {layout.ANNOTATIONS} in the artifacts bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [bucket.bucket_name]}, "object": {"key": [{"prefix": layout.ANNOTATIONS}]}},
            ),
            targets=[QueueTarget(self.events, dead_letter_queue=self.events_dlq, retry_attempts=8)],
        )
        self.schedule = events.Rule(
            self, "Recheck", description="Re-check the training gate (runs deferred while another was in flight)",
            schedule=events.Schedule.rate(Duration.hours(1)),
            targets=[targets.LambdaFunction(self.handler, dead_letter_queue=self.schedule_dlq, retry_attempts=2)],
        )
        fn, role = self.handler, self.function.role
        allow(fn, role, ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"], [self.ledger.table_arn])
        use_key(fn, key)
        read_prefix(fn, role, bucket.bucket_arn, layout.ANNOTATIONS)
        allow(fn, role, ["states:StartExecution", "states:ListExecutions"], [state_machine.state_machine_arn])
