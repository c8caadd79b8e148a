"""The drift monitor on AWS: a scheduled function and an alarm (`sav_router.aws.drift`).

A small, separate construct on purpose: hourly, the function tests the last
day of logged decisions against the production model's calibration sample and
publishes `DriftAlarm` / `NoveltyFlaggedShare` / `DriftRequests` (namespace
SavRouter, service=monitor); the alarm fires when the monitor does and its
description names the remedy. Wire it where the artifacts bucket, key and
alarm topic are at hand:

    DriftMonitor(self, "DriftMonitor", bucket=bucket, key=key, topic=topic, log_retention_days=config.log_retention_days)

The operations stack wires it (infra/stacks.py). The schedule's dead-letter queue is encrypted
with the foundation key, whose key policy lets events.amazonaws.com use it (infra/foundation.py).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.lambda_function import ProjectFunction
from infra.policies import allow, read_prefix
from infra.queues import dead_letter_queue
from sav_router.aws import metrics as metric_names
from sav_router.aws.settings import DriftSettings
from sav_router.core import layout
from sav_router.core.defaults import DRIFT_ALPHA, DRIFT_DAYS_AWS
from sav_router.monitoring.drift import REMEDY

class DriftMonitor(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        key: kms.IKey,
        topic: sns.ITopic,
        log_retention_days: int,
        every: Duration = Duration.hours(1),
        days: int = DRIFT_DAYS_AWS,
        alpha: float = DRIFT_ALPHA,
    ) -> None:
        super().__init__(scope, construct_id)
        # failed invocations (the function's and the schedule's) are kept, not lost
        self.failures = dead_letter_queue(self, "Failures", key=key, purpose="failed drift-monitor invocations")
        self.function = ProjectFunction(
            self, "Check", name="drift_monitor", key=key, log_retention_days=log_retention_days, memory_mb=512,
            timeout=Duration.minutes(5), reserved_concurrency=1, dead_letter_queue=self.failures,
            description="sav-router: logged traffic vs the production model's calibration sample (drift alarm)",
            environment=DriftSettings(artifacts_bucket=bucket.bucket_name, drift_days=days, drift_alpha=alpha).to_environment(),
        )
        fn = self.function.function
        # read-only, and only decisions (no request text) and manifests
        read_prefix(fn, self.function.role, bucket.bucket_arn, layout.TRAFFIC_DECISIONS)
        read_prefix(fn, self.function.role, bucket.bucket_arn, layout.MANIFESTS)
        # Decrypt to read SSE-KMS objects; GenerateDataKey because Lambda sends a failed event to the SSE-KMS dead-letter
        # queue with this role (issue 19, bug 2: with Decrypt only, failed events were lost).
        key.grant(fn, "kms:Decrypt", "kms:GenerateDataKey")
        allow(fn, self.function.role, ["cloudwatch:PutMetricData"], ["*"],
              wildcard_reason="PutMetricData supports no resource-level permission; limited to the SavRouter namespace",
              conditions={"StringEquals": {"cloudwatch:namespace": metric_names.NAMESPACE}})
        events.Rule(self, "Schedule", schedule=events.Schedule.rate(every), targets=[targets.LambdaFunction(fn, dead_letter_queue=self.failures)])
        self.alarm = cloudwatch.Alarm(
            self, "Alarm",
            metric=cloudwatch.Metric(namespace=metric_names.NAMESPACE, metric_name=metric_names.DRIFT_ALARM, dimensions_map={metric_names.SERVICE_DIMENSION: metric_names.DRIFT_SERVICE},
                                     statistic="Maximum", period=every),
            threshold=1, evaluation_periods=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=f"Drift: {REMEDY}"[:1024],
        )
        self.alarm.add_alarm_action(actions.SnsAction(topic))
        # A monitor that fails is silent otherwise (issue 19, bug 2): its errors, and every event Lambda dead-letters.
        self.errors = cloudwatch.Alarm(
            self, "Errors", metric=fn.metric_errors(period=every, statistic="Sum"), threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="The drift monitor failed: its check did not run (see its logs)",
        )
        self.dead_letters = cloudwatch.Alarm(
            # Lambda sends a failed asynchronous event to this queue: a send is the signal (no redrive moves messages here).
            self, "DeadLetters", metric=self.failures.metric_number_of_messages_sent(period=every, statistic="Sum"), threshold=1,
            evaluation_periods=1, comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="A drift-monitor invocation failed for good: its event is in the monitor's dead-letter queue",
        )
        for alarm in (self.errors, self.dead_letters):
            alarm.add_alarm_action(actions.SnsAction(topic))
