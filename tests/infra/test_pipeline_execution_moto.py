"""The synthesized training state machine, executed end to end in moto's Step Functions interpreter.

The definition comes from the synthesized template (intrinsics resolved to the
names moto uses); its Lambda steps run the real handlers in-process; SageMaker
calls are moto's, with `fake_sagemaker` playing the containers.
"""

from __future__ import annotations

import importlib.util
import json
import time
from contextlib import contextmanager

import boto3
import pytest
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.exceptions import JsonRESTError
from moto.sagemaker.models import SageMakerModelBackend

import aws_env
import fake_sagemaker
from deployed import Deployed
from permission_proof import STATE_MACHINE, CallRecorder, PermissionProof
from template_helpers import REPO, resources

BUCKET = "sav-router-artifacts-test"
SAMPLES = REPO / "sav_router" / "samples" / "annotations.jsonl"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


class FakeContext:
    function_name = "pipeline-step"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{aws_env.REGION}:{aws_env.ACCOUNT}:function:pipeline-step"
    aws_request_id = "test-request"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 600_000


def load_handler(name: str):
    spec = importlib.util.spec_from_file_location(f"lambda_{name}", REPO / "lambdas" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def artifacts_bucket_id(raw: dict) -> str:
    """The logical id of the foundation's KMS-encrypted artifacts bucket (the other bucket holds access logs)."""
    (found,) = [lid for lid, bucket in resources(raw, "AWS::S3::Bucket").items()
                if "aws:kms" in json.dumps(bucket["Properties"].get("BucketEncryption", {}))]
    return found


def deployed_app(synthesized) -> Deployed:
    return Deployed(synthesized.raw, region=aws_env.REGION, account=aws_env.ACCOUNT,
                    names={artifacts_bucket_id(synthesized.raw["foundation"]): BUCKET})


@contextmanager
def recording_calls(monkeypatch):
    """Inside mock_aws: every client the handlers create (boto3's default session) and every client of the state
    machine's SDK tasks records its calls (permission_proof)."""
    from moto.stepfunctions.parser.asl.utils import boto_client as sfn_clients

    recorder = CallRecorder()
    boto3.setup_default_session()
    recorder.attach_session(boto3.DEFAULT_SESSION)

    class RecordedBoto3:
        @staticmethod
        def client(*args, **kwargs):
            return recorder.attach_client(boto3.client(*args, **kwargs), STATE_MACHINE)

    monkeypatch.setattr(sfn_clients, "boto3", RecordedBoto3)
    yield recorder


def run_function(deployed: Deployed, recorder: CallRecorder, handlers: dict, monkeypatch, service: str, event: dict, context=None):
    """A function's handler, in-process, with its deployed environment, its calls recorded as its own."""
    with monkeypatch.context() as patch, recorder.acting_as(service):
        for key, value in deployed.environment(service).items():
            patch.setenv(key, value)
        handler = handlers.setdefault(service, load_handler(service.split("@")[0]))  # teardown@serving: lambdas/teardown
        return handler(event, context or FakeContext())


def dispatch_lambda_invokes(deployed: Deployed, monkeypatch, handlers: dict, recorder, calls: list[str] | None = None) -> None:
    """moto's Lambda invocations (the state machine's Lambda tasks) run the real handlers in-process (`run_function`)."""
    by_logical_id = {lid: service for service, (stack, lid) in deployed.functions().items()}

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        name = by_logical_id[function_name.rsplit(":", 1)[-1]]
        if calls is not None:
            calls.append(name)
        try:
            result = run_function(deployed, recorder(), handlers, monkeypatch, name, json.loads(body))
        except Exception as exc:  # what the Lambda service answers for an unhandled error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", invoke)


@pytest.fixture
def pipeline(synthesized, monkeypatch):
    """The deployed pipeline, in moto: bucket, model package group, state machine, Lambda dispatch."""
    config = synthesized.config
    deployed = deployed_app(synthesized)
    (machine_id,) = resources(synthesized.raw["pipeline"], "AWS::StepFunctions::StateMachine")
    definition = deployed.resolve("pipeline", deployed.resource("pipeline", machine_id)["Properties"]["DefinitionString"])
    handlers: dict[str, object] = {}
    calls: list[str] = []
    recorder_box: list[CallRecorder] = []

    dispatch_lambda_invokes(deployed, monkeypatch, handlers, lambda: recorder_box[0], calls)
    with mock_aws(config=MOTO_CONFIG), recording_calls(monkeypatch) as recorder:
        recorder_box.append(recorder)
        boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.REGION})
        boto3.client("sagemaker").create_model_package_group(ModelPackageGroupName=f"{config.prefix}-models")
        # the serving stack's operator overrides (none set): the shadow comparison re-decides with them
        from infra.shared import overrides_parameter_name

        boto3.client("ssm").put_parameter(Name=overrides_parameter_name(config), Value="{}", Type="String")
        sfn = boto3.client("stepfunctions")
        arn = sfn.create_state_machine(name=deployed.name("pipeline", machine_id), definition=definition,
                                       roleArn=f"arn:aws:iam::{aws_env.ACCOUNT}:role/sfn")["stateMachineArn"]
        yield {"arn": arn, "calls": calls, "config": config, "definition": json.loads(definition),
               "recorder": recorder, "proof": PermissionProof(deployed, bucket=BUCKET)}
        # Whatever a test ran, no call it made would be refused on AWS.
        assert pipeline_refusals(recorder, deployed) == []


def pipeline_refusals(recorder: CallRecorder, deployed: Deployed) -> list[str]:
    return PermissionProof(deployed, bucket=BUCKET).refusals(recorder.calls)


def drop_annotations() -> dict[str, str]:
    rows = [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]
    body = "".join(json.dumps(row) + "\n" for row in rows)
    boto3.client("s3").put_object(Bucket=BUCKET, Key="annotations/platform/export-1.jsonl", Body=body.encode())
    return {row["text"]: row["label"] for row in rows}


def log_production_traffic(n: int = 60) -> None:
    """What the routing Lambda writes under traffic/: requests, and production decisions (all escalated).

    The requests reuse annotated ids: reviewers have since labeled them, so the comparison has gold labels.
    """
    rows = [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()][:n]
    requests = [{"id": row["id"], "text": row["text"]} for row in rows]
    decisions = [{"id": row["id"], "decision": "escalate", "label": row["label"], "team": None, "confidence": 0.5,
                  "reasons": ["low_confidence"], "top_k": [], "model_version": "older", "ood_score": None, "scores": {}} for row in rows]
    day = fake_sagemaker.now().strftime("dt=%Y-%m-%d")
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"traffic/requests/{day}/000000-a.jsonl", Body="".join(json.dumps(r) + "\n" for r in requests).encode())
    s3.put_object(Bucket=BUCKET, Key=f"traffic/decisions/{day}/000000-a.jsonl", Body="".join(json.dumps(d) + "\n" for d in decisions).encode())


def run(arn: str, name: str, timeout: float = 60) -> dict:
    sfn = boto3.client("stepfunctions")
    execution = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps({"trigger": "test"}))["executionArn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)
    raise AssertionError(f"execution {name} still running after {timeout}s")


def labels_of(config) -> list[str]:
    return sorted(label for labels in config.teams.values() for label in labels)


def test_good_candidate_runs_every_step_and_is_registered_pending_approval(pipeline):
    # GIVEN annotations in the bucket, logged production traffic, and a candidate that gets the labels right
    truth = drop_annotations()
    log_production_traffic()
    containers = fake_sagemaker.FakeContainers(truth, labels_of(pipeline["config"]), quality="good")
    # WHEN the synthesized state machine runs
    with fake_sagemaker.running(containers):
        execution = run(pipeline["arn"], "annotations-g0")
    # THEN it succeeds through every step, in order
    assert execution["status"] == "SUCCEEDED", execution.get("cause") or execution.get("error")
    assert pipeline["calls"] == ["prepare_dataset", "evaluate", "shadow_prepare", "shadow_compare"]
    (training,) = containers.training_jobs
    assert training["name"].startswith("sav-router-annotations-g0-") and training["network_isolation"] is True
    assert set(training["channels"]) == {"train", "teams"}
    assert [job["name"].rsplit("-", 1)[-1] for job in containers.transform_jobs] == ["check", "shadow"]
    assert containers.transform_jobs[0]["records"] == 337  # every check row of the sample annotations
    assert containers.transform_jobs[1]["records"] == 60  # the logged traffic
    # AND the evaluation report (core evaluation code) and the shadow comparison are in the bucket
    output = json.loads(execution["output"])
    s3 = boto3.client("s3")
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=output["evaluation"]["report_uri"].split(f"{BUCKET}/")[1])["Body"].read())
    assert report["n_examples"] == 337 and report["routed_precision"] == 1.0 and report["coverage"] == 1.0
    assert output["evaluation"]["gate"]["passed"] is True
    comparison = json.loads(s3.get_object(Bucket=BUCKET, Key=output["comparison"]["report_uri"].split(f"{BUCKET}/")[1])["Body"].read())
    assert comparison["n_compared"] == 60 and comparison["flips"]["escalate_to_route"]["count"] == 60
    assert comparison["labeled"]["n"] == 60 and comparison["labeled"]["candidate"]["routed_precision"] == 1.0
    # AND the thresholds of the new model are published for the routing Lambda
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"models/manifests/{fake_sagemaker.MODEL_VERSION}.json")["Body"].read())
    assert manifest["policy"]["threshold"] == 0.9
    # AND the candidate is registered with its reports, waiting for a human (approval mode "manual")
    packages = boto3.client("sagemaker").list_model_packages(ModelPackageGroupName="sav-router-models")["ModelPackageSummaryList"]
    assert len(packages) == 1 and packages[0]["ModelApprovalStatus"] == "PendingManualApproval"
    package = boto3.client("sagemaker").describe_model_package(ModelPackageName=packages[0]["ModelPackageArn"])
    assert package["CustomerMetadataProperties"]["model_version"] == fake_sagemaker.MODEL_VERSION
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == output["evaluation"]["report_uri"]


def test_failed_quality_gate_ends_the_execution_and_registers_nothing(pipeline):
    # GIVEN a candidate that routes confidently to the wrong label
    truth = drop_annotations()
    containers = fake_sagemaker.FakeContainers(truth, labels_of(pipeline["config"]), quality="bad")
    # WHEN the state machine runs
    with fake_sagemaker.running(containers):
        execution = run(pipeline["arn"], "annotations-g1")
    # THEN it fails at the gate with the reason, before observer mode and registration
    assert execution["status"] == "FAILED"
    assert execution["error"] == "QualityGateFailed"
    assert "routed precision 0.0 below target 0.95" in execution["cause"]
    assert pipeline["calls"] == ["prepare_dataset", "evaluate"]
    assert boto3.client("sagemaker").list_model_packages(ModelPackageGroupName="sav-router-models")["ModelPackageSummaryList"] == []


def test_no_check_annotations_fails_the_first_step_with_its_cause(pipeline):
    # GIVEN annotations without any held-out (split=check) row
    rows = [{"id": f"t{i}", "text": f"where is my parcel number {i}", "label": "order_status", "split": "teach"} for i in range(20)]
    boto3.client("s3").put_object(Bucket=BUCKET, Key="annotations/x.jsonl", Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    # WHEN the state machine runs
    execution = run(pipeline["arn"], "annotations-g2")
    # THEN the execution fails with the dataset step's own message and no training job was started
    assert execution["status"] == "FAILED"
    assert execution["error"] == "DatasetError" and "split=check" in execution["cause"]
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


# -- the polling loop's unhappy paths ------------------------------------------------------------------------
#
# moto marks a training job Completed the moment it is created. These tests set the job's status THROUGH MOTO'S
# BACKEND: each DescribeTrainingJob first writes the next scripted status (and, for a failure, a FailureReason)
# onto moto's job object, then moto answers as usual. The state machine is the synthesized one.


@contextmanager
def scripted_training_status(statuses: list[str], *, failure_reason: str | None = None, throttled: int = 0):
    original = SageMakerModelBackend.describe_training_job
    calls: list[str] = []

    def describe(self, training_job_name):
        if len([c for c in calls if c == "throttled"]) < throttled:
            calls.append("throttled")
            raise JsonRESTError("ThrottlingException", "Rate exceeded")  # what SageMaker answers a throttled call
        job = self.training_jobs[training_job_name]
        served = [c for c in calls if c != "throttled"]
        job.training_job_status = statuses[min(len(served), len(statuses) - 1)]
        if failure_reason is not None:
            job.failure_reason = failure_reason
        calls.append(job.training_job_status)
        return original(self, training_job_name)

    SageMakerModelBackend.describe_training_job = describe
    try:
        yield calls
    finally:
        SageMakerModelBackend.describe_training_job = original


def test_polling_waits_through_in_progress_until_completed(pipeline):
    # GIVEN a training job that reports InProgress twice, then Completed
    truth = drop_annotations()
    containers = fake_sagemaker.FakeContainers(truth, labels_of(pipeline["config"]), quality="good")
    with fake_sagemaker.running(containers), scripted_training_status(["InProgress", "InProgress", "Completed"]) as calls:
        # WHEN the state machine runs
        execution = run(pipeline["arn"], "annotations-p0")
    # THEN it waited (Wait -> Describe) until Completed, then went on to the end
    assert calls == ["InProgress", "InProgress", "Completed"]
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert pipeline["calls"][:2] == ["prepare_dataset", "evaluate"]


@pytest.mark.parametrize("status, error, cause", [
    ("Failed", "TrainingFailed", "AlgorithmError: CUDA out of memory"),
    ("Stopped", "TrainingStopped", "the Training job was stopped"),
])
def test_a_failed_or_stopped_training_job_ends_the_execution_with_its_reason(pipeline, status, error, cause):
    # GIVEN a training job that runs a while, then fails (with SageMaker's FailureReason) or is stopped
    drop_annotations()
    reason = cause if status == "Failed" else None
    with scripted_training_status(["InProgress", status], failure_reason=reason) as calls:
        execution = run(pipeline["arn"], f"annotations-{status.lower()}")
    # THEN the execution fails naming the step, with the job's own reason, and nothing after training ran
    assert execution["status"] == "FAILED"
    assert execution["error"] == error and execution["cause"] == cause
    assert calls[:2] == ["InProgress", status]
    assert pipeline["calls"] == ["prepare_dataset"]
    assert boto3.client("sagemaker").list_models()["Models"] == []


def test_a_throttled_describe_is_retried_not_fatal(pipeline, monkeypatch):
    """Finding 7: the retry named errors that never arrive. A throttled SageMaker call reaches a Step Functions
    aws-sdk task as `SageMaker.AmazonSageMakerException` (SageMaker's unmodelled errors); moto's interpreter names
    it `sagemaker.sagemakerException`, so its naming is set to the service's here. The retry itself is moto's."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_aws_sdk import StateTaskServiceAwsSdk

    original = StateTaskServiceAwsSdk._normalise_exception_name

    def aws_naming(norm_service_name, ex):
        if type(ex) is ClientError and norm_service_name.lower() == "sagemaker":
            return "SageMaker.AmazonSageMakerException"
        return original(norm_service_name, ex)

    monkeypatch.setattr(StateTaskServiceAwsSdk, "_normalise_exception_name", staticmethod(aws_naming))
    truth = drop_annotations()
    containers = fake_sagemaker.FakeContainers(truth, labels_of(pipeline["config"]), quality="good")
    # GIVEN the first DescribeTrainingJob is throttled
    with fake_sagemaker.running(containers), scripted_training_status(["Completed"], throttled=1) as calls:
        execution = run(pipeline["arn"], "annotations-t0", timeout=90)
    # THEN the describe was retried, and the run went on to the end
    assert calls[:2] == ["throttled", "Completed"]
    assert execution["status"] == "SUCCEEDED", (execution.get("error"), execution.get("cause"))
