"""Route one SQS batch of intake requests: parse, score once, decide, dispatch.

The endpoint returns calibrated scores; the decision is re-made here with the
policy of the model version that produced them (its bundle manifest, stored at
`core.layout.manifest_key(version)` by the pipeline), tightened by the operators'
overrides (an SSM parameter). Anything that prevents a trustworthy decision
(endpoint down, unreadable answer, unknown policy) escalates with
`model_unavailable`: a request is never lost and never misrouted. Request text
goes to the destination queues and the encrypted traffic log only, never to
logs or metrics.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sav_router.core import layout
from sav_router.aws.s3io import put_jsonl
from sav_router.core.bundle import Manifest
from sav_router.core.defaults import MAX_TEXT_CHARS
from sav_router.core.traffic import batch_name, traffic_batch
from sav_router.core.policy import (
    EMPTY_TEXT,
    ROUTE,
    OverrideError,
    RoutingPolicy,
    decision_record,
    escalation,
    parse_overrides,
    redecide,
)

log = logging.getLogger(__name__)


class MalformedMessage(ValueError):
    """The message cannot be a request: it goes to the dead-letter queue, not to a human."""


@dataclass(frozen=True)
class IntakeRequest:
    message_id: str
    id: str
    text: str


def parse_request(message_id: str, body: str) -> IntakeRequest:
    """`{"id": ..., "text": ...}` (other fields ignored); raise MalformedMessage with a loggable reason."""
    try:
        data = json.loads(body)
    except (TypeError, json.JSONDecodeError):
        raise MalformedMessage("body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedMessage("body is not a JSON object")
    request_id = data.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int)) or not str(request_id).strip():
        raise MalformedMessage("missing or invalid 'id'")
    text = data.get("text")
    if not isinstance(text, str):
        raise MalformedMessage("missing or non-string 'text'")
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedMessage(f"'text' longer than {MAX_TEXT_CHARS} characters")
    for name, value in (("id", str(request_id)), ("text", text)):
        if not _encodable(value):
            # It would fail the whole batch's endpoint payload later: refused alone, here.
            raise MalformedMessage(f"'{name}' is not valid Unicode (lone surrogate)")
    return IntakeRequest(message_id=message_id, id=str(request_id), text=text)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ModelUnavailable(RuntimeError):
    """The endpoint gave no usable answer (after the client's retries)."""


class EndpointScorer:
    """One `InvokeEndpoint` per batch; instances are keyed by SQS message id (unique in a batch)."""

    def __init__(self, runtime: Any, endpoint_name: str) -> None:
        self.runtime = runtime
        self.endpoint_name = endpoint_name

    def score(self, requests: Sequence[IntakeRequest]) -> dict[str, Mapping[str, Any]]:
        if not requests:
            return {}
        body = json.dumps({"instances": [{"id": r.message_id, "text": r.text} for r in requests]}, ensure_ascii=False)
        try:
            response = self.runtime.invoke_endpoint(
                EndpointName=self.endpoint_name, ContentType="application/json", Accept="application/json", Body=body.encode("utf-8")
            )
            predictions = json.loads(response["Body"].read())["predictions"]
        except Exception as exc:  # noqa: BLE001 - any failure here means "no model answer"
            raise ModelUnavailable(f"{type(exc).__name__} from endpoint {self.endpoint_name}") from exc
        if not isinstance(predictions, list):
            raise ModelUnavailable("endpoint answer has no 'predictions' list")
        return {str(p["id"]): p for p in predictions if isinstance(p, dict) and "id" in p}


class PolicyStore:
    """The policy of each model version (immutable, cached) tightened by operator overrides (TTL cache).

    Overrides are a JSON object in an SSM parameter, e.g.
    `{"threshold": 0.9, "margin": 0.2, "ood_threshold": 12.0}`; `{"threshold": 1.01}`
    stops all routing. They can only make routing stricter (`RoutingPolicy.tightened`).
    A value that cannot be applied (`{"margin": 1.5}`, NaN, a typo'd key) is refused when
    read (`core.policy.parse_overrides`): logged, counted in `refused_overrides`, reported
    to `on_refused` (the handler's metric), and the last good overrides stay in force;
    with none ever read, requests escalate (`model_unavailable`), never lost.
    """

    def __init__(
        self,
        *,
        s3: Any,
        bucket: str,
        ssm: Any,
        overrides_parameter: str | None,
        ttl_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.s3, self.bucket, self.ssm = s3, bucket, ssm
        self.overrides_parameter = overrides_parameter
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._policies: dict[str, RoutingPolicy] = {}
        self._overrides: dict[str, float] | None = None
        self._overrides_at = -float("inf")
        self.on_refused = on_refused
        self.refused_overrides = 0

    def _base_policy(self, model_version: str) -> RoutingPolicy | None:
        if model_version not in self._policies:
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=layout.manifest_key(model_version))["Body"].read()
                manifest = Manifest.from_dict(json.loads(body), source=layout.manifest_key(model_version))
            except Exception:  # noqa: BLE001 - missing, unreadable or S3 unavailable: unknown policy, never a guess
                return None
            if manifest.model_version != model_version:
                return None
            self._policies[model_version] = manifest.policy
        return self._policies[model_version]

    def overrides(self) -> dict[str, float] | None:
        """Current overrides; the last good value when SSM fails; None if never read."""
        if self.overrides_parameter is None:
            return {}
        if self._overrides is not None and self.clock() - self._overrides_at < self.ttl_seconds:
            return self._overrides
        try:
            raw = self.ssm.get_parameter(Name=self.overrides_parameter)["Parameter"]["Value"]
        except Exception:  # noqa: BLE001 - SSM unavailable: keep the last known overrides
            return self._overrides
        try:
            self._overrides = parse_overrides(json.loads(raw) if raw.strip() else {})
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and OverrideError are ValueErrors
            reason = str(exc) if isinstance(exc, OverrideError) else "overrides are not valid JSON"
            self.refused_overrides += 1
            log.error("operator overrides in %s refused (%s); keeping the last good ones", self.overrides_parameter, reason)
            if self.on_refused is not None:
                self.on_refused(reason)
        self._overrides_at = self.clock()  # a refused value is not re-read (and re-alarmed) on every request
        return self._overrides

    def policy_for(self, model_version: str | None) -> RoutingPolicy | None:
        if not model_version:
            return None
        policy = self._base_policy(model_version)
        overrides = self.overrides()
        if policy is None or overrides is None:
            return None
        return policy.tightened(**overrides)


def decide_request(
    request: IntakeRequest,
    prediction: Mapping[str, Any] | None,
    policies: PolicyStore,
    *,
    teams_with_queue: frozenset[str],
) -> dict[str, Any]:
    """The decision record for one request (the `decision_record` format of the CLI), by `redecide`."""
    if not request.text.strip():
        return decision_record(request.id, escalation(EMPTY_TEXT), {})
    version = prediction.get("model_version") if isinstance(prediction, Mapping) else None
    return redecide(prediction, policies.policy_for(version), teams_with_queue, record_id=request.id)


class Dispatcher:
    """Send a decided request to its team queue or to the human-review queue; malformed ones to the DLQ.

    `audit_share` has no default here: the function's settings give it (`RoutingSettings.audit_share`).
    """

    def __init__(
        self,
        sqs: Any,
        *,
        team_queues: Mapping[str, str],
        review_queue_url: str,
        dead_letter_url: str,
        audit_share: float,
        rng: Callable[[], float] | None = None,
    ) -> None:
        if not 0.0 <= audit_share <= 1.0:
            raise ValueError("audit share must be within [0, 1]")
        self.sqs = sqs
        self.team_queues = dict(team_queues)
        self.review_queue_url = review_queue_url
        self.dead_letter_url = dead_letter_url
        self.audit_share = audit_share
        self.rng = rng or random.random

    def destination(self, record: Mapping[str, Any]) -> tuple[str, str]:
        """(label for logs, queue URL)."""
        if record["decision"] == ROUTE:
            return f"team:{record['team']}", self.team_queues[record["team"]]
        return "review", self.review_queue_url

    def send(self, request: IntakeRequest, record: Mapping[str, Any]) -> str:
        where, url = self.destination(record)
        attributes = {
            "decision": {"DataType": "String", "StringValue": record["decision"]},
            "request_id": {"DataType": "String", "StringValue": request.id},
        }
        if record["reasons"]:
            attributes["reasons"] = {"DataType": "String", "StringValue": ",".join(record["reasons"])}
        body = {"request": {"id": request.id, "text": request.text}, "decision": record}
        self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body, ensure_ascii=False), MessageAttributes=attributes)
        if record["decision"] == ROUTE and self.audit_share and self.rng() < self.audit_share:
            # Audit sample: routed as decided, and also labeled blind by a reviewer to measure live precision.
            audit = {**attributes, "audit": {"DataType": "String", "StringValue": "true"}}
            self.sqs.send_message(QueueUrl=self.review_queue_url, MessageBody=json.dumps(body | {"audit": True}, ensure_ascii=False), MessageAttributes=audit)
            where += "+audit"
        return where

    def dead_letter(self, message_id: str, body: str, reason: str) -> None:
        self.sqs.send_message(
            QueueUrl=self.dead_letter_url,
            MessageBody=body,
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason},
                "source_message_id": {"DataType": "String", "StringValue": message_id},
            },
        )


@dataclass
class Batch:
    """One invocation's state, handed to the handling of each of its records: the endpoint's answers by SQS message
    id, and the requests dispatched so far with their decisions (what the batch's traffic log holds)."""

    predictions: Mapping[str, Mapping[str, Any]]
    requests: list[IntakeRequest] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def dispatched(self, request: IntakeRequest, record: dict[str, Any]) -> None:
        self.requests.append(request)
        self.records.append(record)


class TrafficLog:
    """Requests and decisions of a batch as JSON lines under `traffic/` (observer mode reads them)."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def write(self, requests: Sequence[IntakeRequest], records: Sequence[Mapping[str, Any]], *, now: datetime | None = None) -> str | None:
        if not requests:
            return None
        now = now or datetime.now(timezone.utc)
        name = batch_name(now)
        request_rows, decision_rows = traffic_batch([(r.id, r.text) for r in requests], records, received_at=now)
        requests_key, decisions_key = layout.traffic_keys(now, name)
        put_jsonl(self.s3, self.bucket, requests_key, request_rows)
        put_jsonl(self.s3, self.bucket, decisions_key, decision_rows)  # last, as locally: the batch's commit mark
        return name
