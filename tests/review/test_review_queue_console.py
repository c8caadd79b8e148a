"""The local queue's calls the console relies on (issue 20): renew, an undo stack, skip-last, counts, private drops."""

from __future__ import annotations

import stat

import pytest

from sav_router.core.jsonio import append_jsonl
from sav_router.loop.workspace import Workspace
from sav_router.review.items import annotation_row
from sav_router.review.queue import LeaseLost, LocalReviewQueue


def item(i):
    return {"id": f"r{i}", "text": f"request {i}", "label": "refund", "top_k": [{"label": "refund", "score": 0.6}], "reasons": ["low_confidence"], "model_version": "v1"}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    append_jsonl(ws.path("review", "queue.jsonl"), [item(i) for i in range(3)])
    return ws


def test_renew_keeps_a_lease_alive_and_an_expired_one_nobody_took_is_still_the_holders(workspace):
    clock = Clock()
    ana = LocalReviewQueue(workspace, holder="ana", lease_seconds=10, clock=clock)
    bob = LocalReviewQueue(workspace, holder="bob", lease_seconds=10, clock=clock)
    first = ana.current()
    for _ in range(5):  # 25 s on screen, renewed every 5 s
        clock.now += 5
        assert ana.renew(first.id)
    assert bob.current().id != first.id and not bob.renew(first.id)
    clock.now += 60  # ana's lease lapsed, bob holds another item: nobody took hers
    assert ana.renew(first.id)
    ana.ack(first, annotation_row(first, "refund", reviewer="ana"))
    assert not ana.renew(first.id)  # answered: nothing to renew
    with pytest.raises(LeaseLost):
        bob.ack(first, annotation_row(first, "refund", reviewer="bob"))


def test_undo_is_a_stack_holding_only_the_request_taken_back(workspace):
    ana = LocalReviewQueue(workspace, holder="ana", revisit_skipped=True)
    answered = []
    while (current := ana.current()) is not None:
        ana.ack(current, annotation_row(current, "refund", reviewer="ana"))
        answered.append(current.id)
    for expected in reversed(answered):
        taken = ana.undo()
        assert taken.id == expected and ana.undone_row["label"] == "refund"
        assert ana.current().id == expected
        leases = ana._leases()
        assert [key for key, lease in leases.items() if lease["holder"] == "ana"] == [expected]
    assert ana.counts() == {"waiting": 2, "held": 1, "held_by_others": 0}


def test_the_item_skipped_last_is_not_shown_again_at_once(workspace):
    ana = LocalReviewQueue(workspace, holder="ana", revisit_skipped=True)
    for _ in range(2):
        current = ana.current()
        ana.ack(current, annotation_row(current, "refund", reviewer="ana"))
    last = ana.current()
    ana.skip(last)
    assert ana.current() is None and ana.skipped_waiting() == 1
    ana.revisit()
    assert ana.current().id == last.id


def test_answer_drops_are_owner_only(workspace):
    ana = LocalReviewQueue(workspace, holder="ana")
    current = ana.current()
    ana.ack(current, annotation_row(current, "refund", reviewer="ana"))
    drops = list(workspace.path("annotations").glob("*.jsonl"))
    assert drops and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in drops)
    ana.undo()
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in drops)
