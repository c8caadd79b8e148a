"""What the foundation stack shares, exported under fixed names and imported by the other stacks.

Fixed export names (instead of CDK's automatic cross-stack references) keep
the consumers' IAM policies readable and their cdk-nag acknowledgements stable.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.config import DeploymentConfig

# Only values that never change once deployed: CloudFormation refuses to modify an export another stack imports.
# (The training image URI changes with every build; it stays inside the pipeline stack.)
EXPORTED = ("bucket-name", "bucket-arn", "key-arn", "sagemaker-role-arn", "alarm-topic-arn")


def export_name(config: DeploymentConfig, what: str) -> str:
    return f"{config.prefix}-{what}"


@dataclass(frozen=True)
class Shared:
    bucket: s3.IBucket
    key: kms.IKey
    sagemaker_role: iam.IRole
    alarm_topic: sns.ITopic
    model_package_group_name: str


def model_package_group_name(config: DeploymentConfig) -> str:
    return f"{config.prefix}-models"


def rollback_alarm_names(config: DeploymentConfig) -> tuple[str, str]:
    """The endpoint alarms (5xx, p99 latency) that also roll back a blue/green update."""
    return f"{config.prefix}-endpoint-5xx", f"{config.prefix}-endpoint-latency-p99"


def state_machine_name(config: DeploymentConfig) -> str:
    return f"{config.prefix}-training"


def overrides_parameter_name(config: DeploymentConfig) -> str:
    """The SSM parameter of the operator overrides: read by the routing function and by the shadow comparison."""
    return f"/{config.prefix}/routing-overrides"


def traffic_reader_role_name(config: DeploymentConfig, region: str) -> str:
    """The one role allowed to read traffic/ (the observer-mode step), named so the foundation's bucket policy can name it.

    IAM names are account-wide: the region keeps two deployments of one prefix in two regions apart.
    """
    return f"{config.prefix}-{region}-shadow-prepare"


def export_shared(stack: Stack, config: DeploymentConfig, values: dict[str, str]) -> None:
    for what in EXPORTED:
        CfnOutput(stack, f"Export-{what}", value=values[what], export_name=export_name(config, what))


def import_shared(scope: Construct, config: DeploymentConfig) -> Shared:
    value = lambda what: Fn.import_value(export_name(config, what))  # noqa: E731
    key = kms.Key.from_key_arn(scope, "SharedKey", value("key-arn"))
    return Shared(
        bucket=s3.Bucket.from_bucket_attributes(scope, "SharedBucket", bucket_arn=value("bucket-arn"), bucket_name=value("bucket-name"), encryption_key=key),
        key=key,
        sagemaker_role=iam.Role.from_role_arn(scope, "SharedSageMakerRole", value("sagemaker-role-arn"), mutable=False),
        alarm_topic=sns.Topic.from_topic_arn(scope, "SharedAlarmTopic", value("alarm-topic-arn")),
        model_package_group_name=model_package_group_name(config),
    )
