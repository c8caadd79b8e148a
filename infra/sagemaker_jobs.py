"""Start a SageMaker job and poll it to completion with request-response calls.

Create -> Describe -> Choice (Completed: next / Failed, Stopped: fail with the
job's reason / otherwise Wait -> Describe). No `.sync` integration: this shape
runs as-is in moto's Step Functions interpreter, so the synthesized
definition is what the tests execute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct


@dataclass(frozen=True)
class JobKind:
    create_action: str  # e.g. "createTrainingJob"
    describe_action: str
    name_parameter: str  # e.g. "TrainingJobName"
    status_field: str  # e.g. "TrainingJobStatus"
    keep: tuple[str, ...]  # fields of the describe answer kept in the state (small, no timestamps)


TRAINING = JobKind("createTrainingJob", "describeTrainingJob", "TrainingJobName", "TrainingJobStatus", ("TrainingJobStatus", "ModelArtifacts"))
# What a failed aws-sdk:sagemaker call arrives as: SageMaker's unmodelled errors (throttling among them) are
# "SageMaker.AmazonSageMakerException"; ThrottlingException is listed too should it ever be modelled.
RETRIED_ERRORS = ("SageMaker.AmazonSageMakerException", "SageMaker.ThrottlingException")
TRANSFORM = JobKind("createTransformJob", "describeTransformJob", "TransformJobName", "TransformJobStatus", ("TransformJobStatus",))


def sagemaker_job(
    scope: Construct,
    construct_id: str,
    *,
    kind: JobKind,
    job_name: str,
    parameters: dict[str, Any],
    job_arns: list[str],
    result_path: str,
    poll: Duration,
    on_error: sfn.IChainable,
    description: str,
) -> tuple[sfn.TaskStateBase, sfn.Choice, sfn.Pass]:
    """(start state, polling choice, done state): chain `.next()` after the done state."""
    create = tasks.CallAwsService(
        scope, f"Start {construct_id}", service="sagemaker", action=kind.create_action,
        iam_action=f"sagemaker:{kind.create_action[0].upper()}{kind.create_action[1:]}",
        parameters={kind.name_parameter: job_name, **parameters}, iam_resources=job_arns,
        result_path=sfn.JsonPath.DISCARD, comment=description,
    )
    describe_action = f"sagemaker:{kind.describe_action[0].upper()}{kind.describe_action[1:]}"
    describe = tasks.CallAwsService(
        scope, f"Describe {construct_id}", service="sagemaker", action=kind.describe_action, iam_action=describe_action,
        parameters={kind.name_parameter: job_name}, iam_resources=job_arns, result_path=result_path,
        result_selector={f"{field}.$": f"$.{field}" for field in kind.keep},
    )
    # FailureReason exists only on failed jobs: read it on that branch only.
    describe_failure = tasks.CallAwsService(
        scope, f"Why {construct_id} failed", service="sagemaker", action=kind.describe_action, iam_action=describe_action,
        parameters={kind.name_parameter: job_name}, iam_resources=job_arns, result_path=result_path,
        result_selector={"FailureReason.$": "$.FailureReason"},
    )
    for task in (create, describe, describe_failure):
        task.add_retry(errors=list(RETRIED_ERRORS), interval=Duration.seconds(5), max_attempts=4, backoff_rate=2)
        task.add_catch(on_error, result_path="$.error")
    wait = sfn.Wait(scope, f"Wait {construct_id}", time=sfn.WaitTime.duration(poll))
    done = sfn.Pass(scope, f"{construct_id} completed")
    status = f"{result_path}.{kind.status_field}"
    check = (
        sfn.Choice(scope, f"{construct_id} status?")
        .when(sfn.Condition.string_equals(status, "Completed"), done)
        .when(sfn.Condition.string_equals(status, "Failed"), describe_failure.next(sfn.Fail(
            scope, f"{construct_id} failed", error=f"{construct_id}Failed", cause_path=f"{result_path}.FailureReason")))
        .when(sfn.Condition.string_equals(status, "Stopped"), sfn.Fail(
            scope, f"{construct_id} stopped", error=f"{construct_id}Stopped", cause=f"the {construct_id} job was stopped"))
        .otherwise(wait.next(describe))
    )
    create.next(describe).next(check)
    return create, check, done
