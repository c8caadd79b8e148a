"""Pipeline step: compare the candidate's decisions on logged traffic with production's."""

from __future__ import annotations

import os

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.shadow import compare_shadow

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    result = compare_shadow(boto3.client("s3"), os.environ["ARTIFACTS_BUCKET"], event["run_id"], approval_mode=os.environ["APPROVAL_MODE"])
    logger.info("shadow comparison", extra=result)
    return result
