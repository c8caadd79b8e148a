"""Shared foundation: the customer-managed key, the artifacts bucket, the SageMaker role and registry.

Bucket prefix layout (see `sav_router.core.layout`): annotations/, datasets/,
models/, evaluations/, traffic/. EventBridge notifications are on, so an
annotation drop is an `Object Created` event the pipeline stack listens to.
"""

from __future__ import annotations

import re

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import DeploymentConfig
from infra.policies import acknowledge, acknowledge_wildcard, read_prefix, use_key, write_prefix
from infra.shared import export_shared, model_package_group_name, rollback_alarm_names, traffic_reader_role_name
from sav_router.aws.s3io import CUSTOMER_TEXT_TAG
from sav_router.core import layout


_ECR_URI = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)")


def ecr_repository_arn(image_uri: str, partition: str) -> str | None:
    """The ECR repository ARN of a private ECR image URI (None for other registries)."""
    match = _ECR_URI.match(image_uri)
    if match is None:
        return None
    return f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['repo']}"


class FoundationStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.key = kms.Key(
            self, "Key", alias=f"alias/{config.prefix}", enable_key_rotation=True, removal_policy=removal,
            description="sav-router: artifacts, queues, tables, logs, SageMaker volumes and outputs",
        )
        # The key is imported by the other stacks (Key.from_key_arn), where CDK's grants to service principals add
        # nothing: every service that writes to a resource encrypted with it is allowed here, in the key policy.
        # EventBridge sends to the encrypted drops queue and to the rules' encrypted dead-letter queues; which rule
        # may send to which queue is scoped by each queue's policy (aws:SourceArn).
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="EventBridgeToEncryptedQueues", principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=["*"]))
        # CloudWatch alarms publish to the encrypted alarm topic (the topic policy scopes it to this account's alarms).
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsToEncryptedTopic", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"]))
        # CloudWatch Logs encrypts the functions' and the state machine's log groups with this key.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{self.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:*"}},
            )
        )
        self.access_logs = s3.Bucket(
            self, "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,  # server access logging cannot write to KMS buckets
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED, removal_policy=removal,
            auto_delete_objects=not config.retain_data,  # versioned: deleted with every version, or the deletion fails
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
        )
        self.bucket = s3.Bucket(
            self, "Artifacts",
            encryption=s3.BucketEncryption.KMS, encryption_key=self.key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=True,
            event_bridge_enabled=True, server_access_logs_bucket=self.access_logs, server_access_logs_prefix="artifacts/",
            removal_policy=removal, auto_delete_objects=not config.retain_data,
            lifecycle_rules=[
                # Logged production traffic holds customer text: kept only as long as observer mode needs it.
                s3.LifecycleRule(id="traffic-retention", prefix=layout.TRAFFIC, expiration=Duration.days(max(30, config.traffic_days * 4)),
                                 noncurrent_version_expiration=Duration.days(1)),
                # ...and so do its copies (the observer-mode input under datasets/<run>/shadow/, tagged by shadow_prepare)
                s3.LifecycleRule(id="customer-text-copies", tag_filters=dict(CUSTOMER_TEXT_TAG),
                                 expiration=Duration.days(max(30, config.traffic_days * 4)), noncurrent_version_expiration=Duration.days(1)),
                s3.LifecycleRule(id="noncurrent", noncurrent_version_expiration=Duration.days(90)),
            ],
        )
        self._limit_traffic_reads(config)
        self.alarm_topic = sns.Topic(self, "Alarms", master_key=self.key, enforce_ssl=True, display_name=f"{config.prefix} alarms")
        # enforce_ssl makes a topic policy holding only a Deny, which replaces SNS's default policy: without this
        # Allow, no alarm could publish.
        self.alarm_topic.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"], resources=[self.alarm_topic.topic_arn],
            conditions={"ArnLike": {"aws:SourceArn": f"arn:{self.partition}:cloudwatch:{self.region}:{self.account}:alarm:*"},
                        "StringEquals": {"aws:SourceAccount": self.account}},
        ))
        if config.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self.sagemaker_role = self._sagemaker_role(config)
        self._limit_shadow_input_reads(config)
        self.model_package_group_name = model_package_group_name(config)
        sagemaker.CfnModelPackageGroup(
            self, "ModelPackageGroup", model_package_group_name=self.model_package_group_name,
            model_package_group_description="sav-router candidates: evaluation report, shadow comparison, approval",
        )
        for child in self.node.children:  # the custom resources CDK adds for event_bridge_enabled and auto_delete_objects
            if child.node.id.startswith(("BucketNotificationsHandler", "Custom::S3AutoDeleteObjects")):
                acknowledge(child, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                            "CDK's own custom resource (bucket notifications, or emptying the buckets when retainData is false); it only writes its own logs")
        export_shared(self, config, {
            "bucket-name": self.bucket.bucket_name, "bucket-arn": self.bucket.bucket_arn, "key-arn": self.key.key_arn,
            "sagemaker-role-arn": self.sagemaker_role.role_arn, "alarm-topic-arn": self.alarm_topic.topic_arn,
        })

    def _limit_traffic_reads(self, config: DeploymentConfig) -> None:
        """traffic/requests/ holds customer text: only the observer-mode step reads it, whatever IAM grants elsewhere in the account.

        Decision records (traffic/decisions/: ids, labels, scores, no text) stay readable by the roles
        granted them, such as the drift monitor.
        """
        reader = f"arn:{self.partition}:iam::{self.account}:role/{traffic_reader_role_name(config, self.region)}"
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="TrafficReadOnlyByObserverMode", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[self.bucket.arn_for_objects(f"{layout.TRAFFIC_REQUESTS}*")],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": reader}},
        ))

    def _limit_shadow_input_reads(self, config: DeploymentConfig) -> None:
        """The observer-mode input (`datasets/<run>/shadow/requests.jsonl`) copies customer text: readable only by the
        step that writes it and by SageMaker's execution role (the Batch Transform reads it), like traffic/requests/."""
        reader = f"arn:{self.partition}:iam::{self.account}:role/{traffic_reader_role_name(config, self.region)}"
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="ShadowInputReadOnlyByObserverMode", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[self.bucket.arn_for_objects(f"{layout.DATASETS}*/shadow/requests.jsonl")],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [reader, self.sagemaker_role.role_arn]}},
        ))

    def _sagemaker_role(self, config: DeploymentConfig) -> iam.Role:
        """Execution role of training jobs, models (endpoint, Batch Transform): data in, artifacts out, nothing else."""
        role = iam.Role(self, "SageMakerExecutionRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                        description="sav-router training jobs, models and transform jobs")
        arn = self.bucket.bucket_arn
        # Jobs read datasets and model artifacts; they write artifacts (training) and transform outputs (evaluations).
        # Never models/manifests/: those are the thresholds the routing Lambda trusts, written by the evaluation step.
        for prefix in (layout.DATASETS, layout.TRAINING_OUTPUT):
            read_prefix(role, role, arn, prefix)
        for prefix in (layout.TRAINING_OUTPUT, layout.EVALUATIONS):
            write_prefix(role, role, arn, prefix)
        use_key(role, self.key)
        # Blue/green auto-rollback: SageMaker reads the rollback alarms' state with the execution role.
        role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=[
            f"arn:{self.partition}:cloudwatch:{self.region}:{self.account}:alarm:{name}" for name in rollback_alarm_names(config)]))
        role.add_to_policy(iam.PolicyStatement(actions=["kms:CreateGrant"], resources=[self.key.key_arn],
                                               conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))
        role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[sagemaker_logs := f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:/aws/sagemaker/*"],
        ))
        acknowledge_wildcard(role, sagemaker_logs, "SageMaker names the log groups and streams of its jobs and endpoints under /aws/sagemaker/")
        role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}},
        ))
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "cloudwatch:PutMetricData, ecr:GetAuthorizationToken and (with VPC placement) the EC2 network-interface calls SageMaker makes "
                    "support no resource-level scoping; metrics are limited to the SageMaker namespaces by condition")
        # A prebuilt image (training, and serving when it is another): pull from its repository. An image built at
        # deploy time lives in the pipeline stack, which grants the pull from the assets repository.
        repositories = sorted({arn for uri in (config.image_uri, config.serving_image_uri)
                               if (arn := ecr_repository_arn(uri or "", self.partition)) is not None})
        if repositories:
            role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))  # account-level action
            role.add_to_policy(iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"], resources=repositories,
            ))
        if config.vpc.enabled:
            role.add_to_policy(iam.PolicyStatement(
                actions=["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                         "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs",
                         "ec2:DescribeDhcpOptions", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"],
                resources=["*"],  # SageMaker creates the ENIs; their ids are not known in advance
            ))
        return role
