"""Live routing on the embedded default, with a candidate in observer mode.

`route_stream` decides each request with the production model; a candidate,
if given, scores the same requests without affecting routing. Each batch is
logged in the routing Lambda's traffic format (`core.traffic`, `core.layout`):
`traffic/requests/dt=DAY/NAME`, `traffic/decisions/dt=DAY/NAME` and, for the
candidate, `traffic/observer/dt=DAY/NAME`. Escalations go to the local review
queue; a configurable share of confidently routed requests is also queued as
audit samples so live routed precision can be measured.

Crash safety, batch by batch: (1) the review queue first (one fsynced append,
starting on a fresh line; ids already queued are not queued again), (2) the
requests, (3) the observer decisions, (4) the production decisions, each file
written whole (temp file + rename). The decisions file is the batch's commit
mark: a request whose decision is logged is in the queue if it needs a human.
`resume=True` skips requests whose decision is already logged and removes the
partial files of a batch that never got its decisions, so re-running after a
crash loses nothing and duplicates nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sav_router.core import layout
from sav_router.core.jsonio import append_jsonl, locked, read_jsonl, write_jsonl_atomic
from sav_router.core.policy import ROUTE
from sav_router.core.traffic import batch_name, distinct_id, request_key, traffic_batch
from sav_router.data.annotations import Record
from sav_router.model.router import Router
from sav_router.monitoring.traffic import traffic_rows
from sav_router.core.clock import utc_now
from sav_router.loop.workspace import Workspace


@dataclass
class RoutedRequest:
    record: Record
    production: dict
    observer: dict | None
    queued_for: str | None  # "escalation", "audit" or None
    already_queued: bool = False  # the same request (same id and text) was queued before: not queued twice


def _not_logged(records: Sequence[Record], workspace: Workspace) -> list[Record]:
    """What `--resume` routes: each request (same id and same text) as many times as the input holds it
    beyond the times the traffic log already holds it. Partial batches are removed first (routed again)."""
    remove_partial_batches(workspace)
    logged = Counter(request_key(row["id"], row["text"]) for row in traffic_rows(workspace.root) if isinstance(row.get("text"), str))
    pending = []
    for record in records:
        key = request_key(record.id, record.text)
        if logged[key]:
            logged[key] -= 1
        else:
            pending.append(record)
    return pending


def remove_partial_batches(workspace: Workspace) -> None:
    """Remove the files of batches cut short (no decisions file renamed into place): their requests are routed again."""
    decisions = workspace.root / layout.TRAFFIC_DECISIONS
    for stale in decisions.rglob("*.tmp") if decisions.is_dir() else []:
        stale.unlink()  # a decisions file never renamed into place
    for prefix in (layout.TRAFFIC_REQUESTS, layout.TRAFFIC_OBSERVER):
        folder = workspace.root / prefix
        for path in folder.rglob("*") if folder.is_dir() else []:
            twin = decisions / path.relative_to(folder)
            if path.is_file() and (path.name.endswith(".tmp") or not twin.is_file()):
                path.unlink()


def route_stream(
    records: Sequence[Record],
    production: Router,
    *,
    workspace: Workspace,
    observer: Router | None = None,
    audit_share: float = 0.0,
    seed: int | None = None,
    batch_size: int = 64,
    resume: bool = False,
) -> Iterator[RoutedRequest]:
    if not 0.0 <= audit_share <= 1.0:
        raise ValueError("audit share must be within [0, 1]")
    rng = random.Random(seed)
    workspace.ensure()
    queue_path = workspace.path("review", layout.REVIEW_QUEUE)
    with locked(workspace.root / layout.TRAFFIC / "route"):  # one `route` at a time writes the traffic log
        pending = _not_logged(records, workspace) if resume else list(records)
        queued_rows = read_jsonl(queue_path)
        queued = {request_key(row.get("request_id", row.get("id")), str(row.get("text") or "")) for row in queued_rows}
        taken_ids = {str(row["id"]) for row in queued_rows if row.get("id") is not None}
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            productions = production.decision_records(chunk)
            observed = observer.decision_records(chunk) if observer is not None else None
            received = utc_now()
            queue, results = [], []
            for i, record in enumerate(chunk):
                prod = productions[i]
                queued_for = None
                if prod["decision"] != ROUTE:
                    queued_for = "escalation"
                elif audit_share and rng.random() < audit_share:
                    queued_for = "audit"
                already = False
                if queued_for:
                    key = request_key(record.id, record.text)
                    if key in queued:
                        already, queued_for = True, None  # a redelivery or a resumed run: queued once
                    else:
                        row = prod | {"text": record.text, "audit": queued_for == "audit", "queued_at": received.isoformat(timespec="seconds")}
                        if record.id is not None and str(record.id) in taken_ids:  # another request under that id
                            row |= {"id": distinct_id(record.id, record.text), "request_id": record.id}
                        queue.append(row)
                        queued.add(key)
                        taken_ids.add(str(row["id"]))
                results.append(RoutedRequest(record, prod, None if observed is None else observed[i], queued_for, already))
            requests, decisions = traffic_batch([(r.id, r.text) for r in chunk], productions, received_at=received)
            requests_key, decisions_key = layout.traffic_keys(received, batch_name(received))
            append_jsonl(queue_path, queue)
            write_jsonl_atomic(workspace.root / requests_key, requests)
            if observed is not None:
                write_jsonl_atomic(workspace.root / layout.TRAFFIC_OBSERVER / requests_key[len(layout.TRAFFIC_REQUESTS):], observed)
            write_jsonl_atomic(workspace.root / decisions_key, decisions)  # last: the batch is done
            yield from results
