"""Pipeline step: gather recent production traffic as the candidate's observer-mode input."""

from __future__ import annotations

import os

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.shadow import prepare_shadow

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    result = prepare_shadow(
        boto3.client("s3"),
        os.environ["ARTIFACTS_BUCKET"],
        event["run_id"],
        days=int(os.environ["TRAFFIC_DAYS"]),
        max_requests=int(os.environ["MAX_SHADOW_REQUESTS"]),
    )
    logger.info("shadow input", extra={"count": result["count"], "days": result["days"]})
    return result
