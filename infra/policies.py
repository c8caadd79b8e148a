"""Least-privilege statements with explicit actions, and the cdk-nag acknowledgement of any wildcard.

A wildcard is only ever an object-key suffix under a named prefix or a name
suffix of per-run SageMaker resources; each is acknowledged where it is
granted, with the reason, so the acknowledgement cannot drift from the grant.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import IConstruct

KEY_USE = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]


def nag_render(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag prints it in finding ids."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(nag_render(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        return nag_render(value["Fn::ImportValue"])
    raise ValueError(f"cannot render {value!r} for cdk-nag")


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_wildcard(owner: IConstruct, resource: str, reason: str) -> None:
    rendered = nag_render(Stack.of(owner).resolve(resource))
    acknowledge(owner, f"AwsSolutions-IAM5[Resource::{rendered}]", reason)


def allow(principal: iam.IGrantable, owner: IConstruct, actions: list[str], resources: list[str], *,
          wildcard_reason: str | None = None, conditions: dict | None = None) -> None:
    """Add a statement to `principal`; acknowledge wildcard resources on `owner` (the role or function)."""
    principal.grant_principal.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions))
    for resource in resources:
        if "*" in nag_render(Stack.of(owner).resolve(resource)):
            if wildcard_reason is None:
                raise ValueError(f"wildcard resource {resource!r} needs a reason")
            acknowledge_wildcard(owner, resource, wildcard_reason)


def read_prefix(principal: iam.IGrantable, owner: IConstruct, bucket_arn: str, prefix: str) -> None:
    allow(principal, owner, ["s3:GetObject"], [f"{bucket_arn}/{prefix}*"],
          wildcard_reason=f"objects under {prefix} have run- or drop-specific names; access is limited to that prefix")
    principal.grant_principal.add_to_principal_policy(iam.PolicyStatement(
        actions=["s3:ListBucket"], resources=[bucket_arn], conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}}))


def write_prefix(principal: iam.IGrantable, owner: IConstruct, bucket_arn: str, prefix: str) -> None:
    allow(principal, owner, ["s3:PutObject"], [f"{bucket_arn}/{prefix}*"],
          wildcard_reason=f"objects under {prefix} have run- or batch-specific names; writes are limited to that prefix")


def use_key(principal: iam.IGrantable, key: kms.IKey) -> None:
    principal.grant_principal.add_to_principal_policy(iam.PolicyStatement(actions=KEY_USE, resources=[key.key_arn]))


def send_to(principal: iam.IGrantable, queues: list[sqs.IQueue]) -> None:
    principal.grant_principal.add_to_principal_policy(iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[q.queue_arn for q in queues]))
