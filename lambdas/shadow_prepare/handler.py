"""Pipeline step: gather recent production traffic as the candidate's observer-mode input."""

from __future__ import annotations


import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.shadow import prepare_shadow
from sav_router.aws.settings import ShadowPrepareSettings

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    settings = ShadowPrepareSettings.from_environ()
    result = prepare_shadow(
        boto3.client("s3"),
        settings.artifacts_bucket,
        event["run_id"],
        days=settings.traffic_days,
        max_requests=settings.max_shadow_requests,
    )
    logger.info("shadow input", extra={"count": result["count"], "days": result["days"]})
    return result
