"""Scheduled: is live traffic still like the production model's calibration sample? (sav_router.aws.drift)"""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.drift import handler_summary, run_drift_check
from sav_router.aws.settings import DriftSettings

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    settings = DriftSettings.from_environ()
    report = run_drift_check(
        boto3.client("s3"), boto3.client("cloudwatch"), settings.artifacts_bucket, days=settings.drift_days, alpha=settings.drift_alpha,
    )
    logger.info("drift check", extra=handler_summary(report))
    return handler_summary(report)
