"""The loop's second turn on AWS (issue 19), in moto, with every function and the state machine as synthesized.

Turn one: an annotation drop passes the gate, the pipeline trains, evaluates and registers a first model; it is
approved and served. Production traffic is routed and logged by the routing function. Turn two: a second drop
trains a candidate whose shadow comparison reads the logged traffic and both models' manifests and reports
non-zero coverage for both; its approval updates the endpoint to a new config; approving the first model again
rolls back to it. The drift monitor checks the logged decisions.

Throughout, every AWS call of every function and of the state machine's SDK tasks is recorded and evaluated against
the deployed permissions (`permission_proof`): a call AWS would refuse fails the test, naming function, action and
resource. What remains for a real account: README, "What only a real account can prove".
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from moto.moto_api._internal.models import moto_api_backend

import aws_env
import fake_sagemaker
from permission_proof import STATE_MACHINE, PermissionProof
from template_helpers import resources
from test_pipeline_execution_moto import (
    BUCKET, MOTO_CONFIG, SAMPLES, FakeContext, deployed_app, dispatch_lambda_invokes, labels_of, recording_calls, run_function,
)

FIRST, SECOND = "20250101T000000Z-c0ffee01", "20250201T000000Z-c0ffee02"


def create_resources(deployed) -> None:
    """What `cdk deploy` creates and the rehearsal needs, under the names the templates resolve to."""
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.REGION})
    sqs, dynamodb = boto3.client("sqs"), boto3.client("dynamodb")
    for stack in deployed.templates:
        for lid, queue in deployed.of_type(stack, "AWS::SQS::Queue").items():
            attributes = {"FifoQueue": "true"} if queue["Properties"].get("FifoQueue") else {}
            sqs.create_queue(QueueName=deployed.name(stack, lid), Attributes=attributes)
        for lid, table in deployed.of_type(stack, "AWS::DynamoDB::GlobalTable").items():
            props = table["Properties"]
            dynamodb.create_table(TableName=deployed.name(stack, lid), KeySchema=props["KeySchema"],
                                  AttributeDefinitions=props["AttributeDefinitions"], BillingMode="PAY_PER_REQUEST")
        for lid, parameter in deployed.of_type(stack, "AWS::SSM::Parameter").items():
            props = deployed.resolve(stack, parameter["Properties"])
            boto3.client("ssm").put_parameter(Name=props["Name"], Value=props["Value"], Type="String")
        for lid, group in deployed.of_type(stack, "AWS::SageMaker::ModelPackageGroup").items():
            boto3.client("sagemaker").create_model_package_group(ModelPackageGroupName=deployed.name(stack, lid))


def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]


def drop(key: str, extra: int = 0) -> dict:
    rows = sample_rows() + [{"id": f"extra-{key}-{i}", "text": f"where is my order number {i} from {key}", "label": "order_status", "split": "teach"}
                            for i in range(extra)]
    put = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body="".join(json.dumps(r) + "\n" for r in rows).encode())
    body = json.dumps({"source": "aws.s3", "detail-type": "Object Created",
                       "detail": {"bucket": {"name": BUCKET}, "object": {"key": key, "etag": put["ETag"]}}})
    return {"Records": [{"messageId": f"drop-{key}", "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {},
                         "eventSource": "aws:sqs"}]}


def approval(package_arn: str) -> dict:
    body = json.dumps({"source": "aws.sagemaker", "detail-type": "SageMaker Model Package State Change",
                       "detail": {"ModelPackageArn": package_arn, "ModelApprovalStatus": "Approved", "ModelPackageGroupName": "sav-router-models"}})
    return {"Records": [{"messageId": "approval", "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {},
                         "eventSource": "aws:sqs"}]}


@pytest.fixture
def app(synthesized, monkeypatch):
    deployed = deployed_app(synthesized)
    (machine_id,) = resources(synthesized.raw["pipeline"], "AWS::StepFunctions::StateMachine")
    definition = deployed.resolve("pipeline", deployed.resource("pipeline", machine_id)["Properties"]["DefinitionString"])
    handlers: dict = {}
    state: dict = {}
    dispatch_lambda_invokes(deployed, monkeypatch, handlers, lambda: state["recorder"])
    with mock_aws(config=MOTO_CONFIG), recording_calls(monkeypatch) as recorder:
        state["recorder"] = recorder
        fake_sagemaker.install_missing_operations(boto3.DEFAULT_SESSION)
        create_resources(deployed)
        arn = boto3.client("stepfunctions").create_state_machine(
            name=deployed.name("pipeline", machine_id), definition=definition,
            roleArn=deployed.arn("pipeline", deployed.resource("pipeline", machine_id)["Properties"]["RoleArn"]["Fn::GetAtt"][0]),
        )["stateMachineArn"]
        call = lambda service, event: run_function(deployed, recorder, handlers, monkeypatch, service, event, FakeContext())  # noqa: E731
        yield {"deployed": deployed, "recorder": recorder, "call": call, "machine": arn, "config": synthesized.config}


def wait_for_execution(machine: str) -> dict:
    sfn = boto3.client("stepfunctions")
    (execution,) = [e for e in sfn.list_executions(stateMachineArn=machine)["executions"] if e["status"] == "RUNNING"] or [None]
    assert execution is not None, "the annotation gate started no execution"
    import time

    for _ in range(600):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)
    raise AssertionError("execution still running")


def turn(app, key: str, version: str, extra: int = 0) -> tuple[dict, str]:
    """An annotation drop through the gate, the pipeline run it starts, the registered package."""
    truth = {row["text"]: row["label"] for row in sample_rows()}
    containers = fake_sagemaker.FakeContainers(truth, labels_of(app["config"]), quality="good", model_version=version)
    with fake_sagemaker.running(containers):
        started = app["call"]("annotation_trigger", drop(key, extra))
        assert started["started"] is True, started
        execution = wait_for_execution(app["machine"])
    assert execution["status"] == "SUCCEEDED", (execution.get("error"), execution.get("cause"))
    output = json.loads(execution["output"])
    return output, output["registration"]["ModelPackageArn"], containers


def approve(app, package_arn: str) -> dict:
    sagemaker = boto3.client("sagemaker")
    metadata = sagemaker.describe_model_package(ModelPackageName=package_arn)["CustomerMetadataProperties"]
    # moto drops the metadata an update does not repeat (AWS keeps it): repeated here, as the operator's call
    sagemaker.update_model_package(ModelPackageArn=package_arn, ModelApprovalStatus="Approved", CustomerMetadataProperties=metadata)
    return app["call"]("promotion", approval(package_arn))


def route_traffic(app, containers, n: int = 60) -> dict:
    """Intake messages through the routing function; the endpoint answers as the served model's container does."""
    rows = sample_rows()[:n]
    answers = [containers.answer(f"m{i}", row["text"]) for i, row in enumerate(rows)]
    moto_api_backend.set_sagemaker_result(json.dumps({"predictions": answers}), "application/json", "AllTraffic", "", aws_env.ACCOUNT, aws_env.REGION)
    event = {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": json.dumps({"id": row["id"], "text": row["text"]}),
                          "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                          "eventSourceARN": f"arn:aws:sqs:{aws_env.REGION}:{aws_env.ACCOUNT}:intake", "awsRegion": aws_env.REGION}
                         for i, row in enumerate(rows)]}
    return app["call"]("routing", event)


def delete_custom_resource(app, stack: str) -> dict:
    """CloudFormation's Delete request to the stack's teardown custom resource; returns what the handler answered."""
    import urllib.request

    deployed = app["deployed"]
    (lid, resource), = deployed.of_type(stack, "Custom::SavRouterRuntimeResources").items()
    props = deployed.resolve(stack, resource["Properties"])
    answers = []

    class Answer:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(request, timeout=None):
        assert request.full_url == "https://cloudformation-custom-resource-response.example/presigned" and request.method == "PUT"
        answers.append(json.loads(request.data))
        return Answer()

    event = {"RequestType": "Delete", "ResponseURL": "https://cloudformation-custom-resource-response.example/presigned",
             "StackId": f"arn:aws:cloudformation:{aws_env.REGION}:{aws_env.ACCOUNT}:stack/{stack}/1", "RequestId": "delete-1",
             "LogicalResourceId": lid, "PhysicalResourceId": lid, "ResourceType": resource["Type"],
             "ResourceProperties": {k: v for k, v in props.items() if k != "ServiceToken"}}
    original = urllib.request.urlopen
    urllib.request.urlopen = urlopen
    try:
        app["call"](f"teardown@{stack}", event)
    finally:
        urllib.request.urlopen = original
    (answer,) = answers
    return answer


def test_two_turns_of_the_loop_with_every_call_permitted(app):
    sagemaker, s3 = boto3.client("sagemaker"), boto3.client("s3")
    # TURN ONE: a drop passes the gate; the first model is trained, evaluated, registered, approved and served
    output, first_package, first = turn(app, "annotations/platform/export-1.jsonl", FIRST)
    assert output["comparison"]["report_uri"] == "none"  # no traffic logged yet: nothing to replay
    assert approve(app, first_package)["action"] == "created"
    endpoint = sagemaker.describe_endpoint(EndpointName="sav-router")
    assert endpoint["EndpointConfigName"] == "sav-router-v1"
    # production traffic is routed by the routing function (endpoint answers from the first model) and logged
    assert route_traffic(app, first) == {"batchItemFailures": []}
    logged = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="traffic/decisions/")["Contents"]]
    assert len(logged) == 1
    # the drift monitor checks the logged decisions against the first model's calibration sample
    app["call"]("drift_monitor", {})

    # TURN TWO: a second drop trains a candidate, compared in observer mode on the logged traffic
    output, second_package, _ = turn(app, "annotations/platform/export-2.jsonl", SECOND, extra=5)
    key = output["comparison"]["report_uri"].split(f"{BUCKET}/", 1)[1]
    comparison = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert comparison["n_compared"] == 60
    # the observer-mode input (customer text) is tagged: it expires with the traffic it copies (foundation lifecycle rule)
    shadow_input = output["shadow"]["input_uri"].split(f"{BUCKET}/", 1)[1]
    assert s3.get_object_tagging(Bucket=BUCKET, Key=shadow_input)["TagSet"] == [{"Key": "sav-router-content", "Value": "customer-text"}]
    # both manifests were read: production's decisions were made with the first model's policy, the candidate is
    # re-decided with its own; each routes some of the traffic (the manifest read was refused on AWS before: 0)
    assert comparison["production_coverage"] > 0 and comparison["candidate_coverage"] > 0, comparison
    assert comparison["labeled"]["n"] == 60 and comparison["labeled"]["candidate"]["coverage"] > 0
    # its approval updates the endpoint to a new config
    assert approve(app, second_package)["action"] == "updated"
    assert sagemaker.describe_endpoint(EndpointName="sav-router")["EndpointConfigName"] == "sav-router-v2"
    # a rollback (approve the first package again) returns to the first config
    rolled = app["call"]("promotion", approval(first_package))
    assert rolled["action"] == "updated" and rolled["endpoint_config"] == "sav-router-v1"
    assert sagemaker.describe_endpoint(EndpointName="sav-router")["EndpointConfigName"] == "sav-router-v1"

    # TEARDOWN: `cdk destroy` deletes the serving, then the pipeline stack; each one's custom resource removes what the
    # runtime created there: nothing is left billing, and the model package group can be deleted
    for stack in ("serving", "pipeline"):
        assert delete_custom_resource(app, stack)["Status"] == "SUCCESS"
    assert sagemaker.list_endpoints()["Endpoints"] == [] and sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_models()["Models"] == []
    assert sagemaker.list_model_packages(ModelPackageGroupName="sav-router-models")["ModelPackageSummaryList"] == []

    # AND every call made on the way is allowed by the deployed permissions
    recorder, proof = app["recorder"], PermissionProof(app["deployed"], bucket=BUCKET)
    proof.dead_letter_sends(recorder)  # what Lambda sends with a function's role when its async invocation fails
    principals = {call.principal for call in recorder.calls}
    assert principals == {"annotation_trigger", "prepare_dataset", "evaluate", "shadow_prepare", "shadow_compare", "promotion", "routing",
                          "drift_monitor", "teardown@serving", "teardown@pipeline", STATE_MACHINE}, principals
    refused = proof.refusals(recorder.calls)
    assert refused == [], "calls AWS would refuse:\n" + "\n".join(refused)
