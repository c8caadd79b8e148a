"""Annotation trigger: drops counted once, a run started only when enough rows are pending and none is in flight."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

import aws_env
from lambda_harness import BUCKET, load_handler_module, sqs_event

MIN_ROWS = 10


def drop_event(key: str, etag: str) -> str:
    """An S3 `Object Created` EventBridge event, as the rule delivers it to the SQS buffer."""
    return json.dumps({"source": "aws.s3", "detail-type": "Object Created",
                       "detail": {"bucket": {"name": BUCKET}, "object": {"key": key, "etag": etag, "size": 1}}})


@pytest.fixture
def gate(monkeypatch):
    with mock_aws():
        s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.REGION})
        boto3.client("dynamodb").create_table(
            TableName="ledger", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        machine = sfn.create_state_machine(name="training", roleArn=f"arn:aws:iam::{aws_env.ACCOUNT}:role/sfn",
                                           definition=json.dumps({"StartAt": "Run", "States": {"Run": {"Type": "Succeed"}}}))["stateMachineArn"]
        for key, value in {"LEDGER_TABLE": "ledger", "STATE_MACHINE_ARN": machine, "MIN_NEW_ROWS": str(MIN_ROWS),
                           "POWERTOOLS_SERVICE_NAME": "annotation_trigger"}.items():
            monkeypatch.setenv(key, value)
        yield {"s3": s3, "sfn": sfn, "machine": machine, "handler": load_handler_module("annotation_trigger").handler}


def put_annotations(s3, key: str, rows: int) -> str:
    if key.endswith(".csv"):
        body = "text,label\n" + "".join(f"request {i},order_status\n" for i in range(rows))
    else:
        body = "".join(json.dumps({"text": f"request {i}", "label": "order_status"}) + "\n" for i in range(rows))
    return s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())["ETag"]


def executions(gate) -> list[dict]:
    return gate["sfn"].list_executions(stateMachineArn=gate["machine"])["executions"]


def test_a_burst_below_the_minimum_starts_nothing(gate, context):
    # GIVEN two small drops (4 + 3 rows, minimum 10)
    events = [drop_event(key, put_annotations(gate["s3"], key, rows)) for key, rows in (("annotations/a.jsonl", 4), ("annotations/b.jsonl", 3))]
    # WHEN the buffered events are handled
    outcome = gate["handler"](sqs_event(events), context)
    # THEN no training starts and the rows stay pending
    assert outcome["started"] is False and outcome["pending_rows"] == 7
    assert executions(gate) == []


def test_enough_new_rows_start_exactly_one_run_even_when_events_repeat(gate, context):
    # GIVEN drops totalling 12 rows, delivered in two batches, the second batch repeating an event
    first = drop_event("annotations/a.jsonl", put_annotations(gate["s3"], "annotations/a.jsonl", 6))
    second = drop_event("annotations/b.jsonl", put_annotations(gate["s3"], "annotations/b.jsonl", 6))
    assert gate["handler"](sqs_event([first]), context)["started"] is False
    # WHEN the second batch (with a duplicate of the first event) arrives, and is then delivered again
    outcome = gate["handler"](sqs_event([first, second]), context)
    repeated = gate["handler"](sqs_event([first, second]), context)
    # THEN one run started, counting each file once; the repeat found nothing new
    assert outcome == {"started": True, "execution_name": "annotations-g0", "pending_rows": 12}
    assert repeated["started"] is False and repeated["pending_rows"] == 0
    assert [e["name"] for e in executions(gate)] == ["annotations-g0"]


def test_a_run_in_flight_defers_the_next_until_the_scheduled_recheck(gate, context):
    # GIVEN a training run already in flight
    gate["sfn"].start_execution(stateMachineArn=gate["machine"], name="manual-run")
    event = drop_event("annotations/big.csv", put_annotations(gate["s3"], "annotations/big.csv", 20))
    # WHEN enough rows arrive
    outcome = gate["handler"](sqs_event([event]), context)
    # THEN nothing new starts while it runs
    assert outcome["started"] is False and "in flight" in outcome["reason"]
    # WHEN the run has finished and the hourly re-check fires (no records)
    gate["sfn"].stop_execution(executionArn=executions(gate)[0]["executionArn"])
    outcome = gate["handler"]({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, context)
    # THEN the deferred run starts (the CSV header is not counted)
    assert outcome == {"started": True, "execution_name": "annotations-g0", "pending_rows": 20}


def test_objects_outside_annotations_or_not_data_files_are_ignored(gate, context):
    # GIVEN events for a traffic log and a README under annotations/
    gate["s3"].put_object(Bucket=BUCKET, Key="annotations/README.md", Body=b"notes")
    events = [drop_event("traffic/requests/x.jsonl", "e1"), drop_event("annotations/README.md", "e2")]
    # WHEN handled
    outcome = gate["handler"](sqs_event(events), context)
    # THEN nothing is counted
    assert outcome["pending_rows"] == 0 and executions(gate) == []
