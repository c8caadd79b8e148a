"""The re-check queue in the terminal says what it is, and an answer taken back does not settle anything (issue 22)."""

from __future__ import annotations

from sav_router.loop.workspace import Workspace
from sav_router.review.items import annotation_row, parse_item
from sav_router.review.recheck import PENDING, RecheckQueue, enqueue, settle, status
from sav_router.review.session import show


def test_the_terminal_says_re_check_of_an_earlier_annotation_not_audit_sample():
    item = parse_item({"id": "recheck-k-1", "text": "my parcel never came", "audit": True, "recheck_split": "teach",
                       "top_k": [{"label": "delivery", "score": 0.0}, {"label": "refund", "score": 0.0}]})
    lines = []
    show(item, [("delivery", None), ("refund", None)], lines.append, 1)
    screen = "\n".join(lines)
    assert "re-check of an earlier annotation, blind" in screen and "audit sample" not in screen


def test_an_answer_taken_back_counts_for_nothing(tmp_path):
    workspace = Workspace(tmp_path / "ws").ensure()
    doubt = {"id": "r1", "text": "money back for my order please", "split": "teach", "label": "delivery", "file": "a.jsonl", "line": 3}
    assert enqueue(workspace, [doubt], ["delivery", "refund"]) == 1
    queue = RecheckQueue(workspace, holder="ann", queue_file="ignored.jsonl")  # the re-check files, whatever a caller passes
    item = queue.next_item()
    assert item is not None and item.recheck_split == "teach"
    queue.ack(item, annotation_row(item, "refund", reviewer="ann"))
    # WHEN the answer is taken back (the console's undo): its row stays in the answers file, its progress says undone
    assert queue.undo() is not None
    # THEN settling sees no answer: nothing queued, nothing relabelled
    assert [s.outcome for _, s in status(workspace)] == [PENDING]
    assert [s.outcome for s in settle(workspace, by="lead")] == [PENDING]
    # AND answered again, it counts once
    again = queue.current()
    queue.ack(again, annotation_row(again, "delivery", reviewer="ann"))
    assert [s.outcome for s in settle(workspace, by="lead")] == ["confirmed"]
