"""The trigger path end to end in moto: an object put under annotations/ -> S3's EventBridge notification ->
the synthesized rule (its pattern as synthesized) -> the drops queue -> the gate function (the real handler,
with the environment the template gives it) -> a started execution of the synthesized state machine.

moto delivers S3 EventBridge notifications to an SQS rule target (the deployed shape); it would not start a
state machine given as a rule target directly, which the design does not do anyway. The Lambda event source
mapping is AWS's: here the queue is read and handed to the handler as the mapping would, in one batch.
"""

from __future__ import annotations

import importlib.util
import json
import uuid

import boto3
import pytest
from moto import mock_aws

import aws_env
from cfn_resolve import Resolver
from template_helpers import REPO, resources

BUCKET = "sav-router-artifacts-trigger"


def template_environment(fn: dict, resolve: Resolver, refs: dict[str, str]) -> dict[str, str]:
    """The function's environment as the template sets it, its Refs to this stack's resources replaced by moto's names."""
    return {key: refs[value["Ref"]] if isinstance(value, dict) and value.get("Ref") in refs else resolve(value)
            for key, value in fn["Properties"]["Environment"]["Variables"].items()}


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "gate", 256, "req-1"
    invoked_function_arn = f"arn:aws:lambda:{aws_env.REGION}:{aws_env.ACCOUNT}:function:gate"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@pytest.fixture
def deployed(synthesized, monkeypatch):
    raw = synthesized.raw["pipeline"]
    resolve = Resolver(region=aws_env.REGION, account=aws_env.ACCOUNT, imports={
        "sav-router-bucket-name": BUCKET, "sav-router-bucket-arn": f"arn:aws:s3:::{BUCKET}",
        "sav-router-key-arn": f"arn:aws:kms:{aws_env.REGION}:{aws_env.ACCOUNT}:key/test",
        "sav-router-sagemaker-role-arn": f"arn:aws:iam::{aws_env.ACCOUNT}:role/sagemaker",
    })
    (rule,) = [r for r in resources(raw, "AWS::Events::Rule").values() if "EventPattern" in r["Properties"]]
    (machine,) = resources(raw, "AWS::StepFunctions::StateMachine").items()
    (gate,) = [f for f in resources(raw, "AWS::Lambda::Function").values()
               if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "annotation_trigger"]
    with mock_aws():
        s3, sqs, events, sfn = (boto3.client(s) for s in ("s3", "sqs", "events", "stepfunctions"))
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.REGION})
        s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}})  # event_bridge_enabled
        drops = sqs.create_queue(QueueName="drops")["QueueUrl"]
        drops_arn = sqs.get_queue_attributes(QueueUrl=drops, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="annotation-dropped", EventPattern=json.dumps(resolve(rule["Properties"]["EventPattern"])))
        events.put_targets(Rule="annotation-dropped", Targets=[{"Id": "drops", "Arn": drops_arn}])
        boto3.client("dynamodb").create_table(
            TableName="ledger", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        machine_arn = sfn.create_state_machine(
            name=machine[1]["Properties"]["StateMachineName"], definition=resolve(machine[1]["Properties"]["DefinitionString"]),
            roleArn=f"arn:aws:iam::{aws_env.ACCOUNT}:role/sfn")["stateMachineArn"]
        (ledger_id,) = resources(raw, "AWS::DynamoDB::GlobalTable")
        environment = template_environment(gate, resolve, {machine[0]: machine_arn, ledger_id: "ledger"})
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        spec = importlib.util.spec_from_file_location(f"gate_{uuid.uuid4().hex}", REPO / "lambdas" / "annotation_trigger" / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield {"s3": s3, "sqs": sqs, "sfn": sfn, "drops": drops, "machine": machine_arn, "handler": module.handler, "environment": environment}


def delivered(sqs, url: str) -> list[dict]:
    """What the event source mapping hands the function: the queue's messages, as SQS records."""
    messages = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        messages.extend(batch)
    return [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"], "attributes": {}, "messageAttributes": {},
             "eventSource": "aws:sqs"} for m in messages]


def test_an_annotation_drop_starts_a_training_execution(deployed):
    # GIVEN the gate needs the template's minimum of new rows, and the sample export holds more
    rows = (REPO / "sav_router" / "samples" / "annotations.jsonl").read_bytes()
    assert int(deployed["environment"]["MIN_NEW_ROWS"]) < rows.count(b"\n")
    # WHEN an export lands under annotations/, and production traffic under traffic/
    deployed["s3"].put_object(Bucket=BUCKET, Key="annotations/platform/export-1.jsonl", Body=rows)
    deployed["s3"].put_object(Bucket=BUCKET, Key="traffic/requests/dt=2025-01-01/a.jsonl", Body=b'{"id": "x", "text": "y"}\n')
    records = delivered(deployed["sqs"], deployed["drops"])
    # THEN only the annotation drop reached the drops queue, as S3's "Object Created" event
    assert len(records) == 1
    event = json.loads(records[0]["body"])
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    assert event["detail"]["object"]["key"] == "annotations/platform/export-1.jsonl"
    # WHEN the gate function handles the batch
    outcome = deployed["handler"]({"Records": records}, Context())
    # THEN it started the training state machine, once
    assert outcome["started"] is True and outcome["execution_name"] == "annotations-g0"
    executions = deployed["sfn"].list_executions(stateMachineArn=deployed["machine"])["executions"]
    assert [e["name"] for e in executions] == ["annotations-g0"]
    assert json.loads(deployed["sfn"].describe_execution(executionArn=executions[0]["executionArn"])["input"])["trigger"] == "annotations"
