"""The four stacks and how they connect (instantiated by `app.py`)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.annotation_trigger import AnnotationTrigger
from infra.config import DeploymentConfig
from infra.foundation import FoundationStack
from infra.drift_monitor import DriftMonitor
from infra.monitoring import Monitoring, Watched
from infra.promotion import EndpointAlarms, Promotion
from infra.routing import RoutingService
from infra.shared import export_name, import_shared, rollback_alarm_names, state_machine_name
from infra.teardown import RuntimeCleanup
from infra.training_image import PipelineImages
from infra.training_pipeline import TrainingPipeline


class ServingStack(Stack):
    """Intake -> routing -> teams / human review; approval -> endpoint."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, foundation: FoundationStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(foundation)
        shared = import_shared(self, config)
        self.routing = RoutingService(self, "Routing", config=config, shared=shared)
        self.endpoint_alarms = EndpointAlarms(self, "EndpointAlarms", config=config)
        self.promotion = Promotion(
            self, "Promotion", config=config, shared=shared, rollback_alarms=self.endpoint_alarms.names,
        )
        # `cdk destroy` removes the endpoint (billing around the clock), its configs and models (issue 19, bug 3)
        self.cleanup = RuntimeCleanup(self, "Cleanup", config=config, key=shared.key, endpoint_name=config.endpoint.name)
        routing, promotion = self.routing, self.promotion
        publish_names(self, config, {
            "intake": routing.intake.queue_name, "human-review": routing.review.queue_name, "intake-dlq": routing.intake_dlq.queue_name,
            "human-review-dlq": routing.review_dlq.queue_name, "teams-dlq": routing.team_dlq.queue_name,
            "promotion-events-dlq": promotion.failures.queue_name, "promotion-retries-dlq": promotion.retries_dlq.queue_name,
            "routing-function": routing.handler.function_name, "promotion-function": promotion.handler.function_name,
        })


class PipelineStack(Stack):
    """Annotation drops -> training pipeline -> registered candidate."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, foundation: FoundationStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(foundation)
        shared = import_shared(self, config)
        # A mutable import of the SageMaker role: an image built at deploy time grants its pull here, beside the image.
        puller = iam.Role.from_role_arn(self, "ImagePuller", Fn.import_value(export_name(config, "sagemaker-role-arn")))
        self.images = PipelineImages(self, "Image", config=config, pulled_by=puller)
        self.pipeline = TrainingPipeline(self, "Training", config=config, shared=shared, image_uri=self.images.training_uri,
                                         serving_image_uri=self.images.serving_uri)
        self.images.serving_image_readable_by(self.pipeline.state_machine.role)  # it is checked when a package is registered
        self.trigger = AnnotationTrigger(self, "Annotations", config=config, shared=shared, state_machine=self.pipeline.state_machine)
        # `cdk destroy` removes the run models and the model package versions the state machine created (issue 19, bug 3)
        self.cleanup = RuntimeCleanup(self, "Cleanup", config=config, key=shared.key, run_model_prefix=config.prefix,
                                      model_package_group=shared.model_package_group_name)
        publish_names(self, config, {
            "annotation-events-dlq": self.trigger.events_dlq.queue_name, "gate-schedule-dlq": self.trigger.schedule_dlq.queue_name,
            "annotation-gate-function": self.trigger.handler.function_name,
        })


class OperationsStack(Stack):
    """Alarms and the dashboard."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, foundation: FoundationStack,
                 serving: ServingStack, pipeline: PipelineStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(foundation)
        # No value of another stack is referenced (CDK would export it, and an export in use can never change):
        # names travel through SSM parameters with fixed names, read at each deploy; fixed names are built here.
        self.add_stack_dependency(serving)
        self.add_stack_dependency(pipeline)
        name = lambda what: ssm.StringParameter.value_for_string_parameter(self, names_parameter(config, what))  # noqa: E731
        queue = lambda what: sqs.Queue.from_queue_attributes(  # noqa: E731
            self, f"Queue-{what}", queue_name=name(what), queue_arn=f"arn:{self.partition}:sqs:{self.region}:{self.account}:{name(what)}")
        function = lambda what: lambda_.Function.from_function_name(self, f"Function-{what}", name(what))  # noqa: E731
        errors_alarm, latency_alarm = (cloudwatch.Alarm.from_alarm_name(self, f"Alarm-{alarm}", alarm) for alarm in rollback_alarm_names(config))
        shared = import_shared(self, config)
        # Is live traffic still like the production model's calibration sample? (issue 12; sav_router.aws.drift)
        # Its own failures (errors, dead letters) are alarmed by the construct that owns them.
        self.drift = DriftMonitor(self, "DriftMonitor", bucket=shared.bucket, key=shared.key, topic=shared.alarm_topic,
                                  log_retention_days=config.log_retention_days)
        watched = Watched(
            dead_letters={
                "intake": queue("intake-dlq"), "human-review": queue("human-review-dlq"), "teams": queue("teams-dlq"),
                "annotation-events": queue("annotation-events-dlq"), "gate-schedule": queue("gate-schedule-dlq"),
                "promotion-events": queue("promotion-events-dlq"), "promotion-retries": queue("promotion-retries-dlq"),
            },
            intake=queue("intake"), review=queue("human-review"),
            state_machine=sfn.StateMachine.from_state_machine_name(self, "StateMachine", state_machine_name(config)),
            functions={"routing": function("routing-function"), "promotion": function("promotion-function"),
                       "annotation-gate": function("annotation-gate-function")},
            # the serving stack's own alarms: their actions are set on them there (no reference from here)
            endpoint_errors=errors_alarm, endpoint_latency=latency_alarm, endpoint_alarms=serving.endpoint_alarms.alarms,
        )
        self.monitoring = Monitoring(self, "Monitoring", config=config, topic=shared.alarm_topic, watched=watched)
        # Printed last by `cdk deploy --all`: what `cdk destroy` will do with the data (README, "Teardown").
        CfnOutput(self, "DataOnDelete", description="What cdk destroy does with the data (cdk.json retainData)", value=data_on_delete(config))


def names_parameter(config: DeploymentConfig, what: str) -> str:
    """The SSM parameter (fixed name) through which a stack tells the operations stack the name of one of its resources."""
    return f"/{config.prefix}/names/{what}"


def publish_names(stack: Stack, config: DeploymentConfig, names: dict[str, str]) -> None:
    for what, value in names.items():
        ssm.StringParameter(stack, f"Name-{what}", parameter_name=names_parameter(config, what), string_value=value,
                            description=f"sav-router: name of the {what} (read by the operations stack at deploy)")


def data_on_delete(config: DeploymentConfig) -> str:
    if config.retain_data:
        return ("retained: cdk destroy keeps the artifacts and access-log buckets and the key (foundation stack); "
                "delete them by hand, or deploy with retainData false first")
    return "deleted: cdk destroy empties both buckets (every version) and deletes them; the key is scheduled for deletion"


def build(scope: Construct, config: DeploymentConfig, **stack_kwargs) -> dict[str, Stack]:
    prefix = "".join(part.title() for part in config.prefix.split("-"))
    foundation = FoundationStack(scope, f"{prefix}Foundation", config=config, **stack_kwargs)
    serving = ServingStack(scope, f"{prefix}Serving", config=config, foundation=foundation, **stack_kwargs)
    pipeline = PipelineStack(scope, f"{prefix}Pipeline", config=config, foundation=foundation, **stack_kwargs)
    operations = OperationsStack(scope, f"{prefix}Operations", config=config, foundation=foundation, serving=serving, pipeline=pipeline, **stack_kwargs)
    return {"foundation": foundation, "serving": serving, "pipeline": pipeline, "operations": operations}
