"""Promotion: `SageMaker Model Package State Change` (Approved), through the approvals queue -> deploy (`sav_router.aws.promotion`).

An exception (the endpoint is busy, thresholds not yet published) fails the message: the queue redelivers it.
"""

from __future__ import annotations

import json
import os

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.promotion import EndpointSettings, Promoter, approval_events

logger = Logger()


def settings_from_env() -> EndpointSettings:
    return EndpointSettings(
        endpoint_name=os.environ["ENDPOINT_NAME"],
        execution_role_arn=os.environ["SAGEMAKER_ROLE_ARN"],
        kms_key_arn=os.environ["KMS_KEY_ARN"],
        instance_type=os.environ["INSTANCE_TYPE"],
        instance_count=int(os.environ["INSTANCE_COUNT"]),
        rollback_alarms=tuple(json.loads(os.environ["ROLLBACK_ALARMS"])),
        bucket=os.environ["ARTIFACTS_BUCKET"],
        subnets=tuple(json.loads(os.environ.get("SUBNET_IDS", "[]"))),
        security_groups=tuple(json.loads(os.environ.get("SECURITY_GROUP_IDS", "[]"))),
        baking_seconds=int(os.environ.get("BAKING_SECONDS", "600")),
    )


def promote(approval: dict) -> dict:
    detail = approval["detail"]
    if detail.get("ModelApprovalStatus") != "Approved":
        return {"action": "none", "reason": f"status {detail.get('ModelApprovalStatus')}"}
    result = Promoter(boto3.client("sagemaker"), boto3.client("s3"), settings_from_env()).promote(detail["ModelPackageArn"])
    logger.info("promotion", extra={"model_package": detail["ModelPackageArn"], **result})
    return result


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    results = [promote(approval) for approval in approval_events(event)]  # batch size 1: one approval per invocation
    return results[0] if len(results) == 1 else {"results": results}
