"""Leases on the local review queue: two reviewers (threads or processes) never get the same item."""

from __future__ import annotations

import json
import multiprocessing

from sav_router.review.items import annotation_row
from sav_router.review.queue import LeaseLost, LocalReviewQueue
from sav_router.core.jsonio import append_jsonl
from sav_router.loop.workspace import Workspace
from tests.conftest import read_jsonl

import pytest


def item(i):
    return {"id": f"r{i}", "text": f"request {i}", "label": "refund", "top_k": [{"label": "refund", "score": 0.6}], "reasons": ["low_confidence"], "model_version": "v1"}


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    append_jsonl(ws.path("review", "queue.jsonl"), [item(i) for i in range(6)])
    return ws


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_two_holders_get_different_items_and_a_reload_gets_the_same_one(workspace):
    ana, bob = LocalReviewQueue(workspace, holder="ana"), LocalReviewQueue(workspace, holder="bob")
    first, second = ana.current(), bob.current()
    assert first.id != second.id
    assert ana.current().id == first.id  # asked again (a reloaded page): the same item
    assert LocalReviewQueue(workspace, holder="ana").current().id == first.id  # even from a new process


def test_an_expired_lease_frees_the_item_and_its_old_holder_cannot_answer_it_any_more(workspace):
    clock = Clock()
    ana = LocalReviewQueue(workspace, holder="ana", lease_seconds=60, clock=clock)
    bob = LocalReviewQueue(workspace, holder="bob", lease_seconds=60, clock=clock)
    held = ana.current()
    assert bob.current().id != held.id
    clock.now += 61  # ana closed the tab (and bob's lease ran out too)
    assert bob.current().id == held.id  # free again: the first item in queue order
    with pytest.raises(LeaseLost):
        ana.ack(held, annotation_row(held, "refund", reviewer="ana"))
    assert not any(workspace.path("annotations").glob("*.jsonl"))


def test_undo_takes_the_answer_out_of_its_drop_and_gives_the_item_back(workspace):
    ana = LocalReviewQueue(workspace, holder="ana")
    first = ana.current()
    ana.ack(first, annotation_row(first, "refund", reviewer="ana"))
    second = ana.current()
    assert second.id != first.id
    back = ana.undo()
    assert back.id == first.id and ana.current().id == first.id
    rows = [row for path in workspace.path("annotations").glob("*.jsonl") for row in read_jsonl(path)]
    assert rows == []
    assert ana.undo() is None  # nothing else of ana's to take back
    assert LocalReviewQueue(workspace, holder="bob").current().id not in {first.id}


def _grab(root: str, holder: str, out) -> None:
    queue = LocalReviewQueue(Workspace(root), holder=holder)
    taken = []
    while (entry := queue.next_item()) is not None:
        queue.ack(entry, annotation_row(entry, "refund", reviewer=holder))
        taken.append(entry.id)
    out.put(taken)


def test_two_processes_working_the_queue_never_answer_the_same_item(workspace):
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=_grab, args=(str(workspace.root), name, out)) for name in ("p1", "p2")]
    for worker in workers:
        worker.start()
    taken = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    ids = taken[0] + taken[1]
    assert sorted(ids) == [f"r{i}" for i in range(6)] and len(set(ids)) == 6  # all answered, none twice
    rows = [json.loads(line) for path in workspace.path("annotations").glob("*.jsonl") for line in path.read_text().splitlines()]
    assert len(rows) == 6
