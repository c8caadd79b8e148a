"""Pipeline step: compare the candidate's decisions on logged traffic with production's."""

from __future__ import annotations


import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.routing import PolicyStore
from sav_router.aws.shadow import compare_shadow
from sav_router.aws.settings import ShadowCompareSettings

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    settings = ShadowCompareSettings.from_environ()
    s3 = boto3.client("s3")
    # The routing Lambda's overrides and teams, so the candidate is re-decided as production was (core.policy.redecide).
    policies = PolicyStore(s3=s3, bucket=settings.artifacts_bucket, ssm=boto3.client("ssm") if settings.overrides_parameter else None,
                           overrides_parameter=settings.overrides_parameter)
    teams = frozenset(settings.teams_with_queue) if settings.teams_with_queue else None
    result = compare_shadow(s3, settings.artifacts_bucket, event["run_id"], approval_mode=settings.approval_mode, policies=policies, teams_with_queue=teams)
    logger.info("shadow comparison", extra=result)
    return result
