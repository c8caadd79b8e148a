"""Promotion: `SageMaker Model Package State Change` (Approved), through the approvals queue -> deploy (`sav_router.aws.promotion`).

An exception (the endpoint is busy, thresholds not yet published) fails the message: the queue redelivers it.
"""

from __future__ import annotations


import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.promotion import EndpointSettings, Promoter, approval_events
from sav_router.aws.settings import PromotionSettings

logger = Logger()


def settings_from_env() -> EndpointSettings:
    settings = PromotionSettings.from_environ()
    return EndpointSettings(
        endpoint_name=settings.endpoint_name,
        execution_role_arn=settings.sagemaker_role_arn,
        kms_key_arn=settings.kms_key_arn,
        instance_type=settings.instance_type,
        instance_count=settings.instance_count,
        rollback_alarms=tuple(settings.rollback_alarms),
        bucket=settings.artifacts_bucket,
        subnets=tuple(settings.subnet_ids),
        security_groups=tuple(settings.security_group_ids),
        baking_seconds=settings.baking_seconds,
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
