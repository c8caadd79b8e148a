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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sav_router.core import layout
from sav_router.core.jsonio import append_jsonl, locked, read_jsonl, write_jsonl_atomic
from sav_router.core.policy import ROUTE
from sav_router.core.traffic import batch_name, traffic_batch
from sav_router.data.annotations import Record
from sav_router.model.router import Router
from sav_router.core.clock import utc_now
from sav_router.loop.workspace import Workspace


@dataclass
class RoutedRequest:
    record: Record
    production: dict
    observer: dict | None
    queued_for: str | None  # "escalation", "audit" or None


def _ids(path: Path) -> set[str]:
    """Ids of a JSONL file; a torn line (crash mid-append) is passed over."""
    return {str(row["id"]) for row in read_jsonl(path) if row.get("id") is not None}


def logged_decisions(workspace: Workspace, *, clean: bool = False) -> set[str]:
    """Ids whose production decision is logged; with `clean`, partial batches' files are removed."""
    decisions = workspace.root / layout.TRAFFIC_DECISIONS
    done: set[str] = set()
    for path in decisions.rglob("*.jsonl") if decisions.is_dir() else []:
        done |= _ids(path)
    if clean:
        for stale in decisions.rglob("*.tmp") if decisions.is_dir() else []:
            stale.unlink()  # a decisions file never renamed into place: its batch is routed again
        for prefix in (layout.TRAFFIC_REQUESTS, layout.TRAFFIC_OBSERVER):
            folder = workspace.root / prefix
            for path in folder.rglob("*") if folder.is_dir() else []:
                twin = decisions / path.relative_to(folder)
                if path.is_file() and (path.name.endswith(".tmp") or not twin.is_file()):
                    path.unlink()  # a batch cut short: its requests are routed again
    return done


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
        done = logged_decisions(workspace, clean=True) if resume else set()
        queued = _ids(queue_path)
        pending = [r for r in records if r.id is None or str(r.id) not in done]
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
                if queued_for and (record.id is None or str(record.id) not in queued):
                    queue.append(prod | {"text": record.text, "audit": queued_for == "audit", "queued_at": received.isoformat(timespec="seconds")})
                results.append(RoutedRequest(record, prod, None if observed is None else observed[i], queued_for))
            requests, decisions = traffic_batch([(r.id, r.text) for r in chunk], productions, received_at=received)
            requests_key, decisions_key = layout.traffic_keys(received, batch_name(received))
            append_jsonl(queue_path, queue)
            queued |= {str(row["id"]) for row in queue if row.get("id") is not None}
            write_jsonl_atomic(workspace.root / requests_key, requests)
            if observed is not None:
                write_jsonl_atomic(workspace.root / layout.TRAFFIC_OBSERVER / requests_key[len(layout.TRAFFIC_REQUESTS):], observed)
            write_jsonl_atomic(workspace.root / decisions_key, decisions)  # last: the batch is done
            yield from results
