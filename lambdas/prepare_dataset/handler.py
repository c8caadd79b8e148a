"""Pipeline step: curate the run's dataset from every annotation (`sav_router.aws.dataset`)."""

from __future__ import annotations


import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.dataset import build_dataset
from sav_router.aws.settings import DatasetSettings

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    settings = DatasetSettings.from_environ()
    result = build_dataset(
        boto3.client("s3"),
        settings.artifacts_bucket,
        event["execution_name"],
        prefix=settings.run_prefix,
        team_labels=settings.team_labels,
    )
    logger.info("dataset built", extra={k: result[k] for k in ("run_id", "rows", "check_rows", "rejected_rows", "files")})
    return result
