"""The routing Lambda's effect ledger: each side effect of a request happens once, across redeliveries.

A request's effects are the dispatch (its team queue or the review queue), the audit
copy (a sampled routed request, also to the review queue), the traffic log row, or,
for a message that is not a request, its dead-letter send. SQS delivers a message at
least once and the Lambda reports failures per message, so a message is redelivered
whenever any one of its effects failed. Each effect is therefore recorded as done in
DynamoDB (the routing stack's idempotency table) right after it succeeds, and a
redelivery repeats only what is not recorded:

- `claim` stores the request's plan (its decision record and whether it is an audit
  sample) the first time, and returns the stored one on every later delivery, so a
  redelivered request is dispatched, audited and logged as first decided (even if the
  endpoint or the overrides changed in between); it also takes a lease, so two
  deliveries of one request never run its effects at the same time (the second fails
  and is retried after the lease);
- `done` adds an effect to the item's `done` string set (idempotent);
- `release` drops the lease when the invocation is over.

The key is the request's identity (`core.traffic.request_key`: its caller-given id AND
a digest of its text), never the SQS message id alone: two producers may reuse ids,
and one request sent twice is one request. A message that is not a request is keyed
by its message id and a digest of its body. Items expire (TTL) after the
configured idempotency window. Only ids, digests and decisions are stored, never text.

What remains at-least-once: an effect that succeeded while the invocation died before
`done` was written (a timeout between two calls) is repeated on redelivery. Every
message the Lambda sends carries the `dedup_key` attribute, so a consumer can drop that
rare second copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DISPATCH = "dispatch"
AUDIT = "audit"
TRAFFIC = "traffic"
DEAD_LETTER = "dead_letter"
EFFECTS = (DISPATCH, AUDIT, TRAFFIC, DEAD_LETTER)

_PREFIX = "effects#"


def dedup_key(identity: str) -> str:
    """The stable key of an identity (64 hex characters): DynamoDB key and the `dedup_key` message attribute."""
    return hashlib.sha256(identity.encode("utf-8", errors="surrogatepass")).hexdigest()


def message_identity(message_id: str, body: str) -> str:
    """The identity of a message that is not a request: its SQS message id and a digest of its body."""
    return f"message\x1f{message_id}\x1f{hashlib.sha256(body.encode('utf-8', errors='surrogatepass')).hexdigest()}"


class InFlight(RuntimeError):
    """Another delivery of the same request holds its lease: this one fails and is retried later."""


@dataclass(frozen=True)
class Claim:
    key: str
    plan: dict[str, Any]
    done: frozenset[str]


class EffectLedger:
    def __init__(
        self,
        dynamodb: Any,
        table: str,
        *,
        ttl_seconds: int,
        lease_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dynamodb, self.table = dynamodb, table
        self.ttl_seconds, self.lease_seconds = ttl_seconds, lease_seconds
        self.clock = clock

    def _key(self, key: str) -> dict[str, Any]:
        return {"id": {"S": _PREFIX + key}}

    def claim(self, key: str, plan: Mapping[str, Any]) -> Claim:
        """Store `plan` unless one is stored; take the lease; the stored plan and the effects already done."""
        now = int(self.clock())
        try:
            item = self.dynamodb.update_item(
                TableName=self.table,
                Key=self._key(key),
                UpdateExpression="SET #plan = if_not_exists(#plan, :plan), lease_until = :lease, expiration = if_not_exists(expiration, :expires)",
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
                ExpressionAttributeNames={"#plan": "plan"},
                ExpressionAttributeValues={
                    ":plan": {"S": json.dumps(plan, sort_keys=True)},
                    ":lease": {"N": str(now + self.lease_seconds)},
                    ":expires": {"N": str(now + self.ttl_seconds)},
                    ":now": {"N": str(now)},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            raise InFlight(f"request {key[:12]} is being handled by another delivery") from None
        return Claim(key=key, plan=json.loads(item["plan"]["S"]), done=frozenset(item.get("done", {}).get("SS", [])))

    def done(self, key: str, effect: str) -> bool:
        """Record `effect` as done. A failure here is logged, not raised: the effect happened, and failing the
        message would repeat it; it is repeated only if a later effect of the message fails too."""
        if effect not in EFFECTS:
            raise ValueError(f"unknown effect {effect!r}")
        try:
            self.dynamodb.update_item(
                TableName=self.table, Key=self._key(key), UpdateExpression="ADD done :effect",
                ExpressionAttributeValues={":effect": {"SS": [effect]}},
            )
        except Exception:  # noqa: BLE001 - see docstring
            log.exception("could not record effect %s of %s as done", effect, key[:12])
            return False
        return True

    def release(self, key: str) -> None:
        try:
            self.dynamodb.update_item(TableName=self.table, Key=self._key(key), UpdateExpression="REMOVE lease_until")
        except Exception:  # noqa: BLE001 - the lease expires on its own
            log.warning("could not release the lease of %s; it expires in %ss", key[:12], self.lease_seconds)
