"""Stack deletion removes what the runtime created there (issue 19, bug 3): a custom resource per owning stack.

The serving stack's removes the endpoint the promotion function created, its `<endpoint>-v<N>` configs and models;
the pipeline stack's removes the run models the state machine created and the model package versions it
registered (the foundation's group cannot be deleted while it holds any). Logic: `sav_router/aws/teardown.py`;
handler: `lambdas/teardown/`. The custom resource depends on its function (and so on the function's role policy),
so CloudFormation deletes it first, while the permissions still exist.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import DeploymentConfig
from infra.lambda_function import ProjectFunction
from infra.policies import acknowledge, allow
from sav_router.aws.settings import TeardownSettings

RESOURCE_TYPE = "Custom::SavRouterRuntimeResources"


class RuntimeCleanup(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        key: kms.IKey,
        endpoint_name: str | None = None,
        run_model_prefix: str | None = None,
        model_package_group: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        self.function = ProjectFunction(
            self, "Teardown", name="teardown", key=key, log_retention_days=config.log_retention_days, memory_mb=256,
            timeout=Duration.minutes(5), environment=TeardownSettings().to_environment(),
            description="sav-router: on stack deletion, remove the SageMaker resources the runtime created",
        )
        fn, role = self.function.function, self.function.role
        acknowledge(fn, "Serverless-LambdaDLQ", "invoked synchronously by CloudFormation, which reports a failure on the stack")
        allow(fn, role, ["sagemaker:ListEndpointConfigs", "sagemaker:ListModels", "sagemaker:ListModelPackages"], ["*"],
              wildcard_reason="SageMaker's List actions support no resource-level permission; deletions below are scoped by name")
        properties: dict[str, str] = {}
        if endpoint_name is not None:
            properties["EndpointName"] = endpoint_name
            allow(fn, role, ["sagemaker:DeleteEndpoint"], [f"{arn}:endpoint/{endpoint_name}"])
            allow(fn, role, ["sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel"],
                  [f"{arn}:endpoint-config/{endpoint_name}-v*", f"{arn}:model/{endpoint_name}-v*"],
                  wildcard_reason="the endpoint's configs and models are named <endpoint>-v<package version>")
        if run_model_prefix is not None:
            properties["RunModelPrefix"] = run_model_prefix
            allow(fn, role, ["sagemaker:DeleteModel"], [f"{arn}:model/{run_model_prefix}-*"],
                  wildcard_reason="the state machine names each run's model <prefix>-<execution>-<hash>")
        if model_package_group is not None:
            properties["ModelPackageGroupName"] = model_package_group
            allow(fn, role, ["sagemaker:DeleteModelPackage"], [f"{arn}:model-package/{model_package_group}/*"],
                  wildcard_reason="model package versions of this deployment's group are numbered by SageMaker")
        self.resource = CustomResource(self, "RuntimeResources", service_token=fn.function_arn, resource_type=RESOURCE_TYPE,
                                       properties=properties)
