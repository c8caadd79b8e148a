"""Alarms (to the SNS topic) and the operations dashboard.

`Monitoring` is handed the constructs it watches (`Watched`), not whole stacks, so it depends
on nothing but their interfaces. Metric names and the namespace come from
`sav_router.aws.metrics`, the module the routing Lambda emits them with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import DeploymentConfig
from sav_router.aws import metrics as metric_names

FIVE_MINUTES = Duration.minutes(5)


@dataclass(frozen=True, kw_only=True)
class Watched:
    """What the operations stack watches, by role."""

    dead_letters: Mapping[str, sqs.IQueue]
    intake: sqs.IQueue
    review: sqs.IQueue
    state_machine: sfn.IStateMachine
    functions: Mapping[str, lambda_.IFunction]
    endpoint_errors: cloudwatch.IAlarm
    endpoint_latency: cloudwatch.IAlarm
    endpoint_alarms: Sequence[cloudwatch.Alarm]


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, topic: sns.ITopic, watched: Watched) -> None:
        super().__init__(scope, construct_id)
        self.action = actions.SnsAction(topic)
        self.alarms: list[cloudwatch.Alarm] = []
        for name, queue in watched.dead_letters.items():
            self._alarm(f"Dlq-{name}", queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
                        threshold=1, description=f"Messages in the {name} dead-letter queue: inspect the 'reason' attribute, fix, redrive")
        self._alarm("ReviewBacklogAge", watched.review.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES, statistic="Maximum"),
                    threshold=4 * 3600, description="The oldest request waiting for human review is older than 4 hours")
        routed, escalated = (self._routing_metric(name) for name in (metric_names.ROUTED, metric_names.ESCALATED))
        self.escalation_rate = cloudwatch.MathExpression(
            expression="IF(routed + escalated >= 20, escalated / (routed + escalated), 0)",
            using_metrics={"routed": routed, "escalated": escalated}, period=Duration.minutes(15), label="escalation rate",
        )
        self._alarm("EscalationRate", self.escalation_rate, threshold=config.escalation_rate_alarm, evaluation_periods=2,
                    description=f"More than {config.escalation_rate_alarm:.0%} of requests escalated (model drift, outage or tightened thresholds)")
        self._alarm("ModelUnavailable", self._routing_metric(metric_names.MODEL_UNAVAILABLE), threshold=1,
                    description="Requests escalated because the endpoint gave no answer")
        self._alarm("OverridesRefused", self._routing_metric(metric_names.OVERRIDES_REFUSED), threshold=1,
                    description="An operator override of the routing policy was refused when read (the last good policy is kept, "
                                "or requests escalate if none ever was): the routing function's log names the reason; fix the parameter")
        for name in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"):
            self._alarm(f"Pipeline{name}", watched.state_machine.metric(name, period=FIVE_MINUTES, statistic="Sum"), threshold=1,
                        description=f"Training pipeline {name}: see the execution's failed state for the cause")
        for label, fn in watched.functions.items():
            self._alarm(f"LambdaErrors-{label}", fn.metric_errors(period=FIVE_MINUTES, statistic="Sum"), threshold=1,
                        description=f"The {label} function failed")
        for alarm in watched.endpoint_alarms:
            alarm.add_alarm_action(self.action)
        self.dashboard = self._dashboard(config, watched)

    def _routing_metric(self, name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=metric_names.NAMESPACE, metric_name=name, dimensions_map={metric_names.SERVICE_DIMENSION: metric_names.ROUTING_SERVICE},
                                 statistic="Sum", period=Duration.minutes(15))

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, *, threshold: float, description: str, evaluation_periods: int = 1) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self, construct_id, metric=metric, threshold=threshold, evaluation_periods=evaluation_periods, alarm_description=description,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self.action)
        self.alarms.append(alarm)
        return alarm

    def _dashboard(self, config: DeploymentConfig, watched: Watched) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{config.prefix}-operations")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Routed / escalated", right=[self.escalation_rate], width=12,
                                   left=[self._routing_metric(metric_names.ROUTED), self._routing_metric(metric_names.ESCALATED)]),
            cloudwatch.GraphWidget(title="Escalation reasons", width=12, left=[self._routing_metric(name) for name in metric_names.ESCALATION_METRICS]),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmWidget(title="Endpoint 5xx", alarm=watched.endpoint_errors, width=8),
            cloudwatch.AlarmWidget(title="Endpoint p99 latency", alarm=watched.endpoint_latency, width=8),
            cloudwatch.GraphWidget(title="Queues", width=8, left=[
                watched.intake.metric_approximate_number_of_messages_visible(), watched.review.metric_approximate_number_of_messages_visible()]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Dead-letter queues", width=12,
                                   left=[q.metric_approximate_number_of_messages_visible() for q in watched.dead_letters.values()]),
            cloudwatch.GraphWidget(title="Training pipeline", width=12, left=[
                watched.state_machine.metric_succeeded(), watched.state_machine.metric_failed(), watched.state_machine.metric_started()]),
        )
        return dashboard
