"""Scheduled: is live traffic still like the production model's calibration sample? (sav_router.aws.drift)"""

from __future__ import annotations

import os

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.drift import handler_summary, run_drift_check

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    report = run_drift_check(
        boto3.client("s3"), boto3.client("cloudwatch"), os.environ["ARTIFACTS_BUCKET"],
        days=int(os.environ.get("DRIFT_DAYS", "1")), alpha=float(os.environ.get("DRIFT_ALPHA", "0.01")),
    )
    logger.info("drift check", extra=handler_summary(report))
    return handler_summary(report)
