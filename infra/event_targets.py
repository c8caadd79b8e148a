"""EventBridge -> SQS targets whose queue policies name the rule that may send (aws:SourceArn).

CDK's `SqsQueue` target leaves that condition out for KMS-encrypted queues (a guard against a
dependency cycle when the key lives in the same stack, aws-cdk#11158), so any rule in the account
could write to the queue. Here the key lives in the foundation stack: no cycle, so the condition is
set on the target queue and on the target's dead-letter queue. KMS access for EventBridge is in the
foundation's key policy (grants on an imported key add nothing).
"""

from __future__ import annotations

import jsii
from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs


def allow_rule_to_send(queue: sqs.IQueue, rule: events.IRule) -> None:
    queue.add_to_resource_policy(iam.PolicyStatement(
        principals=[iam.ServicePrincipal("events.amazonaws.com")], actions=["sqs:SendMessage"], resources=[queue.queue_arn],
        conditions={"ArnEquals": {"aws:SourceArn": rule.rule_arn}},
    ))


@jsii.implements(events.IRuleTarget)
class QueueTarget:
    def __init__(self, queue: sqs.IQueue, *, dead_letter_queue: sqs.IQueue, retry_attempts: int,
                 max_event_age: Duration | None = None, message_group_id: str | None = None) -> None:
        self.queue, self.dead_letter_queue, self.retry_attempts = queue, dead_letter_queue, retry_attempts
        self.max_event_age, self.message_group_id = max_event_age, message_group_id

    # jsii calls bind(rule, id) positionally.
    def bind(self, rule: events.IRule, id: str | None = None) -> events.RuleTargetConfig:  # noqa: A002 - jsii's parameter name
        for queue in (self.queue, self.dead_letter_queue):
            allow_rule_to_send(queue, rule)
        return events.RuleTargetConfig(
            arn=self.queue.queue_arn,
            dead_letter_config=events.CfnRule.DeadLetterConfigProperty(arn=self.dead_letter_queue.queue_arn),
            retry_policy=events.CfnRule.RetryPolicyProperty(
                maximum_retry_attempts=self.retry_attempts,
                maximum_event_age_in_seconds=None if self.max_event_age is None else int(self.max_event_age.to_seconds()),
            ),
            sqs_parameters=None if self.message_group_id is None else events.CfnRule.SqsParametersProperty(message_group_id=self.message_group_id),
        )
