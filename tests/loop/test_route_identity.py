"""Nothing lost, nothing twice in `route` (issue 18, findings 1, 2 and 7).

The router is a stand-in (escalates texts that contain "escalate"): what is under test is
how route_stream identifies requests, queues escalations and resumes, and that every file
it writes reads back whole through the one line codec.
"""

from __future__ import annotations

import json

from sav_router.data.annotations import Record
from sav_router.loop.observer import route_stream
from sav_router.loop.workspace import Workspace
from sav_router.monitoring.traffic import traffic_rows
from sav_router.review.queue import LocalReviewQueue


class StandInRouter:
    version = "stand-in"

    def decision_records(self, requests):
        def record(r):
            escalate = "escalate" in r.text
            return {"id": r.id, "decision": "escalate" if escalate else "route", "label": "a", "team": "a", "confidence": 0.5,
                    "reasons": ["low_confidence"] if escalate else [], "top_k": [], "model_version": self.version, "ood_score": None,
                    "scores": {"a": 0.5}}
        return [record(r) for r in requests]


def route(workspace, records, **options):
    return list(route_stream(records, StandInRouter(), workspace=workspace, batch_size=7, **options))


def reviewable(workspace) -> list:
    queue, items = LocalReviewQueue(workspace), []
    while (item := queue.next_item()) is not None:
        items.append(item)
        queue.skip(item)
    return items


def test_line_separators_in_a_request_keep_its_escalation_reviewable(tmp_path):
    # GIVEN requests whose texts hold every character str.splitlines() would split on
    workspace = Workspace(tmp_path / "ws")
    breakers = "\u2028\u2029\x85\x0b\x0c\x1c\x1d\x1e\r"
    records = [Record(text=f"please escalate{ch}this one", label=None, id=f"r{i}") for i, ch in enumerate(breakers)]
    # WHEN they are routed
    route(workspace, records)
    # THEN every escalation is handed out by the queue, with its text intact
    assert sorted(item.text for item in reviewable(workspace)) == sorted(r.text for r in records)
    # AND every traffic row reads back whole (none rejected as malformed)
    assert sorted((row["id"], row["text"]) for row in traffic_rows(workspace.root)) == sorted((r.id, r.text) for r in records)
    # AND each written line is one JSON object (raw U+2028 / U+2029 / U+0085 never reach the file)
    for path in (workspace.root / "review" / "queue.jsonl", *sorted((workspace.root / "traffic").rglob("*.jsonl"))):
        raw = path.read_text(encoding="utf-8")
        assert not any(ch in raw for ch in "\u2028\u2029\x85")
        assert all(isinstance(json.loads(line), dict) for line in raw.splitlines())


def test_a_reused_id_with_another_text_is_queued_not_dropped(tmp_path):
    # GIVEN two intake files numbering their requests from 0, with different texts
    workspace = Workspace(tmp_path / "ws")
    first = [Record(text=f"escalate channel A request {i}", label=None, id=str(i)) for i in range(36)]
    second = [Record(text=f"escalate channel B request {i}", label=None, id=str(i)) for i in range(36)]
    # WHEN both are routed into one workspace
    queued_first = sum(r.queued_for == "escalation" for r in route(workspace, first))
    queued_second = sum(r.queued_for == "escalation" for r in route(workspace, second))
    # THEN all 72 escalations are queued, counted, and handed out to reviewers under distinct ids
    assert (queued_first, queued_second) == (36, 36)
    items = reviewable(workspace)
    assert sorted(item.text for item in items) == sorted(r.text for r in first + second)
    assert len({item.id for item in items}) == 72


def test_the_same_request_routed_again_is_queued_once_and_says_so(tmp_path):
    # GIVEN requests already routed and queued
    workspace = Workspace(tmp_path / "ws")
    records = [Record(text=f"escalate {i}", label=None, id=str(i)) for i in range(10)]
    route(workspace, records)
    # WHEN the same file is routed again (not resumed: an operator's mistake, a redelivery)
    again = route(workspace, records)
    # THEN nothing is queued twice, and each is reported as already queued (not counted as queued)
    assert [r.queued_for for r in again] == [None] * 10 and all(r.already_queued for r in again)
    assert len(reviewable(workspace)) == 10


def test_resume_without_ids_routes_each_request_once(tmp_path):
    # GIVEN 300 requests without ids (some texts repeated), of which the first 120 were routed before a crash
    workspace = Workspace(tmp_path / "ws")
    records = [Record(text=f"{'escalate ' if i % 5 == 0 else ''}request {i % 250}", label=None, id=None) for i in range(300)]
    route(workspace, records[:120])
    # WHEN the whole input is routed again with --resume
    resumed = route(workspace, records, resume=True)
    # THEN the traffic log holds each input exactly once (300 rows), and no escalation is queued twice
    assert len(resumed) == 180
    assert sorted(row["text"] for row in traffic_rows(workspace.root)) == sorted(r.text for r in records)
    texts = [item.text for item in reviewable(workspace)]
    assert len(texts) == len(set(texts)) == len({r.text for r in records if r.text.startswith("escalate")})
