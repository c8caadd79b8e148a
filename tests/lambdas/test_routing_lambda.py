"""Routing Lambda: intake batch -> endpoint once -> policy -> team queue / human review / DLQ."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.core.botocore_stubber import MockRawResponse
from moto.moto_api._internal.models import moto_api_backend

import aws_env
from lambda_harness import BUCKET, bodies, drain, load_handler_module, sqs_event
from sav_router.core.bundle import Manifest
from sav_router.core.policy import RoutingPolicy

VERSION = "20250101T000000Z-c0ffee00"
LABELS = ["order_status", "refund_status", "warranty_claim"]
TEAMS = {"order_status": "orders", "refund_status": "returns", "warranty_claim": "warranty"}


def publish_manifest(s3, version: str = VERSION, threshold: float = 0.9) -> None:
    manifest = Manifest(labels=LABELS, policy=RoutingPolicy(threshold=threshold, margin=0.1, teams=TEAMS), base_model="test",
                        model_version=version, created_at="2025-01-01T00:00:00Z")
    s3.put_object(Bucket=BUCKET, Key=f"models/manifests/{version}.json", Body=json.dumps(manifest.to_dict()).encode())


def endpoint_answers(predictions: list[dict]) -> None:
    """Queue the endpoint's next answer (moto returns queued answers in order)."""
    moto_api_backend.set_sagemaker_result(json.dumps({"predictions": predictions}), "application/json", "AllTraffic", "",
                                          aws_env.ACCOUNT, aws_env.REGION)


def prediction(message_id: str, label: str, confidence: float, version: str = VERSION) -> dict:
    rest = (1 - confidence) / (len(LABELS) - 1)
    scores = {name: (confidence if name == label else rest) for name in LABELS}
    return {"id": message_id, "decision": "route", "label": label, "team": TEAMS[label], "confidence": confidence,
            "reasons": [], "top_k": [], "model_version": version, "ood_score": 1.0, "scores": scores}


@pytest.fixture
def deployment(monkeypatch):
    """Queues, bucket, idempotency table and overrides parameter, as the serving stack creates them."""
    with mock_aws():
        sqs, s3 = boto3.client("sqs"), boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": aws_env.REGION})
        queues = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in ("orders", "returns", "warranty", "review", "intake-dlq")}
        boto3.client("dynamodb").create_table(
            TableName="idempotency", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        boto3.client("ssm").put_parameter(Name="/sav-router/routing-overrides", Value="{}", Type="String")
        publish_manifest(s3)
        env = {
            "ENDPOINT_NAME": "sav-router", "ARTIFACTS_BUCKET": BUCKET, "OVERRIDES_PARAMETER": "/sav-router/routing-overrides",
            "TEAM_QUEUES": json.dumps({team: queues[team] for team in ("orders", "returns", "warranty")}),
            "REVIEW_QUEUE_URL": queues["review"], "INTAKE_DLQ_URL": queues["intake-dlq"], "IDEMPOTENCY_TABLE": "idempotency",
            "POWERTOOLS_SERVICE_NAME": "routing",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield {"sqs": sqs, "s3": s3, "queues": queues, "handler": load_handler_module("routing")}


def request(request_id: str, text: str) -> str:
    return json.dumps({"id": request_id, "text": text})


def everything_logged(caplog) -> str:
    """Every log record with all its structured fields."""
    return "\n".join(json.dumps(vars(record), default=str) for record in caplog.records)


def test_happy_path_routes_confident_requests_and_escalates_the_rest(deployment, context, caplog):
    # GIVEN three requests, the endpoint confident on two of them
    event = sqs_event([request("r1", "where is my parcel"), request("r2", "refund please"), request("r3", "hmm")], message_ids=["m1", "m2", "m3"])
    endpoint_answers([prediction("m1", "order_status", 0.97), prediction("m2", "refund_status", 0.95), prediction("m3", "warranty_claim", 0.5)])
    # WHEN the batch is handled
    response = deployment["handler"].handler(event, context)
    # THEN no item failed, confident requests went to their team, the unsure one to human review
    assert response == {"batchItemFailures": []}
    sqs, queues = deployment["sqs"], deployment["queues"]
    orders, returns = bodies(drain(sqs, queues["orders"])), bodies(drain(sqs, queues["returns"]))
    review = bodies(drain(sqs, queues["review"]))
    assert [m["request"] for m in orders] == [{"id": "r1", "text": "where is my parcel"}]
    assert orders[0]["decision"]["decision"] == "route" and orders[0]["decision"]["team"] == "orders"
    assert [m["request"]["id"] for m in returns] == ["r2"]
    assert [(m["request"]["id"], m["decision"]["reasons"]) for m in review] == [("r3", ["low_confidence"])]
    assert drain(sqs, queues["warranty"]) == []
    # AND requests and decisions are logged to traffic/ for observer mode
    keys = [o["Key"] for o in deployment["s3"].list_objects_v2(Bucket=BUCKET, Prefix="traffic/")["Contents"]]
    assert sorted(k.split("/")[1] for k in keys) == ["decisions", "requests"]
    decisions_key = next(k for k in keys if k.startswith("traffic/decisions/"))
    logged = [json.loads(line) for line in deployment["s3"].get_object(Bucket=BUCKET, Key=decisions_key)["Body"].read().splitlines()]
    assert sorted(d["id"] for d in logged) == ["r1", "r2", "r3"]
    # AND request text never reaches the logs
    logs = everything_logged(caplog)
    assert "request dispatched" in logs and '"request_id": "r1"' in logs and '"to": "team:orders"' in logs
    assert "where is my parcel" not in logs and "refund please" not in logs


def test_endpoint_failure_escalates_every_request_with_model_unavailable(deployment, context):
    # GIVEN an endpoint that answers 503 to every attempt
    handler = deployment["handler"]
    attempts = []

    def unavailable(request, **_):
        attempts.append(request.url)
        return AWSResponse(request.url, 503, {"x-amzn-errortype": "ServiceUnavailable"}, MockRawResponse(b'{"message": "unavailable"}'))

    handler.runtime.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", unavailable)
    event = sqs_event([request("r1", "where is my parcel"), request("r2", "refund please")])
    # WHEN the batch is handled
    response = handler.handler(event, context)
    # THEN the client retried, and each request is escalated (not lost, not failed, not routed)
    assert len(attempts) == 3
    assert response == {"batchItemFailures": []}
    review = bodies(drain(deployment["sqs"], deployment["queues"]["review"]))
    assert sorted((m["request"]["id"], tuple(m["decision"]["reasons"])) for m in review) == [("r1", ("model_unavailable",)), ("r2", ("model_unavailable",))]
    assert all(drain(deployment["sqs"], deployment["queues"][team]) == [] for team in ("orders", "returns", "warranty"))


def test_poison_message_goes_to_the_dlq_with_its_reason(deployment, context, caplog):
    # GIVEN a batch with a valid request and a message that is not a request
    event = sqs_event([request("r1", "where is my parcel"), "not json at all {"], message_ids=["m1", "m2"])
    endpoint_answers([prediction("m1", "order_status", 0.97)])
    # WHEN the batch is handled
    response = deployment["handler"].handler(event, context)
    # THEN the poison message is in the DLQ with a reason, the valid one is routed, nothing is retried
    assert response == {"batchItemFailures": []}
    (dead,) = drain(deployment["sqs"], deployment["queues"]["intake-dlq"])
    assert dead["Body"] == "not json at all {"
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "body is not JSON"
    assert dead["MessageAttributes"]["source_message_id"]["StringValue"] == "m2"
    assert [m["request"]["id"] for m in bodies(drain(deployment["sqs"], deployment["queues"]["orders"]))] == ["r1"]
    assert '"reason": "body is not JSON"' in everything_logged(caplog)


def test_partial_batch_failure_retries_only_the_message_that_could_not_be_delivered(deployment, context):
    # GIVEN the returns team queue is gone (delivery to it fails)
    deployment["sqs"].delete_queue(QueueUrl=deployment["queues"]["returns"])
    event = sqs_event([request("r1", "where is my parcel"), request("r2", "refund please")], message_ids=["m1", "m2"])
    endpoint_answers([prediction("m1", "order_status", 0.97), prediction("m2", "refund_status", 0.97)])
    # WHEN the batch is handled
    response = deployment["handler"].handler(event, context)
    # THEN only the undeliverable message is reported for retry; the other was delivered
    assert response == {"batchItemFailures": [{"itemIdentifier": "m2"}]}
    assert [m["request"]["id"] for m in bodies(drain(deployment["sqs"], deployment["queues"]["orders"]))] == ["r1"]


def test_duplicate_delivery_is_not_routed_twice(deployment, context):
    # GIVEN a message delivered twice by SQS (same message id)
    event = sqs_event([request("r1", "where is my parcel")], message_ids=["m1"])
    endpoint_answers([prediction("m1", "order_status", 0.97)])
    handler = deployment["handler"].handler
    # WHEN both deliveries are handled
    assert handler(event, context) == {"batchItemFailures": []}
    assert handler(event, context) == {"batchItemFailures": []}
    # THEN the team received it once
    assert len(drain(deployment["sqs"], deployment["queues"]["orders"])) == 1
    assert drain(deployment["sqs"], deployment["queues"]["review"]) == []


def test_operator_override_tightens_the_threshold_without_redeploy(deployment, context):
    # GIVEN operators raised the threshold above the endpoint's confidence
    boto3.client("ssm").put_parameter(Name="/sav-router/routing-overrides", Value=json.dumps({"threshold": 0.99}), Type="String", Overwrite=True)
    event = sqs_event([request("r1", "where is my parcel")], message_ids=["m1"])
    endpoint_answers([prediction("m1", "order_status", 0.97)])
    # WHEN the batch is handled
    deployment["handler"].handler(event, context)
    # THEN the request is escalated for low confidence instead of routed
    (review,) = bodies(drain(deployment["sqs"], deployment["queues"]["review"]))
    assert review["decision"]["reasons"] == ["low_confidence"] and review["decision"]["label"] == "order_status"
    assert drain(deployment["sqs"], deployment["queues"]["orders"]) == []


def test_unknown_model_version_and_empty_text_are_escalated(deployment, context):
    # GIVEN a prediction from a model whose thresholds were never published, and a blank request
    event = sqs_event([request("r1", "where is my parcel"), request("r2", "   ")], message_ids=["m1", "m2"])
    endpoint_answers([prediction("m1", "order_status", 0.99, version="unpublished")])
    # WHEN the batch is handled
    deployment["handler"].handler(event, context)
    # THEN neither is routed: unknown policy -> model_unavailable, blank -> empty_text
    review = {m["request"]["id"]: m["decision"]["reasons"] for m in bodies(drain(deployment["sqs"], deployment["queues"]["review"]))}
    assert review == {"r1": ["model_unavailable"], "r2": ["empty_text"]}


def test_audit_share_sends_routed_requests_for_blind_review_too(deployment, context, monkeypatch):
    # GIVEN every routed request is sampled for audit
    monkeypatch.setenv("AUDIT_SHARE", "1.0")
    handler = load_handler_module("routing")
    event = sqs_event([request("r1", "where is my parcel"), request("r2", "hmm")], message_ids=["m1", "m2"])
    endpoint_answers([prediction("m1", "order_status", 0.97), prediction("m2", "warranty_claim", 0.5)])
    # WHEN the batch is handled
    assert handler.handler(event, context) == {"batchItemFailures": []}
    # THEN the routed request reached its team AND the review queue flagged as an audit sample
    sqs, queues = deployment["sqs"], deployment["queues"]
    assert [m["request"]["id"] for m in bodies(drain(sqs, queues["orders"]))] == ["r1"]
    review = {m["request"]["id"]: m for m in bodies(drain(sqs, queues["review"]))}
    assert set(review) == {"r1", "r2"}
    assert review["r1"]["audit"] is True and review["r1"]["decision"]["decision"] == "route"
    assert "audit" not in review["r2"]  # an escalation is reviewed as such, not as an audit sample


def test_audit_sampling_is_off_by_default(deployment, context):
    event = sqs_event([request("r1", "where is my parcel")], message_ids=["m1"])
    endpoint_answers([prediction("m1", "order_status", 0.97)])
    assert deployment["handler"].handler(event, context) == {"batchItemFailures": []}
    assert drain(deployment["sqs"], deployment["queues"]["review"]) == []
