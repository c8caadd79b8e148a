"""Pipeline step: curate the run's dataset from every annotation (`sav_router.aws.dataset`)."""

from __future__ import annotations

import json
import os

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.dataset import build_dataset

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    result = build_dataset(
        boto3.client("s3"),
        os.environ["ARTIFACTS_BUCKET"],
        event["execution_name"],
        prefix=os.environ["RUN_PREFIX"],
        team_labels=json.loads(os.environ.get("TEAM_LABELS", "{}")),
    )
    logger.info("dataset built", extra={k: result[k] for k in ("run_id", "rows", "check_rows", "rejected_rows", "files")})
    return result
