"""Pipeline step: compare the candidate's decisions on logged traffic with production's."""

from __future__ import annotations


import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.shadow import compare_shadow
from sav_router.aws.settings import ShadowCompareSettings

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    settings = ShadowCompareSettings.from_environ()
    result = compare_shadow(boto3.client("s3"), settings.artifacts_bucket, event["run_id"], approval_mode=settings.approval_mode)
    logger.info("shadow comparison", extra=result)
    return result
