"""Alarms (to the SNS topic) and the operations dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import DeploymentConfig

if TYPE_CHECKING:
    from infra.stacks import PipelineStack, ServingStack

METRICS_NAMESPACE = "SavRouter"  # POWERTOOLS_METRICS_NAMESPACE of the routing Lambda
FIVE_MINUTES = Duration.minutes(5)


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, topic: sns.ITopic,
                 serving: "ServingStack", pipeline: "PipelineStack") -> None:
        super().__init__(scope, construct_id)
        self.action = actions.SnsAction(topic)
        self.alarms: list[cloudwatch.Alarm] = []
        routing, trigger, state_machine = serving.routing, pipeline.trigger, pipeline.pipeline.state_machine
        dead_letters = {
            "intake": routing.intake_dlq, "human-review": routing.review_dlq, "teams": routing.team_dlq,
            "annotation-events": trigger.events_dlq, "gate-schedule": trigger.schedule_dlq, "promotion-events": serving.promotion.failures,
            "promotion-retries": serving.promotion.retries_dlq,
        }
        for name, queue in dead_letters.items():
            self._alarm(f"Dlq-{name}", queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
                        threshold=1, description=f"Messages in the {name} dead-letter queue: inspect the 'reason' attribute, fix, redrive")
        self._alarm("ReviewBacklogAge", routing.review.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES, statistic="Maximum"),
                    threshold=4 * 3600, description="The oldest request waiting for human review is older than 4 hours")
        routed, escalated = (self._routing_metric(name) for name in ("Routed", "Escalated"))
        self.escalation_rate = cloudwatch.MathExpression(
            expression="IF(routed + escalated >= 20, escalated / (routed + escalated), 0)",
            using_metrics={"routed": routed, "escalated": escalated}, period=Duration.minutes(15), label="escalation rate",
        )
        self._alarm("EscalationRate", self.escalation_rate, threshold=config.escalation_rate_alarm, evaluation_periods=2,
                    description=f"More than {config.escalation_rate_alarm:.0%} of requests escalated (model drift, outage or tightened thresholds)")
        self._alarm("ModelUnavailable", self._routing_metric("ModelUnavailable"), threshold=1,
                    description="Requests escalated because the endpoint gave no answer")
        for name in ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"):
            self._alarm(f"Pipeline{name}", state_machine.metric(name, period=FIVE_MINUTES, statistic="Sum"), threshold=1,
                        description=f"Training pipeline {name}: see the execution's failed state for the cause")
        for label, fn in {"routing": routing.handler, "promotion": serving.promotion.handler, "annotation-gate": trigger.handler}.items():
            self._alarm(f"LambdaErrors-{label}", fn.metric_errors(period=FIVE_MINUTES, statistic="Sum"), threshold=1,
                        description=f"The {label} function failed")
        for alarm in serving.endpoint_alarms.alarms:
            alarm.add_alarm_action(self.action)
        self.dashboard = self._dashboard(config, routing, serving, state_machine, dead_letters)

    def _routing_metric(self, name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=name, dimensions_map={"service": "routing"},
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

    def _dashboard(self, config, routing, serving, state_machine, dead_letters: dict[str, sqs.IQueue]) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{config.prefix}-operations")
        endpoint_alarms = serving.endpoint_alarms
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Routed / escalated", left=[self._routing_metric("Routed"), self._routing_metric("Escalated")],
                                   right=[self.escalation_rate], width=12),
            cloudwatch.GraphWidget(title="Escalation reasons", width=12, left=[
                self._routing_metric(f"Escalation_{reason}") for reason in ("low_confidence", "ambiguous", "out_of_distribution", "model_unavailable", "no_team_for_label")]),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmWidget(title="Endpoint 5xx", alarm=endpoint_alarms.errors, width=8),
            cloudwatch.AlarmWidget(title="Endpoint p99 latency", alarm=endpoint_alarms.latency, width=8),
            cloudwatch.GraphWidget(title="Queues", width=8, left=[
                routing.intake.metric_approximate_number_of_messages_visible(), routing.review.metric_approximate_number_of_messages_visible()]),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Dead-letter queues", width=12, left=[q.metric_approximate_number_of_messages_visible() for q in dead_letters.values()]),
            cloudwatch.GraphWidget(title="Training pipeline", width=12, left=[
                state_machine.metric_succeeded(), state_machine.metric_failed(), state_machine.metric_started()]),
        )
        return dashboard
