"""Annotation trigger: S3 `Object Created` events (EventBridge -> SQS, batched) and an hourly re-check.

Counts each new annotation object once and starts the training pipeline when
enough new rows are pending and no run is in flight (`sav_router.aws.annotation_gate`).
"""

from __future__ import annotations

import os

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.annotation_gate import AnnotationLedger, TrainingGate, drops_from_event

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    gate = TrainingGate(
        ledger=AnnotationLedger(boto3.client("dynamodb"), os.environ["LEDGER_TABLE"]),
        sfn=boto3.client("stepfunctions"),
        state_machine_arn=os.environ["STATE_MACHINE_ARN"],
        min_rows=int(os.environ["MIN_NEW_ROWS"]),
    )
    drops = drops_from_event(event)
    new = gate.record(boto3.client("s3"), drops)
    outcome = gate.maybe_start()
    logger.info("annotation gate", extra={"drops": len(drops), "new_drops": new, **outcome})
    return outcome
