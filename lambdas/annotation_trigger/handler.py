"""Annotation trigger: S3 `Object Created` events (EventBridge -> SQS, batched) and an hourly re-check.

Counts each new annotation object once and starts the training pipeline when
enough new rows are pending and no run is in flight (`sav_router.aws.annotation_gate`).
"""

from __future__ import annotations


import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.annotation_gate import AnnotationLedger, TrainingGate, drops_from_event
from sav_router.aws.settings import GateSettings

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    settings = GateSettings.from_environ()
    gate = TrainingGate(
        ledger=AnnotationLedger(boto3.client("dynamodb"), settings.ledger_table),
        sfn=boto3.client("stepfunctions"),
        state_machine_arn=settings.state_machine_arn,
        min_rows=settings.min_new_rows,
    )
    drops = drops_from_event(event)
    new = gate.record(boto3.client("s3"), drops)
    outcome = gate.maybe_start()
    logger.info("annotation gate", extra={"drops": len(drops), "new_drops": new, **outcome})
    return outcome
