"""The training pipeline: dataset -> training -> model -> check transform -> evaluation -> gate
-> observer-mode transform on logged traffic -> shadow comparison -> model package registration.

Paired with `lambdas/{prepare_dataset,evaluate,shadow_prepare,shadow_compare}/`
and their logic in `sav_router/aws/`. Any failure ends the execution in a Fail
state naming the step and its cause (alarmed in the operations stack); the
model package is created last, so a failed run registers nothing.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.config import ConfigError, DeploymentConfig
from infra.lambda_function import ProjectFunction, retention
from infra.policies import acknowledge, acknowledge_wildcard, allow, read_prefix, use_key, write_prefix
from infra.sagemaker_jobs import TRAINING, TRANSFORM, sagemaker_job
from infra.shared import Shared, overrides_parameter_name, state_machine_name, traffic_reader_role_name
from sav_router.aws.approval import approval_status
from sav_router.aws.instances import volume_key
from sav_router.core import layout
from sav_router.serving.settings import TRANSFORM_MAX_PAYLOAD_MB
from sav_router.aws.settings import DatasetSettings, EvaluateSettings, FunctionSettings, ShadowCompareSettings, ShadowPrepareSettings
from sav_router.training.config import ONNX_SERVING_BACKENDS

JSONL = "application/jsonlines"
STEP_TIMEOUT = Duration.minutes(10)


class TrainingPipeline(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, shared: Shared, image_uri: str, serving_image_uri: str,
    ) -> None:
        """`image_uri` runs the training job; `serving_image_uri` every model (transforms, the registered package)."""
        super().__init__(scope, construct_id)
        self.config, self.key, self.bucket = config, shared.key, shared.bucket
        self.role, self.image_uri, self.group = shared.sagemaker_role, image_uri, shared.model_package_group_name
        self.serving_image_uri = serving_image_uri
        key = shared.key
        stack = Stack.of(self)
        self.arn = f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}"
        self.functions = self._functions()
        # Under /aws/vendedlogs/: CloudWatch Logs' resource policy for Step Functions delivery is not extended per log
        # group there, so creating it cannot hit the 5,120-character resource-policy limit of busy accounts.
        self.log_group = logs.LogGroup(self, "Logs", retention=retention(config.log_retention_days), encryption_key=key,
                                       log_group_name=f"/aws/vendedlogs/states/{config.prefix}-training",
                                       removal_policy=RemovalPolicy.DESTROY)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine", state_machine_name=state_machine_name(config),
            definition_body=sfn.DefinitionBody.from_chainable(self._definition()),
            timeout=Duration.hours(12), tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment="sav-router: annotations -> trained, evaluated, shadow-compared, registered candidate",
        )
        self._grant_state_machine()

    # -- Lambda steps -----------------------------------------------------------------
    def _function(self, settings: FunctionSettings, description: str, memory_mb: int = 1024, role_name: str | None = None) -> ProjectFunction:
        name = settings.function
        function = ProjectFunction(
            self, name.title().replace("_", "") + "Function", name=name, key=self.key, log_retention_days=self.config.log_retention_days,
            description=description, memory_mb=memory_mb, timeout=STEP_TIMEOUT, role_name=role_name,
            environment=settings.to_environment(),
        )
        acknowledge(function.function, "Serverless-LambdaDLQ", "invoked synchronously by the state machine, which catches and reports every failure")
        return function

    def _functions(self) -> dict[str, ProjectFunction]:
        config, bucket = self.config, self.bucket
        functions = {
            "prepare_dataset": self._function(DatasetSettings(artifacts_bucket=bucket.bucket_name, team_labels=dict(config.team_labels), run_prefix=config.prefix),
                                              "sav-router pipeline: curate the dataset from all annotations"),
            "evaluate": self._function(EvaluateSettings(artifacts_bucket=bucket.bucket_name, target_precision=config.target_precision, min_coverage=config.min_coverage),
                                       "sav-router pipeline: evaluate the check transform output, quality gate", memory_mb=2048),
            "shadow_prepare": self._function(ShadowPrepareSettings(artifacts_bucket=bucket.bucket_name, traffic_days=config.traffic_days,
                                                                   max_shadow_requests=config.max_shadow_requests),
                                             "sav-router pipeline: recent production traffic for observer mode",
                                             role_name=traffic_reader_role_name(config, Stack.of(self).region)),  # the one reader of traffic/ (bucket policy)
            "shadow_compare": self._function(ShadowCompareSettings(artifacts_bucket=bucket.bucket_name, approval_mode=config.approval_mode,
                                                                   overrides_parameter=overrides_parameter_name(config),
                                                                   teams_with_queue=sorted(config.teams)),
                                             "sav-router pipeline: candidate vs production decisions on logged traffic"),
        }
        grants = {
            "prepare_dataset": ([layout.ANNOTATIONS], [layout.DATASETS]),
            "evaluate": ([layout.TRAINING_OUTPUT, layout.DATASETS, layout.EVALUATIONS], [layout.MANIFESTS, layout.EVALUATIONS]),
            "shadow_prepare": ([layout.TRAFFIC], [layout.DATASETS]),
            # the candidate's manifest (its policy): without it `redecide` escalates every candidate answer (issue 19, bug 1)
            "shadow_compare": ([layout.DATASETS, layout.EVALUATIONS, layout.MANIFESTS], [layout.EVALUATIONS]),
        }
        for name, (reads, writes) in grants.items():
            fn, role = functions[name].function, functions[name].role
            for prefix in reads:
                read_prefix(fn, role, bucket.bucket_arn, prefix)
            for prefix in writes:
                write_prefix(fn, role, bucket.bucket_arn, prefix)
            use_key(fn, self.key)
        # The observer-mode input is tagged as customer text (its lifecycle rule expires it with the traffic it copies).
        prepare = functions["shadow_prepare"]
        allow(prepare.function, prepare.role, ["s3:PutObjectTagging"], [f"{bucket.bucket_arn}/{layout.DATASETS}*"],
              wildcard_reason=f"objects under {layout.DATASETS} have run-specific names; tagging is limited to that prefix")
        # The shadow comparison re-decides the candidate with the routing function's overrides (core.policy.redecide).
        stack = Stack.of(self)
        compare = functions["shadow_compare"]
        allow(compare.function, compare.role, ["ssm:GetParameter"],
              [f"arn:{stack.partition}:ssm:{stack.region}:{stack.account}:parameter{overrides_parameter_name(config)}"])
        return functions

    def _grant_state_machine(self) -> None:
        machine = self.state_machine
        role = machine.role
        # Passing the SageMaker execution role to the jobs and the model.
        allow(machine, role, ["iam:PassRole"], [self.role.role_arn], conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})
        use_key(machine, self.key)
        prefix = self.config.prefix
        for resource in (f"{self.arn}:training-job/{prefix}-*", f"{self.arn}:transform-job/{prefix}-*", f"{self.arn}:model/{prefix}-*"):
            acknowledge_wildcard(role, resource, "SageMaker jobs and models are named after the run (<prefix>-<execution>-<hash>); scoped to this deployment's prefix")
        acknowledge_wildcard(role, f"{self.arn}:model-package/{self.group}/*", "model package versions of this deployment's group are numbered by SageMaker")
        for function in self.functions.values():
            acknowledge_wildcard(role, f"{function.function.function_arn}:*", "Step Functions' LambdaInvoke grant covers the function's versions and aliases")
        acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray tracing and CloudWatch Logs delivery of the state machine (xray:Put*, logs:*LogDelivery*) support no resource-level permissions")

    def _invoke(self, name: str, state: str, payload: dict, result_path: str, on_error: sfn.IChainable) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self, state, lambda_function=self.functions[name].function, payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True, result_path=result_path, retry_on_service_exceptions=True,
        )
        task.add_catch(on_error, result_path="$.error")
        return task

    # -- the state machine ------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        """The configured training settings; the bundle is certified among ONNX backends only (onnx-auto: int8, then fp32,
        else the job fails) unless the models run in the training image itself, which has torch."""
        hyperparameters = dict(self.config.training.hyperparameters)
        backend = hyperparameters.setdefault("serving_backend", ONNX_SERVING_BACKENDS[0])
        if backend not in ONNX_SERVING_BACKENDS and self.serving_image_uri != self.image_uri:
            raise ConfigError(
                f"training.hyperparameters.serving_backend {backend!r} may certify a bundle on torch, which the serving image "
                f"(no torch) cannot serve: use one of {', '.join(ONNX_SERVING_BACKENDS)}, or leave it out ({ONNX_SERVING_BACKENDS[0]})"
            )
        return hyperparameters

    def _vpc(self) -> dict:
        vpc = self.config.vpc
        return {"VpcConfig": {"Subnets": list(vpc.subnet_ids), "SecurityGroupIds": list(vpc.security_group_ids)}} if vpc.enabled else {}

    def _transform_parameters(self, input_path: str, output_path: str) -> dict:
        return {
            "ModelName.$": "$.dataset.run_id",
            "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": TRANSFORM_MAX_PAYLOAD_MB,
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": input_path}},
                "ContentType": JSONL, "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath.$": output_path, "Accept": JSONL, "AssembleWith": "Line", "KmsKeyId": self.key.key_arn},
            "TransformResources": {"InstanceType": self.config.transform_instance_type, "InstanceCount": 1,
                                   **volume_key(self.config.transform_instance_type, self.key.key_arn)},
        }

    def _definition(self) -> sfn.IChainable:
        config, arn, prefix = self.config, self.arn, self.config.prefix
        poll = Duration.seconds(config.poll_seconds)
        failed = sfn.Fail(self, "Pipeline step failed", error_path="$.error.Error", cause_path="$.error.Cause")
        run_id = "$.dataset.run_id"

        prepare = self._invoke("prepare_dataset", "Prepare dataset", {"execution_name.$": "$$.Execution.Name"}, "$.dataset", failed)

        hyperparameters = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in self._hyperparameters().items()}
        hyperparameters.setdefault("target_precision", json.dumps(config.target_precision))
        train_start, _, trained = sagemaker_job(
            self, "Training", kind=TRAINING, job_name=sfn.JsonPath.string_at(run_id), on_error=failed, poll=poll,
            result_path="$.training", job_arns=[f"{arn}:training-job/{prefix}-*"], description="Fine-tune and calibrate on the curated dataset",
            parameters={
                "AlgorithmSpecification": {"TrainingImage": self.image_uri, "TrainingInputMode": "File"},
                "RoleArn": self.role.role_arn,
                "HyperParameters": hyperparameters,
                "InputDataConfig": [
                    {"ChannelName": name, "ContentType": content_type,
                     "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": path, "S3DataDistributionType": "FullyReplicated"}}}
                    for name, path, content_type in (("train", "$.dataset.train_uri", JSONL), ("teams", "$.dataset.teams_uri", "application/json"))
                ],
                "OutputDataConfig": {"S3OutputPath": layout.s3_uri(self.bucket.bucket_name, layout.TRAINING_OUTPUT), "KmsKeyId": self.key.key_arn},
                "ResourceConfig": {"InstanceType": config.training.instance_type, "InstanceCount": config.training.instance_count,
                                   "VolumeSizeInGB": config.training.volume_gb, **volume_key(config.training.instance_type, self.key.key_arn)},
                "StoppingCondition": {"MaxRuntimeInSeconds": config.training.max_runtime_seconds},
                "EnableNetworkIsolation": True,
                "EnableInterContainerTrafficEncryption": True,
                **self._vpc(),
            },
        )
        create_model = tasks.CallAwsService(
            self, "Create model", service="sagemaker", action="createModel", iam_action="sagemaker:CreateModel",
            iam_resources=[f"{arn}:model/{prefix}-*"], result_path=sfn.JsonPath.DISCARD,
            parameters={
                "ModelName.$": run_id,
                "PrimaryContainer": {"Image": self.serving_image_uri, "ModelDataUrl.$": "$.training.ModelArtifacts.S3ModelArtifacts"},
                "ExecutionRoleArn": self.role.role_arn,
                "EnableNetworkIsolation": True,
                **self._vpc(),
            },
        )
        create_model.add_catch(failed, result_path="$.error")
        check_start, _, checked = sagemaker_job(
            self, "CheckTransform", kind=TRANSFORM, job_name=sfn.JsonPath.format("{}-check", sfn.JsonPath.string_at(run_id)),
            on_error=failed, poll=poll, result_path="$.check_transform", job_arns=[f"{arn}:transform-job/{prefix}-*"],
            description="Batch Transform over the held-out check annotations",
            parameters=self._transform_parameters("$.dataset.check_input_uri", "$.dataset.check_output_uri"),
        )
        evaluate = self._invoke("evaluate", "Evaluate", {"run_id.$": run_id, "model_artifacts_uri.$": "$.training.ModelArtifacts.S3ModelArtifacts"},
                                "$.evaluation", failed)
        gate_failed = sfn.Fail(self, "Quality gate failed", error="QualityGateFailed", cause_path="$.evaluation.gate.summary")
        prepare_shadow = self._invoke("shadow_prepare", "Prepare shadow traffic", {"run_id.$": run_id}, "$.shadow", failed)
        shadow_start, _, shadowed = sagemaker_job(
            self, "ShadowTransform", kind=TRANSFORM, job_name=sfn.JsonPath.format("{}-shadow", sfn.JsonPath.string_at(run_id)),
            on_error=failed, poll=poll, result_path="$.shadow_transform", job_arns=[f"{arn}:transform-job/{prefix}-*"],
            description="Observer mode: the candidate decides on recent production traffic",
            parameters=self._transform_parameters("$.shadow.input_uri", "$.shadow.output_uri"),
        )
        compare = self._invoke("shadow_compare", "Compare with production", {"run_id.$": run_id}, "$.comparison", failed)
        no_traffic = sfn.Pass(
            self, "No traffic to replay", result_path="$.comparison",
            result=sfn.Result.from_object({"report_uri": "none", "approval_status": approval_status(config.approval_mode, shadow_passed=None)}),
        )
        register = tasks.CallAwsService(
            self, "Register model package", service="sagemaker", action="createModelPackage", iam_action="sagemaker:CreateModelPackage",
            iam_resources=[f"{arn}:model-package-group/{self.group}", f"{arn}:model-package/{self.group}/*"], result_path="$.registration",
            parameters={
                "ModelPackageGroupName": self.group,
                "ModelPackageDescription.$": "States.Format('sav-router {} ({})', $.evaluation.model_version, $.evaluation.gate.summary)",
                "ModelApprovalStatus.$": "$.comparison.approval_status",
                "InferenceSpecification": {
                    "Containers": [{"Image": self.serving_image_uri, "ModelDataUrl.$": "$.training.ModelArtifacts.S3ModelArtifacts"}],
                    "SupportedContentTypes": ["application/json", JSONL],
                    "SupportedResponseMIMETypes": ["application/json", JSONL],
                    "SupportedRealtimeInferenceInstanceTypes": [config.endpoint.instance_type],
                    "SupportedTransformInstanceTypes": [config.transform_instance_type],
                },
                "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri.$": "$.evaluation.report_uri"}}},
                "CustomerMetadataProperties": {
                    "model_version.$": "$.evaluation.model_version",
                    "run_id.$": run_id,
                    "evaluation_report.$": "$.evaluation.report_uri",
                    "shadow_comparison.$": "$.comparison.report_uri",
                },
            },
        )
        register.add_catch(failed, result_path="$.error")
        registered = sfn.Succeed(self, "Candidate registered")

        shadowed.next(compare)
        compare.next(register)
        no_traffic.next(register)
        register.next(registered)
        trained.next(create_model).next(check_start)
        checked.next(evaluate).next(
            sfn.Choice(self, "Quality gate passed?")
            .when(sfn.Condition.boolean_equals("$.evaluation.gate.passed", True), prepare_shadow.next(
                sfn.Choice(self, "Traffic to replay?")
                .when(sfn.Condition.number_greater_than("$.shadow.count", 0), shadow_start)
                .otherwise(no_traffic)))
            .otherwise(gate_failed)
        )
        return prepare.next(train_start)
