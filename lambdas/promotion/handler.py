"""Promotion: `SageMaker Model Package State Change` (Approved), through the approvals queue -> deploy (`sav_router.aws.promotion`).

An exception (the endpoint is busy, thresholds not yet published) fails the message: the queue redelivers it.
"""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger

from sav_router.aws.approval import APPROVED
from sav_router.aws.promotion import Promoter, approval_events
from sav_router.aws.settings import PromotionSettings

logger = Logger()


def promote(approval: dict) -> dict:
    detail = approval["detail"]
    if detail.get("ModelApprovalStatus") != APPROVED:
        return {"action": "none", "reason": f"status {detail.get('ModelApprovalStatus')}"}
    result = Promoter(boto3.client("sagemaker"), boto3.client("s3"), PromotionSettings.from_environ()).promote(detail["ModelPackageArn"])
    logger.info("promotion", extra={"model_package": detail["ModelPackageArn"], **result})
    return result


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict, context) -> dict:
    results = [promote(approval) for approval in approval_events(event)]  # batch size 1: one approval per invocation
    return results[0] if len(results) == 1 else {"results": results}
