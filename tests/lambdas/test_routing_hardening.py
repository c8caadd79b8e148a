"""Issue 11 items 3 and 5 through the real routing handler: a poison message fails alone, a bad override is refused."""

from __future__ import annotations

import json

import boto3
import pytest

from lambda_harness import bodies, drain, sqs_event
from test_routing_lambda import deployment, endpoint_answers, prediction, request  # noqa: F401 - fixture

PARAMETER = "/sav-router/routing-overrides"


def test_a_lone_surrogate_goes_to_the_dlq_alone_with_its_reason(deployment, context):  # noqa: F811
    # GIVEN a batch whose middle message carries a lone surrogate (valid JSON, not encodable text)
    poison = json.dumps({"id": "r2", "text": "refund \ud800 please"})
    event = sqs_event([request("r1", "where is my parcel"), poison, request("r3", "my refund is late")], message_ids=["m1", "m2", "m3"])
    endpoint_answers([prediction("m1", "order_status", 0.97), prediction("m3", "refund_status", 0.96)])
    # WHEN the batch is handled
    response = deployment["handler"].handler(event, context)
    # THEN only that message is dead-lettered, with a reason, not retried; its neighbours are routed
    assert response == {"batchItemFailures": []}
    (dead,) = drain(deployment["sqs"], deployment["queues"]["intake-dlq"])
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "'text' is not valid Unicode (lone surrogate)"
    assert [m["request"]["id"] for m in bodies(drain(deployment["sqs"], deployment["queues"]["orders"]))] == ["r1"]
    assert [m["request"]["id"] for m in bodies(drain(deployment["sqs"], deployment["queues"]["returns"]))] == ["r3"]
    assert drain(deployment["sqs"], deployment["queues"]["review"]) == []


@pytest.mark.parametrize("bad", ['{"margin": 1.5}', '{"ood_threshold": NaN}', '{"threshold": -1}', '{"treshold": 0.99}', '[0.9]', "{not json"])
def test_a_bad_override_is_refused_and_the_last_good_one_kept(deployment, context, bad, monkeypatch):  # noqa: F811
    ssm, handler = boto3.client("ssm"), deployment["handler"]
    handler.policies.ttl_seconds = 0  # re-read the parameter on every batch
    emitted = []
    add_metric = handler.metrics.add_metric
    monkeypatch.setattr(handler.metrics, "add_metric", lambda **kw: (emitted.append(kw["name"]), add_metric(**kw)))
    # GIVEN a good override was in force (threshold 0.99: a 0.97 answer escalates)
    ssm.put_parameter(Name=PARAMETER, Value=json.dumps({"threshold": 0.99}), Type="String", Overwrite=True)
    endpoint_answers([prediction("m1", "order_status", 0.97)])
    handler.handler(sqs_event([request("r1", "where is my parcel")], message_ids=["m1"]), context)
    # WHEN an operator writes a value that cannot be applied
    ssm.put_parameter(Name=PARAMETER, Value=bad, Type="String", Overwrite=True)
    endpoint_answers([prediction("m2", "order_status", 0.97)])
    response = handler.handler(sqs_event([request("r2", "where is my parcel")], message_ids=["m2"]), context)
    # THEN it is refused (counted, metric emitted), the last good override still applies, nothing is lost
    assert response == {"batchItemFailures": []}
    reviews = bodies(drain(deployment["sqs"], deployment["queues"]["review"]))
    assert [(m["request"]["id"], m["decision"]["reasons"]) for m in reviews] == [("r1", ["low_confidence"]), ("r2", ["low_confidence"])]
    assert drain(deployment["sqs"], deployment["queues"]["intake-dlq"]) == []
    assert handler.policies.refused_overrides == 1
    assert emitted.count("OverridesRefused") == 1


def test_a_bad_override_with_no_good_one_before_escalates_everything(deployment, context):  # noqa: F811
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value='{"margin": 1.5}', Type="String", Overwrite=True)
    endpoint_answers([prediction("m1", "order_status", 0.97)])
    response = deployment["handler"].handler(sqs_event([request("r1", "where is my parcel")], message_ids=["m1"]), context)
    assert response == {"batchItemFailures": []}
    (review,) = bodies(drain(deployment["sqs"], deployment["queues"]["review"]))
    assert review["decision"]["reasons"] == ["model_unavailable"]
    assert drain(deployment["sqs"], deployment["queues"]["intake-dlq"]) == []
