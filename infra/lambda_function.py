"""One Lambda function of `lambdas/<name>/`, packaged without Docker.

The asset is the handler folder + the `sav_router` modules the handler imports (found from its
imports, `infra/lambda_sources.py`) + the folder's `requirements.txt`, installed by a local
`pip install --platform` for the Lambda runtime (manylinux wheels only). Most tests skip bundling
through the `aws:cdk:bundling-stacks` context; the deploy rehearsal
(tests/infra/test_deploy_rehearsal.py) runs it as `cdk deploy` does. The asset hash covers exactly
the files the bundle copies, so a function is redeployed only when its own code (or its pins) change.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.lambda_sources import REPO, asset_sources, source_digest
from infra.policies import acknowledge
from sav_router import env
from sav_router.aws import metrics as metric_names

LAMBDAS = REPO / "lambdas"
RUNTIME = lambda_.Runtime.PYTHON_3_14
PY_VERSION = "3.14"
# The runtime ships the AWS SDK; a copy pulled in as a dependency (aws-xray-sdk -> botocore, and botocore's own
# urllib3 / python-dateutil / six) would shadow it: /var/task comes first on the runtime's path. Removed from
# every bundle after pip has resolved it. {distribution: what it installs at the top level}
RUNTIME_PROVIDED = {"boto3": ("boto3",), "botocore": ("botocore",), "s3transfer": ("s3transfer",),
                    "urllib3": ("urllib3",), "python_dateutil": ("dateutil",), "six": ("six.py",)}
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit for a function's unzipped code (all layers included)


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """pip-install the requirements for the Lambda platform, then copy the handler folder and the modules it imports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    # jsii calls try_bundle(output_dir, options) with both arguments positionally (never as keywords).
    def try_bundle(self, output_dir: str, options: BundlingOptions | None = None) -> bool:
        requirements = self.folder / "requirements.txt"
        if requirements.is_file():
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check", "--target", output_dir,
                 # numpy / scipy / scikit-learn ship manylinux_2_28 wheels; the Lambda runtime (Amazon Linux 2023) runs them
                 "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64", "--implementation", "cp", "--python-version", PY_VERSION,
                 "--only-binary=:all:", "-r", str(requirements)],
                check=True,
            )
            # Test suites of numpy / scipy / scikit-learn are dead weight against the 250 MB Lambda limit.
            for tests in sorted(Path(output_dir).glob("*/**/tests"), reverse=True):
                if tests.is_dir():
                    shutil.rmtree(tests)
            remove_runtime_provided(Path(output_dir))
        for name, source in asset_sources(self.folder).items():  # what source_digest hashed, file for file
            target = Path(output_dir) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        return True


def remove_runtime_provided(folder: Path) -> None:
    """Drop the AWS SDK packages (and their metadata) that pip installed as dependencies."""
    for distribution, top_level in RUNTIME_PROVIDED.items():
        for path in [*(folder / name for name in top_level), *folder.glob(f"{distribution}-*.dist-info")]:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()


class ProjectFunction(Construct):
    """A handler from `lambdas/<name>/` with tracing, log retention and an encrypted environment."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        environment: Mapping[str, str],
        key: kms.IKey,
        log_retention_days: int,
        memory_mb: int = 512,
        timeout: Duration = Duration.seconds(60),
        reserved_concurrency: int | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
        role_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        folder = LAMBDAS / name
        self.log_group = logs.LogGroup(
            self, "Logs", retention=retention(log_retention_days), encryption_key=key, removal_policy=RemovalPolicy.DESTROY
        )
        # Own role instead of AWSLambdaBasicExecutionRole: writes to its own log group only.
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=f"sav-router {name} function",
                             role_name=role_name)  # a fixed name where a bucket policy in another stack names the role
        self.role.add_to_policy(iam.PolicyStatement(actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[self.log_group.log_group_arn]))
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(
                str(folder),
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=source_digest(folder),
                bundling=BundlingOptions(
                    image=DockerImage.from_registry(f"public.ecr.aws/sam/build-python{PY_VERSION}"),
                    local=LocalPipBundling(folder),
                    command=["bash", "-c", "echo 'local bundling only (pip --platform); see infra/lambda_function.py' && exit 1"],
                ),
            ),
            description=description,
            memory_size=memory_mb,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            environment={env.POWERTOOLS_SERVICE_NAME: name, env.POWERTOOLS_METRICS_NAMESPACE: metric_names.NAMESPACE, env.POWERTOOLS_LOG_LEVEL: "INFO", **environment},
            environment_encryption=key,
            reserved_concurrent_executions=reserved_concurrency,
            role=self.role,
            dead_letter_queue=dead_letter_queue,
        )
        acknowledge(self.role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions")


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS, 5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR, 731: logs.RetentionDays.TWO_YEARS, 1827: logs.RetentionDays.FIVE_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The shortest CloudWatch retention that keeps logs at least `days` days."""
    return next((value for limit, value in sorted(_RETENTION.items()) if limit >= days), logs.RetentionDays.FIVE_YEARS)
