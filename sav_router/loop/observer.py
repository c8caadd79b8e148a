"""Live routing on the embedded default, with a candidate in observer mode.

`route_stream` decides each request with the production model; a candidate,
if given, scores the same requests without affecting routing. Both decisions
are logged to `traffic/<day>.jsonl` (the same layout the routing Lambda writes
to the bucket), escalations go to the local review queue, and a configurable
share of confidently routed requests is also queued as audit samples so live
routed precision can be measured.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sav_router.data.annotations import Record
from sav_router.core.policy import ROUTE
from sav_router.model.router import Router
from sav_router.loop.workspace import Workspace, append_jsonl, utc_now

REVIEW_QUEUE = "queue.jsonl"


@dataclass
class RoutedRequest:
    record: Record
    production: dict
    observer: dict | None
    queued_for: str | None  # "escalation", "audit" or None


def route_stream(
    records: Sequence[Record],
    production: Router,
    *,
    workspace: Workspace,
    observer: Router | None = None,
    audit_share: float = 0.0,
    seed: int | None = None,
    batch_size: int = 64,
) -> Iterator[RoutedRequest]:
    if not 0.0 <= audit_share <= 1.0:
        raise ValueError("audit share must be within [0, 1]")
    rng = random.Random(seed)
    workspace.ensure()
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        productions = production.decision_records(chunk)
        observed = observer.decision_records(chunk) if observer is not None else [None] * len(chunk)
        received = utc_now()
        traffic, queue, results = [], [], []
        for i, record in enumerate(chunk):
            prod, cand = productions[i], observed[i]
            queued_for = None
            if prod["decision"] != ROUTE:
                queued_for = "escalation"
            elif audit_share and rng.random() < audit_share:
                queued_for = "audit"
            if queued_for:
                queue.append(prod | {"text": record.text, "audit": queued_for == "audit", "queued_at": received.isoformat(timespec="seconds")})
            traffic.append({"id": record.id, "text": record.text, "received_at": received.isoformat(timespec="seconds"), "production": prod, "observer": cand})
            results.append(RoutedRequest(record, prod, cand, queued_for))
        append_jsonl(workspace.path("traffic", f"{received:%Y-%m-%d}.jsonl"), traffic)
        append_jsonl(workspace.path("review", REVIEW_QUEUE), queue)
        yield from results
