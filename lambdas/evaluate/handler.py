"""Pipeline step: evaluate the check-set Batch Transform output with the core evaluation code, apply the gate."""

from __future__ import annotations


import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.evaluation_step import evaluate_check
from sav_router.aws.settings import EvaluateSettings

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    settings = EvaluateSettings.from_environ()
    result = evaluate_check(
        boto3.client("s3"),
        settings.artifacts_bucket,
        run_id=event["run_id"],
        model_artifacts_uri=event["model_artifacts_uri"],
        target_precision=settings.target_precision,
        min_coverage=settings.min_coverage,
    )
    logger.info("evaluation", extra={"model_version": result["model_version"], "gate": result["gate"]["summary"], **result["metrics"]})
    return result
