"""Encrypted, TLS-only SQS queues with a dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.policies import acknowledge

RETENTION = Duration.days(14)


def dead_letter_queue(scope: Construct, construct_id: str, *, key: kms.IKey, purpose: str, fifo: bool = False) -> sqs.Queue:
    """A terminal queue: messages wait here for a person, who inspects and redrives them."""
    queue = encrypted_queue(scope, construct_id, key=key, fifo=fifo)
    acknowledge(queue, "Serverless-SQSRedrivePolicy", f"dead-letter queue of {purpose}: terminal by design, redriven by an operator after inspection")
    return queue


def encrypted_queue(scope: Construct, construct_id: str, *, key: kms.IKey, dead_letter: sqs.IQueue | None = None,
                    max_receive_count: int = 5, visibility_timeout: Duration = Duration.seconds(30), fifo: bool = False) -> sqs.Queue:
    return sqs.Queue(
        scope, construct_id,
        # FIFO: EventBridge sets no deduplication id, so the body (which holds the event id) is the key
        **({"fifo": True, "content_based_deduplication": True} if fifo else {}),
        encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, data_key_reuse=Duration.hours(1),
        enforce_ssl=True, retention_period=RETENTION, visibility_timeout=visibility_timeout,
        dead_letter_queue=None if dead_letter is None else sqs.DeadLetterQueue(queue=dead_letter, max_receive_count=max_receive_count),
    )


def queue_with_dlq(scope: Construct, construct_id: str, *, key: kms.IKey, max_receive_count: int = 5,
                   visibility_timeout: Duration = Duration.seconds(30)) -> tuple[sqs.Queue, sqs.Queue]:
    dlq = dead_letter_queue(scope, f"{construct_id}Dlq", key=key, purpose=f"the {construct_id} queue")
    return encrypted_queue(scope, construct_id, key=key, dead_letter=dlq, max_receive_count=max_receive_count, visibility_timeout=visibility_timeout), dlq
