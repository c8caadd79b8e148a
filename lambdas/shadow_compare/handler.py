"""Pipeline step: compare the candidate's decisions on logged traffic with production's."""

from __future__ import annotations

import json
import os

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.routing import PolicyStore
from sav_router.aws.shadow import compare_shadow

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    s3, bucket = boto3.client("s3"), os.environ["ARTIFACTS_BUCKET"]
    # The routing Lambda's overrides and teams, so the candidate is re-decided as production was (core.policy.redecide).
    overrides = os.environ.get("OVERRIDES_PARAMETER") or None
    policies = PolicyStore(s3=s3, bucket=bucket, ssm=boto3.client("ssm") if overrides else None, overrides_parameter=overrides)
    teams = frozenset(json.loads(os.environ["TEAM_QUEUES"])) if os.environ.get("TEAM_QUEUES") else None
    result = compare_shadow(s3, bucket, event["run_id"], approval_mode=os.environ["APPROVAL_MODE"], policies=policies, teams_with_queue=teams)
    logger.info("shadow comparison", extra=result)
    return result
