"""Routing Lambda: intake SQS batch -> endpoint (once per batch) -> team queue or human review.

Thin: parsing, scoring, deciding and dispatching live in `sav_router.aws.routing`.
Each message is processed at most once per message id (DynamoDB idempotency);
a message whose dispatch fails is reported as a batch item failure and retried.
Logs carry ids, labels, teams and reasons, never request text.
"""

from __future__ import annotations

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from botocore.config import Config

from sav_router.aws import metrics as metric_names
from sav_router.aws.settings import RoutingSettings
from sav_router.core.policy import ROUTE
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

# Standard retry mode: throttling and 5xx are retried with backoff before we give up.
runtime = boto3.client("sagemaker-runtime", config=Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=10))
s3 = boto3.client("s3")
sqs = boto3.client("sqs")
ssm = boto3.client("ssm")

settings = RoutingSettings.from_environ()
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
idempotency = IdempotencyConfig(event_key_jmespath="messageId", expires_after_seconds=settings.idempotency_ttl_seconds)
persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table)


@idempotent_function(data_keyword_argument="message", config=idempotency, persistence_store=persistence)
def handle_message(*, message: dict, batch: Batch) -> dict:
    """One record of `batch` (only `message` is the idempotency key: a redelivered record returns its first result)."""
    message_id = message["messageId"]
    try:
        request = parse_request(message_id, message["body"])
    except MalformedMessage as exc:
        dispatcher.dead_letter(message_id, message["body"], str(exc))
        logger.warning("malformed message sent to the dead-letter queue", extra={"message_id": message_id, "reason": str(exc)})
        metrics.add_metric(name=metric_names.MALFORMED, unit=MetricUnit.Count, value=1)
        return {"message_id": message_id, "outcome": "dead_letter", "reason": str(exc)}
    record = decide_request(request, batch.predictions.get(message_id), policies, teams_with_queue=frozenset(team_queues))
    where = dispatcher.send(request, record)
    batch.dispatched(request, record)
    metrics.add_metric(name=metric_names.ROUTED if record["decision"] == ROUTE else metric_names.ESCALATED, unit=MetricUnit.Count, value=1)
    for reason in record["reasons"]:
        metrics.add_metric(name=metric_names.escalation_metric(reason), unit=MetricUnit.Count, value=1)
    logger.info(
        "request dispatched",
        extra={"request_id": request.id, "message_id": message_id, "to": where, "label": record["label"], "reasons": record["reasons"], "confidence": record["confidence"]},
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


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    idempotency.register_lambda_context(context)
    batch = Batch(predictions=_score(event))
    response = process_partial_response(
        event=event, record_handler=lambda record: handle_message(message=record.raw_event, batch=batch), processor=processor, context=context,
    )
    try:
        traffic.write(batch.requests, batch.records)
    except Exception:  # noqa: BLE001 - observer-mode logging must never fail routing
        logger.exception("traffic log write failed")
    return response
