"""Routing Lambda: intake SQS batch -> endpoint (once per batch) -> team queue or human review.

Thin: parsing, scoring, deciding and dispatching live in `sav_router.aws.routing`.
Each side effect of a request (dispatch, audit copy, traffic log row, dead-letter send)
happens once across redeliveries: it is recorded as done in the idempotency table
(`sav_router.aws.effects`), keyed by the request's identity (id + text digest), and a
redelivered message repeats only what is not recorded. A message with any effect
failed is reported as a batch item failure and retried.
Logs carry ids, labels, teams and reasons, never request text.
"""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from botocore.config import Config

from sav_router.aws import metrics as metric_names
from sav_router.aws.settings import RoutingSettings
from sav_router.aws import effects
from sav_router.aws.effects import EffectLedger, dedup_key, message_identity
from sav_router.core.policy import ROUTE
from sav_router.core.traffic import request_key
from sav_router.aws.routing import (
    Batch,
    Dispatcher,
    EndpointScorer,
    MalformedMessage,
    ModelUnavailable,
    PolicyStore,
    TrafficLog,
    decide_request,
    parse_request,
)

logger = Logger()
tracer = Tracer()
metrics = Metrics()

settings = RoutingSettings.from_environ()
# How long to wait for the endpoint follows its kind (a serverless one may cold-start): settings.endpoint_limits, the
# numbers infra/routing.py derives this function's timeout and the intake queue's visibility from. Standard retry mode:
# throttling, 5xx and read timeouts are retried with backoff before we give up.
limits = settings.endpoint_limits
runtime = boto3.client("sagemaker-runtime", config=Config(retries={"mode": "standard", "total_max_attempts": limits.max_attempts},
                                                          connect_timeout=limits.connect_timeout, read_timeout=limits.read_timeout))
s3 = boto3.client("s3")
sqs = boto3.client("sqs")
ssm = boto3.client("ssm")

scorer = EndpointScorer(runtime, settings.endpoint_name)
policies = PolicyStore(
    s3=s3,
    bucket=settings.artifacts_bucket,
    ssm=ssm,
    overrides_parameter=settings.overrides_parameter,
    ttl_seconds=settings.overrides_ttl_seconds,
    on_refused=lambda reason: metrics.add_metric(name=metric_names.OVERRIDES_REFUSED, unit=MetricUnit.Count, value=1),
)
team_queues: dict[str, str] = settings.team_queues
dispatcher = Dispatcher(
    sqs,
    team_queues=team_queues,
    review_queue_url=settings.review_queue_url,
    dead_letter_url=settings.intake_dlq_url,
    audit_share=settings.audit_share,
)
traffic = TrafficLog(s3, settings.artifacts_bucket)
processor = BatchProcessor(event_type=EventType.SQS)
ledger = EffectLedger(boto3.client("dynamodb"), settings.idempotency_table, ttl_seconds=settings.idempotency_ttl_seconds, lease_seconds=120)


def _dead_letter(message_id: str, body: str, reason: str, batch: Batch) -> dict:
    key = dedup_key(message_identity(message_id, body))
    claim = ledger.claim(key, {"dead_letter": reason})
    batch.claimed.append(key)
    if effects.DEAD_LETTER not in claim.done:
        truncated = dispatcher.dead_letter(message_id, body, reason, dedup_key=key)
        ledger.done(key, effects.DEAD_LETTER)
        logger.warning("malformed message sent to the dead-letter queue",
                       extra={"message_id": message_id, "reason": reason, "body_truncated": truncated})
        metrics.add_metric(name=metric_names.MALFORMED, unit=MetricUnit.Count, value=1)
    return {"message_id": message_id, "outcome": "dead_letter", "reason": reason}


def handle_message(*, message: dict, batch: Batch) -> dict:
    """One record of `batch`: its effects not yet recorded as done, in order (dispatch, audit copy); its traffic row is
    logged with the batch's. Raising makes it a batch item failure (redelivered)."""
    message_id = message["messageId"]
    try:
        request = parse_request(message_id, message["body"])
    except MalformedMessage as exc:
        return _dead_letter(message_id, message["body"], str(exc), batch)
    key = dedup_key(request_key(request.id, request.text))
    record = decide_request(request, batch.predictions.get(message_id), policies, teams_with_queue=frozenset(team_queues))
    claim = ledger.claim(key, {"record": record, "audit": dispatcher.samples_audit(record)})
    batch.claimed.append(key)
    record = claim.plan["record"]  # a redelivery keeps the first decision: what the team got is what is logged
    where = dispatcher.destination(record)[0]
    fresh = effects.DISPATCH not in claim.done
    if fresh:
        dispatcher.send(request, record, dedup_key=key)
        ledger.done(key, effects.DISPATCH)
    if claim.plan["audit"]:
        where += "+audit"
        if effects.AUDIT not in claim.done:
            dispatcher.send_audit(request, record, dedup_key=key)
            ledger.done(key, effects.AUDIT)
    if effects.TRAFFIC not in claim.done:
        batch.dispatched(request, record, key)
    if fresh:
        metrics.add_metric(name=metric_names.ROUTED if record["decision"] == ROUTE else metric_names.ESCALATED, unit=MetricUnit.Count, value=1)
        for reason in record["reasons"]:
            metrics.add_metric(name=metric_names.escalation_metric(reason), unit=MetricUnit.Count, value=1)
    logger.info(
        "request dispatched" if fresh else "redelivered request: only its pending effects were done",
        extra={"request_id": request.id, "message_id": message_id, "to": where, "label": record["label"], "reasons": record["reasons"],
               "confidence": record["confidence"], "effects_done_before": sorted(claim.done)},
    )
    return {"message_id": message_id, "outcome": where, "request_id": request.id}


def _score(event: dict) -> dict:
    requests = []
    for message in event.get("Records", []):
        try:
            request = parse_request(message["messageId"], message["body"])
        except MalformedMessage:
            continue  # handled (dead-lettered) by the record handler
        if request.text.strip():
            requests.append(request)
    try:
        return scorer.score(requests)
    except ModelUnavailable as exc:
        logger.error("endpoint unavailable: escalating the batch", extra={"reason": str(exc), "batch_size": len(requests)})
        metrics.add_metric(name=metric_names.MODEL_UNAVAILABLE, unit=MetricUnit.Count, value=len(requests))
        return {}


def _log_traffic(batch: Batch) -> list[str]:
    """Write the batch's pending traffic rows; the message ids to retry when that fails (their other effects are
    recorded, so the retry only logs them)."""
    if not batch.requests:
        return []
    try:
        traffic.write(batch.requests, batch.records)
    except Exception:  # noqa: BLE001 - the rows are retried with their messages, never lost, never routed twice
        logger.exception("traffic log write failed: its messages are retried for it")
        return [request.message_id for request in batch.requests]
    for key in batch.keys:
        ledger.done(key, effects.TRAFFIC)
    return []


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    # The lease outlives this invocation: a concurrent delivery of the same request waits for it, never doubles it.
    ledger.lease_seconds = context.get_remaining_time_in_millis() // 1000 + 5
    batch = Batch(predictions=_score(event))
    try:
        response = process_partial_response(
            event=event, record_handler=lambda record: handle_message(message=record.raw_event, batch=batch), processor=processor, context=context,
        )
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for message_id in _log_traffic(batch):
            if message_id not in failed:
                failed.add(message_id)
                response["batchItemFailures"].append({"itemIdentifier": message_id})
    finally:
        for key in batch.claimed:
            ledger.release(key)
    return response
