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

import hashlib
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
from sav_router.core.defaults import MAX_ID_CHARS, MAX_TEXT_CHARS
from sav_router.core.jsonio import dumps as dumps_json
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
    # Bounded where they enter, so every message sent on (dispatch, audit copy: text once, id in body and attribute)
    # fits SQS's 256 KiB whatever the characters (`message_size` below; tests/lambdas/test_routing_effects.py).
    if len(str(request_id)) > MAX_ID_CHARS:
        raise MalformedMessage(f"'id' longer than {MAX_ID_CHARS} characters")
    if len(text) > MAX_TEXT_CHARS:
        raise MalformedMessage(f"'text' longer than {MAX_TEXT_CHARS} characters")
    for name, value in (("id", str(request_id)), ("text", text)):
        if not _encodable(value):
            # It would fail the whole batch's endpoint payload later: refused alone, here.
            raise MalformedMessage(f"'{name}' is not valid Unicode (lone surrogate)")
    if not _sqs_attribute_safe(str(request_id)):
        # The id travels as a message attribute, where SQS refuses these characters (the send would fail forever).
        raise MalformedMessage("'id' holds a control character or U+FFFE/U+FFFF")
    return IntakeRequest(message_id=message_id, id=str(request_id), text=text)


# SQS accepts #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF in bodies and attribute values.
_SQS_REFUSED = {c: f"\\u{c:04x}" for c in [*range(0x20), 0xFFFE, 0xFFFF] if c not in (0x9, 0xA, 0xD)}
SQS_MAX_BYTES = 256 * 1024


def _sqs_attribute_safe(value: str) -> bool:
    return not any(ord(c) in _SQS_REFUSED for c in value)


def sqs_body(value: Any) -> str:
    """JSON for an SQS body: the line codec's escapes, plus U+FFFE/U+FFFF (JSON escapes the C0 controls already)."""
    return dumps_json(value).translate(_SQS_REFUSED)


def message_size(body: str, attributes: Mapping[str, Mapping[str, str]]) -> int:
    """Bytes SQS counts against its limit: the body plus each attribute's name, type and value."""
    return len(body.encode("utf-8")) + sum(
        len(name.encode()) + len(spec["DataType"].encode()) + len(spec["StringValue"].encode("utf-8")) for name, spec in attributes.items()
    )


class MessageTooLarge(ValueError):
    """A message the Lambda would send exceeds SQS's limit (the entry bounds make this unreachable)."""


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

    def samples_audit(self, record: Mapping[str, Any]) -> bool:
        """Whether a decided request is also an audit sample (drawn once; the effect ledger keeps the draw)."""
        return record["decision"] == ROUTE and bool(self.audit_share) and self.rng() < self.audit_share

    def _send(self, url: str, body: str, attributes: dict[str, dict[str, str]]) -> None:
        size = message_size(body, attributes)
        if size > SQS_MAX_BYTES:
            raise MessageTooLarge(f"message of {size} bytes exceeds SQS's {SQS_MAX_BYTES}")
        self.sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)

    def _attributes(self, request: IntakeRequest, record: Mapping[str, Any], dedup_key: str | None) -> dict[str, dict[str, str]]:
        attributes = {
            "decision": {"DataType": "String", "StringValue": record["decision"]},
            "request_id": {"DataType": "String", "StringValue": request.id},
        }
        if record["reasons"]:
            attributes["reasons"] = {"DataType": "String", "StringValue": ",".join(record["reasons"])}
        if dedup_key:
            attributes["dedup_key"] = {"DataType": "String", "StringValue": dedup_key}
        return attributes

    def send(self, request: IntakeRequest, record: Mapping[str, Any], *, dedup_key: str | None = None) -> str:
        """The dispatch: to the team's queue, or to human review. Returns where (for logs)."""
        where, url = self.destination(record)
        body = {"request": {"id": request.id, "text": request.text}, "decision": record}
        self._send(url, sqs_body(body), self._attributes(request, record, dedup_key))
        return where

    def send_audit(self, request: IntakeRequest, record: Mapping[str, Any], *, dedup_key: str | None = None) -> None:
        """Audit sample: routed as decided, and also labeled blind by a reviewer to measure live precision."""
        attributes = self._attributes(request, record, dedup_key) | {"audit": {"DataType": "String", "StringValue": "true"}}
        body = {"request": {"id": request.id, "text": request.text}, "decision": record, "audit": True}
        self._send(self.review_queue_url, sqs_body(body), attributes)

    def dead_letter(self, message_id: str, body: str, reason: str, *, dedup_key: str | None = None) -> bool:
        """Send a message that is not a request to the DLQ with its reason. A body too large to fit beside the
        reason attributes is cut to fit (marked `body_truncated`, with the whole body's size and SHA-256); returns
        whether it was cut."""
        attributes = {
            "reason": {"DataType": "String", "StringValue": reason},
            "source_message_id": {"DataType": "String", "StringValue": message_id[:MAX_ID_CHARS]},
        }
        if dedup_key:
            attributes["dedup_key"] = {"DataType": "String", "StringValue": dedup_key}
        truncated = message_size(body, attributes) > SQS_MAX_BYTES
        if truncated:
            raw = body.encode("utf-8", errors="replace")
            attributes["body_truncated"] = {"DataType": "String", "StringValue": "true"}
            attributes["body_bytes"] = {"DataType": "Number", "StringValue": str(len(raw))}
            attributes["body_sha256"] = {"DataType": "String", "StringValue": hashlib.sha256(raw).hexdigest()}
            room = SQS_MAX_BYTES - message_size("", attributes)
            body = raw[:room].decode("utf-8", errors="ignore")
        self._send(self.dead_letter_url, body, attributes)
        return truncated


@dataclass
class Batch:
    """One invocation's state, handed to the handling of each of its records: the endpoint's answers by SQS message
    id, the effect-ledger keys claimed (released at the end), and the dispatched requests whose traffic row is not
    logged yet, with their decisions and message ids (what the batch's traffic log holds)."""

    predictions: Mapping[str, Mapping[str, Any]]
    requests: list[IntakeRequest] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)

    def dispatched(self, request: IntakeRequest, record: dict[str, Any], key: str = "") -> None:
        self.requests.append(request)
        self.records.append(record)
        self.keys.append(key)


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
