"""Two reviewers in two processes on one workspace: every item answered exactly once, nothing torn (issue 11)."""

from __future__ import annotations

import json
import multiprocessing

from sav_router.core.jsonio import append_jsonl
from sav_router.loop.workspace import Workspace
from sav_router.review.items import annotation_row
from sav_router.review.queue import LocalReviewQueue

N = 120


def _review_everything(root: str, reviewer: str, results) -> None:
    queue = LocalReviewQueue(Workspace(root))
    seen = 0
    while (item := queue.next_item()) is not None:
        queue.ack(item, annotation_row(item, "refund", reviewer=reviewer))
        seen += 1
    results.put(seen)


def test_two_reviewer_processes_store_each_answer_once(tmp_path):
    # GIVEN a queue of 120 escalations
    workspace = Workspace(tmp_path / "ws")
    append_jsonl(workspace.path("review", "queue.jsonl"), [{"id": f"q{i}", "text": f"request {i}", "decision": "escalate"} for i in range(N)])
    # WHEN two reviewer processes work the same queue at the same time, answering everything they are shown
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_review_everything, args=(str(workspace.root), name, results)) for name in ("ann", "bob")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    shown = [results.get(timeout=5) for _ in workers]
    # THEN each item has exactly one stored answer and one "answered" progress line, all lines whole
    answers = [json.loads(line) for drop in workspace.path("annotations").glob("*-review-teach.jsonl") for line in drop.read_text().splitlines()]
    assert sorted(a["id"] for a in answers) == sorted(f"q{i}" for i in range(N))
    progress = [json.loads(line) for line in workspace.path("review", "progress.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in progress if p["status"] == "answered") == sorted(f"q{i}" for i in range(N))
    print(f"two reviewers were shown {shown} items ({sum(shown) - N} shown twice), {len(answers)} answers stored")
