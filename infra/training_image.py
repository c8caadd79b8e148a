"""The images: prebuilt URIs from the configuration, or the two targets of `training_image/Dockerfile` built by `cdk deploy`.

`training` (the Dockerfile's default target: torch, transformers, `train` and `serve`) runs the training job;
`serving` (no torch: ONNX Runtime and the HTTP server) runs every model: the check and shadow Batch
Transforms and the registered model package (and with it the endpoint). With a prebuilt `imageUri`, both
are that image unless `servingImageUri` names a serving one.

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


TRAINING_TARGET = "training"  # the Dockerfile's last stage: what `docker build` without --target builds
SERVING_TARGET = "serving"


class PipelineImages(Construct):
    """`training_uri`: the image the training job runs; `serving_uri`: the image every model of the pipeline runs in."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, pulled_by: iam.IRole) -> None:
        super().__init__(scope, construct_id)
        # prebuilt images: the foundation's SageMaker role pulls them from their own repositories; else built here
        self.training_asset = None if config.image_uri else self._build("Asset", TRAINING_TARGET, pulled_by)
        self.training_uri = config.image_uri or self.training_asset.image_uri
        prebuilt_serving = config.serving_image_uri or config.image_uri
        self.serving_asset = None if prebuilt_serving else self._build("ServingAsset", SERVING_TARGET, pulled_by)
        self.serving_uri = prebuilt_serving or self.serving_asset.image_uri

    def _build(self, construct_id: str, target: str, pulled_by: iam.IRole) -> ecr_assets.DockerImageAsset:
        if not (REPO / DOCKERFILE).is_file():
            raise ConfigError(f"no {DOCKERFILE}: set imageUri in cdk.json or {env.IMAGE_URI} to a pushed image")
        # `docker build --file` reads the Dockerfile from the staged context: it must survive the excludes
        # (CDK only re-includes a Dockerfile at the context's root).
        exclude = [*dockerignore_patterns(), f"!{DOCKERFILE}", f"!{DOCKERFILE}.dockerignore"]
        asset = ecr_assets.DockerImageAsset(
            self, construct_id, directory=str(REPO), file=DOCKERFILE, target=target, exclude=exclude, ignore_mode=IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        asset.repository.grant_pull(pulled_by)
        acknowledge(pulled_by, "AwsSolutions-IAM5[Resource::*]", "ecr:GetAuthorizationToken is an account-level action with no resource-level permissions")
        return asset

    def serving_image_readable_by(self, role: iam.IRole) -> None:
        """Read-only access to the serving image (no pull of layers): CreateModelPackage names it, and SageMaker may check
        the image with the caller's credentials when it registers the package (issue 19, item 11; unverified in moto)."""
        from infra.foundation import ecr_repository_arn  # a prebuilt image's repository

        actions = ["ecr:BatchGetImage", "ecr:DescribeImages"]
        if self.serving_asset is not None:
            self.serving_asset.repository.grant(role, *actions)
            return
        repository = ecr_repository_arn(self.serving_uri, Stack.of(self).partition)
        if repository is not None:
            role.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[repository]))
