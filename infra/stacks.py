"""The four stacks and how they connect (instantiated by `app.py`)."""

from __future__ import annotations

from aws_cdk import Fn, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.annotation_trigger import AnnotationTrigger
from infra.config import DeploymentConfig
from infra.foundation import FoundationStack
from infra.drift_monitor import DriftMonitor
from infra.monitoring import Monitoring, Watched
from infra.promotion import EndpointAlarms, Promotion
from infra.routing import RoutingService
from infra.shared import export_name, import_shared
from infra.training_image import TrainingImage
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


class PipelineStack(Stack):
    """Annotation drops -> training pipeline -> registered candidate."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, foundation: FoundationStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(foundation)
        shared = import_shared(self, config)
        # A mutable import of the SageMaker role: an image built at deploy time grants its pull here, beside the image.
        puller = iam.Role.from_role_arn(self, "ImagePuller", Fn.import_value(export_name(config, "sagemaker-role-arn")))
        self.image = TrainingImage(self, "Image", config=config, pulled_by=puller)
        self.pipeline = TrainingPipeline(self, "Training", config=config, shared=shared, image_uri=self.image.uri)
        self.trigger = AnnotationTrigger(self, "Annotations", config=config, shared=shared, state_machine=self.pipeline.state_machine)


class OperationsStack(Stack):
    """Alarms and the dashboard."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, foundation: FoundationStack,
                 serving: ServingStack, pipeline: PipelineStack, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(foundation)
        routing, trigger, promotion, endpoint = serving.routing, pipeline.trigger, serving.promotion, serving.endpoint_alarms
        shared = import_shared(self, config)
        # Is live traffic still like the production model's calibration sample? (issue 12; sav_router.aws.drift)
        # Its own failures (errors, dead letters) are alarmed by the construct that owns them.
        self.drift = DriftMonitor(self, "DriftMonitor", bucket=shared.bucket, key=shared.key, topic=shared.alarm_topic,
                                  log_retention_days=config.log_retention_days)
        watched = Watched(
            dead_letters={
                "intake": routing.intake_dlq, "human-review": routing.review_dlq, "teams": routing.team_dlq,
                "annotation-events": trigger.events_dlq, "gate-schedule": trigger.schedule_dlq, "promotion-events": promotion.failures,
                "promotion-retries": promotion.retries_dlq
            },
            intake=routing.intake, review=routing.review, state_machine=pipeline.pipeline.state_machine,
            functions={"routing": routing.handler, "promotion": promotion.handler, "annotation-gate": trigger.handler},
            endpoint_errors=endpoint.errors, endpoint_latency=endpoint.latency, endpoint_alarms=endpoint.alarms,
        )
        self.monitoring = Monitoring(self, "Monitoring", config=config, topic=shared.alarm_topic, watched=watched)


def build(scope: Construct, config: DeploymentConfig, **stack_kwargs) -> dict[str, Stack]:
    prefix = "".join(part.title() for part in config.prefix.split("-"))
    foundation = FoundationStack(scope, f"{prefix}Foundation", config=config, **stack_kwargs)
    serving = ServingStack(scope, f"{prefix}Serving", config=config, foundation=foundation, **stack_kwargs)
    pipeline = PipelineStack(scope, f"{prefix}Pipeline", config=config, foundation=foundation, **stack_kwargs)
    operations = OperationsStack(scope, f"{prefix}Operations", config=config, foundation=foundation, serving=serving, pipeline=pipeline, **stack_kwargs)
    return {"foundation": foundation, "serving": serving, "pipeline": pipeline, "operations": operations}
