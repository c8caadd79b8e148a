"""The training/serving image: a prebuilt URI from the configuration, or `training_image/Dockerfile` built by `cdk deploy`.

Lives in the pipeline stack, the one that runs it: its URI changes with every build, so it is never a
cross-stack export (CloudFormation refuses to change an export in use). The build context is the
repository root filtered by `training_image/Dockerfile.dockerignore` (what BuildKit applies to that
Dockerfile), so the asset hash, and with it the image, changes only when a file the image copies does.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import ConfigError, DeploymentConfig
from infra.lambda_function import REPO
from infra.policies import acknowledge
from sav_router import env

DOCKERFILE = "training_image/Dockerfile"


def dockerignore_patterns(repo: Path = REPO) -> list[str]:
    path = repo / f"{DOCKERFILE}.dockerignore"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.lstrip().startswith("#")]


class TrainingImage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, pulled_by: iam.IRole) -> None:
        super().__init__(scope, construct_id)
        self.asset: ecr_assets.DockerImageAsset | None = None
        if config.image_uri:
            self.uri = config.image_uri  # the foundation's SageMaker role pulls it from its own repository
            return
        if not (REPO / DOCKERFILE).is_file():
            raise ConfigError(f"no {DOCKERFILE}: set imageUri in cdk.json or {env.IMAGE_URI} to a pushed image")
        # `docker build --file` reads the Dockerfile from the staged context: it must survive the excludes
        # (CDK only re-includes a Dockerfile at the context's root).
        exclude = [*dockerignore_patterns(), f"!{DOCKERFILE}", f"!{DOCKERFILE}.dockerignore"]
        self.asset = ecr_assets.DockerImageAsset(
            self, "Asset", directory=str(REPO), file=DOCKERFILE, exclude=exclude, ignore_mode=IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        self.uri = self.asset.image_uri
        self.asset.repository.grant_pull(pulled_by)
        acknowledge(pulled_by, "AwsSolutions-IAM5[Resource::*]", "ecr:GetAuthorizationToken is an account-level action with no resource-level permissions")

    def readable_by(self, role: iam.IRole, config: DeploymentConfig) -> None:
        """Read-only access to the image (no pull of layers): CreateModelPackage names it, and SageMaker may check the
        image with the caller's credentials when it registers the package (issue 19, item 11; unverified in moto)."""
        from infra.foundation import ecr_repository_arn  # a prebuilt image's repository

        actions = ["ecr:BatchGetImage", "ecr:DescribeImages"]
        if self.asset is not None:
            self.asset.repository.grant(role, *actions)
            return
        repository = ecr_repository_arn(config.image_uri or "", Stack.of(self).partition)
        if repository is not None:
            role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[repository]))
