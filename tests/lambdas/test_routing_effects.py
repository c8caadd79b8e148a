"""Issue 18 finding 3: each side effect of a request happens once across redeliveries, and every message fits SQS.

The property: whatever effect call fails (team send, review send, audit copy, traffic log objects, dead-letter send,
the ledger's claim or lease release), in whatever order the batch holds its messages, redelivering what the handler
reported as failed until nothing fails leaves each team with each request exactly once, each audit copy once, each
traffic row once and each dead letter once: nothing lost, nothing twice.
"""

from __future__ import annotations

import json

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from lambda_harness import BUCKET, bodies, drain, load_handler_module, sqs_event
from sav_router.aws.routing import SQS_MAX_BYTES, Dispatcher, IntakeRequest, MalformedMessage, message_size, parse_request
from sav_router.core.defaults import MAX_ID_CHARS, MAX_TEXT_CHARS
from test_routing_lambda import deployment, prediction, request  # noqa: F401 - fixture

MESSAGES = {
    "m1": (request("r1", "where is my parcel"), prediction("m1", "order_status", 0.97)),   # routed to orders (+ audit)
    "m2": (request("r2", "refund please"), prediction("m2", "refund_status", 0.96)),       # routed to returns (+ audit)
    "m3": (request("r3", "hmm"), prediction("m3", "warranty_claim", 0.5)),                # escalated to review
    "m4": ("not json at all {", None),                                                     # dead letter
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Faults:
    """Fails the effect calls whose ordinal (counted over the whole run) is in `failing`."""

    EFFECTS = {("sqs", "SendMessage"), ("s3", "PutObject")}

    def __init__(self, failing: set[int], *, ledger: bool) -> None:
        self.failing, self.ledger, self.count, self.failed = failing, ledger, 0, []

    def __call__(self, model, params, **_):
        service, operation = model.service_model.service_name, model.name
        effect = (service, operation) in self.EFFECTS
        # the ledger's claim and lease release; a failed `done` is covered by its own test below
        ledger = self.ledger and operation == "UpdateItem" and not params.get("UpdateExpression", "").startswith("ADD")
        if not (effect or ledger):
            return
        self.count += 1
        if self.count in self.failing:
            release = params.get("UpdateExpression", "").startswith("REMOVE")
            self.failed.append(("release" if release else operation, params.get("QueueUrl", params.get("Key", ""))))
            raise RuntimeError(f"injected failure of {operation} #{self.count}")


def run_until_settled(handler, context, order: list[str], clock: Clock, *, duplicate_first: bool = False) -> int:
    pending = list(order)
    for rounds in range(1, 30):
        if not pending:
            return rounds - 1
        clock.now += 1_000  # past any lease a failed release left behind
        event = sqs_event([MESSAGES[m][0] for m in pending], message_ids=pending)
        try:
            response = handler.handler(event, context)
            if duplicate_first and rounds == 1:
                handler.handler(event, context)  # SQS's at-least-once: the whole batch delivered twice
        except BatchProcessingError:  # every record failed: Lambda fails the invocation, SQS redelivers the batch
            continue
        pending = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    raise AssertionError(f"still failing after 30 deliveries: {pending}")


def install(deployment, *, failing: set[int], ledger_faults: bool = True):  # noqa: F811
    handler = deployment["handler"]
    handler.dispatcher.audit_share = 1.0
    predictions = {mid: answer for mid, (_, answer) in MESSAGES.items() if answer}
    handler.scorer.score = lambda requests: {r.message_id: predictions[r.message_id] for r in requests}
    clock = Clock()
    handler.ledger.clock = clock
    faults = Faults(failing, ledger=ledger_faults)
    for client in (handler.sqs, handler.s3, handler.ledger.dynamodb):
        client.meta.events.register("before-parameter-build.*.*", faults)
    return handler, clock, faults


def outcome(deployment) -> dict:
    sqs, s3, queues = deployment["sqs"], deployment["s3"], deployment["queues"]
    review = bodies(drain(sqs, queues["review"]))
    decisions, requests = [], []
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="traffic/decisions/").get("Contents", []):
        decisions += [json.loads(line)["id"] for line in s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().splitlines()]
        requests_key = obj["Key"].replace("traffic/decisions/", "traffic/requests/")
        requests += [json.loads(line)["id"] for line in s3.get_object(Bucket=BUCKET, Key=requests_key)["Body"].read().splitlines()]
    return {
        "orders": [m["request"]["id"] for m in bodies(drain(sqs, queues["orders"]))],
        "returns": [m["request"]["id"] for m in bodies(drain(sqs, queues["returns"]))],
        "warranty": [m["request"]["id"] for m in bodies(drain(sqs, queues["warranty"]))],
        "review": sorted(m["request"]["id"] for m in review if not m.get("audit")),
        "audit": sorted(m["request"]["id"] for m in review if m.get("audit")),
        "dead": [m["Body"] for m in drain(sqs, queues["intake-dlq"])],
        "traffic_decisions": sorted(decisions),
        "traffic_requests": sorted(requests),
    }


EXPECTED = {
    "orders": ["r1"], "returns": ["r2"], "warranty": [], "review": ["r3"], "audit": ["r1", "r2"], "dead": ["not json at all {"],
    "traffic_decisions": ["r1", "r2", "r3"], "traffic_requests": ["r1", "r2", "r3"],
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(sorted(MESSAGES)), failing=st.sets(st.integers(1, 24), max_size=6), duplicate_first=st.booleans())
def test_property_a_failure_after_any_effect_then_redelivery_does_each_effect_exactly_once(deployment, context, order, failing, duplicate_first):  # noqa: F811
    outcome(deployment)  # examples share the fixture: start from empty queues and traffic
    for obj in deployment["s3"].list_objects_v2(Bucket=BUCKET, Prefix="traffic/").get("Contents", []):
        deployment["s3"].delete_object(Bucket=BUCKET, Key=obj["Key"])
    deployment["handler"] = load_handler_module("routing")  # fresh clients: no fault hook of an earlier example
    table = boto3.client("dynamodb")
    for item in table.scan(TableName="idempotency")["Items"]:
        table.delete_item(TableName="idempotency", Key={"id": item["id"]})
    handler, clock, faults = install(deployment, failing=failing)
    run_until_settled(handler, context, list(order), clock, duplicate_first=duplicate_first)
    assert outcome(deployment) == EXPECTED, faults.failed


@pytest.mark.parametrize("failing_call", range(1, 17))  # 16 calls: 4 claims, 6 sends, 2 traffic objects, 4 releases
def test_each_effect_failing_in_turn_is_redone_alone(deployment, context, failing_call):  # noqa: F811
    # GIVEN the n-th effect call of the first delivery fails (team send, audit copy, review send, traffic, DLQ...)
    handler, clock, faults = install(deployment, failing={failing_call})
    # WHEN the failed messages are redelivered until none fails
    rounds = run_until_settled(handler, context, ["m1", "m2", "m3", "m4"], clock)
    # THEN every effect happened exactly once, and a redelivery was needed whenever a call failed (a lease whose
    # release failed only expires)
    assert faults.failed and rounds == (1 if faults.failed[0][0] == "release" else 2)
    assert outcome(deployment) == EXPECTED


def test_a_failed_done_record_alone_causes_no_redelivery_and_no_duplicate(deployment, context):  # noqa: F811
    handler, clock, _ = install(deployment, failing=set())

    def refuse_done(params, **_):
        if params.get("UpdateExpression", "").startswith("ADD"):
            raise RuntimeError("ledger unavailable")

    handler.ledger.dynamodb.meta.events.register("before-parameter-build.dynamodb.UpdateItem", refuse_done)
    assert run_until_settled(handler, context, ["m1", "m2", "m3", "m4"], clock) == 1
    assert outcome(deployment) == EXPECTED


def test_the_same_id_with_another_text_is_another_request_and_the_same_request_twice_is_one(deployment, context):  # noqa: F811
    # GIVEN two producers that both number from r1 and a producer that sends one request twice (new message ids)
    handler, clock, _ = install(deployment, failing=set())
    same_id = {"a1": request("r1", "where is my parcel"), "a2": request("r1", "another text about my parcel"),
               "a3": request("r1", "where is my parcel")}
    handler.scorer.score = lambda requests: {r.message_id: prediction(r.message_id, "order_status", 0.97) for r in requests}
    for mid, body in same_id.items():
        assert handler.handler(sqs_event([body], message_ids=[mid]), context) == {"batchItemFailures": []}
    # THEN the two texts reached the team, the repeated request once
    texts = [m["request"]["text"] for m in bodies(drain(deployment["sqs"], deployment["queues"]["orders"]))]
    assert sorted(texts) == ["another text about my parcel", "where is my parcel"]


def test_an_87000_character_id_goes_to_the_dlq_with_its_reason_and_is_never_routed(deployment, context):  # noqa: F811
    handler, clock, _ = install(deployment, failing=set())
    body = json.dumps({"id": "x" * 87_000, "text": "where is my parcel"})
    for _ in range(3):  # redelivered: dead-lettered once
        assert handler.handler(sqs_event([body], message_ids=["big"]), context) == {"batchItemFailures": []}
    (dead,) = drain(deployment["sqs"], deployment["queues"]["intake-dlq"])
    assert dead["MessageAttributes"]["reason"]["StringValue"] == f"'id' longer than {MAX_ID_CHARS} characters"
    assert dead["Body"] == body
    assert drain(deployment["sqs"], deployment["queues"]["orders"]) == [] and drain(deployment["sqs"], deployment["queues"]["review"]) == []


def test_a_body_too_large_for_its_dead_letter_is_cut_to_fit_and_says_so(deployment, context):  # noqa: F811
    handler, clock, _ = install(deployment, failing=set())
    body = json.dumps({"id": "r1", "text": "é" * 131_000})  # about 262,100 bytes: an intake message near SQS's limit
    assert handler.handler(sqs_event([body], message_ids=["huge"]), context) == {"batchItemFailures": []}
    (dead,) = drain(deployment["sqs"], deployment["queues"]["intake-dlq"])
    attributes = {name: spec["StringValue"] for name, spec in dead["MessageAttributes"].items()}
    assert attributes["reason"] == f"'text' longer than {MAX_TEXT_CHARS} characters"
    assert attributes["body_truncated"] == "true" and int(attributes["body_bytes"]) == len(body.encode())
    assert message_size(dead["Body"], dead["MessageAttributes"]) <= SQS_MAX_BYTES
    assert body.startswith(dead["Body"])


@pytest.mark.parametrize("char", ["a", "é", "\x00", "\x1f", "\ufffe", "\uffff", "\u2028", "\U0001f600", '"', "\\"])
def test_every_message_the_lambda_sends_for_a_bounded_request_fits_sqs(char):
    # GIVEN the largest request that parses, made of the character that costs most once encoded
    text = char * MAX_TEXT_CHARS
    body = json.dumps({"id": "9" * MAX_ID_CHARS, "text": text})
    parsed = parse_request("m1", body)
    sent = []

    class Recorder:
        def send_message(self, **kwargs):
            sent.append(kwargs)

    dispatcher = Dispatcher(Recorder(), team_queues={"orders": "q-orders"}, review_queue_url="q-review", dead_letter_url="q-dlq", audit_share=1.0)
    record = {"id": parsed.id, "decision": "route", "team": "orders", "label": "order_status", "confidence": 0.99,
              "reasons": ["low_confidence", "near_tie", "model_unavailable"], "model_version": "v" * 64,
              "scores": {f"label_{i:02d}": 0.01 for i in range(40)}}
    dispatcher.send(parsed, record, dedup_key="f" * 64)
    dispatcher.send_audit(parsed, record, dedup_key="f" * 64)
    # THEN the dispatch and the audit copy fit, and hold no character SQS refuses
    for message in sent:
        assert message_size(message["MessageBody"], message["MessageAttributes"]) <= SQS_MAX_BYTES
        assert not any(c in message["MessageBody"] for c in "\x00\x1f\ufffe\uffff")
        assert json.loads(message["MessageBody"])["request"]["text"] == text
    # AND one character more is refused where it enters
    with pytest.raises(MalformedMessage):
        parse_request("m1", json.dumps({"id": "r1", "text": text + "a"}))
    with pytest.raises(MalformedMessage):
        parse_request("m1", json.dumps({"id": "9" * (MAX_ID_CHARS + 1), "text": "x"}))
    assert isinstance(parsed, IntakeRequest)


def test_an_id_with_a_character_sqs_refuses_in_attributes_is_dead_lettered_not_retried_forever():
    with pytest.raises(MalformedMessage, match="control character"):
        parse_request("m1", json.dumps({"id": "r\x001", "text": "x"}))


def test_a_clean_delivery_makes_sixteen_effect_and_ledger_calls(deployment, context):  # noqa: F811
    # the parametrized failures above cover every one of them
    handler, clock, faults = install(deployment, failing=set())
    run_until_settled(handler, context, ["m1", "m2", "m3", "m4"], clock)
    assert faults.count == 16
