"""Issue 11 item 8: `route` killed at any step loses nothing and, resumed, duplicates nothing.

The router is a stand-in (decisions by id parity): what is under test is the order and the
atomicity of route's writes, in a real child process killed with os._exit at each write.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from sav_router.core.jsonio import append_jsonl
from sav_router.data.annotations import Record
from sav_router.loop import observer
from sav_router.loop.workspace import Workspace
from sav_router.review.queue import LocalReviewQueue

IDS = [f"r{i}" for i in range(10)]
ESCALATED = {rid for rid in IDS if int(rid[1:]) % 2 == 0}
BATCH = 4  # 3 batches x 4 writes (queue, requests, observer, decisions) = 12 steps


class StandInRouter:
    version = "stand-in"

    def decision_records(self, requests):
        return [
            {"id": r.id, "decision": "escalate" if r.id in ESCALATED else "route", "label": "a", "team": "a", "confidence": 0.5,
             "reasons": ["low_confidence"] if r.id in ESCALATED else [], "top_k": [], "model_version": self.version, "ood_score": None, "scores": {"a": 0.5}}
            for r in requests
        ]


RECORDS = [Record(text=f"request {rid}", label=None, id=rid) for rid in IDS]


def _route(root: str, crash_at: int | None, torn: bool) -> None:
    step = {"n": 0}

    def crashing(write, atomic):
        def wrapper(path, rows):
            rows = list(rows)
            if step["n"] == crash_at:
                if torn and rows:  # half a record reaches the disk, then the process dies
                    data = json.dumps(rows[0]).encode()
                    # an append tears the file itself; an atomic write only ever its temp file
                    target = path.with_name(f".{path.name}.crash.tmp") if atomic else path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "ab") as handle:
                        handle.write(data[: len(data) // 2])
                os._exit(9)
            step["n"] += 1
            return write(path, rows)
        return wrapper

    observer.append_jsonl = crashing(observer.append_jsonl, atomic=False)
    observer.write_jsonl_atomic = crashing(observer.write_jsonl_atomic, atomic=True)
    list(observer.route_stream(RECORDS, StandInRouter(), workspace=Workspace(root), observer=StandInRouter(), batch_size=BATCH, resume=True))
    os._exit(0)


def rows_of(workspace, kind):
    folder = workspace.root / "traffic" / kind
    return {p.name: [json.loads(line) for line in p.read_text().splitlines()] for p in sorted(folder.glob("dt=*/*.jsonl"))}


@pytest.mark.parametrize("torn", [False, True], ids=["killed", "killed-mid-write"])
@pytest.mark.parametrize("crash_at", range(12))
def test_route_killed_at_any_step_then_resumed_loses_and_duplicates_nothing(tmp_path, crash_at, torn):
    workspace = Workspace(tmp_path / "ws")
    # GIVEN route killed at write number `crash_at` (maybe leaving half a line behind)
    child = multiprocessing.get_context("fork").Process(target=_route, args=(str(workspace.root), crash_at, torn))
    child.start()
    child.join(60)
    assert child.exitcode == 9
    # WHEN it is run again with --resume (in this process, no crash)
    list(observer.route_stream(RECORDS, StandInRouter(), workspace=workspace, observer=StandInRouter(), batch_size=BATCH, resume=True))
    # THEN every request has exactly one logged decision, with its request and observer lines beside it
    decisions, requests, observed = rows_of(workspace, "decisions"), rows_of(workspace, "requests"), rows_of(workspace, "observer")
    decided = [row["id"] for rows in decisions.values() for row in rows]
    assert sorted(decided) == sorted(IDS)
    assert {name: [r["id"] for r in rows] for name, rows in requests.items()} == {name: [r["id"] for r in rows] for name, rows in decisions.items()}
    assert set(observed) == set(decisions)
    # AND every escalation is reviewable exactly once (a torn line stays aside, never glued to the next)
    queue_lines = [line for line in (workspace.root / "review" / "queue.jsonl").read_text().splitlines()]
    parsed = []
    for line in queue_lines:
        try:
            parsed.append(json.loads(line)["id"])
        except ValueError:
            assert torn  # only the half-written line
    assert sorted(parsed) == sorted(ESCALATED)
    reviewer = LocalReviewQueue(workspace)
    shown = []
    while (item := reviewer.next_item()) is not None:
        shown.append(item.id)
    assert sorted(shown) == sorted(ESCALATED)


def test_an_append_after_a_torn_line_starts_on_a_fresh_line(tmp_path):
    # GIVEN a queue whose last line was cut by a crash
    path = tmp_path / "review" / "queue.jsonl"
    path.parent.mkdir()
    path.write_text('{"id": "a", "text": "first"}\n{"id": "b", "te')
    # WHEN the next escalation is appended
    append_jsonl(path, [{"id": "c", "text": "next one"}])
    # THEN it is a line of its own, readable
    assert path.read_text().splitlines()[-1] == '{"id": "c", "text": "next one"}'
